"""Bootstrap intervals from the per-image features, without new forward passes.

Each replicate draws the generated set's indices with replacement (``numpy`` PCG64 seeded with
``(seed, replicate)``) and every metric recomputes its value on those rows with the reference
held fixed; the interval is the 2.5 and 97.5 percentiles of the replicates (percentile
bootstrap, Efron & Tibshirani 1993 §13.3). Recall and coverage are means of per-reference-point
terms, so they resample the reference points' terms instead (the k-NN radii stay those of the
full sets).
"""
from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95


def draw(seed: int, replicate: int, n: int) -> np.ndarray:
    """Indices of replicate ``replicate``: ``n`` draws from ``range(n)`` with replacement."""
    return np.random.Generator(np.random.PCG64([int(seed), int(replicate)])).integers(0, n, n)


def counts(index: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` rows is drawn."""
    return np.bincount(np.asarray(index), minlength=n).astype(np.float64)


def weighted_moments(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of the multiset with row ``i`` taken ``c[i]`` times (float64):
    the statistics of ``x[index]`` without materialising it."""
    x = np.asarray(x, dtype=np.float64)
    n = float(c.sum())
    mu = c @ x / n
    sigma = (x.T @ (x * c[:, None]) - n * np.outer(mu, mu)) / (n - 1)
    return mu, (sigma + sigma.T) / 2


def interval(values: np.ndarray | list[float]) -> tuple[float, float]:
    """The central 95 % percentile interval of replicate values (NaN when none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan"), float("nan")
    a = (1 - CONFIDENCE) / 2 * 100
    lo, hi = np.percentile(v, [a, 100 - a])
    return float(lo), float(hi)


__all__ = ["CONFIDENCE", "counts", "draw", "interval", "weighted_moments"]
