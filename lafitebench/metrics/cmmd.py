"""CMMD (Jayasumana et al., CVPR 2024): MMD with a Gaussian RBF kernel on CLIP embeddings.

The estimator of the paper's code (google-research/cmmd ``distance.mmd``), with
``k(x, y) = exp(-||x - y||² / (2σ²))``, σ = 10 and the result scaled by 1000::

    CMMD = scale · ( mean K_xx + mean K_yy - 2 mean K_xy )

where the means run over every pair, the diagonal included (the biased V-statistic, the
default). ``cmmd_estimator="unbiased"`` drops the diagonals of K_xx and K_yy (the U-statistic).
The kernel sums are accumulated in float64 over blocks of ``block`` rows, so 50,000 × 50,000
needs ``O(block · n)`` memory, not ``O(n²)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..encoders.backbone import backbone_option
from ..errors import InputError
from ..options import Cli, Options, option
from ..runtime.device import resolve_device
from .base import MetricOutput, MetricRow, count_tag
from .bootstrap import counts
from .embedding import EmbeddingMetric, blocks_progress, check_pair

CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0
ESTIMATORS = ("biased", "unbiased")
BLOCK = 4096


@dataclass
class CmmdOptions(Options):
    """CMMD's backbone and estimator."""

    PANEL = "Backbones"

    cmmd_backbone: str = option("clip-vitl14-336", "Backbone of cmmd (the paper: CLIP ViT-L/14@336).",
                                cli=Cli("--cmmd-backbone", metavar="NAME"))
    cmmd_estimator: str = option("biased", "CMMD estimator: biased (the paper's code) or unbiased.",
                                 cli=Cli("--cmmd-estimator", metavar="biased|unbiased"))

    @classmethod
    def check(cls, config: Any) -> None:
        """A known backbone and estimator."""
        backbone_option(config, "cmmd_backbone")
        if config.cmmd_estimator not in ESTIMATORS:
            raise InputError(f"cmmd_estimator must be one of {', '.join(ESTIMATORS)}, got {config.cmmd_estimator!r}",
                             param="cmmd_estimator")


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(1)


def kernel_block_sums(x: torch.Tensor, y: torch.Tensor, sigma: float, block: int,
                      weights_x: torch.Tensor | None = None, weights_y: torch.Tensor | None = None,
                      tick: Callable[[], None] | None = None) -> torch.Tensor:
    """``Σ_ij wx_i K(x_i, y_j) wy_j`` for each weight row (``weights_x`` [B, n], ``weights_y`` [B, m];
    None: all ones), in float64 over ``block``×``block`` tiles (memory ``O(block · (block + B))``),
    on the device of ``x``; ``tick`` is called after each block of rows (progress)."""
    gamma = 1.0 / (2 * sigma**2)
    x, y = x.double(), y.to(x.device, torch.float64)
    ones = {"dtype": torch.float64, "device": x.device}
    wx = weights_x.to(x.device) if weights_x is not None else torch.ones(1, len(x), **ones)
    wy = weights_y.to(x.device) if weights_y is not None else torch.ones(1, len(y), **ones)
    total = torch.zeros(max(wx.shape[0], wy.shape[0]), **ones)
    nx, ny = _sq_norms(x), _sq_norms(y)
    for i in range(0, len(x), block):
        xi = x[i:i + block]
        acc = torch.zeros(wy.shape[0], xi.shape[0], **ones)
        for j in range(0, len(y), block):
            d2 = nx[i:i + block, None] + ny[None, j:j + block] - 2 * xi @ y[j:j + block].T
            acc += wy[:, j:j + block] @ torch.exp(-gamma * d2).T
        total += (wx[:, i:i + block] * acc).sum(1)
        if tick is not None:
            tick()
    return total.cpu()


def cmmd_from_features(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, *, sigma: float = CMMD_SIGMA,
                       scale: float = CMMD_SCALE, estimator: str = "biased", block: int = BLOCK,
                       tags: tuple[str, str] | None = None, device: str | torch.device = "cpu",
                       tick: Callable[[], None] | None = None) -> float:
    """CMMD between embeddings ``x`` [n, d] and ``y`` [m, d] (see the module docstring), computed
    on ``device``; ``tick`` is called after each block of rows (``blocks(n, m)`` calls in all).

    Raises:
        InputError: different widths or tags, an unknown estimator, or too few rows (the unbiased
            form needs 2 per set, the biased 1).
    """
    x, y = torch.as_tensor(np.asarray(x)), torch.as_tensor(np.asarray(y))
    check_pair(x, y, "CMMD", *(tags or (None, None)))
    if estimator not in ESTIMATORS:
        raise InputError(f"cmmd_estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}",
                         param="cmmd_estimator")
    need = 2 if estimator == "unbiased" else 1
    if len(x) < need or len(y) < need:
        raise InputError(f"CMMD ({estimator}) needs at least {need} embeddings per set, got {len(x)} and {len(y)}")
    return float(cmmd_replicates(x, y, None, sigma=sigma, scale=scale, estimator=estimator, block=block,
                                 device=device, tick=tick)[0])


