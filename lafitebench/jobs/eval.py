"""The ``eval`` job: build the sample and reference sets, pick the metrics, run the engine, save.

``run_eval`` is what ``lafitebench eval`` calls. With ``metrics="auto"`` (the default) it computes
every metric whose inputs are available and lists each one it left out with the reason (no
captions, no classifier in the Inception file, CLIP weights not available offline, ...).
Metrics named explicitly are required: anything missing is an error, raised before any work.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..data.datasets import get_dataset, sample_set
from ..errors import InputError, WeightsError
from ..metrics.engine import METRICS, EvalConfig, EvalResult, evaluate
from ..reports import save_result

AUTO = "auto"
DEFAULT_KID_SUBSET = 1000


@dataclass
class EvalJob:
    """What ``run_eval`` returns: the engine result, metrics left out (with reasons), output files."""

    result: EvalResult
    skipped: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def load_samples(samples: str | os.PathLike, captions: str | os.PathLike | None, resolution: int):
    """A samples folder (with its manifest) or a registered data set name such as ``coco-mini:a``."""
    p = Path(samples)
    if p.is_dir():
        return sample_set(p, captions_file=captions, resolution=resolution)
    if p.exists():
        raise InputError(f"--samples {samples}: expected a folder of images or a data set name, got a file")
    return get_dataset(str(samples), resolution=resolution, captions_file=captions)


def load_reference(reference: str | os.PathLike | None, data_root: str | os.PathLike | None,
                   reference_captions: str | os.PathLike | None, resolution: int, split: str | None = None):
    """A reference data set name (``coco-mini``, ``coco`` with ``data_root``) or an image folder."""
    if reference is None:
        return None
    return get_dataset(str(reference), data_root=data_root, resolution=resolution, split=split,
                       captions_file=reference_captions)


def _short(e: Exception) -> str:
    """The first sentence of a weights error (the rest, how to provide the file, is long)."""
    text = " ".join(str(e).split())
    return text.split(". How to get it")[0].split(", expected sha256")[0].split("; ")[0]


def _has(items: Sequence[Any], attr: str) -> bool:
    return bool(items) and all(getattr(it, attr, None) for it in items)


def _kid_subset(config: EvalConfig, n: int, n_ref: int) -> EvalConfig:
    """KID's subset size is min(1000, N) (the metrics reference); only the default 1000 is lowered.

    An explicit other size larger than a set stays as given, so the engine reports the error.
    """
    if config.kid_subset_size == DEFAULT_KID_SUBSET and n_ref and min(n, n_ref) < DEFAULT_KID_SUBSET:
        return dataclasses.replace(config, kid_subset_size=max(2, min(n, n_ref)))
    return config


def plan_metrics(requested: Sequence[str] | str, samples: Any, reference: Any, config: EvalConfig) -> tuple[list[str], dict[str, str], EvalConfig]:
    """Decide which metrics to run.

    ``requested == "auto"``: every metric whose inputs exist; returns the left-out ones with the
    reason. KID's subset size becomes ``min(1000, N_samples, N_reference)`` when left at its
    default 1000 (the metric id records it). Explicit names are returned as given (the engine then fails loudly on what is
    missing). Cheap: resolves weights files (hashing them) but runs no network.
    """
    n = len(samples.items)
    n_ref = len(reference.items) if reference is not None else 0
    config = _kid_subset(config, n, n_ref)
    if not (isinstance(requested, str) and requested == AUTO) and not (list(requested) == [AUTO]):
        names = [requested] if isinstance(requested, str) else list(requested)
        return names, {}, config

    skipped: dict[str, str] = {}
    chosen: list[str] = []
    from ..weights import resolve

    if reference is None:
        skipped["fid"] = skipped["kid"] = "no reference set (--reference)"
    else:
        chosen.append("fid")
        if min(n, n_ref) >= 2:
            chosen.append("kid")
        else:
            skipped["kid"] = f"too few images for KID ({n} samples, {n_ref} reference)"

    try:
        inc = resolve(os.fspath(config.inception_weights) if config.inception_weights else "inception-2015-12-05",
                      progress=config.progress)
        if inc.has_classifier is False:
            skipped["is"] = (f"the Inception weights {inc.path.name} have no 1008-way classifier "
                             "(pool3-only file); IS needs the full torch-fidelity file")
        elif n < config.isc_splits:
            skipped["is"] = f"IS with {config.isc_splits} splits needs at least {config.isc_splits} images, got {n}"
        else:
            chosen.append("is")
    except WeightsError:
        raise  # Inception is needed by FID/KID/IS alike: a missing file is an error even in auto mode

    if not _has(samples.items, "caption"):
        skipped["clip"] = "the samples have no captions (manifest column 'caption' or --captions)"
    else:
        try:
            if config.clip_weights:
                resolve(os.fspath(config.clip_weights), progress=config.progress)
            else:
                resolve(f"clip:{config.clip_model}/{config.clip_pretrained}", progress=config.progress)
            chosen.append("clip")
        except WeightsError as e:
            skipped["clip"] = f"CLIP weights not available: {_short(e)} (name --metrics clip for the full instructions)"

    if not _has(samples.items, "soa_class"):
        skipped["soa"] = "the samples have no SOA classes (manifest column 'soa_class')"
    else:
        try:
            resolve(os.fspath(config.detector), progress=config.progress)
            chosen.append("soa")
        except WeightsError as e:
            skipped["soa"] = f"detector not available: {_short(e)} (name --metrics soa for the full instructions)"
    order = [m for m in ("is", "fid", "kid", "clip", "soa") if m in chosen]
    return order, skipped, config


def run_eval(samples: str | os.PathLike, reference: str | os.PathLike | None = None, *,
             metrics: Sequence[str] | str = AUTO, captions: str | os.PathLike | None = None,
             data_root: str | os.PathLike | None = None, reference_captions: str | os.PathLike | None = None,
             reference_split: str | None = None, out: str | os.PathLike | None = None,
             config: EvalConfig | None = None) -> EvalJob:
    """Evaluate a samples folder (or data set) against a reference and save CSV/JSON/Markdown to ``out``.

    Raises InputError / WeightsError for bad input before any network runs.
    """
    config = config or EvalConfig()
    s = load_samples(samples, captions, config.resolution)
    r = load_reference(reference, data_root, reference_captions, config.resolution, reference_split)
    names, skipped, config = plan_metrics(metrics, s, r, config)
    if not names:
        raise InputError("no metric can be computed: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    needs_ref = any(getattr(METRICS.get(m), "needs_reference", False) for m in names)
    config = dataclasses.replace(config, metrics=names)
    result = evaluate(s, r if needs_ref else None, config)
    result.provenance["metrics_requested"] = metrics if isinstance(metrics, str) else list(metrics)
    result.provenance["metrics_skipped"] = skipped
    files: dict[str, Path] = {}
    if out is not None:
        extra = {"soa_per_class": result.per_class} if isinstance(result.per_class, pd.DataFrame) else None
        files = save_result(out, result.table, result.provenance, extra)
    return EvalJob(result=result, skipped=skipped, files=files)
