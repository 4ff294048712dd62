"""Image decoding to uint8 RGB tensors, the same way for generated samples and reference images.

Decisions (each is recorded in a data set's provenance, see :data:`DECODE_POLICY`):

- Decoder: Pillow. Formats: anything Pillow opens (PNG, JPEG, WebP, BMP, TIFF, ...); animated
  files give their first frame.
- EXIF orientation is **not** applied: the pixels are used in stored order, as torch-fidelity,
  clean-fid and the StyleGAN2/LAFITE dataset tools do.
- Alpha is **dropped**, not composited (``convert("RGB")``, as torch-fidelity and clean-fid do):
  LA/RGBA/PA images keep their colour channels; a palette image with transparency gives its
  palette colours.
- ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` → RGB with Pillow's conversions.
- 16-bit grayscale (``I;16*`` and Pillow's 32-bit ``I`` mode, which is how it opens some 16-bit
  PNGs) is rescaled, not clipped: ``v8 = round(v16 · 255 / 65535)`` (``I`` values are clipped to
  [0, 65535] first). Float (``F``) images are taken to be in [0, 255], rounded and clipped.
- Mixed sizes (``crop="none"``): an image whose size differs from ``resolution`` is resized to
  ``resolution × resolution`` with PIL BICUBIC (non-square images are squashed); an image that
  already has that size is untouched.
- Reference photos (``crop="center"``): centre crop to the largest square (offsets
  ``(W-s)//2, (H-s)//2`` with ``s = min(W, H)``), then PIL LANCZOS to ``resolution``, the
  ``center-crop`` transform of the StyleGAN2-ADA dataset tool that LAFITE's COCO data came from.
"""
from __future__ import annotations

import functools
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from lafitebench.errors import InputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "CROP_MODES",
    "DECODE_POLICY",
    "load_image",
    "open_rgb",
    "open_rgb_with_mode",
    "to_rgb",
    "center_crop_resize",
    "resize_to",
    "pil_to_tensor",
    "check_image",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm"})
CROP_MODES = ("none", "center")

DECODE_POLICY = {
    "decoder": f"Pillow {Image.__version__}",
    "exif_orientation": "ignored (stored pixel order, as torch-fidelity / clean-fid)",
    "alpha": "dropped (convert('RGB'), not composited)",
    "sixteen_bit": "rescaled round(v*255/65535)",
    "resize_none": "PIL BICUBIC to resolution x resolution, only when the size differs",
    "resize_center": "centre crop to min(W,H) square, then PIL LANCZOS (StyleGAN2-ADA dataset_tool center-crop)",
}

# Errors Pillow raises for unreadable, truncated or hostile files.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError,
                  ImportError)  # a third-party Pillow plugin that fails to import on an unknown format


