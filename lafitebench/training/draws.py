"""The random numbers of training, keyed by the global sample position (edm2's practice, as
generation already does it; :mod:`lafitebench.runtime.rng`).

Sample ``k`` of the run (``k = images shown before its step + its place in the global batch``)
draws its latent, condition noise, pseudo-text coin, mapper noise, style-mixing latent, layer noise
and path-length noise from generators seeded by ``(seed, k, "<phase>:<stream>")``. Draws made once
per round (the style-mixing cut-off, the CLIP crops) come from ``(seed, k0, "<phase>:round")``
with ``k0`` the round's first sample. A round is the same ``batch_gpu`` samples whether it runs
on its own process or as one of several rounds of gradient accumulation, so one process with
``--batch-gpu B`` and ``N`` processes of ``B`` each draw the same numbers, and a resumed run needs
no RNG state beyond the position.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..runtime.rng import randn_from, sample_generator, sample_generators
from .loss import GEN_VIEW_RATIO, REAL_VIEW_RATIO, Draws, view_crop

#: What each phase draws besides the latents and the condition noise.
PHASE_PARTS = {"Gmain": ("mix", "gen_crop"), "Greg": ("mix_reg", "pl_noise"), "Dmain": ("mix",), "Dreg": (),
               "Gboth": ("mix", "gen_crop", "mix_reg", "pl_noise"), "Dboth": ("mix",)}


def round_draws(seed: int, phase: str, start: int, n: int, *, z_dim: int, f_dim: int, num_ws: int,
                resolution: int, style_mixing: float, clip_size: int, need_eps: bool, need_gen_crop: bool,
                need_real_crop: bool, layer_noise: bool = True, device: torch.device | str = "cpu") -> Draws:
    """The :class:`~lafitebench.training.loss.Draws` of the round of samples ``start .. start+n-1``."""
    idx = range(start, start + n)

    def randn(stream: str, shape: list[int], rows: range = idx) -> torch.Tensor:
        return randn_from(sample_generators(seed, rows, f"{phase}:{stream}"), shape, device=device)

    g = sample_generator(seed, start, f"{phase}:round")

    def draw(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi, (), generator=g))

    def mixing(stream: str, rows: range) -> tuple[torch.Tensor, int] | None:
        if style_mixing <= 0:
            return None
        cutoff = draw(1, num_ws)
        if float(torch.rand((), generator=g)) >= style_mixing:
            cutoff = num_ws
        return randn(stream, [z_dim], rows), cutoff

    parts = PHASE_PARTS[phase]
    u_rows = [torch.rand((), generator=gen) for gen in sample_generators(seed, idx, f"{phase}:coin")]
    d = Draws(z=randn("z", [z_dim]), noise=F.normalize(randn("cond", [f_dim]), dim=1),
              mix_u=torch.stack(u_rows).to(device))
    if need_eps:
        d.eps = randn("eps", [f_dim])
    half = range(start, start + max(1, n // 2))
    if "mix" in parts:
        d.mix = mixing("zmix", idx)
    if "gen_crop" in parts and need_gen_crop:
        d.gen_crop = view_crop(resolution, clip_size, GEN_VIEW_RATIO, draw)
    if "mix_reg" in parts:
        d.mix_reg = mixing("zmix_reg", half)
    if "pl_noise" in parts:
        d.pl_noise = randn("pl", [3, resolution, resolution], half)
    if need_real_crop:
        d.real_crop = view_crop(resolution, clip_size, REAL_VIEW_RATIO, draw)
    if layer_noise:
        d.layer_noise = sample_generators(seed, idx, f"{phase}:layer_noise")
    return d


__all__ = ["round_draws", "PHASE_PARTS"]
