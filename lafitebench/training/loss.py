"""The LAFITE objective (reference section 3; paper eq. 3-7): the loss terms as small pure
functions, and one function per training phase (``Gmain``, ``Greg``, ``Dmain``, ``Dreg``).

A phase is a deterministic function of the networks, the round's batch and its :class:`Draws`
(every random number it uses, made by :mod:`lafitebench.training.draws`); it returns per-sample
losses (the caller backpropagates ``loss.mean() * gain``) and the terms it logs. Nothing here
reads files or touches optimizers: the loop in :mod:`lafitebench.training.training_loop` does.
Each phase follows the official ``StyleGAN2Loss.accumulate_gradients`` term by term, which
``tests/parity`` checks gradient by gradient against the official code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..encoders.clip import CLIP_MEAN, CLIP_STD
from ..errors import InputError
from ..models.pseudo_text import gaussian_pseudo_text, perturb_text

CONTRASTIVE_FORMS = ("official", "paper")
#: The official code's mixing cut-offs: above this the pseudo-text is used for every sample,
#: below ``1 -`` it the (perturbed) text, in between a per-sample coin (training/loss.py).
MIXING_ALL = 0.99
#: Side of the CLIP view of images in the official loss (``full_preprocess``): 224, whatever the CLIP.
CLIP_VIEW = 224
#: Crop ratios of the official CLIP views: generated images (itc) and real images (Lafite-NN).
GEN_VIEW_RATIO = 0.5
REAL_VIEW_RATIO = 0.99


# ------------------------------------------------------------------------------------ terms

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
    log(τ p_col))``. With ``lam`` 0 or 1 only the used direction is computed, as the official
    code does (the other one may underflow to log 0 at small τ, and 0 · -inf is NaN).
    ``temp <= 0``: ``-cos(a_i, b_i)`` (the official fallback). Raises InputError for a bad form or lam.
    """
    if form not in CONTRASTIVE_FORMS:
        raise InputError(f"contrastive form must be one of {CONTRASTIVE_FORMS}, got {form!r}", param="contrastive")
    if not 0.0 <= lam <= 1.0:
        raise InputError(f"lam must be in [0, 1], got {lam}", param="lam")
    s = cosine_matrix(a, b)
    if temp <= 0:
        return -torch.diagonal(s)

    def direction(dim: int) -> torch.Tensor:
        if form == "official":
            return torch.log(torch.diagonal(F.softmax(torch.exp(s / temp), dim=dim)) * temp)
        return torch.diagonal(F.log_softmax(s / temp, dim=dim))

    if lam == 0.0:
        return -direction(0)
    if lam == 1.0:
        return -direction(1)
    return -(lam * direction(1) + (1.0 - lam) * direction(0))


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


