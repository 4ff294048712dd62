"""The CLI's one error boundary: expected failures become a short message and exit code 2.

Library errors speak of API parameters (``inception_weights``); :func:`flag_for` maps a
parameter to the command-line flag that sets it, and :func:`message` rewrites the error so a
user reads ``--inception-weights``. Anything that is not a :class:`LafitebenchError` is a bug:
its traceback is shown, with a line that says so.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import sys
import textwrap
import traceback
import warnings
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ..data.store import PrepareConfig
from ..errors import LafitebenchError
from ..metrics.config import OPTION_GROUPS, EvalConfig
from ..options import declared
from ..training.config import TrainConfig

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True)

#: Parameters (outside the declared evaluation options) whose flag is not ``--`` + the name with dashes.
FLAG_OVERRIDES = {
    "captions_file": "--captions",
    "reference_captions": "--reference-captions",
    "clip_backbone": "--clip-backbone",
    "reference": "--reference",
    "image_format": "--format",
}


@functools.lru_cache(maxsize=1)
def declared_flags() -> dict[str, str]:
    """The flag of every declared evaluation option (``isc_shuffle`` → ``--isc-order``)."""

    return {f.name: f.metadata["cli"].flag.split("/")[0].split()[0]
            for g in OPTION_GROUPS for f in declared(g) if f.metadata.get("cli")}


def flag_for(param: str) -> str:
    """The CLI flag of an API parameter (``kid_subset_size`` → ``--kid-subset-size``)."""
    return declared_flags().get(param) or FLAG_OVERRIDES.get(param, "--" + param.replace("_", "-"))


def message(e: LafitebenchError) -> str:
    """The error text with API parameter names (snake_case words) replaced by their flags, and the
    flag of the error's own parameter added when the text does not name it yet."""
    text = str(e)
    for p in sorted(set(re.findall(r"\b([a-z]+(?:_[a-z0-9]+)+)\b", text)), key=len, reverse=True):
        if p in _KNOWN_PARAMS:
            text = re.sub(rf"(?<![\w./-]){re.escape(p)}(?![\w/-])", flag_for(p), text)
    param = getattr(e, "param", None)
    if param and "_" not in param and param in _KNOWN_PARAMS:  # one-word parameters: "pass overwrite"
        text = re.sub(rf"\bpass {re.escape(param)}\b", f"pass {flag_for(param)}", text)
    if param and param in _KNOWN_PARAMS and flag_for(param) not in text:
        text += f" (option {flag_for(param)})"
    return text


def _known_params() -> set[str]:

    return ({f.name for f in dataclasses.fields(EvalConfig)} | set(FLAG_OVERRIDES) | set(declared_flags())
            | {"samples", "data_root", "split", "overwrite", "variant", "table", "model", "num", "noise_mode",
               "image_format", "truncation", "batch_size", "cycle", "report", "results", "sort_by"}
            | {f.name for f in dataclasses.fields(PrepareConfig)} | {"export_official"}
            | {f.name for f in dataclasses.fields(TrainConfig)})


_KNOWN_PARAMS: set[str] = set()


def wrap(text: str, width: int) -> str:
    """``text`` wrapped at spaces only: URLs, paths and flags are never split (a longer one gets
    a line of its own), so they stay copyable."""

    return "\n".join(textwrap.fill(line, width=width, break_long_words=False, break_on_hyphens=False)
                     if line.strip() else "" for line in text.splitlines())


def fail(e: LafitebenchError) -> None:
    """Print ``e`` (flags named, wrapped to the terminal without splitting words) on stderr; exit 2."""
    from rich.text import Text

    width = max(40, min(err_console.width, 100))
    err_console.print(Text("error: ", style="bold red") + Text(wrap("error: " + message(e), width)[7:]),
                      soft_wrap=True)
    raise typer.Exit(code=2)


def _show_warning(message: Warning | str, category: type, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Library warnings as one 'warning:' line (flags named), not Python's warning format."""
    err_console.print(Text("warning: ", style="bold yellow") + Text(message_text(str(message))), soft_wrap=False)


def message_text(text: str) -> str:
    """:func:`message` for plain text."""
    return message(LafitebenchError(text))


#: What Ctrl-C leaves behind for eval and generate; commands with other work say their own.
INTERRUPTED = ("interrupted: finished work is kept (reference statistics in the cache, generated images in --out) "
               "and nothing is half-written; run the same command again to continue")


def boundary(fn: F | None = None, *, interrupted: str = INTERRUPTED) -> Any:
    """Wrap a command: LafitebenchError → :func:`fail`; Ctrl-C → ``interrupted`` (one line, exit
    130); any other exception is a bug and keeps its traceback. ``@boundary`` or
    ``@boundary(interrupted="...")`` for a command whose kept work is described otherwise."""
    if fn is None:
        return lambda f: boundary(f, interrupted=interrupted)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _KNOWN_PARAMS:
            _KNOWN_PARAMS.update(_known_params())
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                warnings.simplefilter("ignore")  # third-party deprecation chatter
                warnings.filterwarnings("always", category=UserWarning, module=r"lafitebench\..*")
                warnings.filterwarnings("always", category=RuntimeWarning, module=r"lafitebench\..*")
                return fn(*args, **kwargs)
        except LafitebenchError as e:
            fail(e)
        except OSError as e:  # the environment refused a read or write: a file in the way, read-only, disk full
            where = e.filename if e.filename is not None else "a file"
            fail(LafitebenchError(f"cannot use {where}: {e.strerror or e}; check the path and its permissions, "
                                  "and that the disk has room"))
        except ValueError as e:
            if "null byte" not in str(e):
                raise
            fail(LafitebenchError("a path given on the command line contains a NUL character"))
        except KeyboardInterrupt:
            err_console.print(interrupted)
            raise typer.Exit(code=130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            err_console.print("[bold red]This is a bug in lafitebench[/] (the traceback above says where); "
                              "please report it with the command you ran.")
            raise typer.Exit(code=1) from None
        return None

    return wrapper  # type: ignore[return-value]
