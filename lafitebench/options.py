"""Declared options: one place for an option's name, default, help text and command-line form.

Each metric and backbone declares its options as a small dataclass next to its code (e.g.
:class:`lafitebench.metrics.fid.FidOptions`), with a ``validate`` function beside it.
:class:`lafitebench.metrics.config.EvalConfig` is the union of those classes, and the CLI builds its
options from the same declarations (:mod:`lafitebench.cli.options`), so a name, a default or a
help text is written once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

from .errors import InputError


@dataclass(frozen=True)
class Cli:
    """How an option appears on the command line when not as its field: the flag(s), the CLI
    value's type, and the conversions between the CLI value and the field value."""

    flag: str
    type: Any = None
    to_value: Callable[[Any], Any] | None = None
    from_value: Callable[[Any], Any] | None = None
    metavar: str | None = None
    minimum: float | None = None
    maximum: float | None = None


def option(default: Any = dataclasses.MISSING, help: str = "", *, cli: Cli | str | None = None,
           default_factory: Any = dataclasses.MISSING, panel: str | None = None) -> Any:
    """A dataclass field with its help text and command-line form (a flag, or a :class:`Cli`);
    ``panel`` puts it in another ``--help`` group than its class's ``PANEL``."""
    meta = {"help": help, "cli": Cli(cli) if isinstance(cli, str) else cli, "panel": panel}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


class Options:
    """Base of the option groups: ``PANEL`` names the group in ``--help``; ``check`` validates
    the group's fields on a config holding them (raising InputError naming the field)."""

    PANEL: ClassVar[str] = "Options"

    @classmethod
    def check(cls, config: Any) -> None:  # noqa: D401 - overridden
        """No checks beyond the types by default."""

def positive_int(config: Any, name: str, minimum: int) -> None:
    """``config.<name>`` is an integer >= ``minimum``; InputError naming it otherwise."""

    v = getattr(config, name)
    if isinstance(v, bool) or not hasattr(v, "__index__") or v < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {v!r}", param=name)


def declared(cls: type) -> Iterator[dataclasses.Field]:
    """The fields ``cls`` itself declares (not those of its bases), in order."""
    own = cls.__dict__.get("__annotations__", {})
    for f in dataclasses.fields(cls):
        if f.name in own:
            yield f


__all__ = ["Cli", "option", "Options", "declared", "positive_int"]
