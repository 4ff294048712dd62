"""The evaluation engine: plan → reference statistics → one pass → reduce → table → provenance.

``evaluate(samples, reference, config)`` checks everything cheap first (:mod:`.plan`), loads the
networks the metrics need, gets reference statistics from the cache or one pass over the
reference set (:mod:`.reference`), then makes ONE pass over the samples: each batch is decoded
once, the shared feature stage (:mod:`.features`) sends it through blur + Inception once per
needed blur level, and every metric receives the batch with the features it declared. Under
``torchrun`` each process takes its shard of both sets and the metric states are combined
(:meth:`~lafitebench.metrics.base.Metric.sync`); rank 0 computes, reads/writes the cache and
returns the same result on every rank.

Metric ids spell out the protocol, e.g. ``fid30k_blur2_lafite``, ``is30k_10splits_shuffled``,
``kid30k_s1000x100``; the table's ``metric`` column uses the paper's names (``FID-2``, ``IS``).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from ..encoders.backbone import Embedder, FeatureSpec, load_embedder
from ..encoders.inception import load_inception
from ..errors import InputError, LafitebenchError
from ..runtime import distributed as dist
from ..runtime.device import resolve_device
from ..runtime.progress import progress as _progress
from .base import Metric, MetricOutput, rows_to_table
from .bootstrap import CONFIDENCE, draw, interval
from .cache import RefStatsCache
from .config import PAPER_BLUR_LEVELS, EvalConfig  # noqa: F401 (public names of the engine)
from .embedding import EmbeddingCollector, EmbeddingMetric, EmbeddingStage, FeatureCache, lookup, store
from .features import CombinedStage, InceptionStage, feed
from .fid import fid_metric_id  # noqa: F401
from .isc import is_metric_id  # noqa: F401
from .kid import kid_metric_id  # noqa: F401
from .base import count_tag  # noqa: F401
from .plan import Plan, make_plan
from .presets import resolve_preset
from .provenance import RunRecord, build_provenance, now_utc
from .reference import ReferenceStats, reference_statistics
from .registry import METRICS  # noqa: F401


__all__ = ["EvalConfig", "EvalResult", "METRICS", "PAPER_BLUR_LEVELS", "evaluate", "reference_statistics",
           "count_tag", "fid_metric_id", "is_metric_id", "kid_metric_id"]


@dataclass
class EvalResult:
    """``table``: one row per metric (metric_id, metric, value, std, n, higher_is_better, notes);
    ``provenance``: everything needed to reproduce or compare the numbers; ``per_class``: SOA
    per-class table or None; ``tables``: every named table the metrics produced; ``details``:
    each metric's JSON-able details; ``skipped``: metrics left out in auto mode, with reasons;
    ``failed``: metrics that could not be computed after the pass (the others are kept)."""

    table: pd.DataFrame
    provenance: dict[str, Any]
    per_class: pd.DataFrame | None = None
    details: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _load_extractor(plan: Plan, config: EvalConfig, extractor: Any = None) -> Any:
    if not plan.needs_inception:
        return None
    if extractor is not None:
        if plan.wants_logits and not getattr(extractor, "logits", False):
            raise InputError("the given feature extractor gives no logits, which IS needs", param="metrics")
        return extractor
    return load_inception(config.inception_weights, device=config.device, logits=plan.wants_logits,
                          progress=config.progress and dist.is_main(), channels_last=config.inception_channels_last)


def _context(extractor: Any) -> dict[str, Any]:
    if extractor is None:
        return {}
    return {"inception_tag": f"Inception {extractor.sha256[:8]}",
            "pool3_dim": int(getattr(extractor, "pool3_dim", 2048)),
            "logits_dim": int(getattr(extractor, "logits_dim", 1008))}


@dataclass
class Backbones:
    """The loaded backbones of a run, their stage, the feature cache and what it served."""

    embedders: dict[str, Embedder]
    specs: set[FeatureSpec]
    cache: FeatureCache | None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def stage(self) -> EmbeddingStage | None:
        return EmbeddingStage(self.embedders, self.specs) if self.specs else None

    def collector(self, image_set: Any, side: str, config: EvalConfig
                  ) -> tuple[dict[FeatureSpec, torch.Tensor], EmbeddingCollector | None, dict]:
        """Rows of ``image_set`` found in the cache, a collector for the others (or None), keys."""
        found, todo, keys = lookup(image_set, self.specs, self.embedders, config, self.cache)
        self.report[side] = {"hits": sorted(fs.tag for fs in found), "computed": sorted(fs.tag for fs in todo)}
        if not todo:
            return found, None, keys
        dims = {b: e.dim for b, e in self.embedders.items()}
        return found, EmbeddingCollector(config, {"specs": set(todo), "dims": dims}), keys

    def finish(self, found: dict, collector: EmbeddingCollector | None, keys: dict) -> dict[FeatureSpec, torch.Tensor]:
        """All rows: the cached ones and the collected ones (written to the cache)."""
        rows = dict(found)
        if collector is not None:
            new = collector.result()
            store(self.cache, keys, new)
            rows.update(new)
        return rows

    def provenance(self) -> dict[str, Any]:
        return {"backbones": {b: e.provenance() for b, e in self.embedders.items()},
                "features": sorted(fs.tag for fs in self.specs), "feature_cache": self.report}


def _backbones(plan: Plan, config: EvalConfig, extractor: Any) -> Backbones:
    embedders = {b: load_embedder(b, config, extractor) for b in plan.backbones}
    return Backbones(embedders, set(plan.feature_specs), FeatureCache() if config.use_cache else None)


def _reference(plan: Plan, reference: Any, extractor: Any, config: EvalConfig, bar: Any,
               rec: RunRecord, bb: Backbones) -> ReferenceStats | None:
    if not plan.reference_keys and not plan.feature_specs:
        return None
    t0 = time.perf_counter()
    levels = plan.levels("reference")
    cache = RefStatsCache() if config.use_cache else None
    found, collector, keys = bb.collector(reference, "reference", config) if bb.specs else ({}, None, {})
    stats, report = reference_statistics(reference, extractor, levels, config.blur_preset,
                                         ("rows", 0) in plan.reference_keys, config, cache, bar,
                                         extra=(collector,) if collector else (), embedding_stage=bb.stage)
    rec.cache, rec.cache_report = cache, report
    rec.timing["reference_s"] = time.perf_counter() - t0
    rows = bb.finish(found, collector, keys) if bb.specs else {}
    n = next(iter(stats.values())).stats.n if stats else (len(next(iter(rows.values()))) if rows else 0)
    return ReferenceStats(name=getattr(reference, "name", None), n=n, levels=stats, report=report, embeddings=rows)


def _samples_pass(plan: Plan, samples: Any, metrics: dict[str, Metric], extractor: Any, config: EvalConfig,
                  bar: Any, rec: RunRecord, bb: Backbones) -> dict[FeatureSpec, torch.Tensor]:
    t0 = time.perf_counter()
    stage = InceptionStage(extractor, config.blur_preset) if extractor is not None else None
    found, collector, keys = bb.collector(samples, "samples", config) if bb.specs else ({}, None, {})
    fed = [*metrics.values(), *([collector] if collector else [])]
    seen = feed(samples, fed, CombinedStage(stage, bb.stage), config, bar, f"samples ({', '.join(plan.names)})")
    if config.skip_bad:
        samples.skipped = [f for part in dist.gather_objects(samples.skipped) for f in part]
    rec.n_samples = int(dist.all_reduce_sum(torch.tensor(seen)))
    if rec.n_samples == 0:
        raise InputError(f"no readable images in samples {getattr(samples, 'name', '')!r}")
    for m in fed:
        m.sync()
    if stage is not None:
        rec.sample_stage = stage.provenance()
        rec.sample_stage["forwards"] = int(dist.all_reduce_sum(torch.tensor(stage.forwards)))
    rec.timing["samples_s"] = time.perf_counter() - t0
    return bb.finish(found, collector, keys) if bb.specs else {}


def _compute(metrics: dict[str, Metric], rec: RunRecord) -> tuple[list[Any], dict[str, MetricOutput], dict[str, str]]:
    """Every metric's rows; a metric whose inputs turned out unusable after the pass (e.g. too few
    readable images for KID after skip_bad) is reported in ``failed`` without losing the others."""
    t0 = time.perf_counter()
    rows, outputs, failed = [], {}, {}
    for name, m in metrics.items():
        try:
            out = m.compute()
        except LafitebenchError as e:
            failed[name] = str(e)
            continue
        rows.extend(out.rows)
        outputs[name] = out
        rec.metrics[name] = {**out.details}
    rec.timing["compute_s"] = time.perf_counter() - t0
    if not rows and failed:
        raise InputError("; ".join(f"{k}: {v}" for k, v in failed.items()))
    return rows, outputs, failed


def evaluate(samples: Any, reference: Any | None, config: EvalConfig | None = None, *,
             extractor: Any = None) -> EvalResult:
    """Compute ``config.metrics`` for ``samples`` (vs ``reference`` where needed) in one pass.

    Args:
        samples: an :class:`~lafitebench.data.datasets.ImageSet` of generated images (captions /
            SOA classes in its items where CLIP score / SOA are requested).
        reference: the reference ImageSet (FID, FID-k, KID) or None when only IS / CLIP / SOA.
        config: options (:class:`EvalConfig`); ``metrics="auto"`` picks every metric whose inputs
            exist (the others are listed in ``result.skipped`` with the reason).
        extractor: a feature extractor to use instead of loading Inception from
            ``config.inception_weights`` (same interface as
            :class:`~lafitebench.encoders.inception.InceptionExtractor`: ``device``, ``sha256``,
            ``channels_last``, ``logits``, ``pool3_dim``, ``__call__`` and ``provenance()``); its
            ``sha256`` keys the reference cache.

    Returns:
        :class:`EvalResult` (the same on every rank under torchrun).

    Raises:
        InputError: unknown metric or preset, bad options, too few images for a metric (FID: 2,
            KID: ``kid_subset_size`` in each set, IS: ``isc_splits``), missing reference, samples
            without captions (CLIP) or SOA classes (SOA), a resolution mismatch, unreadable images
            (unless ``skip_bad``). All of these are raised before any network runs.
        WeightsError: a weights file is missing / has the wrong hash / Inception has no
            classifier while IS is requested.
    """
    config = resolve_preset(config or EvalConfig())
    started = time.perf_counter()
    plan = make_plan(samples, reference, config)
    dist.init(resolve_device(config.device))
    reference = reference if plan.needs_reference else None
    rec = RunRecord(config=config, names=plan.names, samples=samples, reference=reference, date=now_utc(),
                    fid_levels=sorted({k for kind, k in plan.reference_keys if kind == "moments"}),
                    sample_levels=plan.levels("samples"))
    extractor = rec.extractor = _load_extractor(plan, config, extractor)
    context = _context(extractor)
    bb = _backbones(plan, config, extractor)
    with _progress(disable=not (config.progress and dist.is_main())) as bar:
        ref = _reference(plan, reference, extractor, config, bar, rec, bb)
        metrics = {n: cls(config, context) for n, cls in plan.classes.items()}
        for m in metrics.values():
            if type(m).needs_reference:
                m.bind_reference(ref)
        sample_rows = _samples_pass(plan, samples, metrics, extractor, config, bar, rec, bb)
    outcome: tuple[str, Any] | None = None
    if dist.is_main():
        try:
            for m in metrics.values():
                if isinstance(m, EmbeddingMetric):
                    m.bind_embeddings(sample_rows, ref.embeddings)
            outcome = ("ok", _result(plan, metrics, ref, rec, started, bb))
        except LafitebenchError as e:  # every rank raises it, none waits forever
            outcome = ("error", e)
    outcome = dist.broadcast_object(outcome)
    if outcome[0] == "error":
        raise outcome[1]
    return outcome[1]


def _intervals(metrics: dict[str, Metric], outputs: dict[str, MetricOutput], rows: list[Any], config: EvalConfig,
               n: int, rec: RunRecord) -> tuple[list[Any], dict[str, Any]]:
    """Rows with their bootstrap interval (``config.bootstrap`` replicates of the samples)."""
    t0 = time.perf_counter()
    draws = [draw(config.seed, b, n) for b in range(config.bootstrap)]
    reps: dict[str, list[float]] = {}
    for name, m in metrics.items():
        if name in outputs:
            reps.update(m.bootstrap(draws))
    out = []
    for r in rows:
        lo, hi = interval(reps[r.id]) if r.id in reps else (float("nan"), float("nan"))
        out.append(dataclasses.replace(r, ci_low=lo, ci_high=hi))
    rec.timing["bootstrap_s"] = time.perf_counter() - t0
    info = {"replicates": config.bootstrap, "seed": config.seed, "confidence": CONFIDENCE,
            "method": "percentile bootstrap over the generated set's per-image features/terms, reference fixed "
                      "(recall/coverage: over the reference points' terms); no new forward passes",
            "rows_with_interval": sorted(reps), "rows_without": sorted(r.id for r in rows if r.id not in reps)}
    return out, info


def _result(plan: Plan, metrics: dict[str, Metric], ref: ReferenceStats | None, rec: RunRecord,
            started: float, bb: Backbones | None = None) -> EvalResult:
    rows, outputs, failed = _compute(metrics, rec)
    boot = None
    if rec.config.bootstrap:
        rows, boot = _intervals(metrics, outputs, rows, rec.config, rec.n_samples, rec)
    rec.n_reference = ref.n if ref is not None else 0
    rec.timing["total_s"] = time.perf_counter() - started
    tables = {k: v for out in outputs.values() for k, v in out.tables.items()}
    prov = build_provenance(rec)
    if bb is not None and bb.specs:
        prov.update(bb.provenance())
    if boot is not None:
        prov["bootstrap"] = boot
    if failed:
        prov["metrics_failed"] = failed
    return EvalResult(table=rows_to_table(rows), provenance=prov, per_class=tables.get("soa_per_class"),
                      details={n: o.details for n, o in outputs.items()}, tables=tables, skipped=plan.skipped,
                      failed=failed)
