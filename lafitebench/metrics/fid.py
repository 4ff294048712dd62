"""Fréchet Inception Distance from streamed float64 moments (Heusel et al. 2017).

FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) over 2048-d pool3 features.

Features are streamed into float64 sums (sum, sum of outer products, count), as StyleGAN2 /
edm2 do, so partial sums add across shards. The statistics use the unbiased covariance (divide
by N-1, like ``np.cov`` in torch-fidelity). The trace term comes from a symmetric eigenproblem
with a square-root factor of the reference covariance (:func:`trace_sqrt_product`), or, with
``method="eigvals"``, from the eigenvalues of S1·S2 exactly as torch-fidelity's
``fid_statistics_to_metric`` does. While a set has at most ``dim`` rows, :class:`FeatureMoments`
also keeps them, so its factor is the centred feature matrix and needs no eigendecomposition.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io.files import atomic_write
from ..options import Cli, Options, option
from .base import Metric, MetricOutput, MetricRow, count_tag
from .bootstrap import counts, weighted_moments
from .blur import BLUR_PRESETS, describe_level

POOL3_DIM = 2048


@dataclass
class FidStats:
    """Gaussian statistics of a feature set: ``mu`` [D] and ``sigma`` [D,D] (float64), ``n`` samples."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


class FeatureMoments:
    """Streaming float64 first and second moments of feature rows (``update`` then ``stats``)."""

    def __init__(self, dim: int = 2048) -> None:
        self.dim = dim
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.sum_outer = torch.zeros(dim, dim, dtype=torch.float64)
        self._rows: list[torch.Tensor] | None = []  # kept while n <= dim (a cheap exact factor)

    def update(self, features: torch.Tensor) -> None:
        """Add a batch of feature rows [N, dim] (any float dtype, any device)."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise InputError(f"expected features shaped [N, {self.dim}], got {tuple(features.shape)}")
        x = features.detach().to("cpu", torch.float64)
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.sum_outer += x.T @ x
        self._keep(x)

    def _keep(self, x: torch.Tensor | None) -> None:
        if self._rows is None or x is None or self.n > self.dim:
            self._rows = None
        else:
            self._rows.append(x)

    def merge(self, other: "FeatureMoments") -> None:
        """Add another accumulator's sums (e.g. from another shard)."""
        self.n += other.n
        self.sum += other.sum
        self.sum_outer += other.sum_outer
        self._keep(torch.cat(other._rows) if other._rows else (None if other._rows is None else torch.zeros(0, self.dim, dtype=torch.float64)))

    def factor(self) -> np.ndarray:
        """``R`` with ``R Rᵀ = sigma``: the centred rows / sqrt(n-1) while n <= dim, else :func:`sqrt_factor`."""
        if self._rows is not None and self.n >= 2:
            return centred_factor(torch.cat(self._rows).numpy(), self.sum.numpy() / self.n)
        return sqrt_factor(self.stats().sigma)

    def stats(self) -> FidStats:
        """mu = sum/n, sigma = (sum_outer - n mu mu^T)/(n-1). Raises InputError for n < 2."""
        return moments_to_stats(self.sum.numpy(), self.sum_outer.numpy(), self.n)


FID_COVARIANCES = ("unbiased", "population")


def moments_to_stats(sum_: np.ndarray, sum_outer: np.ndarray, n: int) -> FidStats:
    """Turn float64 sums into FID statistics with the unbiased (N-1) covariance of ``np.cov``.

    Raises InputError when n < 2 (the covariance is undefined).
    """
    if n < 2:
        raise InputError(f"FID needs at least 2 images per set to estimate a covariance, got {n}")
    sum_ = np.asarray(sum_, dtype=np.float64)
    mu = sum_ / n
    sigma = (np.asarray(sum_outer, dtype=np.float64) - n * np.outer(mu, mu)) / (n - 1)
    sigma = (sigma + sigma.T) / 2  # exact symmetry; the update is symmetric up to rounding
    return FidStats(mu=mu, sigma=sigma, n=int(n))


def to_population(stats: FidStats, factor: np.ndarray | None = None) -> tuple[FidStats, np.ndarray | None]:
    """The same statistics with the covariance divided by N instead of N-1 (StyleGAN2-ADA's
    ``FeatureStats``, which the official LAFITE evaluation uses): ``Σ·(N-1)/N``, and its square-root
    factor scaled by ``sqrt((N-1)/N)``."""
    scale = (stats.n - 1) / stats.n
    return (FidStats(mu=stats.mu, sigma=stats.sigma * scale, n=stats.n),
            None if factor is None else factor * np.sqrt(scale))


