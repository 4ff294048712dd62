"""lafitebench: LAFITE models and the paper's metrics, reproducible and measurable.

The public API (imported lazily so ``import lafitebench`` stays cheap):

- :func:`load_model` — a zoo id, a native checkpoint or an official snapshot → networks + metadata.
- :func:`evaluate` / :class:`EvalConfig` — the metric engine over image sets.
- :func:`run_eval` — the ``lafitebench eval`` job (build sets, pick metrics, save results).
- :func:`get_dataset` / :func:`sample_set` — reference data sets and generated-sample folders.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "lafitebench.checkpoints.load:load_model",
    "evaluate": "lafitebench.metrics.engine:evaluate",
    "EvalConfig": "lafitebench.metrics.config:EvalConfig",
    "run_eval": "lafitebench.jobs.eval:run_eval",
    "get_dataset": "lafitebench.data.registry:get_dataset",
    "sample_set": "lafitebench.data.sources.folder:sample_set",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'lafitebench' has no attribute {name!r}")
