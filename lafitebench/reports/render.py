"""Merged tables as files and screens: formatted cells (mean ± std, Δ to the paper, marks for
unverified values and protocol deviations), Markdown, LaTeX, CSV, JSON and Rich."""
from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table

from ..io.jsonable import table_records
from .merge import is_metric_column
from .results import to_markdown

UNVERIFIED = "*"
DEVIATES = "†"
_LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "†": r"$^\dagger$", "²": r"$^2$", "×": r"$\times$"}


def metric_columns(merged: pd.DataFrame) -> list[str]:
    """The metric columns of a merged table, in the paper's order."""
    skip = {"model", "source", "verified", "runs", "protocol", "paper_row", "split", "paper_source"}
    return [c for c in merged.columns if c not in skip and not c.endswith((" std", " Δ"))]


def _num(v: Any) -> bool:
    return v is not None and v is not pd.NA and not (isinstance(v, float) and math.isnan(v))


def format_cell(row: pd.Series, metric: str, digits: int = 2) -> str:
    """``27.20`` (paper), ``27.20*`` (unverified paper value), ``26.90 ± 0.30 (−0.30)`` (measured:
    mean ± std over runs, difference to the paper's value for the same model)."""
    v = row.get(metric)
    if not _num(v):
        return "–"
    text = f"{v:.{digits}f}"
    if row.get("source") == "paper":
        return text + ("" if row.get("verified") else UNVERIFIED)
    std, delta = row.get(f"{metric} std"), row.get(f"{metric} Δ")
    if _num(std):
        text += f" ± {std:.{digits}f}"
    if _num(delta):
        text += f" ({delta:+.{digits}f})".replace("-", "−")
    return text


def formatted(merged: pd.DataFrame) -> pd.DataFrame:
    """The merged table as display strings: model (with † when its protocol differs), runs, metrics."""
    metrics = metric_columns(merged)
    rows = []
    for _, r in merged.iterrows():
        name = r["model"] + (DEVIATES if r.get("protocol") else "")
        runs = "" if not _num(r.get("runs")) else str(int(r["runs"]))
        rows.append({"model": name, "runs": runs, **{m: format_cell(r, m) for m in metrics}})
    return pd.DataFrame(rows, columns=["model", "runs", *metrics])


def footnotes(merged: pd.DataFrame) -> list[str]:
    """Lines under a table: the protocol differences of each marked row, the unverified mark."""
    notes = [f"{DEVIATES} {r['model']}: measured with another protocol than the paper's: {r['protocol']}."
             for _, r in merged.iterrows() if r.get("protocol")]
    if (merged["source"].eq("paper") & merged["verified"].eq(False)).any():
        notes.append(f"{UNVERIFIED} commonly cited value, not verified against the paper here.")
    if merged["source"].eq("measured").any():
        notes.append("Measured: mean ± sample std over runs (seeds); in parentheses the difference to the paper's "
                     "value for the same model.")
    return notes


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (and ±, Δ, †, ² as math)."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex_table(df: pd.DataFrame, caption: str, notes: list[str], label: str) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``) with notes below."""
    cols = list(df.columns)
    spec = "l" + "r" * (len(cols) - 1)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}", rf"\label{{tab:{label}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for row in df.itertuples(index=False):
        lines.append(" & ".join(latex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for n in notes:
        lines.append(rf"\par\footnotesize {latex_escape(n)}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def table_files(merged: pd.DataFrame, table_id: str, title: str, provenance: dict[str, Any]) -> dict[str, bytes]:
    """``<table>.csv`` (numbers), ``.md``, ``.tex``, ``.json`` (numbers, notes, provenance of each measured row)."""
    shown = formatted(merged)
    notes = footnotes(merged)
    md = [f"# {title}", "", to_markdown(shown)] + [f"{n}  " for n in notes] + [""]
    payload = {"table": table_id, "title": title, "rows": table_records(merged), "notes": notes,
               "provenance": provenance}
    return {f"{table_id}.csv": merged.to_csv(index=False).encode(),
            f"{table_id}.md": "\n".join(md).encode(),
            f"{table_id}.tex": to_latex_table(shown, title, notes, table_id).encode(),
            f"{table_id}.json": (json.dumps(payload, indent=2, default=str) + "\n").encode()}


def board_table(board: pd.DataFrame, title: str) -> Table:
    """The leaderboard for an 80-column terminal: every metric as ``mean ± std`` (the std the
    files hold: across runs, or KID's own) or ``value [lo, hi]`` (a run's 95 % bootstrap interval), ``runs`` and ``n`` as integers, the reference and why a
    model has several rows as numbered notes under the table; long cells fold, never "…"."""

    metrics = [c for c in board.columns if is_metric_column(c)]
    t = Table(title=title, caption_justify="left")
    t.add_column("model", overflow="fold", ratio=2)
    for c in ("n", "runs", *metrics):
        t.add_column(escape(str(c)), justify="right", overflow="fold", min_width=len(str(c)))
    notes: list[str] = []
    for _, r in board.iterrows():
        why = f"reference {r.get('reference')}" + (f"; {r['differs']}" if r.get("differs") else "")
        if why not in notes:
            notes.append(why)
        cells = [escape(f"{r['model']} [{notes.index(why) + 1}]"), _int(r.get("n")), _int(r.get("runs"))]
        for m in metrics:
            v, sd, lo, hi = r.get(m), r.get(f"{m} std"), r.get(f"{m} ci_low"), r.get(f"{m} ci_high")
            ci = f" [{lo:.3g}, {hi:.3g}]" if _num(lo) and _num(hi) else ""
            cells.append("" if not _num(v) else escape(f"{v:.4g}" + (ci or (f" ± {sd:.2g}" if _num(sd) else ""))))
        t.add_row(*cells)
    t.caption = "\n".join(escape(f"[{i}] {w}") for i, w in enumerate(notes, 1))
    return t


def _int(v: Any) -> str:
    return str(int(v)) if _num(v) else ""


def rich_merged(merged: pd.DataFrame, title: str) -> Table:
    """The merged table for the terminal (measured rows in bold)."""
    shown = formatted(merged)
    t = Table(title=title, caption="\n".join(footnotes(merged)) or None, caption_justify="left")
    for c in shown.columns:
        t.add_column(escape(str(c)), justify="left" if c == "model" else "right")
    for (_, r), src in zip(shown.iterrows(), merged["source"]):
        t.add_row(*[escape(str(v)) for v in r], style="bold" if src == "measured" else None)
    return t


__all__ = ["format_cell", "formatted", "footnotes", "to_latex_table", "latex_escape",
           "table_files", "rich_merged", "metric_columns", "board_table"]
