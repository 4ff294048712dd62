"""A captioned folder (``captioned-folder``): images with a ``name.txt`` beside each (one caption per
line): the official dataset tool's input."""
from __future__ import annotations

from typing import Any

from ...errors import InputError
from ..datasets import ImageSet, Item, list_images
from .common import MAX_NAMED, caption_lines, require_root, unused


def captioned_folder_set(data_root: Any, resolution: int):
    """Images with a same-named ``.txt`` of captions beside each (the official dataset tool's input)."""
    root = require_root(data_root, "captioned-folder")
    items, missing = [], []
    for img in list_images(root):
        txt = img.with_suffix(".txt")
        if not txt.is_file():
            missing.append(img.name)
            continue
        caps = caption_lines(txt)
        items.append(Item(path=img, caption=caps[0], captions=caps))
    if missing:
        raise InputError(f"captioned folder {root}: {len(missing)} image(s) without a .txt of captions "
                         f"(e.g. {', '.join(missing[:MAX_NAMED])})")
    if not items:
        raise InputError(f"captioned folder {root} holds no images")
    return ImageSet(items, f"captioned-folder:{root.name}", resolution, "captioned-folder", "center", root, {})


def dataset(data_root=None, resolution: int = 256, split=None, captions_file=None, crop=None) -> ImageSet:
    """:func:`captioned_folder_set`."""
    unused("captioned-folder", split=split, captions_file=captions_file, crop=crop)
    return captioned_folder_set(data_root, resolution)
