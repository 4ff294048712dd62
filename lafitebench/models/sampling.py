"""Seeded sampling: every random draw that shapes sample ``i`` comes from ``(seed, i)``.

z, the synthesis layers' random noise, the Lafite-G pseudo-text direction and the Lafite-NN
perturbation's ε each have their own stream (:mod:`lafitebench.runtime.rng`), drawn on the CPU
per sample, so an image depends on its seed and index only — not on the batch size, the batch
it falls in, or the number of processes generating.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..runtime.rng import randn_per_sample, sample_generators


def latents(seed: int, indices: Sequence[int], z_dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """z [N, z_dim] ~ N(0, I), row k from stream ``"z"`` of sample ``indices[k]``."""
    return randn_per_sample(seed, indices, [z_dim], "z", device=device)


def unit_directions(seed: int, indices: Sequence[int], dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit Gaussian directions [N, dim] for pseudo-text features (stream ``"pseudo_text"``);
    pass them as ``noise=`` to :func:`~lafitebench.models.pseudo_text.gaussian_pseudo_text`."""
    return F.normalize(randn_per_sample(seed, indices, [dim], "pseudo_text", device=device), dim=1)


def perturbation_eps(seed: int, indices: Sequence[int], dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """ε [N, dim] for the Lafite-NN perturbation network (stream ``"eps"``); pass as ``eps=``."""
    return randn_per_sample(seed, indices, [dim], "eps", device=device)


@torch.no_grad()
def generate(G: nn.Module, text_features: torch.Tensor, seed: int, indices: Sequence[int], *,
             truncation_psi: float = 1.0, noise_mode: str = "const", per_sample: bool | None = None,
             force_fp32: bool = True) -> torch.Tensor:
    """Images ``G(z_i, h_i)`` in about [-1, 1] for samples ``indices`` (float32 [N, C, R, R]).

    ``text_features`` [N, f_dim] are the L2-normalised conditions of those samples, in the same
    order. z and (``noise_mode="random"``) the layer noise come from per-sample streams.

    ``per_sample`` runs G on one sample at a time (default: on CPU). BLAS and oneDNN pick
    kernels by batch size, so a batched forward changes float rounding with the batch; one at
    a time makes every image bit-identical whatever the batching, and on CPU it is also faster
    (1.3-1.5 vs 0.9 images/s at 256², batch 8, measured side by side on 2 cores). On CUDA the
    default is one batched forward (the same seeds, float-rounding differences only).
    ``force_fp32=False`` lets the synthesis layers that the network marks fp16 run in half
    precision (CUDA only; the official generation default).

    Raises:
        InputError: ``text_features`` rows do not match ``indices``.
    """
    indices = [int(i) for i in indices]
    if not isinstance(text_features, torch.Tensor) or text_features.shape[0] != len(indices):
        got = tuple(text_features.shape) if isinstance(text_features, torch.Tensor) else type(text_features).__name__
        raise InputError(f"text_features must have one row per sample index ({len(indices)}), got {got}")
    device = next(G.parameters()).device
    z = latents(seed, indices, int(G.z_dim), device)
    h = text_features.to(device)
    noise = sample_generators(seed, indices, "noise") if noise_mode == "random" else None
    if per_sample is None:
        per_sample = device.type == "cpu"
    kw = dict(truncation_psi=truncation_psi, noise_mode=noise_mode, force_fp32=force_fp32)
    if not per_sample:
        return G(z, h, noise_generator=noise, **kw)
    return torch.cat([G(z[k:k + 1], h[k:k + 1], noise_generator=None if noise is None else noise[k:k + 1], **kw)
                      for k in range(len(indices))])


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """The official quantisation of generated images: ``clamp(x * 127.5 + 128, 0, 255)`` → uint8."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)
