"""Result files: save as CSV / JSON (with provenance) / Markdown, read back, render with Rich.

A result table has one row per metric with the columns ``metric_id`` (the protocol spelled out,
e.g. ``fid_blur2_lafite``), ``metric`` (the short name the paper uses, e.g. ``FID-2``),
``value``, ``std``, ``n``, ``higher_is_better`` and ``notes``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from ..io.files import read_text, write_file_set
from ..io.jsonable import table_records

def to_markdown(df: pd.DataFrame, index: bool = False, floatfmt: str = ".4g") -> str:
    """A GitHub Markdown table (no extra dependency: pandas' to_markdown needs ``tabulate``)."""
    frame = df.rename_axis(df.index.name or "model").reset_index() if index else df
    cols = [str(c) for c in frame.columns]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else format(v, floatfmt)
        return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def rich_table(df: pd.DataFrame, title: str | None = None, index: bool = False) -> Table:
    """Render a DataFrame as a Rich table (floats to 4 significant digits)."""
    frame = df.rename_axis(df.index.name or "model").reset_index() if index else df
    t = Table(title=title)
    for c in frame.columns:
        t.add_column(escape(str(c)), justify="right" if pd.api.types.is_numeric_dtype(frame[c]) else "left",
                     overflow="fold")  # long metric ids wrap, never "…"
    for row in frame.itertuples(index=False):  # cells are text, never markup: metric ids hold [backbone:...]
        t.add_row(*[("" if pd.isna(v) else f"{v:.4g}") if isinstance(v, float) else escape(str(v)) for v in row])
    return t


def result_files(table: pd.DataFrame, provenance: dict[str, Any], extra_tables: dict[str, pd.DataFrame] | None = None,
                 stem: str = "results") -> dict[str, bytes]:
    """The files of a result: ``stem.csv``, ``stem.json`` (table + provenance), ``stem.md`` and
    ``stem.<name>.csv`` for each extra table (e.g. ``soa_per_class``), as bytes by file name."""
    extra_tables = {k: v for k, v in (extra_tables or {}).items() if v is not None}
    files = {f"{stem}.csv": table.to_csv(index=False).encode()}
    for name, df in extra_tables.items():
        files[f"{stem}.{name}.csv"] = df.to_csv(index=False).encode()
    payload = {"results": table_records(table), **{name: table_records(df) for name, df in extra_tables.items()},
               "provenance": provenance}
    files[f"{stem}.json"] = (json.dumps(payload, indent=2, default=str) + "\n").encode()
    md = ["# lafitebench results", "", to_markdown(table)]
    for name, df in extra_tables.items():
        md += [f"## {name}", "", to_markdown(df)]
    md += ["## Provenance", "", "```json", json.dumps(provenance, indent=2, default=str), "```", ""]
    files[f"{stem}.md"] = "\n".join(md).encode()
    return files


def save_result(out_dir: str | os.PathLike, table: pd.DataFrame, provenance: dict[str, Any],
                extra_tables: dict[str, pd.DataFrame] | None = None, stem: str = "results", *,
                overwrite: bool = False) -> dict[str, Path]:
    """Write a result's files (:func:`result_files`) into ``out_dir`` as one set
    (:func:`~lafitebench.io.files.write_file_set`). Returns the paths by kind (``csv``, ``json``,
    ``md``, ``csv:<table>``).

    Raises:
        InputError: ``out_dir`` is a file or holds another run's results (without ``overwrite``).
        OSError: the files could not be written.
    """
    written = write_file_set(out_dir, result_files(table, provenance, extra_tables, stem), overwrite=overwrite)
    out = {}
    for name, path in written.items():
        rest = name[len(stem) + 1:]
        out[rest if rest in ("csv", "json", "md") else f"csv:{rest[:-4]}"] = path
    return out


def load_result(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a ``results.json`` written by :func:`save_result` (or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise InputError(f"no result file at {p}; pass a results.json written by `lafitebench eval`")
    try:
        payload = json.loads(read_text(p, "result file"))
    except (json.JSONDecodeError, RecursionError) as e:
        raise InputError(f"result file {p} is not valid JSON ({e})") from None
    return _check_result(payload, p)


def _check_result(payload: Any, p: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The results table and provenance of a parsed results.json; InputError naming the first bad key."""
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        raise InputError(f"result file {p} has no 'results' list: it is not a results.json written by "
                         "`lafitebench eval`")
    for i, row in enumerate(payload["results"]):
        if not isinstance(row, dict):
            raise InputError(f"result file {p}: results[{i}] is a {type(row).__name__}, not an object")
        for key, kind in (("metric", str), ("value", (int, float))):
            if not isinstance(row.get(key), kind) or isinstance(row.get(key), bool):
                raise InputError(f"result file {p}: results[{i}].{key} is missing or not a "
                                 f"{'string' if kind is str else 'number'}")
    prov = payload.get("provenance", {})
    if not isinstance(prov, dict):
        raise InputError(f"result file {p}: 'provenance' is not an object")
    return pd.DataFrame(payload["results"]), prov
