"""Measured results beside the paper: read result records, aggregate seeds, merge into a paper
table with differences, mark protocol deviations, and rank every run in a leaderboard.

All pure functions over :class:`Measured` records and pandas frames; files are written by
:mod:`lafitebench.reports.render`.
"""
from __future__ import annotations

import json

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from ..errors import InputError
from .paper import PaperTable, get_table, paper_table, table_for_zoo
from .results import load_result

#: Metrics whose value depends on the blur preset (FID-k, k > 0).
_BLURRED = ("FID-1", "FID-2", "FID-4", "FID-8")


@dataclass
class Measured:
    """One evaluation result as a report row: what was measured and how (from its provenance)."""

    label: str
    metrics: dict[str, float]
    source: str
    model: str | None = None
    checkpoint_sha256: str | None = None
    paper: dict[str, Any] | None = None
    split: str | None = None
    split_hash: str | None = None
    n: int | None = None
    reference: str | None = None
    reference_kind: str | None = None
    blur_preset: str | None = None
    detector: str | None = None
    detector_conf: float | None = None
    clip_scorer: str | None = None
    date: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    soa_per_class: pd.DataFrame | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    metric_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The provenance fields a report row shows."""
        return {"model": self.model or self.label, "checkpoint_sha256": self.checkpoint_sha256,
                "split": self.split, "split_hash": self.split_hash, "n": self.n, "reference": self.reference,
                "blur_preset": self.blur_preset, "detector": self.detector, "detector_conf": self.detector_conf,
                "clip_scorer": self.clip_scorer, "versions": self.versions, "world_size": self.world_size,
                "date": self.date, "source": self.source}


def measured_from_result(table: pd.DataFrame, prov: dict[str, Any], source: str, label: str | None = None) -> Measured:
    """A :class:`Measured` from a result table and its provenance (``results.json`` contents)."""
    cfg = prov.get("config", {}) or {}
    inputs = prov.get("inputs", {}) or {}
    samples, ref = inputs.get("samples", {}) or {}, inputs.get("reference") or {}
    gen = prov.get("generation") or samples.get("generation") or {}
    model = (gen.get("model") or {})
    split = gen.get("split") or {}
    metrics = {str(m): float(v) for m, v in zip(table["metric"], table["value"]) if v is not None and not pd.isna(v)}
    intervals = ({str(m): (float(lo), float(hi)) for m, lo, hi in zip(table["metric"], table["ci_low"], table["ci_high"])
                  if not (pd.isna(lo) or pd.isna(hi))} if {"ci_low", "ci_high"} <= set(table.columns) else {})
    ns = [int(n) for n in table.get("n", pd.Series(dtype=float)).dropna()] if "n" in table else []
    names = set(metrics)
    det = (prov.get("metric_details", {}) or {}).get("soa", {}) if isinstance(prov.get("metric_details"), dict) else {}
    clip_info = prov.get("clip") or {}
    lib = prov.get("libraries", {}) or {}
    return Measured(
        label=label or model.get("id") or (Path(str(model.get("path"))).stem if model.get("path") else None)
        or samples.get("name") or Path(source).parent.name,
        metrics=metrics, source=str(source), model=model.get("id") or model.get("path"),
        checkpoint_sha256=model.get("sha256"), paper=prov.get("paper"),
        split=split.get("id"), split_hash=split.get("hash"),
        n=max(ns) if ns else samples.get("n_used") or samples.get("n"),
        reference=ref.get("name"), reference_kind=ref.get("kind"),
        blur_preset=cfg.get("blur_preset") if names & set(_BLURRED) else None,
        detector=(det.get("detector") if isinstance(det, dict) and det.get("detector") else cfg.get("detector"))
        if names & {"SOA-C", "SOA-I"} else None,
        detector_conf=cfg.get("detector_conf") if names & {"SOA-C", "SOA-I"} else None,
        clip_scorer=(clip_info.get("model") or cfg.get("clip_model")) if any("CLIP" in m for m in names) else None,
        date=prov.get("date"),
        versions={k: v for k, v in {"lafitebench": prov.get("lafitebench_version"), "torch": lib.get("torch"),
                                    "torch-fidelity": lib.get("torch-fidelity")}.items() if v},
        world_size=int((prov.get("distributed") or {}).get("world_size", 1) or 1),
        provenance=prov, intervals=intervals, metric_ids=[str(i) for i in table.get("metric_id", [])])


def find_results(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """``results.json`` files: the paths given, or every one under a given folder (sorted).
    Raises InputError naming a path that holds none."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            hits = sorted(q for q in p.rglob("results.json") if not any(part.startswith(".") for part in q.parts[len(p.parts):]))
            if not hits:
                raise InputError(f"{p} holds no results.json: evaluate into it with `lafitebench eval --report {p}` "
                                 "or `--out`")
            found += hits
        else:
            raise InputError(f"no result file or folder at {p}: give results.json files or folders holding them")
    return list(dict.fromkeys(found))


