"""Rich progress bars and the stderr console (progress never goes to stdout, so ``--json`` stays clean)."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr_console = Console(stderr=True)


def progress(disable: bool = False, transient: bool = False) -> Progress:
    """A Rich progress bar on stderr (so ``--json`` output on stdout stays clean); a ``transient``
    bar is erased when its block ends (downloads: no half-drawn bar is left behind a failure)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        disable=disable,
        transient=transient,
    )
