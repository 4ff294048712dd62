"""Rich progress bars and the stderr console (progress never goes to stdout, so ``--json`` stays clean)."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

stderr_console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second (images/s while generating or evaluating), blank until measured."""

    def render(self, task) -> Text:  # noqa: ANN001 - rich's Task
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.2f}/s", style="progress.data.speed")


def progress(disable: bool = False, transient: bool = False) -> Progress:
    """A Rich progress bar on stderr (so ``--json`` output on stdout stays clean); a ``transient``
    bar is erased when its block ends (downloads: no half-drawn bar is left behind a failure)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        disable=disable,
        transient=transient,
    )
