"""A standalone HTML report: one file, images and plots embedded, nothing fetched to view it.

Sections: each merged paper table (with its notes) and its FID-against-blur plot; the
leaderboard; per run, the SOA per-class bars, a grid of samples with their captions, and the
provenance in a collapsible block.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..data.datasets import list_images
from .merge import Measured
from .plots import fid_blur_svg, intervals_svg, soa_bars_svg
from .render import footnotes, formatted

GRID_SIZE = 8
THUMB = 128

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th:first-child,td:first-child{text-align:left}
tr.measured td{font-weight:600;background:#f3f7fc}.notes{font-size:.8rem;color:#555}
.grid{display:flex;flex-wrap:wrap;gap:.5rem}.grid figure{margin:0;width:128px;font-size:.7rem}
.grid img{width:128px;height:128px;display:block}details{margin:.4rem 0}pre{font-size:.72rem;overflow-x:auto}
"""

def _table_html(merged: pd.DataFrame) -> str:
    shown = formatted(merged)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for (_, r), src in zip(shown.iterrows(), merged["source"]):
        cls = ' class="measured"' if src == "measured" else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>")
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in footnotes(merged))
    return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table><div class="notes">{notes}</div>'


def _plain_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for r in df.itertuples(index=False):
        cells = "".join(f"<td>{'' if pd.isna(v) else html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td>"
                        for v in r)
        rows.append(f"<tr>{cells}</tr>")
    return f'<table class="leaderboard"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _fid_curves(merged: pd.DataFrame) -> list[tuple[str, dict[str, float], bool]]:
    curves = []
    for _, r in merged.iterrows():
        vals = {k: float(r[k]) for k in ("FID-0", "FID-1", "FID-2", "FID-4", "FID-8")
                if k in r and r[k] is not None and not pd.isna(r[k])}
        if len(vals) >= 2:
            curves.append((str(r["model"]).replace(" (measured)", ""), vals, r["source"] == "measured"))
    return curves


def _interval_plots(board: pd.DataFrame) -> list[str]:
    """An error-bar plot per metric that has bootstrap intervals in the leaderboard."""
    out = []
    for m in [c for c in board.columns if f"{c} ci_low" in board.columns]:
        pts = [(str(r["model"]), float(r[m]), float(r[f"{m} ci_low"]), float(r[f"{m} ci_high"]))
               for _, r in board.iterrows()
               if not any(pd.isna(r.get(k)) for k in (m, f"{m} ci_low", f"{m} ci_high"))]
        if pts:
            out.append(f'<div class="plot interval">{intervals_svg(pts, str(m))}</div>')
    return out


def sample_grid(run: Measured, n: int = GRID_SIZE) -> str | None:
    """HTML figures of the first ``n`` samples of a run's folder with their captions (thumbnails
    embedded as PNG), or None when the run's images are not on disk (streamed runs, moved folders)."""
    from PIL import Image

    samples = (run.provenance.get("inputs") or {}).get("samples") or {}
    root = samples.get("root")
    if not root or not Path(root).is_dir():
        return None
    root = Path(root)
    manifest = root / "manifest.jsonl"
    entries: list[tuple[Path, str]] = []
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8").splitlines()[: n]:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            entries.append((root / str(row.get("file", "")), str(row.get("caption") or "")))
    else:
        entries = [(p, "") for p in list_images(root)[:n]]
    figs = []
    for path, caption in entries:
        if not path.is_file():
            continue
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
        data = base64.b64encode(buf.getvalue()).decode()
        figs.append(f'<figure><img alt="{html.escape(caption or path.name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(caption or path.name)}</figcaption></figure>")
    return f'<div class="grid">{"".join(figs)}</div>' if figs else None


def report_html(title: str, tables: Sequence[tuple[str, str, pd.DataFrame]], board: pd.DataFrame,
                runs: Sequence[Measured]) -> str:
    """The whole page. ``tables``: (id, title, merged table) for each paper table with measured rows."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(runs)} measured run(s); paper values from reports/paper_tables.csv. "
             "Rows marked † were measured with another protocol than the paper's (see the notes).</p>"]
    for table_id, table_title, merged in tables:
        parts.append(f'<h2 id="{html.escape(table_id)}">{html.escape(table_title)}</h2>')
        parts.append(_table_html(merged))
        curves = _fid_curves(merged)
        if any(measured for _, _, measured in curves):
            parts.append(f'<div class="plot fid-blur">{fid_blur_svg(curves, "FID against blur level")}</div>')
    if not board.empty:
        parts.append('<h2 id="leaderboard">Leaderboard of measured runs</h2>')
        parts.append(_plain_table(board))
        parts.extend(_interval_plots(board))
    for k, run in enumerate(runs):
        parts.append(f'<h2 id="run-{k}">{html.escape(run.label)}'
                     f'{" · " + html.escape(str(run.split)) if run.split else ""}</h2>')
        if run.soa_per_class is not None:
            parts.append(f'<div class="plot soa">{soa_bars_svg(run.soa_per_class, "SOA per class")}</div>')
        grid = sample_grid(run)
        parts.append(grid if grid else '<p class="notes">No sample images on disk for this run (streamed or moved).</p>')
        prov = html.escape(json.dumps(run.provenance, indent=2, default=str))
        parts.append(f"<details><summary>provenance ({html.escape(run.source)})</summary><pre>{prov}</pre></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


__all__ = ["report_html", "sample_grid"]
