"""The evaluation engine: every metric from one decode of each image.

``evaluate(samples, reference, config)`` checks everything cheap first (metric names, options,
image counts against what each metric needs, captions / SOA classes, weights files), then makes
ONE pass over the samples: each batch is decoded once; for every needed blur level the batch
is blurred with tensor ops and sent through Inception once, giving the pool3 features (FID-k)
and, at level 0, the logits (IS) and the features KID needs; the same decoded batch goes to the
other accumulators (CLIP score, SOA). Reference statistics come from the on-disk cache
(:mod:`lafitebench.metrics.cache`) or from one pass over the reference set that decodes each
image once for all blur levels, and are cached for next time.

Metric ids spell out the protocol, e.g. ``fid30k_blur2_lafite``, ``is30k_10splits_shuffled``,
``kid30k_s1000x100``; the table's ``metric`` column uses the paper's names (``FID-2``, ``IS``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .. import __version__
from ..errors import InputError
from ..registry import Registry, UnknownNameError
from ..io.jsonable import to_jsonable
from ..runtime.progress import progress as _progress
from .blur import BLUR_PRESETS, blur
from .cache import CONTENT_FID, CONTENT_KID, STATS_VERSION, RefStats, RefStatsCache, refstats_key
from .fid import FID_TRACE_METHODS, FeatureMoments, fid_from_stats
from ..encoders.inception import InceptionExtractor, load_inception
from .isc import is_from_logits
from .kid import check_kid_sizes, kid_from_features

PAPER_BLUR_LEVELS = (0, 1, 2, 4, 8)


@dataclass
class EvalConfig:
    """Every option of an evaluation (all of it is recorded in the result's provenance).

    Attributes:
        metrics: names from :data:`METRICS` (``fid``, ``kid``, ``is``, ``clip``, ``soa``).
        fid_blur: FID-k blur levels (0 = plain FID); LAFITE's tables use 0, 1, 2, 4, 8.
        blur_preset: ``lafite`` (LAFITE's torchvision blur) or ``pil`` (see :mod:`.blur`).
        resolution: side of the decoded images; sample and reference sets must be built with it.
        batch_size, num_workers: decoding / forward batching (results do not depend on them).
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda``...
        inception_weights: a registered name, a local file, or None for ``inception-2015-12-05``.
        inception_channels_last: run Inception convolutions channels-last (off by default, so
            results equal torch-fidelity's). About 2x faster on CPU; features then differ from
            torch-fidelity's by float32 rounding (FID ~1e-8 relative with the real weights).
        fid_trace: how FID's ``Tr((S1 S2)^½)`` is computed: ``eigh`` (symmetric form with the
            reference factor cached; exact) or ``eigvals`` (torch-fidelity's formula, bit-for-bit);
            see :func:`lafitebench.metrics.fid.fid_from_stats`.
        clip_model, clip_pretrained, clip_weights: CLIP scorer (see clip_score).
        detector, detector_conf: SOA detector name/path and confidence threshold.
        kid_subset_size, kid_subsets: KID protocol (torch-fidelity defaults 1000 x 100).
        isc_splits, isc_shuffle: IS protocol (10 splits; shuffled = torch-fidelity, else
            generation order = StyleGAN2/LAFITE).
        seed: RNG seed of the IS shuffle and the KID subsets (torch-fidelity's 2020).
        skip_bad: leave unreadable images out (listed in provenance) instead of failing.
        use_cache: read/write cached reference statistics.
        progress: Rich progress bars on stderr.
    """

    metrics: list[str] = field(default_factory=lambda: ["is", "fid"])
    fid_blur: list[int] = field(default_factory=lambda: [0])
    blur_preset: str = "lafite"
    resolution: int = 256
    batch_size: int = 32
    num_workers: int = 0
    device: str = "auto"
    inception_weights: str | None = None
    inception_channels_last: bool = False
    fid_trace: str = "eigh"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = "openai"
    clip_weights: str | None = None
    detector: str = "yolov8n.pt"
    detector_conf: float = 0.5
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    isc_splits: int = 10
    isc_shuffle: bool = True
    seed: int = 2020
    skip_bad: bool = False
    use_cache: bool = True
    progress: bool = True


@dataclass
class EvalResult:
    """``table``: one row per metric (metric_id, metric, value, std, n, higher_is_better, notes);
    ``provenance``: everything needed to reproduce or compare the numbers; ``per_class``: SOA
    per-class table or None; ``details``: each accumulator's full ``compute()`` output."""

    table: pd.DataFrame
    provenance: dict[str, Any]
    per_class: pd.DataFrame | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InceptionMetric:
    """A metric computed from the shared Inception pass (handled by the engine itself)."""

    name: str
    needs_reference: bool


METRICS: Registry[Any] = Registry("metric")
METRICS.register("fid", InceptionMetric("fid", needs_reference=True), aliases=("fid-k", "fidk"))
METRICS.register("kid", InceptionMetric("kid", needs_reference=True))
METRICS.register("is", InceptionMetric("is", needs_reference=False), aliases=("isc", "inception_score"))
METRICS.register("clip", "lafitebench.metrics.clip_score:ClipScoreAccumulator", aliases=("clip_score", "clipscore"))
METRICS.register("soa", "lafitebench.metrics.soa:SoaAccumulator")

_TABLE_COLUMNS = ["metric_id", "metric", "value", "std", "n", "higher_is_better", "notes"]


# --- small helpers ---------------------------------------------------------------------------

def count_tag(n: int) -> str:
    """30000 → "30k", 50 → "50" (for metric ids)."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def fid_metric_id(n: int, level: int, preset: str) -> str:
    """``fid{N}_blur{k}_{preset}`` (level 0 has no preset: ``fid{N}_blur0``)."""
    return f"fid{count_tag(n)}_blur{level}" + (f"_{preset}" if level else "")


def is_metric_id(n: int, splits: int, shuffle: bool) -> str:
    return f"is{count_tag(n)}_{splits}splits_{'shuffled' if shuffle else 'ordered'}"


def kid_metric_id(n: int, subset_size: int, subsets: int) -> str:
    return f"kid{count_tag(n)}_s{subset_size}x{subsets}"


def _library_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", "torchvision", "torch-fidelity", "open_clip_torch", "ultralytics", "numpy", "scipy",
                 "pillow", "pandas"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _torch_fidelity_version() -> str:
    import torch_fidelity

    return str(getattr(torch_fidelity, "__version__", "unknown"))


def _resolve_metrics(names: Sequence[str]) -> list[str]:
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for n in names:
        try:
            c = METRICS.canonical_name(str(n).strip())
        except UnknownNameError as e:
            raise InputError(f"metrics: {e}") from None
        if c not in out:
            out.append(c)
    if not out:
        raise InputError(f"metrics: no metric requested; choose from {', '.join(METRICS.names())}")
    return out


def _validate_options(config: EvalConfig, names: list[str]) -> list[int]:
    """Option sanity (types and ranges); returns the sorted unique FID blur levels."""
    if not isinstance(config.batch_size, int) or config.batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {config.batch_size!r}")
    if not isinstance(config.num_workers, int) or config.num_workers < 0:
        raise InputError(f"num_workers must be >= 0, got {config.num_workers!r}")
    if not isinstance(config.resolution, int) or config.resolution < 8:
        raise InputError(f"resolution must be an integer >= 8, got {config.resolution!r}")
    levels: list[int] = []
    if "fid" in names:
        raw = [config.fid_blur] if isinstance(config.fid_blur, int) else list(config.fid_blur or [])
        if not raw:
            raise InputError("fid_blur is empty: give the FID-k blur levels, e.g. 0 or 0,1,2,4,8")
        for k in raw:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise InputError(f"fid_blur levels must be non-negative integers (0 = no blur), got {k!r}")
            if k and 2 * k >= config.resolution:
                raise InputError(f"fid_blur level {k} is too large for resolution {config.resolution}")
        levels = sorted(set(int(k) for k in raw))
        if any(levels):
            try:
                BLUR_PRESETS.get(config.blur_preset)
            except UnknownNameError as e:
                raise InputError(f"blur_preset: {e}") from None
    if "fid" in names and config.fid_trace not in FID_TRACE_METHODS:
        raise InputError(f"fid_trace must be one of {', '.join(FID_TRACE_METHODS)}, got {config.fid_trace!r}")
    if "is" in names and (not isinstance(config.isc_splits, int) or config.isc_splits < 1):
        raise InputError(f"isc_splits must be a positive integer, got {config.isc_splits!r}")
    return levels


def _check_set(s: Any, role: str, config: EvalConfig) -> None:
    res = getattr(s, "resolution", None)
    if res is not None and res != config.resolution:
        raise InputError(
            f"the {role} set {getattr(s, 'name', '?')!r} is decoded at {res}² but config.resolution is "
            f"{config.resolution}; build it with resolution={config.resolution} (or change --resolution)")


def _missing(items: list[Any], attr: str) -> list[str]:
    return [str(it.path) for it in items if not getattr(it, attr, None)]


# --- the Inception pass -----------------------------------------------------------------------

class _InceptionPass:
    """Feeds decoded batches through blur + Inception; keeps what each Inception metric needs."""

    def __init__(self, extractor: InceptionExtractor, levels: list[int], preset: str, keep_logits: bool,
                 keep_features0: bool) -> None:
        self.extractor = extractor
        self.levels = levels
        self.preset = preset
        self.keep_logits = keep_logits
        self.keep_features0 = keep_features0
        self.moments = {k: FeatureMoments(2048) for k in levels}
        self.features0: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []
        self.forwards = 0
        self.forward_s = 0.0
        self.blur_s = 0.0

    def update(self, images: torch.Tensor) -> None:
        images = images.to(self.extractor.device)
        for k in self.levels:
            t0 = time.perf_counter()
            x = blur(images, k, self.preset) if k else images
            t1 = time.perf_counter()
            out = self.extractor(x)
            self.blur_s += t1 - t0
            self.forward_s += time.perf_counter() - t1
            self.forwards += x.shape[0]
            self.moments[k].update(out.pool3)
            if k == 0:
                if self.keep_features0:
                    self.features0.append(out.pool3)
                if self.keep_logits:
                    self.logits.append(out.logits)

    @property
    def n(self) -> int:
        return next(iter(self.moments.values())).n if self.moments else 0

    def features(self) -> torch.Tensor:
        return torch.cat(self.features0) if self.features0 else torch.zeros(0, 2048)


def _extractor_identity(extractor: InceptionExtractor) -> dict[str, Any]:
    """What about the extractor changes features (goes into reference cache keys)."""
    return {"weights_sha256": extractor.sha256, "channels_last": extractor.channels_last,
            "device_type": extractor.device.type, "torch_fidelity": _torch_fidelity_version()}


def reference_statistics(reference: Any, extractor: InceptionExtractor, levels: list[int], preset: str,
                         kid_features: bool, config: EvalConfig, cache: RefStatsCache | None = None,
                         progress: Any = None) -> tuple[dict[int, RefStats], dict[str, Any]]:
    """Reference statistics for each blur level in ``levels``, from the cache or one decode pass.

    ``kid_features`` also keeps (and caches) the level-0 float32 pool3 features. Returns the
    stats per level and a cache report ``{"hits": [...], "misses": [...], "files": {...}}``.
    Raises InputError for unreadable images (unless ``config.skip_bad``) or too few images.
    """
    fingerprint = reference.fingerprint()
    ident = _extractor_identity(extractor)
    crop = getattr(reference, "crop", None)
    out: dict[int, RefStats] = {}
    report: dict[str, Any] = {"hits": [], "misses": [], "files": {}}
    wanted: dict[int, tuple[str, dict[str, Any]]] = {}
    for k in levels:
        contents = [CONTENT_FID] + ([CONTENT_KID] if (k == 0 and kid_features) else [])
        key, payload = refstats_key(fingerprint=fingerprint, resolution=reference.resolution, crop=crop,
                                    blur_preset=preset, blur_level=k, inception=ident, contents=contents)
        wanted[k] = (key, payload)
        hit = None
        if cache is not None:
            hit = cache.load(key, payload)
            if hit is None and CONTENT_KID not in contents:  # a FID+KID entry also serves FID alone
                key2, payload2 = refstats_key(fingerprint=fingerprint, resolution=reference.resolution, crop=crop,
                                              blur_preset=preset, blur_level=k, inception=ident,
                                              contents=[CONTENT_FID, CONTENT_KID])
                hit = cache.load(key2, payload2)
        if hit is not None:
            out[k] = hit
            report["hits"].append(k)
            report["files"][k] = str(cache.path(hit.key))
    todo = [k for k in levels if k not in out]
    if todo:
        report["misses"] = todo
        ipass = _InceptionPass(extractor, todo, preset, keep_logits=False,
                               keep_features0=(0 in todo and kid_features))
        task = progress.add_task(f"reference ({len(todo)} blur level{'s' if len(todo) > 1 else ''})",
                                 total=len(reference.items)) if progress is not None else None
        for batch in reference.loader(config.batch_size, config.num_workers, skip_bad=config.skip_bad):
            ipass.update(batch.images)
            if task is not None:
                progress.advance(task, batch.images.shape[0])
        for k in todo:
            key, payload = wanted[k]
            feats = ipass.features().numpy().astype(np.float32) if (k == 0 and kid_features) else None
            st = ipass.moments[k].stats()
            ref = RefStats(stats=st, features=feats, factor=ipass.moments[k].factor() if config.fid_trace == "eigh" else None,
                           key=key, key_payload=payload)
            out[k] = ref
            if cache is not None:
                report["files"][k] = str(cache.save(key, payload, ref))
        report["forwards"] = ipass.forwards
        report["forward_s"] = ipass.forward_s
    return out, report


# --- accumulator output → table rows ------------------------------------------------------------

def _rows_from_compute(name: str, out: dict[str, Any]) -> list[dict[str, Any]]:
    rows = out.get("rows")
    if rows is None:
        rows = [out]
    table_rows = []
    for r in rows:
        if "value" not in r:
            raise InputError(f"metric {name!r}: its compute() returned no 'value' (keys: {sorted(r)})")
        table_rows.append({
            "metric_id": r.get("metric_id", name),
            "metric": r.get("metric", name),
            "value": float(r["value"]),
            "std": float(r["std"]) if r.get("std") is not None else float("nan"),
            "n": int(r["n"]) if r.get("n") is not None else None,
            "higher_is_better": bool(r.get("higher_is_better", True)),
            "notes": str(r.get("notes", "")),
        })
    return table_rows


def _jsonable(obj: Any) -> Any:
    """JSON-able provenance: DataFrames (tables reported separately) dropped, arrays as lists."""
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if not isinstance(v, pd.DataFrame)}
    return to_jsonable(obj, other="keep")


# --- the engine -----------------------------------------------------------------------------------

def evaluate(samples: Any, reference: Any | None, config: EvalConfig | None = None) -> EvalResult:
    """Compute ``config.metrics`` for ``samples`` (vs ``reference`` where needed) in one pass.

    Args:
        samples: an :class:`~lafitebench.data.datasets.ImageSet` of generated images (captions /
            SOA classes in its items where CLIP score / SOA are requested).
        reference: the reference ImageSet (FID, FID-k, KID) or None when only IS / CLIP / SOA.
        config: options (:class:`EvalConfig`); defaults: IS and FID-0.

    Returns:
        :class:`EvalResult` with the table, provenance and (SOA) per-class table.

    Raises:
        InputError: unknown metric or preset, bad options, too few images for a metric (FID: 2,
            KID: ``kid_subset_size`` in each set, IS: ``isc_splits``), missing reference, samples
            without captions (CLIP) or SOA classes (SOA), a resolution mismatch, unreadable images
            (unless ``skip_bad``). All of these are raised before any network runs.
        WeightsError: a weights file is missing / has the wrong hash / Inception has no
            classifier while IS is requested.
    """
    config = config or EvalConfig()
    started = time.perf_counter()
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    names = _resolve_metrics(config.metrics)
    levels = _validate_options(config, names)
    inception_names = [n for n in names if isinstance(METRICS.get(n), InceptionMetric)]
    other_names = [n for n in names if n not in inception_names]
    want_fid, want_kid, want_is = "fid" in names, "kid" in names, "is" in names

    # --- cheap checks, before any network runs ---
    if samples is None or not getattr(samples, "items", None):
        raise InputError("no samples to evaluate (empty image set)")
    _check_set(samples, "samples", config)
    n_samples = len(samples.items)
    needs_ref = [n for n in inception_names if METRICS.get(n).needs_reference]
    if needs_ref and reference is None:
        raise InputError(f"{', '.join(needs_ref)} need a reference set: pass one (e.g. --reference coco-mini "
                         f"or a folder of real images)")
    if reference is not None and needs_ref:
        _check_set(reference, "reference", config)
    n_ref = len(reference.items) if (reference is not None and needs_ref) else 0
    if want_fid and (n_samples < 2 or n_ref < 2):
        raise InputError(f"FID needs at least 2 images in each set (samples: {n_samples}, reference: {n_ref})")
    if want_kid:
        check_kid_sizes(n_samples, n_ref, config.kid_subset_size, config.kid_subsets)
    if want_is and n_samples < config.isc_splits:
        raise InputError(f"Inception Score with {config.isc_splits} splits needs at least {config.isc_splits} "
                         f"images, got {n_samples}; generate more or lower isc_splits (--isc-splits)")
    if "clip" in names:
        miss = _missing(samples.items, "caption")
        if miss:
            raise InputError(f"CLIP score needs a caption for every sample; {len(miss)} of {n_samples} have none "
                             f"(e.g. {', '.join(miss[:3])}); give a manifest with captions or --captions")
    if "soa" in names:
        miss = _missing(samples.items, "soa_class")
        if miss:
            raise InputError(f"SOA needs the SOA class of every sample; {len(miss)} of {n_samples} have none "
                             f"(e.g. {', '.join(miss[:3])}); generate with the SOA split (manifest column soa_class)")
    accumulators: dict[str, Any] = {}
    for n in other_names:
        cls = METRICS.get(n)
        if hasattr(cls, "check"):
            cls.check(config, samples)
    if not config.skip_bad:  # headers only: cheap, and names every unreadable file at once
        samples.validate(quick=True)
        if reference is not None and needs_ref:
            reference.validate(quick=True)
    extractor = None
    if inception_names:
        extractor = load_inception(config.inception_weights, device=config.device, logits=want_is,
                                   progress=config.progress, channels_last=config.inception_channels_last)
    for n in other_names:
        accumulators[n] = METRICS.get(n)(config)

    sample_levels = sorted(set(levels) | ({0} if (want_is or want_kid) else set()))
    ref_levels = sorted(set(levels) | ({0} if want_kid else set()))
    cache = RefStatsCache() if config.use_cache else None
    timing: dict[str, float] = {}
    ref_stats: dict[int, RefStats] = {}
    cache_report: dict[str, Any] = {"hits": [], "misses": []}
    with _progress(disable=not config.progress) as bar:
        if ref_levels:
            t0 = time.perf_counter()
            ref_stats, cache_report = reference_statistics(reference, extractor, ref_levels, config.blur_preset,
                                                           want_kid, config, cache, bar)
            timing["reference_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ipass = (_InceptionPass(extractor, sample_levels, config.blur_preset, keep_logits=want_is,
                                keep_features0=want_kid) if sample_levels else None)
        task = bar.add_task(f"samples ({', '.join(names)})", total=n_samples)
        n_seen = 0
        for batch in samples.loader(config.batch_size, config.num_workers, skip_bad=config.skip_bad):
            if ipass is not None:
                ipass.update(batch.images)
            for acc in accumulators.values():
                acc.update(batch)
            n_seen += batch.images.shape[0]
            bar.advance(task, batch.images.shape[0])
        timing["samples_s"] = time.perf_counter() - t0
    if n_seen == 0:
        raise InputError(f"no readable images in samples {getattr(samples, 'name', '')!r}")

    # --- reduce ---
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    n_used = ipass.n if ipass is not None else n_seen
    ref_n = next(iter(ref_stats.values())).stats.n if ref_stats else 0
    ref_name = getattr(reference, "name", None)
    w_short = f"Inception {extractor.sha256[:8]}" if extractor is not None else ""
    t0 = time.perf_counter()
    if want_is:
        logits = torch.cat(ipass.logits)
        mean, std = is_from_logits(logits, config.isc_splits, config.isc_shuffle, config.seed)
        order = f"shuffled (numpy RandomState({config.seed}).permutation)" if config.isc_shuffle else "generation order"
        rows.append({"metric_id": is_metric_id(n_used, config.isc_splits, config.isc_shuffle), "metric": "IS",
                     "value": mean, "std": std, "n": n_used, "higher_is_better": True,
                     "notes": f"{config.isc_splits} splits, {order}, std ddof 0; {w_short} unbiased logits"})
        details["is"] = {"mean": mean, "std": std, "splits": config.isc_splits, "shuffle": config.isc_shuffle,
                         "seed": config.seed if config.isc_shuffle else None}
    if want_fid:
        for k in levels:
            ds = ipass.moments[k].stats()
            value = fid_from_stats(ds, ref_stats[k].stats, method=config.fid_trace, factor_b=ref_stats[k].factor)
            preset = BLUR_PRESETS.get(config.blur_preset) if k else None
            blur_txt = (f"blur {config.blur_preset} k={k} (sigma {preset.sigma(k):.3g}, effective "
                        f"{preset.effective_sigma(k):.3g}), re-quantised to uint8" if k else "no blur")
            rows.append({"metric_id": fid_metric_id(n_used, k, config.blur_preset), "metric": f"FID-{k}" if (k == 0 or config.blur_preset == "lafite") else f"FID-{k} ({config.blur_preset})",
                         "value": value, "std": float("nan"), "n": n_used, "higher_is_better": False,
                         "notes": f"{blur_txt}; reference {ref_name} ({ref_n} images); {w_short} pool3"})
            details.setdefault("fid", {})[k] = value
    if want_kid:
        if n_used < config.kid_subset_size or ref_n < config.kid_subset_size:
            check_kid_sizes(n_used, ref_n, config.kid_subset_size, config.kid_subsets)
        mean, std = kid_from_features(ipass.features(), ref_stats[0].features, config.kid_subsets,
                                      config.kid_subset_size, config.seed)
        rows.append({"metric_id": kid_metric_id(n_used, config.kid_subset_size, config.kid_subsets), "metric": "KID",
                     "value": mean, "std": std, "n": n_used, "higher_is_better": False,
                     "notes": f"unbiased MMD^2, kernel (x.y/2048+1)^3, {config.kid_subsets} subsets of "
                              f"{config.kid_subset_size} (seed {config.seed}); reference {ref_name} ({ref_n})"})
        details["kid"] = {"mean": mean, "std": std}
    timing["inception_metrics_s"] = time.perf_counter() - t0
    per_class = None
    acc_prov: dict[str, Any] = {}
    for n, acc in accumulators.items():
        out = acc.compute()
        rows.extend(_rows_from_compute(n, out))
        details[n] = out
        if isinstance(out.get("per_class"), pd.DataFrame):
            per_class = out["per_class"]
        acc_prov[n] = _jsonable({k: v for k, v in out.items() if k not in ("rows", "per_class")})
    timing["total_s"] = time.perf_counter() - started

    table = pd.DataFrame(rows, columns=_TABLE_COLUMNS)
    provenance = _provenance(config, names, samples, reference if needs_ref else None, extractor, levels,
                             sample_levels, cache_report, cache, ipass, timing, acc_prov, date, n_used, ref_n)
    return EvalResult(table=table, provenance=provenance, per_class=per_class, details=details)


def _set_provenance(s: Any, n_used: int | None) -> dict[str, Any]:
    d = s.provenance(fingerprint=True) if hasattr(s, "provenance") else {
        "name": getattr(s, "name", None), "n": len(s.items), "fingerprint": s.fingerprint()}
    if n_used is not None:
        d["n_used"] = n_used
    return _jsonable(d)


def _provenance(config: EvalConfig, names: list[str], samples: Any, reference: Any, extractor: Any,
                levels: list[int], sample_levels: list[int], cache_report: dict[str, Any],
                cache: RefStatsCache | None, ipass: Any, timing: dict[str, float], acc_prov: dict[str, Any],
                date: str, n_used: int, ref_n: int) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "lafitebench_version": __version__,
        "date": date,
        "metrics": names,
        "config": _jsonable(dataclasses.asdict(config)),
        "inputs": {"samples": _set_provenance(samples, n_used)},
        "libraries": _library_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(),
                     "torch_threads": torch.get_num_threads()},
        "timing": {k: round(v, 3) for k, v in timing.items()},
    }
    if reference is not None:
        prov["inputs"]["reference"] = _set_provenance(reference, ref_n)
    if extractor is not None:
        preset = BLUR_PRESETS.get(config.blur_preset) if any(levels) else None
        prov["inception"] = extractor.provenance()
        prov["blur"] = {
            "preset": config.blur_preset if preset else None,
            "description": preset.description if preset else None,
            "requantise": preset.requantise if preset else None,
            "levels": levels,
            "sigma": {str(k): (preset.sigma(k) if (preset and k) else 0.0) for k in levels},
            "effective_sigma": {str(k): (preset.effective_sigma(k) if (preset and k) else 0.0) for k in levels},
            "applied_to": "uint8 images at the evaluation resolution, before Inception's resize; both sets",
        }
        prov["seeds"] = {"is_shuffle": config.seed if ("is" in names and config.isc_shuffle) else None,
                         "kid_subsets": config.seed if "kid" in names else None}
        prov["resize_filters"] = {"inception": extractor.provenance()["resize"],
                                  "samples": prov["inputs"]["samples"].get("resize"),
                                  "reference": prov["inputs"].get("reference", {}).get("resize")}
        prov["cache"] = {"enabled": cache is not None, "dir": str(cache.root) if cache else None,
                         "stats_version": STATS_VERSION,
                         "hits": [int(k) for k in cache_report.get("hits", [])],
                         "misses": [int(k) for k in cache_report.get("misses", [])],
                         "files": {str(k): v for k, v in cache_report.get("files", {}).items()}}
        prov["inception_pass"] = {"sample_levels": sample_levels,
                                  "sample_forwards": ipass.forwards if ipass else 0,
                                  "reference_forwards": cache_report.get("forwards", 0),
                                  "sample_forward_s": round(ipass.forward_s, 3) if ipass else 0.0,
                                  "sample_blur_s": round(ipass.blur_s, 3) if ipass else 0.0}
    if acc_prov:
        prov["accumulators"] = acc_prov
    return prov
