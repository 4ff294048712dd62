"""``lafitebench report``: results merged into the paper's tables (:func:`~lafitebench.jobs.report.run_report`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..jobs.report import list_tables, run_report
from ..reports import rich_table
from ..reports.paper import get_table
from ..reports.render import board_table, rich_merged
from .common import err_console, out_console
from .errors import boundary

REPORT_HELP = """Put measured results beside the paper's tables; write CSV, Markdown, LaTeX, JSON,
a leaderboard and a standalone HTML page.

RESULTS are results.json files or folders holding them (searched recursively). A report folder
accumulates: `lafitebench eval --report DIR` adds a run to DIR/runs/, and `lafitebench report
DIR` rebuilds DIR/tables/, DIR/leaderboard.csv/.md and DIR/index.html. Several runs of the same
model and split (seeds) are shown as mean ± std with their count; a row measured with another
protocol than the paper's (fewer samples, another reference, blur preset or detector) is
marked † with the differences in a footnote.

Examples:

\b
  lafitebench report --list
  lafitebench report --table lang_free    # the paper's table alone
  lafitebench report reports/mine         # every table with measured rows
  lafitebench report runs/a runs/b --table zero_shot --out reports/zs
"""

@boundary
def report_cmd(results: Optional[List[Path]] = typer.Argument(None, metavar="[RESULTS]...",
                                                             help="results.json files or folders holding them."),
               table: Optional[str] = typer.Option(None, "--table", metavar="NAME",
                                                   help="lang_free, zero_shot, supervised or supervised_other "
                                                        "(default: every table with measured rows)."),
               out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                                  help="Report folder to write (default: the one folder given)."),
               label: Optional[str] = typer.Option(None, "--label", help="Row name of the given results "
                                                   "(default: the model id or the samples' name)."),
               sort_by: Optional[str] = typer.Option(None, "--sort-by", metavar="METRIC",
                                                     help="Leaderboard order (default FID-0)."),
               list_: bool = typer.Option(False, "--list", help="List the paper's tables and exit.")) -> None:

    if list_:
        out_console.print(rich_table(list_tables(), title="paper tables (lafitebench report --table NAME)"))
        return
    job = run_report(results or [], table, out=out, sort_by=sort_by, label=label)
    for table_id, merged in job.tables.items():
        out_console.print(rich_merged(merged, get_table(table_id).title))
    if not job.leaderboard.empty:
        out_console.print(board_table(job.leaderboard, "leaderboard of measured runs"))
    if job.files:
        html = job.files.get("index.html")
        err_console.print(f"wrote {len(job.files)} files" + (f"; open {html}" if html else ""))
