"""The provenance of an evaluation result: inputs, weights, protocol choices, versions, process layout."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch

from .. import __version__
from ..io.jsonable import to_jsonable
from ..runtime import distributed as dist
from .blur import BLUR_PRESETS
from .cache import STATS_VERSION
from .config import PROTOCOLS

LIBRARIES = ("torch", "torchvision", "torch-fidelity", "open_clip_torch", "ultralytics", "numpy", "scipy", "pillow",
             "pandas")


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str | None]:
    """Versions of Python and of every library that can change a number."""

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def jsonable(obj: Any) -> Any:
    """JSON-able provenance: DataFrames (reported separately) dropped, arrays as lists."""
    import pandas as pd

    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if not isinstance(v, pd.DataFrame)}
    return to_jsonable(obj, other="keep")


@dataclass
class RunRecord:
    """Everything the engine knows after a run, gathered in one place for :func:`build_provenance`."""

    config: Any
    names: list[str]
    samples: Any
    reference: Any = None
    n_samples: int = 0
    n_reference: int = 0
    extractor: Any = None
    fid_levels: list[int] = field(default_factory=list)
    sample_levels: list[int] = field(default_factory=list)
    cache: Any = None
    cache_report: dict[str, Any] = field(default_factory=dict)
    sample_stage: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    date: str = ""


def set_provenance(s: Any, n_used: int | None) -> dict[str, Any]:
    """Name, size, preprocessing and content fingerprint of an image set."""
    d = s.provenance(fingerprint=True) if hasattr(s, "provenance") else {
        "name": getattr(s, "name", None), "n": len(s.items), "fingerprint": s.fingerprint()}
    if n_used is not None:
        d["n_used"] = n_used
    return jsonable(d)


def _blur(config: Any, levels: list[int]) -> dict[str, Any]:
    preset = BLUR_PRESETS.get(config.blur_preset) if any(levels) else None
    return {
        "preset": config.blur_preset if preset else None,
        "description": preset.description if preset else None,
        "requantise": preset.requantise if preset else None,
        "levels": levels,
        "sigma": {str(k): (preset.sigma(k) if (preset and k) else 0.0) for k in levels},
        "effective_sigma": {str(k): (preset.effective_sigma(k) if (preset and k) else 0.0) for k in levels},
        "applied_to": "uint8 images at the evaluation resolution, before Inception's resize; both sets",
    }


def _inception(rec: RunRecord, prov: dict[str, Any]) -> dict[str, Any]:
    cfg, rep = rec.config, rec.cache_report
    inception = rec.extractor.provenance()
    return {
        "inception": inception,
        "blur": _blur(cfg, rec.fid_levels),
        "seeds": {"is_shuffle": cfg.seed if ("is" in rec.names and cfg.isc_shuffle) else None,
                  "kid_subsets": cfg.seed if "kid" in rec.names else None},
        "resize_filters": {"inception": inception["resize"], "samples": prov["inputs"]["samples"].get("resize"),
                           "reference": prov["inputs"].get("reference", {}).get("resize")},
        "cache": {"enabled": rec.cache is not None, "dir": str(rec.cache.root) if rec.cache else None,
                  "stats_version": STATS_VERSION, "hits": [int(k) for k in rep.get("hits", [])],
                  "misses": [int(k) for k in rep.get("misses", [])],
                  "files": {str(k): v for k, v in rep.get("files", {}).items()}},
        "inception_pass": {"sample_levels": rec.sample_levels,
                           "sample_forwards": rec.sample_stage.get("forwards", 0),
                           "reference_forwards": rep.get("forwards", 0),
                           "sample_forward_s": rec.sample_stage.get("forward_s", 0.0),
                           "sample_blur_s": rec.sample_stage.get("blur_s", 0.0)},
    }


def _protocol(config: Any) -> dict[str, Any]:
    name = getattr(config, "protocol", "torch-fidelity")
    return {"name": name, "notes": PROTOCOLS.get(name, {}).get("notes"),
            "fid_covariance": getattr(config, "fid_covariance", "unbiased")}


def build_provenance(rec: RunRecord) -> dict[str, Any]:
    """The provenance dict of a result (JSON-able)."""

    prov: dict[str, Any] = {
        "lafitebench_version": __version__,
        "date": rec.date or now_utc(),
        "metrics": rec.names,
        "config": jsonable(dataclasses.asdict(rec.config)),
        "inputs": {"samples": set_provenance(rec.samples, rec.n_samples)},
        "libraries": library_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(),
                     "torch_threads": torch.get_num_threads()},
        "distributed": dist.describe(),
        "protocol": _protocol(rec.config),
        "timing": {k: round(v, 3) for k, v in rec.timing.items()},
    }
    if rec.reference is not None:
        prov["inputs"]["reference"] = set_provenance(rec.reference, rec.n_reference)
    if rec.extractor is not None:
        prov.update(_inception(rec, prov))
    if rec.metrics:
        prov["metric_details"] = jsonable(rec.metrics)
    return prov
