"""The official LAFITE dataset zip (``official-zip``): images and their stored CLIP features in a
``dataset.json``, read from the zip without extraction."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..datasets import ImageSet, Item
from ..images import ZIP_SEP
from .common import MAX_NAMED, unused

OFFICIAL_ZIP_JSON = "dataset.json"
_MAX_JSON_BYTES = 4 << 30


def read_official_zip(path: Any) -> dict[str, Any]:
    """The parsed, checked ``dataset.json`` of an official LAFITE dataset zip.

    Returns ``{"images": [member, ...], "img_features": {member: [D floats]},
    "txt_features": {member: [[D floats], ...]}, "dim": D}`` (features as stored: unnormalised
    CLIP ViT-B/32 outputs). Raises InputError naming the zip and the key that is wrong.
    """
    z = Path(path).expanduser()
    try:
        with zipfile.ZipFile(z) as zf:
            info = zf.getinfo(OFFICIAL_ZIP_JSON)
            if info.file_size > _MAX_JSON_BYTES:
                raise InputError(f"{z}: {OFFICIAL_ZIP_JSON} is {info.file_size} bytes, more than this reader accepts")
            raw = zf.read(info)
            names = set(zf.namelist())
    except KeyError:
        raise InputError(f"{z} has no {OFFICIAL_ZIP_JSON}: it is not an official LAFITE dataset zip") from None
    except (OSError, zipfile.BadZipFile) as e:
        raise InputError(f"{z} is not a readable zip ({e})") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise InputError(f"{z}: {OFFICIAL_ZIP_JSON} is not UTF-8 JSON ({e})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{z}: {OFFICIAL_ZIP_JSON} is not an object")

    def pairs(key: str) -> dict[str, Any]:
        value = meta.get(key)
        if value is None:
            return {}
        if not isinstance(value, list) or not all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                                                  for e in value):
            raise InputError(f"{z}: '{key}' in {OFFICIAL_ZIP_JSON} is not a list of [file name, features] pairs")
        return {e[0]: e[1] for e in value}

    img, txt = pairs("clip_img_features"), pairs("clip_txt_features")
    images = sorted(img) if img else sorted(n for n in names if n.lower().endswith((".png", ".jpg", ".jpeg")))
    missing = [m for m in images if m not in names]
    if missing:
        raise InputError(f"{z}: {len(missing)} image(s) listed in {OFFICIAL_ZIP_JSON} are not in the zip "
                         f"(e.g. {', '.join(missing[:MAX_NAMED])})")
    dims = {len(v) for v in img.values()} | {len(r) for v in txt.values() for r in (v or [])}
    if len(dims) > 1:
        raise InputError(f"{z}: features of different widths {sorted(dims)} in {OFFICIAL_ZIP_JSON}")
    return {"images": images, "img_features": img, "txt_features": txt, "dim": dims.pop() if dims else None}


def official_zip_set(path: Any, resolution: int):
    """The images of an official LAFITE dataset zip, read from the zip (no extraction)."""
    z = Path(path).expanduser()
    meta = read_official_zip(z)
    if not meta["images"]:
        raise InputError(f"{z} holds no images")
    items = [Item(path=Path(f"{z}{ZIP_SEP}{m}"), meta={"member": m}) for m in meta["images"]]
    return ImageSet(items, f"official-zip:{z.name}", resolution, "official-zip", "center", None,
                    {"zip": str(z), "features_dim": meta["dim"]})


def dataset(data_root=None, resolution: int = 256, split=None, captions_file=None, crop=None) -> ImageSet:
    """The images of the zip given as ``data_root``."""
    unused("official-zip", split=split, captions_file=captions_file, crop=crop)
    if data_root is None:
        raise InputError("data set 'official-zip' needs the zip: pass data_root", param="data_root")
    return official_zip_set(Path(data_root), resolution)
