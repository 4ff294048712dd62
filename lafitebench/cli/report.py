"""``lafitebench report``: a saved result beside the paper's table (:func:`~lafitebench.jobs.report.run_report`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import err_console, out_console
from .errors import boundary

REPORT_HELP = """Print saved results beside the paper's table and write CSV/Markdown.

Examples:

\b
  lafitebench report reports/runs/20261122-101500 --table lang_free
  lafitebench report --table supervised      # the paper's table alone
"""


@boundary
def report_cmd(result: Optional[Path] = typer.Argument(None, metavar="[RESULT]", help="results.json or the folder holding it."),
               table: str = typer.Option("lang_free", "--table", help="lang_free, zero_shot, supervised or supervised_other."),
               label: str = typer.Option("this run", "--label", help="Row label of your result."),
               out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Write report.csv and report.md here.")) -> None:
    from ..jobs.report import run_report
    from ..reports import rich_table

    job = run_report(result, table, label=label, out=out)
    out_console.print(rich_table(job.table, title=f"LAFITE paper, {table}", index=True))
    if job.files:
        err_console.print(f"wrote {job.files['csv']} and {job.files['md']}")
