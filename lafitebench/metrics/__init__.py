"""Metrics: Inception-based (IS, FID, FID-k, KID), CLIP score and SOA-C/SOA-I.

Every metric follows one contract (:mod:`.base`) and is registered by one line in
:mod:`.registry`; the engine (:func:`evaluate` with an :class:`EvalConfig`) plans, runs one
pass and reduces. The pure numerics live in ``fid``, ``kid``, ``isc`` and ``blur``. Names are
imported lazily so that importing a submodule stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalConfig": "config",
    "EvalResult": "engine",
    "evaluate": "engine",
    "METRICS": "registry",
    "Metric": "base",
    "MetricRow": "base",
    "MetricOutput": "base",
    "reference_statistics": "reference",
    "BLUR_PRESETS": "blur",
    "blur": "blur",
    "FidStats": "fid",
    "FeatureMoments": "fid",
    "fid_from_stats": "fid",
    "features_to_stats": "fid",
    "save_stats": "fid",
    "load_stats": "fid",
    "kid_from_features": "kid",
    "is_from_logits": "isc",
    "RefStatsCache": "cache",
    "STATS_VERSION": "cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