def path_lengths(images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 path lengths ``sqrt(mean_layers ‖J_w^T y‖²)``; ``noise`` is standard normal of the
    images' shape, scaled here by 1/sqrt(HW) (the official ``pl_noise``)."""
    y = noise.to(images.device) / (images.shape[2] * images.shape[3]) ** 0.5
    (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
    return grad.square().sum(2).mean(1).sqrt()


def view_crop(resolution: int, size: int, ratio: float, draw: Callable[[int, int], int]) -> tuple[int, ...]:
    """The random part of the official CLIP view, drawn in the official order with ``draw(lo, hi)``
    (an integer in [lo, hi)): below ``size`` the two paddings ``(left, top)``; otherwise
    ``(cut, left, top)`` with ``cut`` in ``[ratio·R, R)``."""
    if resolution < size:
        return (draw(0, size - resolution), draw(0, size - resolution))
    lo = int(ratio * resolution)
    cut = draw(lo, resolution) if lo < resolution else resolution
    return (cut, draw(0, resolution - cut) if cut < resolution else 0, draw(0, resolution - cut) if cut < resolution else 0)


def clip_view(images: torch.Tensor, crop: Sequence[int], size: int = CLIP_VIEW, mean: Sequence[float] = CLIP_MEAN,
              std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """The official CLIP input for images in [-1, 1] (differentiable; ``full_preprocess``): below
    ``size`` white padding by ``crop = (left, top)``; otherwise the square ``crop = (cut, left,
    top)`` of the whole batch, bicubic to ``size``; then [-1, 1] → [0, 1] (no clamp) and CLIP mean/std."""
    r = images.shape[-1]
    if r < size:
        p1, p2 = crop
        x = F.pad(images, (p1, size - r - p1, p2, size - r - p2), value=1.0)
    else:
        cut, left, top = crop
        x = F.interpolate(images[:, :, top:top + cut, left:left + cut], (size, size), mode="bicubic", align_corners=False)
    x = (x + 1.0) * 0.5
    m = torch.tensor(list(mean), device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(list(std), device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def condition(img_feat: torch.Tensor, txt_feat: torch.Tensor | None, mixing_prob: float, noise: torch.Tensor,
              mix_u: torch.Tensor | None = None, pseudo: torch.Tensor | None = None) -> torch.Tensor:
    """The training condition h' per sample (reference section 3): the pseudo-text feature
    (``pseudo`` when given, e.g. Lafite-NN's; else Lafite-G's ``normalize(0.25 i + 0.75 n)``) with
    probability ``mixing_prob``, else the perturbed text ``normalize(0.9 t + 0.1 n)``; one unit
    direction ``noise`` per sample shared by both, ``mix_u`` uniform per sample (the coin).
    Cut-offs as the official code: ``mixing_prob > 0.99`` pseudo-text only, ``< 0.01`` text only."""
    i = F.normalize(img_feat.float(), dim=1)
    p = pseudo if pseudo is not None else gaussian_pseudo_text(i, noise=noise)
    if mixing_prob > MIXING_ALL or txt_feat is None:
        return p
    t = perturb_text(F.normalize(txt_feat.float(), dim=1), noise=noise)
    if mixing_prob < 1.0 - MIXING_ALL:
        return t
    return torch.where(mix_u.view(-1, 1).to(i.device) < mixing_prob, p, t)


# ------------------------------------------------------------------------------------ phases

@dataclass
class Objective:
    """The options that shape the loss (a slice of the training config)."""

    mixing_prob: float = 1.0
    itc: float = 10.0
    itd: float = 10.0
    temp: float = 0.5
    lam: float = 0.0
    contrastive: str = "official"
    semantic_term: str = "official"
    gamma: float = 10.0
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    nn_features: str = "stored"

    @classmethod
    def from_config(cls, cfg: Any) -> "Objective":
        """The objective of a :class:`~lafitebench.training.config.TrainConfig`."""
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__ if hasattr(cfg, k)})


@dataclass
class Draws:
    """Every random number one round of one phase uses (rows are the round's samples).

    ``noise``: unit directions of the condition; ``mix_u``: the pseudo-text coin; ``eps``: the
    Lafite-NN mapper's noise; ``mix``/``mix_reg``: style mixing of the main / regularisation
    generator pass, ``(second latent, cut-off layer)`` (cut-off = number of ws: no mixing);
    ``gen_crop``/``real_crop``: the CLIP views (:func:`view_crop`); ``pl_noise``: path-length
    noise of the first half; ``layer_noise``: one generator per sample for the synthesis noise
    (None: the constant noise buffers).
    """

    z: torch.Tensor
    noise: torch.Tensor
    mix_u: torch.Tensor | None = None
    eps: torch.Tensor | None = None
    mix: tuple[torch.Tensor, int] | None = None
    mix_reg: tuple[torch.Tensor, int] | None = None
    gen_crop: tuple[int, ...] | None = None
    real_crop: tuple[int, ...] | None = None
    pl_noise: torch.Tensor | None = None
    layer_noise: Sequence[torch.Generator] | None = None


@dataclass
class Networks:
    """What the phases run: G and D (training copies), the frozen CLIP image encoder (for itc and
    the official Lafite-NN view; ``encode_image`` on :func:`clip_view` input) and the mapper."""

    G: torch.nn.Module
    D: torch.nn.Module
    clip: Any = None
    clip_norm: tuple[Sequence[float], Sequence[float]] = (CLIP_MEAN, CLIP_STD)
    clip_size: int = CLIP_VIEW
    mapper: torch.nn.Module | None = None

    def clip_features(self, images: torch.Tensor, crop: Sequence[int]) -> torch.Tensor:
        """The frozen CLIP's image features of the official view of ``images`` (:func:`clip_view`)."""
        return self.clip.encode_image(clip_view(images, crop, self.clip_size, *self.clip_norm))


@dataclass
class PhaseLoss:
    """A phase's per-sample loss (backpropagate ``loss.mean() * gain``) and its logged terms
    (per-sample tensors, detached); ``pl_lengths`` for Greg."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    pl_lengths: torch.Tensor | None = None


Contrast = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _contrast(obj: Objective) -> Contrast:
    return lambda a, b: contrastive_loss(a, b, obj.temp, obj.lam, obj.contrastive)


def training_condition(nets: Networks, obj: Objective, real: torch.Tensor, img_f: torch.Tensor,
                       txt_f: torch.Tensor | None, d: Draws) -> torch.Tensor:
    """h' of a round (:func:`condition`); Lafite-NN's pseudo-text from the mapper, on the stored
    image feature (``nn_features="stored"``) or, as the official code's NN branch did, on the CLIP
    feature of a 0.99 crop of the (flipped) real image (``"clip-view"``)."""
    pseudo = None
    if nets.mapper is not None and obj.mixing_prob >= 1.0 - MIXING_ALL:
        with torch.no_grad():
            if obj.nn_features == "clip-view":
                feats = nets.clip_features(real, d.real_crop)
            else:
                feats = img_f
            pseudo = nets.mapper(F.normalize(feats.float(), dim=1), eps=d.eps)
    return condition(img_f, txt_f, obj.mixing_prob, d.noise, d.mix_u, pseudo)


def generate(G: torch.nn.Module, z: torch.Tensor, h: torch.Tensor, mix: tuple[torch.Tensor, int] | None,
             layer_noise: Sequence[torch.Generator] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, ws)`` of the training generator with style mixing: layers from ``cutoff`` on
    take the second latent's w (the official ``run_G``; ``w_avg`` tracks the first latents only)."""
    ws = G.mapping(z)
    if mix is not None and mix[1] < ws.shape[1]:
        z2, cutoff = mix
        ws = torch.cat([ws[:, :cutoff], G.mapping(z2.to(z.device), update_w_avg=False)[:, cutoff:]], dim=1)
    mode = "random" if layer_noise is not None else "const"
    return G.synthesis(ws, h, noise_mode=mode, noise_generator=layer_noise), ws


def g_main(nets: Networks, obj: Objective, real: torch.Tensor, img_f: torch.Tensor, txt_f: torch.Tensor | None,
           d: Draws, contrast: Contrast | None = None) -> PhaseLoss:
    """Gmain: ``softplus(-D(G(z,h'),h')) + itc·L_clip(G(z,h'), h') + itd·L_d(G(z,h'), h')`` (eq. 3-6).
    ``contrast`` replaces the contrastive term (e.g. with negatives gathered across ranks)."""
    contrast = contrast or _contrast(obj)
    h = training_condition(nets, obj, real, img_f, txt_f, d)
    img, _ = generate(nets.G, d.z, h, d.mix, d.layer_noise)
    logits, d_fts = nets.D(img, h, semantic_term=obj.semantic_term)
    adv = g_adversarial(logits)
    loss, terms = adv, {"G_adv": adv, "scores_fake": logits.flatten()}
    if obj.itc > 0:
        itc = contrast(nets.clip_features(img, d.gen_crop), h)
        loss, terms["G_itc"] = loss + obj.itc * itc.mean(), itc
    if obj.itd > 0:
        itd = contrast(d_fts, h)
        loss, terms["G_itd"] = loss + obj.itd * itd.mean(), itd
    terms["G_loss"] = loss
    return PhaseLoss(loss, terms)


def g_reg(nets: Networks, obj: Objective, real: torch.Tensor, img_f: torch.Tensor, txt_f: torch.Tensor | None,
          d: Draws, pl_mean: torch.Tensor) -> PhaseLoss:
    """Greg: path-length penalty ``(‖J_wᵀy‖ - a)²·pl_weight`` on the first half of the round, ``a``
    the running mean ``pl_mean`` moved toward this round's mean lengths (StyleGAN2; official
    ``pl_batch_shrink`` 2). Returns the lengths so the loop can update ``pl_mean``."""
    n = max(1, d.z.shape[0] // 2)
    h = training_condition(nets, obj, real, img_f, txt_f, d)[:n]
    mix = None if d.mix_reg is None else (d.mix_reg[0][:n], d.mix_reg[1])
    noise = None if d.layer_noise is None else d.layer_noise[:n]
    img, ws = generate(nets.G, d.z[:n], h, mix, noise)
    lengths = path_lengths(img, ws, d.pl_noise[:n])
    a = pl_mean.lerp(lengths.mean(), obj.pl_decay)
    penalty = (lengths - a).square()
    loss = penalty * obj.pl_weight + img[:, 0, 0, 0] * 0  # the official zero term keeps every output in the graph
    return PhaseLoss(loss, {"pl_penalty": penalty, "G_reg": penalty * obj.pl_weight}, lengths.detach())


def d_main(nets: Networks, obj: Objective, real: torch.Tensor, img_f: torch.Tensor, txt_f: torch.Tensor | None,
           d: Draws, contrast: Contrast | None = None) -> PhaseLoss:
    """Dmain: ``softplus(D(G(z,h'),h')) + softplus(-D(x,h')) + itd·L_d(x, h')`` (eq. 4-5)."""
    contrast = contrast or _contrast(obj)
    h = training_condition(nets, obj, real, img_f, txt_f, d)
    with torch.no_grad():
        fake, _ = generate(nets.G, d.z, h, d.mix, d.layer_noise)
    fake_logits, _ = nets.D(fake, h, semantic_term=obj.semantic_term)
    real_logits, real_fts = nets.D(real.detach(), h, semantic_term=obj.semantic_term)
    adv = d_adversarial(real_logits, fake_logits)
    loss = adv
    terms = {"D_adv": adv, "scores_fake": fake_logits.flatten(), "scores_real": real_logits.flatten(),
             "D_real_minus_fake": real_logits.flatten() - fake_logits.flatten()}
    if obj.itd > 0:
        itd = contrast(real_fts, h)
        loss, terms["D_itd"] = loss + obj.itd * itd.mean(), itd
    terms["D_loss"] = loss
    return PhaseLoss(loss, terms)


def d_reg(nets: Networks, obj: Objective, real: torch.Tensor, img_f: torch.Tensor, txt_f: torch.Tensor | None,
          d: Draws) -> PhaseLoss:
    """Dreg: R1 ``γ/2 · ‖∇_x D(x, h')‖²`` on the real images (Mescheder et al. 2018)."""
    h = training_condition(nets, obj, real, img_f, txt_f, d)
    x = real.detach().requires_grad_(True)
    logits, _ = nets.D(x, h, semantic_term=obj.semantic_term)
    penalty = r1_penalty(logits, x)
    loss = penalty * (obj.gamma / 2) + logits.flatten() * 0
    return PhaseLoss(loss, {"r1_penalty": penalty, "D_reg": penalty * (obj.gamma / 2), "scores_real": logits.flatten()})


__all__ = ["contrastive_loss", "cosine_matrix", "g_adversarial", "d_adversarial", "r1_penalty", "path_lengths",
           "view_crop", "clip_view", "condition", "training_condition", "generate", "g_main", "g_reg", "d_main",
           "d_reg", "Objective", "Draws", "Networks", "PhaseLoss", "CONTRASTIVE_FORMS", "CLIP_VIEW"]
