"""Gaussian blur presets for FID-k (the DALL-E "blurred FID" protocol), as batched tensor ops.

FID-k blurs both the generated and the reference images with a Gaussian of "radius" k before
the Inception network sees them (k = 0 means no blur). The DALL-E paper never defines
"radius", so two presets exist (torch-fidelity and LAFITE define it differently):

- ``lafite``: what the LAFITE author posted: ``torchvision.transforms.GaussianBlur(kernel_size=2k+1,
  sigma=sqrt(((2k+1)^2 - 1) / 12))`` applied to uint8 tensors. torchvision pads with ``reflect``,
  convolves in float32 with the normalised 2-D kernel and re-quantises with ``torch.round``
  (round half to even) before casting back to uint8. We call the same torchvision function, so
  the output is bit-identical to the transform.
- ``pil``: ``PIL.ImageFilter.GaussianBlur(radius=k)``. Pillow approximates a Gaussian of
  standard deviation k by three passes of an "extended" box blur (Gwosdek et al., SSVM 2011)
  horizontally, then three vertically, in 8.8.16 fixed point, re-quantising to uint8 after every
  pass (round half up) and replicating edge pixels. We reproduce that integer arithmetic in
  int64 tensor ops, so the output is bit-identical to Pillow's.

Every preset maps uint8 [N,3,H,W] to uint8 [N,3,H,W] on the input's device; k = 0 returns the
input unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from ..registry import Registry


@dataclass(frozen=True)
class BlurPreset:
    """A named FID-k blur: ``apply(images_uint8_nchw, k) -> images_uint8_nchw``."""

    name: str
    description: str
    requantise: str
    sigma: Callable[[int], float]
    effective_sigma: Callable[[int], float]
    apply: Callable[[torch.Tensor, int], torch.Tensor]


BLUR_PRESETS: Registry[BlurPreset] = Registry("blur preset")


def _check_images(images: torch.Tensor) -> None:
    if not (torch.is_tensor(images) and images.dtype == torch.uint8 and images.dim() == 4):
        got = f"{images.dtype} {tuple(images.shape)}" if torch.is_tensor(images) else type(images).__name__
        raise InputError(f"blur expects uint8 images shaped [N,C,H,W], got {got}")


def _check_level(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InputError(f"blur level must be a non-negative integer (0 = no blur), got {k!r}")
    return int(k)


# --- lafite: torchvision GaussianBlur(2k+1, sigma) ---------------------------------------------

def lafite_sigma(k: int) -> float:
    """sigma = sqrt(((2k+1)^2 - 1) / 12): the std of a uniform box of width 2k+1 (LAFITE's choice)."""
    k = _check_level(k)
    return math.sqrt(((2 * k + 1) ** 2 - 1) / 12.0)


def lafite_effective_sigma(k: int) -> float:
    """Standard deviation of the truncated, normalised (2k+1)-tap kernel actually applied."""
    k = _check_level(k)
    if k == 0:
        return 0.0
    x = np.arange(-k, k + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / lafite_sigma(k)) ** 2)
    w /= w.sum()
    return float(math.sqrt((w * x ** 2).sum()))


def lafite_blur(images: torch.Tensor, k: int) -> torch.Tensor:
    """Blur like ``torchvision.transforms.GaussianBlur(2k+1, lafite_sigma(k))`` on uint8 tensors.

    Bit-identical to the transform: the transform draws sigma with ``uniform_(s, s)`` in float32
    and passes it on as a Python float, so sigma is rounded to float32 here too (without touching
    the global RNG). Raises InputError for non-uint8 input or an image smaller than 2k+1 pixels
    (reflect padding needs the pad to be smaller than the image).
    """
    from torchvision.transforms.functional import gaussian_blur

    _check_images(images)
    k = _check_level(k)
    if k == 0:
        return images
    if min(images.shape[-2:]) <= k:
        raise InputError(f"lafite blur of level {k} needs images larger than {k} pixels, got {tuple(images.shape[-2:])}")
    sigma = float(torch.tensor(lafite_sigma(k), dtype=torch.float32))
    return gaussian_blur(images, [2 * k + 1, 2 * k + 1], [sigma, sigma])


# --- pil: Pillow's 3-pass extended box blur ----------------------------------------------------

def _f32(x: float) -> np.float32:
    return np.float32(x)


def pil_box_radius(radius: float, passes: int = 3) -> float:
    """Pillow's ``_gaussian_blur_radius``: extended box radius giving variance radius^2 over ``passes``.

    Evaluated in float32 like the C code (box length L from [7], integer part l from [11],
    fractional part a from [14] of Gwosdek et al. 2011).
    """
    sigma2 = _f32(radius) * _f32(radius) / _f32(passes)
    L = _f32(math.sqrt(12.0 * float(sigma2) + 1.0))
    l = _f32(math.floor((float(L) - 1.0) / 2.0))
    a = (_f32(2) * l + _f32(1)) * (l * (l + _f32(1)) - _f32(3) * sigma2)
    a = a / (_f32(6) * (sigma2 - (l + _f32(1)) * (l + _f32(1))))
    return float(l + a)


