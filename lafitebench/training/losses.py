"""The LAFITE objective as small pure functions (reference section 3; paper eq. 3-7).

Every function returns per-sample losses to be *minimised*; callers take means and weights.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError

CONTRASTIVE_FORMS = ("official", "paper")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``S_ij = cos(a_i, b_j)`` for a [N, D], b [M, D] → [N, M]."""
    return F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).t()


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temp: float, lam: float = 0.0,
                     form: str = "official") -> torch.Tensor:
    """Per-sample contrastive loss between paired batches ``a`` and ``b`` (pairs on the diagonal).

    ``form="paper"``: InfoNCE with logits ``S/τ``: ``-(lam · log softmax_j + (1-lam) · log softmax_i)``
    at the diagonal (paper eq. 5-6; ``lam`` mixes the two directions).
    ``form="official"``: the released code's ``exp(S/τ)`` logits (a double exponential its
    published hyper-parameters rely on) and ``log(τ · p)``: ``-(lam · log(τ p_row) + (1-lam) ·
    log(τ p_col))``; ``lam`` = 0 uses the column softmax (dim 0) only, as the official default.
    ``temp <= 0``: ``-cos(a_i, b_i)`` (the official fallback). Raises InputError for a bad form or lam.
    """
    if form not in CONTRASTIVE_FORMS:
        raise InputError(f"contrastive form must be one of {CONTRASTIVE_FORMS}, got {form!r}", param="contrastive")
    if not 0.0 <= lam <= 1.0:
        raise InputError(f"lam must be in [0, 1], got {lam}", param="lam")
    s = cosine_matrix(a, b)
    if temp <= 0:
        return -torch.diagonal(s)
    if form == "official":
        logits = torch.exp(s / temp)
        row = torch.log(torch.diagonal(F.softmax(logits, dim=1)) * temp)
        col = torch.log(torch.diagonal(F.softmax(logits, dim=0)) * temp)
    else:
        row = torch.diagonal(F.log_softmax(s / temp, dim=1))
        col = torch.diagonal(F.log_softmax(s / temp, dim=0))
    return -(lam * row + (1.0 - lam) * col)


def g_adversarial(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``softplus(-D(G(z, h'), h'))`` (StyleGAN2)."""
    return F.softplus(-fake_logits).flatten()


def d_adversarial(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``softplus(D(x̂, h')) + softplus(-D(x, h'))`` per sample."""
    return F.softplus(fake_logits).flatten() + F.softplus(-real_logits).flatten()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """``‖∇_x D(x)‖²`` per real image (Mescheder et al. 2018); weight γ/2 by the caller."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3])


def path_lengths(images: torch.Tensor, ws: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """StyleGAN2 path lengths ``sqrt(mean_layers ‖J_w^T y‖²)`` with ``y`` random images scaled by 1/sqrt(HW)."""
    noise = torch.randn(images.shape, device=images.device, generator=generator) / (images.shape[2] * images.shape[3]) ** 0.5
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grad.square().sum(2).mean(1).sqrt()


def clip_view_of_generated(images: torch.Tensor, generator: torch.Generator | None, size: int = 224,
                           ratio: float = 0.5, mean: Sequence[float] = CLIP_MEAN,
                           std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """The official CLIP input for generated images in [-1, 1] (differentiable): below ``size``,
    white padding at a random offset; otherwise one random square crop for the whole batch with
    side in [ratio·R, R), bicubic to ``size``; then [-1, 1] → [0, 1] (no clamp) and CLIP mean/std."""
    r = images.shape[-1]
    draw = lambda lo, hi: int(torch.randint(lo, hi, (), generator=generator, device=generator.device  # noqa: E731
                                            if generator is not None else "cpu"))
    if r < size:
        p1, p2 = draw(0, size - r), draw(0, size - r)
        x = F.pad(images, (p1, size - r - p1, p2, size - r - p2), value=1.0)
    else:
        cut = draw(int(ratio * r), r) if int(ratio * r) < r else r
        left, top = (draw(0, r - cut), draw(0, r - cut)) if cut < r else (0, 0)
        x = F.interpolate(images[:, :, top:top + cut, left:left + cut], (size, size), mode="bicubic", align_corners=False)
    x = (x + 1.0) * 0.5
    m = torch.tensor(list(mean), device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(list(std), device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def condition(img_feat: torch.Tensor, txt_feat: torch.Tensor | None, mixing_prob: float,
              generator: torch.Generator | None, mapper: torch.nn.Module | None = None) -> torch.Tensor:
    """The training condition h' per sample (reference section 3): the pseudo-text feature
    ``normalize(0.25 i + 0.75 n)`` (Lafite-G) or the mapper's ``normalize(i + μ + σ ε)``
    (Lafite-NN) with probability ``mixing_prob``, else the perturbed text ``normalize(0.9 t + 0.1 n)``;
    one unit direction n per sample shared by both. Features are L2-normalised first."""
    from ..models.pseudo_text import gaussian_pseudo_text, perturb_text, unit_noise

    i = F.normalize(img_feat.float(), dim=1)
    n = unit_noise(i.shape, device=i.device, generator=generator)
    if mapper is not None:
        eps = torch.randn(i.shape, device=i.device, generator=generator)
        with torch.no_grad():
            pseudo = mapper(i, eps=eps)
    else:
        pseudo = gaussian_pseudo_text(i, noise=n)
    if mixing_prob >= 1.0 or txt_feat is None:
        return pseudo
    t = perturb_text(F.normalize(txt_feat.float(), dim=1), noise=n)
    if mixing_prob <= 0.0:
        return t
    pick = torch.rand([i.shape[0], 1], device=i.device, generator=generator) < mixing_prob
    return torch.where(pick, pseudo, t)


__all__ = ["contrastive_loss", "cosine_matrix", "g_adversarial", "d_adversarial", "r1_penalty", "path_lengths",
           "clip_view_of_generated", "condition", "CONTRASTIVE_FORMS"]
