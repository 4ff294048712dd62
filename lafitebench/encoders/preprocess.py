"""Named image preprocessings: how each toolkit turns a uint8 image into a backbone's input.

Every feature backbone (:mod:`.backbone`) is fed through one of these. They are pure functions
of a uint8 RGB batch ``[N,3,H,W]``; each is a transcription of the toolkit's own steps, and its
name is part of every feature cache key and metric id, because two preprocessings of the same
image give different features:

- ``tf-bilinear``: torch-fidelity 0.4 (its DINOv2 and CLIP extractors): float 0..255, resized
  with ``interpolate_bilinear_2d_like_tensorflow1x`` (no antialiasing), normalised with
  ``255·mean`` / ``255·std``.
- ``torch-bicubic-aa``: edm2's ``DINOv2Detector(resize_mode='torch')``: float 0..255,
  ``F.interpolate(bicubic, antialias=True)`` to the square size, then ``/255``, mean/std.
- ``pil-bicubic``: dgm-eval's DINOv2 transform (``Resize((s, s), BICUBIC)`` on a PIL image,
  ``ToTensor``, ``Normalize``) = edm2's ``resize_mode='pil'``.
- ``pil-bicubic-crop``: clean-fid's ``img_preprocess_clip`` (``Resize(s, BICUBIC)`` of the
  shortest side, ``CenterCrop(s)``, uint8) then ``/255`` and CLIP's mean/std.
- ``cmmd``: google-research/cmmd: centre crop to a square and PIL bicubic resize to ``s``
  (``_center_crop_and_resize``), ``/255``, torch bicubic to ``s`` (the identity at equal size),
  and CLIPImageProcessor's normalisation (no rescale, no crop, no resize).

Images reach these at the evaluation resolution (e.g. 256²): the toolkits resize the files as
stored, so for samples stored at another size the inputs differ by that first resize.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from ..registry import Registry


def _check(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"backbone input must be uint8 [N,3,H,W] RGB, got {images.dtype} {tuple(images.shape)}")


def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def _pil_each(images: torch.Tensor, fn: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    """Apply a PIL transform to each uint8 image; back to a uint8 NCHW tensor."""
    out = [np.asarray(fn(Image.fromarray(im.permute(1, 2, 0).cpu().numpy(), "RGB"))) for im in images]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(images.device)


def tf_bilinear(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """torch-fidelity 0.4's DINOv2/CLIP input: TF1-compatible bilinear resize of the 0..255 floats,
    then ``normalize(x, 255·mean, 255·std)``."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    _check(images)
    x = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(size, size), align_corners=False)
    return _normalise(x, [255 * v for v in mean], [255 * v for v in std])


def torch_bicubic_aa(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """edm2's fast DINOv2 input: antialiased bicubic ``F.interpolate`` of the 0..255 floats, ``/255``, mean/std."""
    _check(images)
    x = F.interpolate(images.float(), size=(size, size), mode="bicubic", antialias=True)
    return _normalise(x / 255, mean, std)


def pil_bicubic(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """dgm-eval's DINOv2 input: PIL bicubic resize to ``size``², ``ToTensor`` (/255), mean/std."""
    _check(images)
    x = _pil_each(images, lambda im: im.resize((size, size), Image.Resampling.BICUBIC))
    return _normalise(x.float() / 255, mean, std)


def _shortest_side_crop(im: Image.Image, size: int) -> Image.Image:
    # torchvision Resize(size) on a PIL image: the short side to `size`, the long side
    # int(size * long / short); CenterCrop: offsets int(round((dim - size) / 2)).
    w, h = im.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


def pil_bicubic_crop(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """clean-fid's CLIP input: PIL bicubic resize of the shortest side to ``size``, centre crop,
    uint8, then ``/255`` and mean/std."""
    _check(images)
    x = _pil_each(images, lambda im: _shortest_side_crop(im, size))
    return _normalise(x.float() / 255, mean, std)


def _square_crop(im: Image.Image) -> Image.Image:
    w, h = im.size
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    return im.crop((left, top, left + side, top + side))


def cmmd(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """google-research/cmmd's CLIP input: square centre crop + PIL bicubic resize to ``size``,
    ``/255``, bicubic ``F.interpolate`` to ``size`` (the identity here), mean/std."""
    _check(images)
    x = _pil_each(images, lambda im: _square_crop(im).resize((size, size), Image.Resampling.BICUBIC))
    x = F.interpolate(x.float() / 255, size=(size, size), mode="bicubic")
    return _normalise(x, mean, std)


@dataclass(frozen=True)
class Preprocess:
    """A named preprocessing: ``fn(images, size, mean, std)`` and the toolkit it transcribes."""

    name: str
    fn: Callable[..., torch.Tensor]
    source: str

    def __call__(self, images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        return self.fn(images, size, mean, std)


PREPROCESSES: Registry[Preprocess] = Registry("preprocessing")
for _p in (Preprocess("tf-bilinear", tf_bilinear, "torch-fidelity 0.4 (DINOv2 / CLIP extractors)"),
           Preprocess("torch-bicubic-aa", torch_bicubic_aa, "edm2 DINOv2Detector(resize_mode='torch')"),
           Preprocess("pil-bicubic", pil_bicubic, "dgm-eval DINOv2 transform = edm2 resize_mode='pil'"),
           Preprocess("pil-bicubic-crop", pil_bicubic_crop, "clean-fid img_preprocess_clip + CLIP_fx"),
           Preprocess("cmmd", cmmd, "google-research/cmmd io_util + embedding.ClipEmbeddingModel")):
    PREPROCESSES.register(_p.name, _p)
del _p

__all__ = ["Preprocess", "PREPROCESSES", "tf_bilinear", "torch_bicubic_aa", "pil_bicubic", "pil_bicubic_crop", "cmmd"]
