"""MS-COCO: an image folder of a split (``val2017``, ``train2014`` ...) with the official caption
JSON (``coco``), and the bundled 100-image val2017 subset (``coco-mini``, halves ``:a`` / ``:b``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ...errors import InputError
from ...io.files import read_text
from .. import images as _img
from ..datasets import ImageSet, Item
from .common import unused

COCO_MINI_DIR = Path(__file__).resolve().parent.parent / "coco_mini"
COCO_SPLITS = ("val2017", "train2017", "val2014", "train2014")


def coco_set(data_root: str | os.PathLike | None, *, split: str | None = None, resolution: int = 256,
             captions_file: str | os.PathLike | None = None, crop: str = "center") -> ImageSet:
    """COCO 2017 images on disk with captions from the official caption JSON.

    Every image in the split folder is used (sorted by file name); its captions are all of its
    annotations in annotation-id order, ``caption`` the first. Images the caption file does not
    cover have no caption (counted in provenance as ``n_uncaptioned``).

    Raises:
        InputError: no ``data_root`` (use --data-root), unknown split, missing folders or caption
            file (use --captions), a caption file that covers none of the images.
    """
    if data_root is None:
        raise InputError(
            "dataset 'coco' needs the COCO folder: pass data_root, a folder "
            "with val2017/ and annotations/captions_val2017.json"
        )
    split = split or "val2017"
    if split not in COCO_SPLITS:
        raise InputError(f"unknown COCO split {split!r}; use one of {', '.join(COCO_SPLITS)}")
    root = Path(data_root).expanduser()
    if (root / split).is_dir():
        img_dir, ann_root = root / split, root
    elif root.is_dir() and root.name == split:
        img_dir, ann_root = root, root.parent
    else:
        raise InputError(f"COCO data root {root} has no {split}/ image folder (data_root)", param="data_root")
    cap = Path(captions_file).expanduser() if captions_file else ann_root / "annotations" / f"captions_{split}.json"
    if not cap.is_file():
        raise InputError(f"COCO captions file {cap} not found: pass captions_file=path/to/captions_{split}.json", param="captions_file")
    try:
        ann = json.loads(read_text(cap, "COCO captions file"))
        by_name = {im["file_name"]: im for im in ann["images"]}
        caps: dict[int, list[tuple[int, str]]] = {}
        for a in ann["annotations"]:
            caps.setdefault(a["image_id"], []).append((a["id"], a["caption"].strip()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise InputError(f"COCO captions file {cap} is not in the official format: {type(e).__name__}: {e}") from None
    files = sorted(p for p in img_dir.iterdir() if p.is_file() and p.suffix.lower() in _img.IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"COCO image folder {img_dir} contains no images")
    items = []
    for f in files:
        im = by_name.get(f.name)
        c = [t for _, t in sorted(caps.get(im["id"], []))] if im else []
        meta = {"image_id": im["id"]} if im else {}
        items.append(Item(path=f, caption=c[0] if c else None, captions=c, meta=meta))
    n_unc = sum(not it.captions for it in items)
    if n_unc == len(items):
        raise InputError(f"COCO captions file {cap} covers none of the {len(items)} images in {img_dir} (wrong split?)")
    info = {"captions_file": str(cap), "split": split, "n_uncaptioned": n_unc}
    return ImageSet(items, f"coco:{split}", resolution, "coco", crop, img_dir, info)


def coco_mini(resolution: int = 256, half: str | None = None) -> ImageSet:
    """The bundled 100-image COCO val2017 subset (see ``coco_mini/README.md``); ``half`` "a"/"b"
    gives the first/second 50 images.

    Raises:
        InputError: the bundled files are missing (broken install).
    """
    meta_file = COCO_MINI_DIR / "captions.json"
    if not meta_file.is_file():
        raise InputError(f"bundled coco-mini metadata {meta_file} is missing: reinstall lafitebench")
    meta = json.loads(read_text(meta_file, "bundled coco-mini metadata"))
    items = []
    for rec in meta["images"]:
        p = COCO_MINI_DIR / rec["file"]
        if not p.is_file():
            raise InputError(f"bundled coco-mini image {p} is missing: reinstall lafitebench")
        items.append(Item(path=p, caption=rec["captions"][0], captions=list(rec["captions"]),
                          meta={"image_id": rec["image_id"]}))
    info = {
        "source": meta["info"]["source"],
        "preprocessing": meta["info"]["preprocessing"],
        "bundled_resolution": meta["info"]["resolution"],
    }
    s = ImageSet(items, "coco-mini", resolution, "coco-mini", "none", COCO_MINI_DIR, info)
    if half is None:
        return s
    a, b = s.split_halves()
    return {"a": a, "b": b}[half]


def dataset(data_root=None, resolution: int = 256, split=None, captions_file=None, crop=None) -> ImageSet:
    """``coco``: :func:`coco_set` (centre crop by default)."""
    return coco_set(data_root, split=split, resolution=resolution, captions_file=captions_file, crop=crop or "center")


def _mini(half: str | None, name: str):
    def make(data_root=None, resolution: int = 256, split=None, captions_file=None, crop=None) -> ImageSet:
        unused(name, data_root=data_root, captions_file=captions_file)
        if split not in (None, "val2017"):
            raise InputError(f"dataset {name!r} is a subset of val2017; split {split!r} does not apply", param="split")
        if crop not in (None, "none"):
            raise InputError(f"dataset {name!r} is already centre-cropped to 256²; crop {crop!r} does not apply")
        return coco_mini(resolution, half)
    make.__doc__ = f"Bundled {name}."
    return make


mini = _mini(None, "coco-mini")
mini_a = _mini("a", "coco-mini:a")
mini_b = _mini("b", "coco-mini:b")
