"""LN-COCO (``ln-coco``): Localized Narratives JSONL (``captions_file``; lines with ``image_id`` and
``caption``) over a COCO image folder ``<root>/<split>/`` (``train2017``, ``val2017``; ``%012d.jpg``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...io.files import read_text
from ..datasets import ImageSet, Item
from .common import MAX_NAMED, find_image, require_root, unused


def ln_coco_set(data_root: Any, captions_file: Any, split: str | None, resolution: int):
    """Localized Narratives captions over COCO images (one item per image, all its narratives)."""
    root = require_root(data_root, "ln-coco")
    split = split or "val2017"
    if captions_file is None:
        raise InputError("data set 'ln-coco' needs the Localized Narratives JSONL: pass captions_file",
                         param="captions_file")
    caps: dict[int, list[str]] = {}
    for n, line in enumerate(read_text(Path(captions_file), "Localized Narratives file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            caps.setdefault(int(obj["image_id"]), []).append(" ".join(str(obj["caption"]).split()))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError) as e:
            raise InputError(f"Localized Narratives file {captions_file} line {n}: {type(e).__name__}: {e}") from None
    folder = root / split if (root / split).is_dir() else root
    items, missing = [], []
    for image_id in sorted(caps):
        img = find_image(folder, f"{image_id:012d}") or find_image(folder, f"COCO_{split}_{image_id:012d}")
        if img is None:
            missing.append(str(image_id))
            continue
        items.append(Item(path=img, caption=caps[image_id][0], captions=caps[image_id], meta={"image_id": image_id}))
    if missing:
        raise InputError(f"ln-coco: {len(missing)} annotated image(s) not in {folder} (e.g. image ids "
                         f"{', '.join(missing[:MAX_NAMED])})")
    return ImageSet(items, f"ln-coco:{split}", resolution, "ln-coco", "center", folder,
                    {"captions_file": str(captions_file), "split": split})


def dataset(data_root=None, resolution: int = 256, split=None, captions_file=None, crop=None) -> ImageSet:
    """:func:`ln_coco_set`."""
    unused("ln-coco", crop=crop)
    return ln_coco_set(data_root, captions_file, split, resolution)
