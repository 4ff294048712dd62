"""The ``report`` job: a saved result beside one of the paper's tables (or the table alone), saved as CSV/Markdown."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..io.files import write_file_set
from ..reports import beside_paper, load_result, paper_wide, to_markdown


@dataclass
class ReportJob:
    """What :func:`run_report` returns: the table and the files written."""

    table: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


def run_report(result: str | os.PathLike | None, table: str, *, label: str = "this run",
               out: str | os.PathLike | None = None) -> ReportJob:
    """The paper's ``table`` with the result in ``result`` (results.json or its folder) beside it;
    the table alone when ``result`` is None. Writes ``report.csv`` and ``report.md`` into ``out``.

    Raises:
        InputError: an unknown table or an unreadable result.
    """
    if result is None:
        df = paper_wide(table)
    else:
        res, _ = load_result(result)
        df = beside_paper(res, table, label=label)
    files: dict[str, Path] = {}
    if out is not None:
        written = write_file_set(out, {"report.csv": df.to_csv(index_label="model").encode(),
                                       "report.md": to_markdown(df, index=True).encode()}, overwrite=True)
        files = {"csv": written["report.csv"], "md": written["report.md"]}
    return ReportJob(table=df, files=files)