def _sixteen_to_rgb(img: Image.Image) -> Image.Image:
    a = np.asarray(img)
    if img.mode == "I":
        a = np.clip(a, 0, 65535)
    a = a.astype(np.uint32)
    a8 = ((a * 255 + 32767) // 65535).astype(np.uint8)  # round(v*255/65535)
    return Image.fromarray(a8).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB following :data:`DECODE_POLICY`.

    Raises:
        InputError: a mode Pillow cannot convert to RGB.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_to_rgb(img)
    if mode == "F":
        a = np.clip(np.rint(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(a).convert("RGB")
    if mode in ("P", "PA"):
        # Through RGBA, then drop alpha: the same pixels as convert("RGB"), without Pillow's
        # warning about palette transparency.
        return img.convert("RGBA").convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise InputError(f"cannot convert image mode {mode!r} to RGB: {e}") from None


def center_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """Centre-crop ``img`` to a square of side ``min(W, H)`` and resize it with PIL LANCZOS.

    The StyleGAN2-ADA ``dataset_tool`` ``center-crop`` transform: crop box
    ``((W-s)//2, (H-s)//2, (W+s)//2, (H+s)//2)``, then ``resize((R, R), LANCZOS)``.
    """
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)
    img = img.crop(box)
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return img


def resize_to(img: Image.Image, resolution: int) -> Image.Image:
    """Resize to ``resolution × resolution`` with PIL BICUBIC, only when the size differs."""
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return img


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image → uint8 tensor [3, H, W]."""
    a = np.array(img, dtype=np.uint8)  # a writable copy
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


#: ``archive.zip::member`` names an image inside a zip (the official LAFITE dataset format).
ZIP_SEP = "::"


@functools.lru_cache(maxsize=8)
def _zip(archive: str, pid: int) -> zipfile.ZipFile:
    """An open zip per archive and process (DataLoader workers each open their own)."""
    return zipfile.ZipFile(archive)


def image_source(path: str | Path) -> Any:
    """What Pillow opens for ``path``: the path itself, or the bytes of a ``zip::member`` image.

    Raises:
        InputError: a member that is not in its archive, or an unreadable archive.
    """
    text = str(path)
    if ZIP_SEP not in text:
        return path
    archive, member = text.split(ZIP_SEP, 1)
    try:
        return io.BytesIO(_zip(archive, os.getpid()).read(member))
    except KeyError:
        raise InputError(f"{member} is not in the archive {archive}") from None
    except (OSError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read {member} from {archive}: {e}") from None


def image_size(path: str | Path) -> int:
    """Byte size of an image file or zip member (for fingerprints)."""
    text = str(path)
    if ZIP_SEP not in text:
        return Path(path).stat().st_size
    archive, member = text.split(ZIP_SEP, 1)
    return _zip(archive, os.getpid()).getinfo(member).file_size


def open_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` (a file, or ``archive.zip::member``) fully and convert it to RGB.

    Raises:
        InputError: the file is missing, unreadable, truncated or not an image (names the file).
    """
    return open_rgb_with_mode(path)[0]


def open_rgb_with_mode(path: str | Path) -> tuple[Image.Image, str]:
    """:func:`open_rgb` plus the file's original Pillow mode (``L``, ``CMYK``, ``I;16``, ...)."""
    try:
        with Image.open(image_source(path)) as im:
            im.load()
            return to_rgb(im), im.mode
    except InputError as e:
        raise InputError(f"image {path}: {e}") from None
    except _DECODE_ERRORS as e:
        raise InputError(f"cannot decode image {path}: {type(e).__name__}: {e}") from None


def load_image(path: str | Path, resolution: int | None = None, *, crop: str = "none") -> torch.Tensor:
    """Load one image as a uint8 RGB tensor [3, H, W].

    Args:
        path: image file (anything Pillow decodes).
        resolution: output side; ``None`` keeps the stored size (``crop="none"`` only).
        crop: ``"none"`` (BICUBIC resize when the size differs) or ``"center"`` (centre square
            crop + LANCZOS resize, for reference photos).

    Raises:
        InputError: unreadable/corrupt file or unconvertible mode (the message names the file);
            an unknown ``crop`` mode.
    """
    if crop not in CROP_MODES:
        raise InputError(f"unknown crop mode {crop!r}; use one of {', '.join(CROP_MODES)}")
    img = open_rgb(path)
    if resolution is not None:
        img = center_crop_resize(img, resolution) if crop == "center" else resize_to(img, resolution)
    elif crop == "center":
        raise InputError("crop='center' needs a resolution")
    return pil_to_tensor(img)


def load_image_with_mode(path: str | Path, resolution: int, crop: str) -> tuple[torch.Tensor, str]:
    """:func:`load_image` at ``resolution`` plus the file's original Pillow mode."""
    if crop not in CROP_MODES:
        raise InputError(f"unknown crop mode {crop!r}; use one of {', '.join(CROP_MODES)}")
    img, mode = open_rgb_with_mode(path)
    img = center_crop_resize(img, resolution) if crop == "center" else resize_to(img, resolution)
    return pil_to_tensor(img), mode


class DecodeDataset(torch.utils.data.Dataset):
    """The one decoding dataset (evaluation sets and feature stores): item ``i`` → ``(i, uint8
    [3, R, R], the file's Pillow mode)``, or with ``skip_bad`` ``(i, None, the reason)`` for an
    image that does not decode (without ``skip_bad`` the InputError naming the file is raised)."""

    def __init__(self, paths: Sequence[str | Path], resolution: int, crop: str, skip_bad: bool) -> None:
        if crop not in CROP_MODES:
            raise InputError(f"unknown crop mode {crop!r}; use one of {', '.join(CROP_MODES)}")
        self.paths, self.resolution, self.crop, self.skip_bad = list(paths), resolution, crop, skip_bad

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return (i, *load_image_with_mode(self.paths[i], self.resolution, self.crop))
        except InputError as e:
            if not self.skip_bad:
                raise
            return i, None, str(e)


def check_image(path: str | Path) -> str | None:
    """Cheap check that ``path`` opens as an image (header parse + Pillow ``verify``).

    Returns ``None`` when it looks fine, else the reason. ``verify`` checks PNG chunk CRCs but
    not JPEG scan data: a truncated JPEG can pass here and fail at decode.
    """
    try:
        with Image.open(image_source(path)) as im:
            im.verify()
    except InputError as e:
        return str(e)
    except _DECODE_ERRORS as e:
        return f"{type(e).__name__}: {e}"
    return None
