"""Helpers shared by the command modules: consoles, list parsing, tables."""
from __future__ import annotations

from rich.console import Console

from ..errors import InputError

out_console = Console()
err_console = Console(stderr=True)


def csv_list(value: str, option: str) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``; a usage error naming ``option`` when empty."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise InputError(f"{option} needs a comma-separated list, got {value!r}")
    return items


def int_list(value: str, option: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; a usage error naming ``option`` otherwise."""
    try:
        return [int(v) for v in csv_list(value, option)]
    except ValueError:
        raise InputError(f"{option} takes integers such as 0,1,2,4,8; got {value!r}") from None


def flow(text: str | None) -> str | None:
    """Help text for Rich rendering: the lines of a paragraph joined (Rich wraps them to the
    terminal); a paragraph after a ``\\b`` line, or indented, keeps its lines (examples)."""
    if not text:
        return text
    out = []
    for para in text.strip("\n").split("\n\n"):
        lines = para.split("\n")
        if lines[0].strip() == "\b":
            out.append("\n".join(lines[1:]))
        elif all(line.startswith("  ") for line in lines):
            out.append(para)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)

