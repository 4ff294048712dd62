"""Report figures with matplotlib, rendered to inline SVG text (no files, no network to view).

matplotlib is the plotting library the scientific Python stack already installs (ultralytics
depends on it); SVG keeps the page sharp at any zoom and embeds as text.
"""
from __future__ import annotations

import io
from typing import Sequence

import pandas as pd

BLUR_LEVELS = (0, 1, 2, 4, 8)


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "lafitebench"  # stable element ids: the same data gives the same SVG
    plt.rcParams["svg.fonttype"] = "none"  # text stays <text> (searchable, selectable), not glyph paths
    return plt, plt.subplots(figsize=(width, height))


def _svg(plt, fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline in HTML


def fid_blur_svg(curves: Sequence[tuple[str, dict[str, float], bool]], title: str) -> str:
    """FID against blur level k ∈ {0, 1, 2, 4, 8}: one line per (label, {"FID-k": value}, measured?);
    paper curves dashed, measured ones solid with markers."""
    plt, (fig, ax) = _figure(6.4, 3.8)
    for label, values, measured in curves:
        ks = [k for k in BLUR_LEVELS if f"FID-{k}" in values]
        if not ks:
            continue
        ys = [values[f"FID-{k}"] for k in ks]
        name = label + (" (measured)" if measured else " (paper)")
        ax.plot(ks, ys, "o-" if measured else "s--", linewidth=2 if measured else 1.2, markersize=4,
                label=name, alpha=1.0 if measured else 0.8, gid=f"series:{name}")  # <g id="series:…"> in the SVG
    ax.set_xlabel("blur level k (FID-k)")
    ax.set_ylabel("FID")
    ax.set_xticks(list(BLUR_LEVELS))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _svg(plt, fig)


def intervals_svg(points: Sequence[tuple[str, float, float, float]], metric: str) -> str:
    """One metric across runs: each run's value (dot) and its 95 % bootstrap interval (error bar),
    one row per (run label, value, low, high)."""
    plt, (fig, ax) = _figure(6.4, 0.45 * len(points) + 1.0)
    for y, (label, v, lo, hi) in enumerate(points):
        ax.errorbar([v], [y], xerr=[[v - lo], [hi - v]], fmt="o", capsize=4, color="#4878a8",
                    gid=f"interval:{label}")  # <g id="interval:…">: one per run in the SVG
    ax.set_yticks(range(len(points)))
    ax.set_yticklabels([p[0] for p in points], fontsize=8)
    ax.set_xlabel(f"{metric} (95% bootstrap interval)")
    ax.set_title(metric)
    ax.grid(axis="x", alpha=0.3)
    return _svg(plt, fig)


def soa_bars_svg(per_class: pd.DataFrame, title: str, value: str = "acc") -> str:
    """Per-class SOA accuracy bars (classes with images only), sorted by class name."""
    df = per_class
    if "present" in df:
        df = df[df["present"].astype(bool)]
    col = value if value in df else next(c for c in df.columns if df[c].dtype.kind == "f")
    name = "name" if "name" in df else df.columns[0]
    df = df.sort_values(name)
    plt, (fig, ax) = _figure(max(6.4, 0.12 * len(df)), 3.2)
    ax.bar(range(len(df)), df[col].astype(float), color="#4878a8")
    ax.set_xticks(range(len(df)))
    ax.set_xticklabels(df[name].astype(str), rotation=90, fontsize=6)
    ax.set_ylabel(f"SOA {col}")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _svg(plt, fig)


__all__ = ["fid_blur_svg", "intervals_svg", "soa_bars_svg", "BLUR_LEVELS"]