def _box_weights(float_radius: float) -> tuple[int, int, int]:
    """Integer radius, window weight ``ww`` and edge weight ``fw`` in 8.24 fixed point (Pillow's)."""
    r = int(float_radius)
    ww = int(_f32(1 << 24) / (_f32(float_radius) * _f32(2) + _f32(1)))  # float32 division, truncated
    fw = ((1 << 24) - (r * 2 + 1) * ww) // 2
    return r, ww, fw


def _box_pass_last_dim(x: torch.Tensor, r: int, ww: int, fw: int) -> torch.Tensor:
    """One extended box pass along the last dim of an int64 tensor holding uint8 values.

    out[x] = (ww * sum_{|i|<=r} in[x+i] + fw * (in[x-r-1] + in[x+r+1]) + 2^23) >> 24 with
    indices clamped to the line (edge pixels replicated), as in Pillow's ImagingLineBoxBlur32.
    """
    w = x.shape[-1]
    idx = torch.arange(-r - 1, w + r + 1, device=x.device).clamp_(0, w - 1)
    padded = x.index_select(-1, idx)  # length w + 2r + 2
    csum = torch.nn.functional.pad(padded.cumsum(-1), (1, 0))
    win = csum[..., 2 * r + 2: 2 * r + 2 + w] - csum[..., 1: 1 + w]  # sum of padded[x+1 .. x+2r+1]
    far = padded[..., 0:w] + padded[..., 2 * r + 2: 2 * r + 2 + w]
    return (win * ww + far * fw + (1 << 23)) >> 24


def pil_effective_sigma(k: int, passes: int = 3) -> float:
    """Standard deviation of Pillow's ``passes``-fold extended box kernel for radius ``k``."""
    k = _check_level(k)
    if k == 0:
        return 0.0
    r, ww, fw = _box_weights(pil_box_radius(float(k), passes))
    total = ww * (2 * r + 1) + 2 * fw
    var = (ww * 2 * sum(i * i for i in range(1, r + 1)) + 2 * fw * (r + 1) ** 2) / total
    return float(math.sqrt(passes * var))


def pil_blur(images: torch.Tensor, k: int, passes: int = 3) -> torch.Tensor:
    """Blur like ``PIL.ImageFilter.GaussianBlur(radius=k)`` on every RGB image of a uint8 batch.

    Bit-identical to Pillow (tested against it): ``passes`` horizontal box passes, then as many
    vertical ones, each re-quantised to uint8. Raises InputError for non-uint8 input.
    """
    _check_images(images)
    k = _check_level(k)
    if k == 0:
        return images
    r, ww, fw = _box_weights(pil_box_radius(float(k), passes))
    x = images.to(torch.int64)
    for _ in range(passes):
        x = _box_pass_last_dim(x, r, ww, fw)
    x = x.transpose(-1, -2)
    for _ in range(passes):
        x = _box_pass_last_dim(x, r, ww, fw)
    return x.transpose(-1, -2).to(torch.uint8).contiguous()


BLUR_PRESETS.register("lafite", BlurPreset(
    name="lafite",
    description="torchvision GaussianBlur(kernel_size=2k+1, sigma=sqrt(((2k+1)^2-1)/12)), reflect padding "
                "(LAFITE author's code)",
    requantise="torch.round (half to even) of the float32 convolution, then uint8",
    sigma=lafite_sigma,
    effective_sigma=lafite_effective_sigma,
    apply=lafite_blur,
))
BLUR_PRESETS.register("pil", BlurPreset(
    name="pil",
    description="PIL ImageFilter.GaussianBlur(radius=k): 3+3 passes of extended box blur, edge replicate",
    requantise="uint8 after every box pass, fixed point rounding half up (as Pillow)",
    sigma=lambda k: float(_check_level(k)),
    effective_sigma=pil_effective_sigma,
    apply=pil_blur,
))


def blur(images: torch.Tensor, k: int, preset: str = "lafite") -> torch.Tensor:
    """Blur a uint8 [N,C,H,W] batch at FID-k level ``k`` with the named preset (0 = identity).

    Raises InputError for bad images or levels and UnknownNameError for an unknown preset.
    """
    return BLUR_PRESETS.get(preset).apply(images, k)


def describe_level(preset: str, k: int) -> str:
    """One line for a result's notes: the blur of level ``k`` under ``preset``."""
    if not k:
        return "no blur"
    p = BLUR_PRESETS.get(preset)
    return (f"blur {preset} k={k} (sigma {p.sigma(k):.3g}, effective {p.effective_sigma(k):.3g}), "
            "re-quantised to uint8")
