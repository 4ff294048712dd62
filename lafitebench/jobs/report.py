"""The ``report`` job: measured results merged into the paper's tables, a leaderboard and an
HTML page, written as one report folder (see :mod:`lafitebench.reports`).

A report folder ``DIR`` accumulates: ``lafitebench eval --report DIR`` puts each result under
``DIR/runs/<run>/``; ``run_report([DIR])`` rebuilds ``DIR/tables/<table>.{csv,md,tex,json}`` for
every paper table with measured rows, ``DIR/leaderboard.{csv,md}`` and ``DIR/index.html``.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import InputError
from ..io.files import write_file_set
from ..reports.html import report_html
from ..reports.merge import Measured, leaderboard, load_measured, merge, runs_for_table
from ..reports.paper import TABLES, get_table, paper_table
from ..reports.render import table_files
from ..reports.results import to_markdown

RUNS_DIR = "runs"


@dataclass
class ReportJob:
    """What :func:`run_report` returns: merged tables by id, the leaderboard, the runs, files written."""

    tables: dict[str, pd.DataFrame]
    leaderboard: pd.DataFrame
    runs: list[Measured]
    files: dict[str, Path] = field(default_factory=dict)


def list_tables() -> pd.DataFrame:
    """The paper tables: id, title, models, metrics, and how many values are unverified."""

    rows = []
    for name in TABLES.names():
        t = TABLES.get(name)
        df = paper_table(name)
        rows.append({"table": name, "title": t.title, "models": df["model"].nunique(),
                     "metrics": ", ".join(dict.fromkeys(df["metric"])), "unverified": int((df["verified"] != "yes").sum())})
    return pd.DataFrame(rows)


def run_report(results: Sequence[str | os.PathLike] = (), table: str | None = None, *,
               out: str | os.PathLike | None = None, sort_by: str | None = None, label: str | None = None,
               title: str = "LAFITE: measured beside the paper") -> ReportJob:
    """Merge the results under ``results`` (results.json files or folders holding them) into the
    paper's tables and write a report folder.

    ``table`` given: that table, with every result in it. Else every table that has measured rows
    (a run belongs to the table its zoo model's manifest names). Without results: the paper's
    ``table`` alone. ``out``: where to write (default: the one folder given, when there is one).
    ``label``: the row name of every given result (default: the model id, or the samples' name).

    Raises:
        InputError: unknown table, no results found, results sharing no metric with ``table``,
            an unknown ``sort_by`` metric.
    """
    if table is not None:
        get_table(table)
    runs = load_measured(results) if results else []
    for m in runs if label else ():
        m.label = label
    if table is not None:
        merged = {get_table(table).id: merge(table, runs)}
    else:
        if not runs:
            raise InputError("give result folders or files, or --table for the paper's table alone", param="table")
        merged = {n: merge(n, mine) for n in TABLES.names() if (mine := runs_for_table(runs, TABLES.get(n)))}
    board = leaderboard(runs, sort_by) if runs else pd.DataFrame()
    if out is None and len(results) == 1 and Path(results[0]).is_dir():
        out = results[0]
    files: dict[str, Path] = {}
    if out is not None:
        files = _write(Path(out), merged, board, runs, title)
    return ReportJob(tables=merged, leaderboard=board, runs=runs, files=files)


def _write(out: Path, merged: dict[str, pd.DataFrame], board: pd.DataFrame, runs: list[Measured],
           title: str) -> dict[str, Path]:
    written: dict[str, Path] = {}
    prov = {m.source: m.summary() for m in runs}
    for table_id, df in merged.items():
        t = TABLES.get(table_id)
        labels = set(df["model"])
        mine = {m.source: prov[m.source] for m in runs if f"{m.label} (measured)" in labels}
        for name, path in write_file_set(out / "tables", table_files(df, table_id, t.title, mine), overwrite=True).items():
            written[f"tables/{name}"] = path
    pages = {"index.html": report_html(title, [(k, TABLES.get(k).title, v) for k, v in merged.items()], board,
                                       runs).encode()}
    if not board.empty:
        pages["leaderboard.csv"] = board.to_csv(index=False).encode()
        pages["leaderboard.md"] = ("# Leaderboard\n\n" + to_markdown(board)).encode()
    for name, path in write_file_set(out, pages, overwrite=True).items():
        written[name] = path
    return written


def run_dir_name(provenance: dict, stamp: str | None = None) -> str:
    """A run folder name under ``DIR/runs``: date-time, model or samples name, split."""
    gen = provenance.get("generation") or ((provenance.get("inputs") or {}).get("samples") or {}).get("generation") or {}
    name = (gen.get("model") or {}).get("id") or ((provenance.get("inputs") or {}).get("samples") or {}).get("name") or "run"
    split = (gen.get("split") or {}).get("id") or ""
    text = "-".join(x for x in (stamp or time.strftime("%Y%m%d-%H%M%S"), str(name), str(split)) if x)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120]


__all__ = ["ReportJob", "run_report", "list_tables", "run_dir_name", "RUNS_DIR"]