def load_measured(paths: Sequence[str | os.PathLike]) -> list[Measured]:
    """Every result under ``paths`` as :class:`Measured` rows (with SOA per-class tables when saved)."""
    out = []
    for f in find_results(paths):
        table, prov = load_result(f)
        m = measured_from_result(table, prov, str(f))
        per_class = f.with_name("results.soa_per_class.csv")
        if per_class.is_file():
            m.soa_per_class = pd.read_csv(per_class)
        out.append(m)
    return out


def protocol_differences(m: Measured, table: PaperTable, dataset: str | None = None) -> list[str]:
    """How ``m`` was measured differently from the paper's protocol for ``table`` (empty: same)."""
    p = table.protocol
    diffs = []
    n_paper = (p.get("n_by_dataset") or {}).get(dataset, p.get("n"))
    if n_paper and m.n is not None and int(m.n) != int(n_paper):
        diffs.append(f"N = {m.n:,} samples (paper: {n_paper:,})")
    if p.get("reference_kind") and m.reference_kind and m.reference_kind != p["reference_kind"]:
        diffs.append(f"reference {m.reference} (paper: the MS-COCO test images)")
    if p.get("blur_preset") and m.blur_preset and m.blur_preset != p["blur_preset"]:
        diffs.append(f"blur preset {m.blur_preset} (paper: {p['blur_preset']})")
    if p.get("detector") and m.detector and p["detector"] not in str(m.detector).lower():
        diffs.append(f"SOA detector {m.detector} (paper: YOLOv3)")
    return diffs


#: Leaderboard columns that are not metrics.
INFO_COLUMNS = ("model", "split", "runs", "n", "reference", "checkpoint_sha256", "differs")
#: Columns that qualify a metric column ``M``: ``M std``, ``M Δ`` and its 95 % interval.
QUALIFIERS = (" std", " Δ", " ci_low", " ci_high")


def is_metric_column(c: Any) -> bool:
    """A metric's own column (not an info column, not ``M std`` / ``M Δ`` / ``M ci_low`` / ``M ci_high``)."""
    return c not in INFO_COLUMNS and not str(c).endswith(QUALIFIERS)


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)  # sample std (ddof = 1)
    return mean, math.sqrt(var)


def aggregate(runs: Iterable[Measured]) -> pd.DataFrame:
    """One row per (label, split): for every metric its mean, sample std (ddof 1) and the number
    of runs (``runs``), plus the runs' protocol summary. Columns ``M``, ``M std`` per metric."""
    groups = _groups(runs)
    return pd.DataFrame([_aggregate_group(ms, groups) for ms in groups])


def protocol_key(m: Measured) -> dict[str, Any]:
    """Every protocol field that changes a number: runs are averaged only when all are equal."""
    prov = m.provenance or {}
    cfg = prov.get("config") or {}
    ref = (prov.get("inputs") or {}).get("reference") or {}
    return {"reference": ref.get("fingerprint") or m.reference, "split": m.split_hash or m.split, "n": m.n,
            "resolution": cfg.get("resolution"), "blur_preset": m.blur_preset, "protocol": cfg.get("protocol"),
            "weights": m.checkpoint_sha256, "inception": (prov.get("inception") or {}).get("sha256"),
            "detector": (m.detector, m.detector_conf), "clip_scorer": m.clip_scorer,
            "preset": cfg.get("preset"), "features": prov.get("features"),
            # backbone metrics: backbone, preprocessing, k, rule, estimator (the part of the id after the count)
            "backbone_protocols": sorted(i.split("[", 1)[1] for i in m.metric_ids if "[" in i)}


def _shown(field: str, m: Measured) -> str:
    """A protocol field as the table's reader can read it."""
    if field == "reference":
        return str(m.reference)
    if field == "split":
        return f"{m.split} ({str(m.split_hash)[:8]})" if m.split_hash else str(m.split)
    if field in ("weights", "inception"):
        v = protocol_key(m)[field]
        return str(v)[:12] if v else "?"
    return str(protocol_key(m)[field])


def _groups(runs: Iterable[Measured]) -> list[list[Measured]]:
    groups: dict[str, list[Measured]] = {}
    for m in runs:
        groups.setdefault(json.dumps([m.label, protocol_key(m)], sort_keys=True, default=str), []).append(m)
    return list(groups.values())


def _differs(ms: list[Measured], all_groups: list[list[Measured]]) -> str:
    """Why this group is a row of its own: the protocol fields in which it differs from the other
    groups of the same model (empty when the model has one group)."""
    others = [g for g in all_groups if g is not ms and g[0].label == ms[0].label]
    if not others:
        return ""
    mine = protocol_key(ms[0])
    fields = [f for f in mine if any(protocol_key(g[0])[f] != mine[f] for g in others)]
    return "; ".join(f"{f} {_shown(f, ms[0])}" for f in fields)


def _aggregate_group(ms: list[Measured], all_groups: list[list[Measured]] | None = None) -> dict[str, Any]:
    label, split = ms[0].label, ms[0].split
    row: dict[str, Any] = {"model": label, "split": split or "", "runs": len(ms), "n": ms[0].n,
                           "reference": ms[0].reference, "checkpoint_sha256": ms[0].checkpoint_sha256,
                           "differs": _differs(ms, all_groups or [ms])}
    for k in dict.fromkeys(k for m in ms for k in m.metrics):
        row[k], row[f"{k} std"] = _mean_std([m.metrics[k] for m in ms if k in m.metrics])
        if len(ms) == 1 and k in ms[0].intervals:  # a run's bootstrap interval (several runs: their spread)
            row[f"{k} ci_low"], row[f"{k} ci_high"] = ms[0].intervals[k]
    return row


