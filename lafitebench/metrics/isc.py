"""Inception Score (Salimans et al. 2016), numerically identical to torch-fidelity.

IS = exp(mean_i KL(p(y|x_i) || p(y))) per split over the 1008-way softmax of the Inception
network's unbiased logits (no output bias), in float64; reported as mean and std (ddof 0)
over ``splits`` equal splits. Split ``i`` holds rows [i*N//splits, (i+1)*N//splits).

Sample order is part of the protocol:
- ``shuffle=True`` (default, torch-fidelity): rows permuted by
  ``numpy.random.RandomState(seed).permutation(N)`` before splitting (seed 2020 by default);
- ``shuffle=False`` ("ordered", StyleGAN2 / LAFITE): splits in generation order.
"""
from __future__ import annotations

from typing import Any
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..options import Cli, Options, option, positive_int
from .base import Metric, MetricOutput, MetricRow, count_tag

DEFAULT_SPLITS = 10


def is_from_logits(logits: torch.Tensor | np.ndarray, splits: int = DEFAULT_SPLITS, shuffle: bool = True,
                   seed: int = 2020) -> tuple[float, float]:
    """Inception Score mean and std (ddof 0) of unbiased logits [N, C] in sample order.

    Raises InputError when N < splits or splits < 1.
    """
    x = torch.as_tensor(logits).detach().cpu()
    if x.dim() != 2:
        raise InputError(f"Inception Score needs logits shaped [N, C], got {tuple(x.shape)}")
    n = x.shape[0]
    if splits < 1 or n < splits:
        raise InputError(f"Inception Score with {splits} splits needs at least {splits} images, got {n}; "
                         f"provide more images or lower isc_splits", param="isc_splits")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n), :]
    x = x.double()
    p = x.softmax(dim=1)
    log_p = x.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        p_c, log_p_c = p[lo:hi], log_p[lo:hi]
        q = p_c.mean(dim=0, keepdim=True)
        kl = (p_c * (log_p_c - q.log())).sum(dim=1).mean().exp().item()
        scores.append(kl)
    return float(np.mean(scores)), float(np.std(scores))


# --- the metric ------------------------------------------------------------------------------------

ISC_ORDERS = ("shuffled", "ordered")


def parse_order(value: str) -> bool:
    """``shuffled`` → True (torch-fidelity), ``ordered`` → False (generation order)."""
    if value not in ISC_ORDERS:
        raise InputError(f"isc_shuffle: --isc-order must be 'shuffled' or 'ordered', got {value!r}", param="isc_shuffle")
    return value == "shuffled"


@dataclass
class IsOptions(Options):
    """Inception Score splits and their order."""

    PANEL = "IS"

    isc_splits: int = option(10, "Inception Score splits.", cli=Cli("--isc-splits", minimum=1))
    isc_shuffle: bool = option(True, "IS split convention: torch-fidelity's seeded shuffle, or generation order "
                                     "(StyleGAN2/LAFITE).",
                               cli=Cli("--isc-order", str, parse_order, lambda v: "shuffled" if v else "ordered",
                                       "shuffled|ordered"))

    @classmethod
    def check(cls, config: Any) -> None:
        """At least one split."""
        positive_int(config, "isc_splits", 1)


def is_metric_id(n: int, splits: int, shuffle: bool) -> str:
    """``is{N}_{splits}splits_{shuffled|ordered}``."""
    return f"is{count_tag(n)}_{splits}splits_{'shuffled' if shuffle else 'ordered'}"


class IsMetric(Metric):
    """Inception Score from the level-0 unbiased logits (rows gathered in sample order)."""

    name = "is"
    needs_reference = False
    higher_is_better = True

    def setup(self) -> None:
        self.add_state("logits", reduce="cat", row_shape=(int(self.context.get("logits_dim", 1008)),),
                       dtype=torch.float32)

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any) -> None:
        if not isinstance(config.isc_splits, int) or config.isc_splits < 1:
            raise InputError(f"isc_splits must be a positive integer, got {config.isc_splits!r}", param="isc_splits")
        n = len(samples.items)
        if n < config.isc_splits:
            raise InputError(f"Inception Score with {config.isc_splits} splits needs at least {config.isc_splits} "
                             f"images, got {n}; generate more or lower isc_splits", param="isc_splits")

    @classmethod
    def sample_features(cls, config: Any) -> set:
        return {("logits", 0)}

    def update(self, batch: Any) -> None:
        self.append("logits", batch.features[("logits", 0)], self.indices_of(batch))

    def compute(self) -> MetricOutput:
        cfg = self.config
        logits = self.rows("logits")
        mean, std = is_from_logits(logits, cfg.isc_splits, cfg.isc_shuffle, cfg.seed)
        n = int(len(logits))
        order = f"shuffled (numpy RandomState({cfg.seed}).permutation)" if cfg.isc_shuffle else "generation order"
        row = MetricRow(is_metric_id(n, cfg.isc_splits, cfg.isc_shuffle), "IS", mean, std, n, True,
                        f"{cfg.isc_splits} splits, {order}, std ddof 0; "
                        f"{self.context.get('inception_tag', 'Inception')} unbiased logits")
        self._id = row.id
        return MetricOutput(rows=[row], details={"mean": mean, "std": std, "splits": cfg.isc_splits,
                                                 "shuffle": cfg.isc_shuffle,
                                                 "seed": cfg.seed if cfg.isc_shuffle else None})

    def bootstrap(self, draws: list[Any]) -> dict[str, list[float]]:
        """IS (same splits, order and seed) of each resampled set of logits."""
        cfg, logits = self.config, self.rows("logits")
        return {self._id: [is_from_logits(logits[torch.as_tensor(idx)], cfg.isc_splits, cfg.isc_shuffle, cfg.seed)[0]
                           for idx in draws]}