def features_to_stats(features: torch.Tensor | np.ndarray) -> FidStats:
    """FID statistics of a full feature matrix [N, D] (float64 moments; see :class:`FeatureMoments`)."""
    f = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    acc = FeatureMoments(f.shape[1])
    acc.update(f)
    return acc.stats()


def centred_factor(rows: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``R = (X - mu)ᵀ / sqrt(n-1)`` (D×n) of the feature rows ``X`` [n, D]: ``R Rᵀ`` is the unbiased
    covariance, exactly, without an eigendecomposition (used while n <= D)."""
    x = np.asarray(rows, dtype=np.float64)
    return ((x - np.asarray(mu, dtype=np.float64)).T / np.sqrt(x.shape[0] - 1)).copy()


def sqrt_factor(sigma: np.ndarray) -> np.ndarray:
    """A factor ``R`` (d×r, float64) with ``R Rᵀ = Σ`` for a symmetric PSD covariance ``Σ``.

    From ``eigh(Σ)``, keeping the eigenvalues above ``d · eps · λmax``: the others are rounding
    noise of a rank-deficient covariance (N ≤ d). Computed once per reference set and blur
    level (it is cached with the reference statistics).
    """
    w, u = np.linalg.eigh(np.asarray(sigma, dtype=np.float64))
    keep = w > w.max(initial=0.0) * w.shape[0] * np.finfo(np.float64).eps
    return u[:, keep] * np.sqrt(w[keep])


def trace_sqrt_product(sigma_a: np.ndarray, factor_b: np.ndarray) -> float:
    """``Tr((Σa Σb)^½)`` with ``Σb = R Rᵀ``: the non-zero eigenvalues of ``Σa Σb = Σa R Rᵀ`` are those of
    the symmetric PSD ``Rᵀ Σa R`` (r×r), so the trace is the sum of the square roots of its eigenvalues."""
    m = factor_b.T @ sigma_a @ factor_b
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    # Eigenvalues below the matrix's rounding level (r · eps · λmax, as sqrt_factor) are zeros of a
    # rank-deficient product (N ≤ d) carried by rounding; their square roots (~sqrt(eps)·scale) would
    # make the trace depend on the order the moments were summed in (e.g. across processes).
    keep = lam > lam.max(initial=0.0) * lam.shape[0] * np.finfo(np.float64).eps
    return float(np.sum(np.sqrt(lam[keep])))


FID_TRACE_METHODS = ("eigh", "eigvals")


def fid_from_stats(a: FidStats, b: FidStats, *, method: str = "eigh", factor_b: np.ndarray | None = None) -> float:
    """FID between two Gaussians: ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)).

    ``method="eigh"`` (default) takes the trace term from the symmetric matrix ``Rᵀ S_a R``
    (``R Rᵀ = S_b``, see :func:`trace_sqrt_product`; pass ``factor_b`` to reuse a cached factor).
    ``method="eigvals"`` is torch-fidelity's formula: square roots of the eigenvalues of the
    non-symmetric ``S_a S_b`` in complex128, real part kept. The two are the same number for
    full-rank covariances (N > 2048: measured 5e-16 relative); for rank-deficient ones
    torch-fidelity's sum also takes the square roots of ~2000 rounding-noise eigenvalues, which
    moves its value by up to about 1e-6 relative; ``eigh`` drops them. ``eigh`` is 3-4× faster at
    full rank and ~300× faster at small N with a cached factor. Raises InputError for mismatched
    shapes or an unknown method.
    """
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise InputError(f"FID statistics have different shapes: {a.mu.shape} vs {b.mu.shape}")
    diff = a.mu - b.mu
    if method == "eigh":
        tr_covmean = trace_sqrt_product(a.sigma, sqrt_factor(b.sigma) if factor_b is None else factor_b)
    elif method == "eigvals":
        eig = np.linalg.eigvals(a.sigma.dot(b.sigma)).astype(np.complex128)
        tr_covmean = np.sum(np.sqrt(eig).real)
    else:
        raise InputError(f"unknown FID trace method {method!r}; choose one of {', '.join(FID_TRACE_METHODS)}")
    return float(diff.dot(diff) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr_covmean)


def save_stats(path: str | os.PathLike, stats: FidStats) -> None:
    """Write statistics to ``path`` as .npz (``mu``, ``sigma``, ``n``), atomically."""
    with atomic_write(path, "wb") as f:
        np.savez(f, mu=stats.mu, sigma=stats.sigma, n=np.int64(stats.n))


def load_stats(path: str | os.PathLike) -> FidStats:
    """Read statistics written by :func:`save_stats`. Raises InputError for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"FID statistics file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            mu, sigma, n = z["mu"], z["sigma"], int(z["n"])
    except (KeyError, ValueError, OSError) as e:
        raise InputError(f"{p} is not a FID statistics file with mu, sigma, n ({e})") from e
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise InputError(f"{p}: inconsistent shapes mu {mu.shape}, sigma {sigma.shape}")
    return FidStats(mu=mu.astype(np.float64), sigma=sigma.astype(np.float64), n=n)