def leaderboard(runs: Sequence[Measured], sort_by: str | None = None) -> pd.DataFrame:
    """Every measured model × split with its metrics (mean over runs), sorted by ``sort_by``
    (default FID-0, else the first metric; ascending for FID/KID, descending otherwise).
    Raises InputError for a ``sort_by`` no run has."""
    df = aggregate(runs)
    if df.empty:
        return df
    metric_cols = [c for c in df.columns if is_metric_column(c)]
    key = sort_by or ("FID-0" if "FID-0" in metric_cols else (metric_cols[0] if metric_cols else None))
    if key is None:
        return df
    if key not in df.columns:
        raise InputError(f"cannot sort by {key!r}: the runs have {', '.join(metric_cols)}", param="sort_by")
    ascending = key.startswith(("FID", "KID"))
    return df.sort_values(key, ascending=ascending, na_position="last").reset_index(drop=True)


def runs_for_table(runs: Sequence[Measured], table: PaperTable) -> list[Measured]:
    """The runs whose zoo model belongs to ``table`` (their manifest's paper row names it)."""
    out = []
    for m in runs:
        t = table_for_zoo(m.paper["table"]) if m.paper and m.paper.get("table") else None
        if t is not None and t.id == table.id:
            out.append(m)
    return out


def merge(table_name: str, runs: Sequence[Measured]) -> pd.DataFrame:
    """The paper's table ``table_name`` with ``runs`` merged in (long → wide).

    Rows: the paper's (``source`` "paper", ``verified``), then one per measured model × split
    (``source`` "measured", ``runs``, mean and ``M std`` per metric, ``M Δ`` = measured − the
    paper's value for the same model row, ``protocol`` = the differences from the paper's
    protocol, empty when none). Raises InputError for an unknown table or runs that share no
    metric with it.
    """
    table = get_table(table_name)
    paper = paper_table(table.id)
    multi = paper["dataset"].nunique() > 1
    paper = paper.assign(row=paper["model"] + (" (" + paper["dataset"] + ")" if multi else ""))
    metrics = list(dict.fromkeys(paper["metric"]))
    rows: list[dict[str, Any]] = []
    for name, g in paper.groupby("row", sort=False):
        r: dict[str, Any] = {"model": name, "source": "paper", "verified": bool((g["verified"] == "yes").all()),
                             "runs": None, "protocol": "", "paper_source": g["source"].iloc[0]}
        r.update(dict(zip(g["metric"], g["value"])))
        rows.append(r)
    paper_rows = {r["model"]: r for r in rows}
    shared = {k for m in runs for k in m.metrics} & set(metrics)
    if runs and not shared:
        have = sorted({k for m in runs for k in m.metrics})
        raise InputError(f"the results share no metric with paper table {table.id!r} (results have {have}; the table "
                         f"has {metrics})", param="table")
    for agg_row, ms in _grouped(runs):
        row_name = ms[0].paper.get("row") if ms[0].paper else None
        ref = paper_rows.get(row_name) if row_name else None
        diffs = sorted({d for m in ms for d in protocol_differences(m, table)})
        r = {"model": f"{agg_row['model']} (measured)", "source": "measured", "verified": None,
             "runs": agg_row["runs"], "paper_source": None,
             "protocol": "; ".join(diffs + ([f"a row of its own: {agg_row['differs']}"] if agg_row["differs"] else [])),
             "paper_row": row_name if ref else None, "split": agg_row["split"]}
        for k in metrics:
            if k in agg_row and not pd.isna(agg_row[k]):
                r[k], r[f"{k} std"] = agg_row[k], agg_row[f"{k} std"]
                if ref is not None and k in ref and not pd.isna(ref[k]):
                    r[f"{k} Δ"] = agg_row[k] - ref[k]
        rows.append(r)
    cols = ["model", "source", "verified", "runs", "protocol"] + metrics
    extra = [c for k in metrics for c in (f"{k} std", f"{k} Δ")]
    df = pd.DataFrame(rows)
    for c in cols + extra + ["paper_row", "split", "paper_source"]:
        if c not in df:
            df[c] = None
    df["runs"] = df["runs"].astype("Int64")  # paper rows have none; measured counts stay integers
    return df[cols + extra + ["paper_row", "split", "paper_source"]]


def _grouped(runs: Sequence[Measured]) -> list[tuple[dict[str, Any], list[Measured]]]:
    groups = _groups(runs)
    return [(_aggregate_group(ms, groups), ms) for ms in groups]


__all__ = ["Measured", "measured_from_result", "find_results", "load_measured", "protocol_differences", "aggregate",
           "leaderboard", "runs_for_table", "merge", "protocol_key", "INFO_COLUMNS", "is_metric_column"]