def blocks(n: int, m: int, block: int = BLOCK, reference: bool = True) -> int:
    """How many row blocks one CMMD computation walks (its progress total; ``reference=False``:
    the reference's own kernel sum is already known)."""
    return 2 * -(-n // block) + (-(-m // block) if reference else 0)


def cmmd_replicates(x: torch.Tensor, y: torch.Tensor, count_rows: np.ndarray | None, *, sigma: float, scale: float,
                    estimator: str, block: int, device: str | torch.device = "cpu",
                    tick: Callable[[], None] | None = None, syy: torch.Tensor | None = None) -> np.ndarray:
    """CMMD for each row of ``count_rows`` [B, n] (how often each x row is drawn; None: once each),
    the reference ``y`` fixed; one blocked pass over K_xx for all rows. ``syy``: the reference's
    kernel sum ``Σ K(y_i, y_j)`` when already computed (:func:`kernel_block_sums` of ``y``)."""
    x, y = x.to(device, torch.float64), y.to(device, torch.float64)
    n, m = len(x), len(y)
    c = torch.ones(1, n, dtype=torch.float64) if count_rows is None else torch.as_tensor(count_rows, dtype=torch.float64)
    sxx = kernel_block_sums(x, x, sigma, block, c, c, tick)
    if syy is None:
        syy = kernel_block_sums(y, y, sigma, block, tick=tick)
    sxy = kernel_block_sums(x, y, sigma, block, c, None, tick)
    if estimator == "unbiased":  # K(x, x) = 1: the n self-pairs of each multiset sum to n
        k_xx = (sxx - n) / (n * (n - 1))
        k_yy = (syy - m) / (m * (m - 1))
    else:
        k_xx, k_yy = sxx / (n * n), syy / (m * m)
    k_xy = sxy / (n * m)
    return (scale * (k_xx + k_yy - 2 * k_xy)).numpy()


class CmmdMetric(EmbeddingMetric):
    """CMMD on ``cmmd_backbone`` features (L2-normalised CLIP embeddings under the default preset)."""

    name = "cmmd"
    higher_is_better = False
    backbone_option = "cmmd_backbone"

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any) -> None:
        need = 2 if config.cmmd_estimator == "unbiased" else 1
        n_ref = len(reference.items) if reference is not None else 0
        if len(samples.items) < need or n_ref < need:
            raise InputError(f"CMMD ({config.cmmd_estimator}) needs at least {need} images per set (samples: "
                             f"{len(samples.items)}, reference: {n_ref})")
        cls.spec(config).check()

    def compute(self) -> MetricOutput:
        fs, x, y = self.pair()
        est, device = self.config.cmmd_estimator, resolve_device(self.config.device)
        with blocks_progress(self.config, "CMMD kernel blocks", blocks(len(x), len(y))) as tick:
            # the reference's kernel sum once: the bootstrap replicates reuse it
            self._syy = kernel_block_sums(y.to(device), y.to(device), CMMD_SIGMA, BLOCK, tick=tick)
            value = float(cmmd_replicates(x, y, None, sigma=CMMD_SIGMA, scale=CMMD_SCALE, estimator=est, block=BLOCK,
                                          device=device, tick=tick, syy=self._syy)[0])
        self._ids = [f"cmmd{count_tag(len(x))}[{fs.tag}" + (",unbiased]" if est == "unbiased" else "]")]
        row = MetricRow(self._ids[0], f"CMMD[{fs.backbone}]", value, n=len(x), higher_is_better=False,
                        notes=f"MMD^2 x {CMMD_SCALE:g}, RBF sigma={CMMD_SIGMA:g}, {est} estimator, on {fs.tag} "
                              f"embeddings; reference {self.reference_name} ({len(y)})")
        return MetricOutput(rows=[row], details={"value": value, "estimator": est, "feature": fs.tag})

    def bootstrap(self, draws: list[np.ndarray]) -> dict[str, list[float]]:
        fs, x, y = self.pair()
        rows = np.stack([counts(idx, len(x)) for idx in draws])
        total = blocks(len(x), len(y), reference=False)
        with blocks_progress(self.config, f"CMMD bootstrap ({len(draws)})", total) as tick:
            vals = cmmd_replicates(x, y, rows, sigma=CMMD_SIGMA, scale=CMMD_SCALE, estimator=self.config.cmmd_estimator,
                                   block=BLOCK, device=resolve_device(self.config.device), tick=tick, syy=self._syy)
        return {self._ids[0]: list(map(float, vals))}


__all__ = ["CmmdOptions", "CmmdMetric", "cmmd_from_features", "cmmd_replicates", "CMMD_SIGMA", "CMMD_SCALE"]
