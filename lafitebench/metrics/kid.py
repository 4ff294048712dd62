"""Kernel Inception Distance (Bińkowski et al. 2018), numerically identical to torch-fidelity.

KID = mean over ``subsets`` random subset pairs of the unbiased MMD^2 estimate with the cubic
polynomial kernel k(x, y) = (x·y / d + 1)^3 on 2048-d pool3 features; the reported std is
over subsets (ddof 0). Subsets of ``subset_size`` rows are drawn without replacement from each
set with one ``numpy.random.RandomState(seed)``: first the generated set's rows, then the
reference set's, per subset — torch-fidelity's order, so with the same features and seed the
result is the same number. Like torch-fidelity, the kernels are evaluated in float32.
torch-fidelity's default subset size is 1000 and it refuses smaller sets; so do we (an explicit
smaller ``subset_size`` is allowed and recorded in the metric id).
"""
from __future__ import annotations

from typing import Any
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..options import Cli, Options, option, positive_int
from .base import Metric, MetricOutput, MetricRow, count_tag

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1) -> np.ndarray:
    """(x y^T / d + coef0)^degree, in the dtype of ``x`` (float32 for Inception features)."""
    gamma = 1.0 / x.shape[1]
    return (np.matmul(x, y.T) * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2: off-diagonal means of K_xx and K_yy minus twice the mean of K_xy."""
    m = k_xx.shape[0]
    kt_xx = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()
    kt_yy = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
    k_xy_sum = k_xy.sum(axis=0).sum()
    return (kt_xx + kt_yy) / (m * (m - 1)) - 2 * k_xy_sum / (m * m)


def check_kid_sizes(n1: int, n2: int, subset_size: int, subsets: int) -> None:
    """Raise InputError unless both sets have at least ``subset_size`` rows (and sizes are sane)."""
    if subsets < 1:
        raise InputError(f"kid_subsets must be >= 1, got {subsets}", param="kid_subsets")
    if subset_size < 2:
        raise InputError(f"kid_subset_size must be >= 2, got {subset_size}", param="kid_subset_size")
    if n1 < subset_size or n2 < subset_size:
        raise InputError(
            f"KID subset size {subset_size} is larger than a set (generated: {n1}, reference: {n2} images); "
            f"provide more images or pass a smaller kid_subset_size, which is then part of "
            f"the metric id", param="kid_subset_size")


def kid_from_features(features_1: torch.Tensor | np.ndarray, features_2: torch.Tensor | np.ndarray,
                      subsets: int = DEFAULT_SUBSETS, subset_size: int = DEFAULT_SUBSET_SIZE,
                      seed: int = 2020) -> tuple[float, float]:
    """KID mean and std (ddof 0) between two feature matrices [N, D], [M, D].

    ``features_1`` is the generated set (its subset is drawn first), ``features_2`` the reference.
    Raises InputError when a set has fewer than ``subset_size`` rows or dims differ.
    """
    f1 = (features_1.detach().cpu().numpy() if torch.is_tensor(features_1) else np.asarray(features_1))
    f2 = (features_2.detach().cpu().numpy() if torch.is_tensor(features_2) else np.asarray(features_2))
    f1, f2 = f1.astype(np.float32, copy=False), f2.astype(np.float32, copy=False)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise InputError(f"KID needs two feature matrices of equal width, got {f1.shape} and {f2.shape}")
    n1, n2 = len(f1), len(f2)
    check_kid_sizes(n1, n2, subset_size, subsets)
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(n1, subset_size, replace=False)]
        y = f2[rng.choice(n2, subset_size, replace=False)]
        mmds[i] = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y))
    return float(np.mean(mmds)), float(np.std(mmds))


# --- the metric ------------------------------------------------------------------------------------

@dataclass
class KidOptions(Options):
    """KID's subsets (torch-fidelity: 100 subsets of 1000)."""

    PANEL = "FID / KID"

    kid_subset_size: int = option(1000, "KID subset size (lowered to the set size when left at 1000).",
                                  cli=Cli("--kid-subset-size", minimum=2))
    kid_subsets: int = option(100, "Number of KID subsets.", cli=Cli("--kid-subsets", minimum=1))

    @classmethod
    def check(cls, config: Any) -> None:
        """Integers: subset size >= 2, subsets >= 1."""
        for name, minimum in (("kid_subset_size", 2), ("kid_subsets", 1)):
            positive_int(config, name, minimum)


def kid_metric_id(n: int, subset_size: int, subsets: int) -> str:
    """``kid{N}_s{subset}x{subsets}``."""
    return f"kid{count_tag(n)}_s{subset_size}x{subsets}"


class KidMetric(Metric):
    """KID from the level-0 pool3 features of both sets (rows gathered in sample order)."""

    name = "kid"
    needs_reference = True
    higher_is_better = False

    def setup(self) -> None:
        self.add_state("features", reduce="cat", row_shape=(int(self.context.get("pool3_dim", 2048)),),
                       dtype=torch.float32)
        self.reference = None

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any) -> None:
        n_ref = len(reference.items) if reference is not None else 0
        check_kid_sizes(len(samples.items), n_ref, config.kid_subset_size, config.kid_subsets)

    @classmethod
    def sample_features(cls, config: Any) -> set:
        return {("pool3", 0)}

    @classmethod
    def reference_features(cls, config: Any) -> set:
        return {("rows", 0)}

    def bind_reference(self, reference: Any) -> None:
        self.reference = reference

    def update(self, batch: Any) -> None:
        self.append("features", batch.features[("pool3", 0)], self.indices_of(batch))

    def compute(self) -> MetricOutput:
        cfg, ref = self.config, self.reference
        feats = self.rows("features")
        ref_feats = ref.levels[0].features
        check_kid_sizes(len(feats), len(ref_feats), cfg.kid_subset_size, cfg.kid_subsets)
        mean, std = kid_from_features(feats, ref_feats, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)
        n = int(len(feats))
        row = MetricRow(kid_metric_id(n, cfg.kid_subset_size, cfg.kid_subsets), "KID", mean, std, n, False,
                        f"unbiased MMD^2, kernel (x.y/2048+1)^3, {cfg.kid_subsets} subsets of {cfg.kid_subset_size} "
                        f"(seed {cfg.seed}); reference {ref.name} ({ref.n})")
        self._id = row.id
        return MetricOutput(rows=[row], details={"mean": mean, "std": std})

    def bootstrap(self, draws: list[np.ndarray]) -> dict[str, list[float]]:
        """KID of each resampled sample set (same subsets seed) against the fixed reference."""
        cfg, feats = self.config, self.rows("features").numpy()
        ref = self.reference.levels[0].features
        return {self._id: [kid_from_features(feats[idx], ref, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)[0]
                           for idx in draws]}
