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

import numpy as np
import torch

from ..errors import InputError

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
                         f"provide more images or lower isc_splits (--isc-splits)")
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
