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
from ..errors import InputError
from ..metrics.config import EvalConfig
from ..metrics.engine import EvalResult, evaluate
from ..metrics.plan import AUTO
from ..runtime import distributed
from ..reports import save_result

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
        raise InputError(f"samples {samples}: expected a folder of images or a data set name, got a file", param="samples")
    return get_dataset(str(samples), resolution=resolution, captions_file=captions)


def load_reference(reference: str | os.PathLike | None, data_root: str | os.PathLike | None,
                   reference_captions: str | os.PathLike | None, resolution: int, split: str | None = None):
    """A reference data set name (``coco-mini``, ``coco`` with ``data_root``) or an image folder."""
    if reference is None:
        return None
    return get_dataset(str(reference), data_root=data_root, resolution=resolution, split=split,
                       captions_file=reference_captions)


def _kid_subset(config: EvalConfig, n: int, n_ref: int) -> EvalConfig:
    """KID's subset size is min(1000, N) (the metrics reference); only the default 1000 is lowered.

    An explicit other size larger than a set stays as given, so the engine reports the error.
    """
    if config.kid_subset_size == DEFAULT_KID_SUBSET and n_ref and min(n, n_ref) < DEFAULT_KID_SUBSET:
        return dataclasses.replace(config, kid_subset_size=max(2, min(n, n_ref)))
    return config


def run_eval(samples: str | os.PathLike, reference: str | os.PathLike | None = None, *,
             metrics: Sequence[str] | str = AUTO, captions: str | os.PathLike | None = None,
             data_root: str | os.PathLike | None = None, reference_captions: str | os.PathLike | None = None,
             reference_split: str | None = None, out: str | os.PathLike | None = None,
             config: EvalConfig | None = None) -> EvalJob:
    """Evaluate a samples folder (or data set) against a reference and save CSV/JSON/Markdown to ``out``.

    ``metrics="auto"`` computes every metric whose inputs exist and lists each one left out with
    the reason; named metrics are required (anything missing is an error). KID's subset size
    becomes ``min(1000, N_samples, N_reference)`` when left at its default (the metric id records
    it). Under torchrun only rank 0 writes ``out``.

    Raises:
        InputError / WeightsError: bad input, before any network runs.
    """
    config = config or EvalConfig()
    s = load_samples(samples, captions, config.resolution)
    r = load_reference(reference, data_root, reference_captions, config.resolution, reference_split)
    n_ref = len(r.items) if r is not None else 0
    config = _kid_subset(dataclasses.replace(config, metrics=metrics), len(s.items), n_ref)
    result = evaluate(s, r, config)
    result.provenance["metrics_requested"] = metrics if isinstance(metrics, str) else list(metrics)
    result.provenance["metrics_skipped"] = result.skipped
    files: dict[str, Path] = {}
    if out is not None and distributed.is_main():
        extra = {"soa_per_class": result.per_class} if isinstance(result.per_class, pd.DataFrame) else None
        files = save_result(out, result.table, result.provenance, extra)
    return EvalJob(result=result, skipped=result.skipped, files=files)
