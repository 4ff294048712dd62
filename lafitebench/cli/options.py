"""Command-line options built from the declared option groups (:mod:`lafitebench.options`).

:func:`option_parameters` turns every field that declares a command-line form into a Typer option
(flag, default, help text, range, ``--help`` panel); :func:`config_values` turns the parsed values
back into config fields. A command declares only its own options and adds these to its signature
with :func:`with_options`.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Any, Callable, Iterable, Optional

import typer

from ..options import Options, declared


def _cli_type(f: dataclasses.Field, default: Any) -> Any:
    cli = f.metadata["cli"]
    if cli.type is not None:
        return cli.type
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    return Optional[str]


def option_parameters(groups: Iterable[type[Options]], defaults: Any) -> list[inspect.Parameter]:
    """One keyword parameter per declared command-line option of ``groups``; ``defaults`` is a
    config instance whose values are the options' defaults."""
    params = []
    for group in groups:
        for f in declared(group):
            cli = f.metadata.get("cli")
            if cli is None:
                continue
            value = getattr(defaults, f.name)
            shown = cli.from_value(value) if cli.from_value else value
            kind = _cli_type(f, value)
            metavar = cli.metavar or {int: "N", float: "X"}.get(kind)  # narrower than "<int range> [x>=2]"
            opt = typer.Option(shown, *cli.flag.split(), help=f.metadata.get("help") or None, metavar=metavar,
                               min=cli.minimum, max=cli.maximum,
                               rich_help_panel=f.metadata.get("panel") or group.PANEL)
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=kind))
    return params


def config_values(groups: Iterable[type[Options]], values: dict[str, Any]) -> dict[str, Any]:
    """Pop the declared options of ``groups`` from ``values`` (parsed CLI values) and return them
    as config field values (converted where the option declares how)."""
    out = {}
    for group in groups:
        for f in declared(group):
            cli = f.metadata.get("cli")
            if cli is None or f.name not in values:
                continue
            v = values.pop(f.name)
            out[f.name] = cli.to_value(v) if cli.to_value else v
    return out


def _panel(p: inspect.Parameter) -> str | None:
    return getattr(p.default, "rich_help_panel", None)


def with_options(groups: Iterable[type[Options]], defaults: Any, panels: Iterable[str] = ()) -> Callable[[Callable], Callable]:
    """Decorate a command taking ``**options``: its signature gains the declared options of
    ``groups`` after its own parameters, so Typer shows and parses them; ``--help`` shows the
    panels in the order ``panels`` gives (others after them)."""
    groups, order = tuple(groups), {name: k for k, name in enumerate(panels)}

    def deco(fn: Callable) -> Callable:
        hints = typing.get_type_hints(fn)
        own = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(fn).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        wrapper.__annotations__ = {}
        params = sorted(own + option_parameters(groups, defaults), key=lambda p: order.get(_panel(p), len(order)))
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return wrapper

    return deco


__all__ = ["option_parameters", "config_values", "with_options"]