# --- the metric ------------------------------------------------------------------------------------

def parse_levels(value: str) -> list[int]:
    """``"0,1,2,4,8"`` → ``[0, 1, 2, 4, 8]``; InputError naming ``fid_blur`` otherwise."""
    try:
        return [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise InputError(f"fid_blur takes integers such as 0,1,2,4,8; got {value!r}", param="fid_blur") from None


@dataclass
class FidOptions(Options):
    """FID and FID-k (its blur levels and the blur definition, the trace and covariance forms)."""

    PANEL = "FID / KID"

    fid_blur: list[int] = option(default_factory=lambda: [0], help="FID-k blur levels, e.g. 0,1,2,4,8 (the paper's).",
                                 cli=Cli("--fid-blur", str, parse_levels, lambda v: ",".join(map(str, v)), "LEVELS"))
    blur_preset: str = option("lafite", "Blur definition (part of the metric id); LAFITE's tables use 'lafite'.",
                              cli=Cli("--blur-preset", metavar="lafite|pil"))
    fid_trace: str = option("eigh", "FID trace term: eigh (exact symmetric form, fast) or eigvals (torch-fidelity's "
                                    "formula, bit-for-bit).", cli=Cli("--fid-trace", metavar="eigh|eigvals"))
    fid_covariance: str = option("unbiased", "Covariance: unbiased (N-1, torch-fidelity) or population (N, the "
                                             "official LAFITE evaluation; set by --protocol lafite-official).")

    @classmethod
    def check(cls, config: Any) -> None:
        """Levels non-negative integers below half the resolution; a known preset, trace and covariance."""

        raw = [config.fid_blur] if isinstance(config.fid_blur, int) else list(config.fid_blur or [])
        if not raw:
            raise InputError("fid_blur is empty: give the FID-k blur levels, e.g. 0 or 0,1,2,4,8", param="fid_blur")
        for k in raw:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise InputError(f"fid_blur levels must be non-negative integers (0 = no blur), got {k!r}",
                                 param="fid_blur")
            if k and 2 * k >= getattr(config, "resolution", 256):
                raise InputError(f"fid_blur level {k} is too large for resolution {config.resolution}", param="fid_blur")
        if config.blur_preset not in BLUR_PRESETS:
            raise InputError(f"blur_preset {config.blur_preset!r} is unknown; choose one of "
                             f"{', '.join(BLUR_PRESETS.names())}", param="blur_preset")
        if config.fid_covariance not in FID_COVARIANCES:
            raise InputError(f"fid_covariance must be one of {', '.join(FID_COVARIANCES)}, got "
                             f"{config.fid_covariance!r}", param="fid_covariance")
        if config.fid_trace not in FID_TRACE_METHODS:
            raise InputError(f"fid_trace must be one of {', '.join(FID_TRACE_METHODS)}, got {config.fid_trace!r}",
                             param="fid_trace")


def check_two_each(label: str, samples: Any, reference: Any) -> None:
    """InputError unless both sets have the 2 images a covariance needs (``label`` names the metric)."""
    n_ref = len(reference.items) if reference is not None else 0
    if len(samples.items) < 2 or n_ref < 2:
        raise InputError(f"{label} needs at least 2 images in each set (samples: {len(samples.items)}, "
                         f"reference: {n_ref})")


def fid_metric_id(n: int, level: int, preset: str) -> str:
    """``fid{N}_blur{k}_{preset}`` (level 0 has no preset: ``fid{N}_blur0``)."""

    return f"fid{count_tag(n)}_blur{level}" + (f"_{preset}" if level else "")


def _fid_levels(config: Any) -> list[int]:
    raw = [config.fid_blur] if isinstance(config.fid_blur, int) else list(config.fid_blur or [])
    return sorted({int(k) for k in raw})


def add_moment_states(metric: Metric, level: int, dim: int) -> None:
    """Declare the float64 moment sums of one blur level (``sum{k}``, ``outer{k}``, ``n{k}``) on ``metric``."""
    metric.add_state(f"sum{level}", torch.zeros(dim, dtype=torch.float64))
    metric.add_state(f"outer{level}", torch.zeros(dim, dim, dtype=torch.float64))
    metric.add_state(f"n{level}", torch.zeros((), dtype=torch.int64))


def add_moments(metric: Metric, level: int, features: torch.Tensor) -> torch.Tensor:
    """Add a batch of feature rows to the moment sums of ``level``; returns the rows in float64."""
    x = features.detach().to("cpu", torch.float64)
    metric.add(f"sum{level}", x.sum(0))
    metric.add(f"outer{level}", x.T @ x)
    metric.add(f"n{level}", torch.tensor(x.shape[0]))
    return x


def moment_stats(metric: Metric, level: int) -> FidStats:
    """FID statistics from the (synced) moment sums of ``level``."""
    return moments_to_stats(metric.value(f"sum{level}").numpy(), metric.value(f"outer{level}").numpy(),
                            int(metric.value(f"n{level}")))


class FidMetric(Metric):
    """FID and FID-k (one row per blur level in ``config.fid_blur``) from streamed float64 moments.

    States per level k: ``sum{k}`` [D], ``outer{k}`` [D, D] and ``n{k}``, all sums, so shards add.
    """

    name = "fid"
    needs_reference = True
    higher_is_better = False

    def setup(self) -> None:
        self.levels = _fid_levels(self.config)
        dim = int(self.context.get("pool3_dim", POOL3_DIM))
        for k in self.levels:
            add_moment_states(self, k, dim)
            if getattr(self.config, "bootstrap", 0):  # the rows, for resampling
                self.add_state(f"rows{k}", reduce="cat", row_shape=(dim,), dtype=torch.float32)
        self.reference = None

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any) -> None:
        check_two_each("FID", samples, reference)
        FidOptions.check(config)

    @classmethod
    def sample_features(cls, config: Any) -> set:
        return {("pool3", k) for k in _fid_levels(config)}

    def _pair(self, level: int) -> tuple[FidStats, FidStats, np.ndarray | None]:
        """Samples' and reference statistics at ``level`` under the configured covariance."""
        st, r = self.stats(level), self.reference.levels[level]
        if getattr(self.config, "fid_covariance", "unbiased") == "population":
            ref, factor = to_population(r.stats, r.factor)
            return to_population(st)[0], ref, factor
        return st, r.stats, r.factor

    @classmethod
    def reference_features(cls, config: Any) -> set:
        return {("moments", k) for k in _fid_levels(config)}

    def bind_reference(self, reference: Any) -> None:
        self.reference = reference

    def update(self, batch: Any) -> None:
        idx = self.indices_of(batch) if getattr(self.config, "bootstrap", 0) else None
        for k in self.levels:
            add_moments(self, k, batch.features[("pool3", k)])
            if idx is not None:
                self.append(f"rows{k}", batch.features[("pool3", k)], idx)

    def bootstrap(self, draws: list[np.ndarray]) -> dict[str, list[float]]:
        """FID of each resampled sample set (weighted float64 moments) against the fixed reference."""
        out: dict[str, list[float]] = {}
        for k, rid in zip(self.levels, self._ids):
            x = self.rows(f"rows{k}").numpy()
            _, ref, factor = self._pair(k)
            population = getattr(self.config, "fid_covariance", "unbiased") == "population"
            scale = (len(x) - 1) / len(x) if population else 1.0  # as to_population
            vals = []
            for idx in draws:
                mu, sigma = weighted_moments(x, counts(idx, len(x)))
                vals.append(fid_from_stats(FidStats(mu, sigma * scale, len(x)), ref, method=self.config.fid_trace,
                                           factor_b=factor))
            out[rid] = vals
        return out

    def stats(self, level: int) -> FidStats:
        """The samples' FID statistics at ``level``."""
        return moment_stats(self, level)

    def compute(self) -> MetricOutput:
        cfg, ref = self.config, self.reference
        rows, values = [], {}
        population = getattr(cfg, "fid_covariance", "unbiased") == "population"
        for k in self.levels:
            st, ref_st, factor = self._pair(k)
            value = fid_from_stats(st, ref_st, method=cfg.fid_trace, factor_b=factor)
            name = f"FID-{k}" if (k == 0 or cfg.blur_preset == "lafite") else f"FID-{k} ({cfg.blur_preset})"
            cov = "covariance /N (StyleGAN2-ADA FeatureStats)" if population else "covariance /(N-1) (torch-fidelity)"
            rows.append(MetricRow(fid_metric_id(st.n, k, cfg.blur_preset) + ("_popcov" if population else ""), name,
                                  value, n=st.n, higher_is_better=False,
                                  notes=f"{describe_level(cfg.blur_preset, k)}; reference {ref.name} ({ref.n} images); "
                                        f"{self.context.get('inception_tag', 'Inception')} pool3; {cov}"))
            values[k] = value
        self._ids = [r.id for r in rows]
        return MetricOutput(rows=rows, details={"values": values, "trace": cfg.fid_trace,
                                                "covariance": "population" if population else "unbiased"})
