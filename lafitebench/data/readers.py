"""Readers for the data sets LAFITE is trained and evaluated on, as captioned image sets.

Each reader returns an :class:`~lafitebench.data.datasets.ImageSet` whose items carry all
their captions (``item.captions``) and a first caption (``item.caption``). Layouts:

- **CUB-200** (``cub``): ``<root>/images/<name>.jpg`` (or ``CUB_200_2011/images``), captions in
  ``<root>/text/<name>.txt`` (or ``text_c10``), one per line; the split's image names in
  ``<root>/<split>/filenames.pickle`` (the AttnGAN/DM-GAN files) or ``filenames.txt``.
- **Multi-modal CelebA-HQ** (``mm-celeba-hq``): ``<root>/images/<name>.jpg`` (or
  ``CelebA-HQ-img``), captions in ``<root>/text/<name>.txt`` (or ``celeba-caption``), split files
  as for CUB.
- **LN-COCO** (``ln-coco``): Localized Narratives JSONL (``captions_file``; lines with
  ``image_id`` and ``caption``) over a COCO image folder ``<root>/<split>/`` (``train2017``,
  ``val2017``; ``%012d.jpg``).
- **CC3M** (``cc3m``): a TSV file (``captions_file``) of ``caption<TAB>path`` with paths relative to
  the TSV's folder; local images only (URLs are refused: download them first).
- **Captioned folder** (``captioned-folder``): images with a ``name.txt`` beside each (one caption
  per line): the official dataset tool's input.

Images are centre-cropped and Lanczos-resized to the resolution, as for COCO.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.files import read_text
from ..io.unpickle import restricted_load

_MAX_NAMED = 5


def _first_dir(root: Path, names: tuple[str, ...], what: str) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise InputError(f"{what} not found under {root}: expected one of {', '.join(n + '/' for n in names)}",
                     param="data_root")


def read_name_list(path: Path) -> list[str]:
    """Image names of a split file: ``filenames.pickle`` (a pickled list of str, read with the
    restricted unpickler) or ``filenames.txt`` (one per line)."""
    if path.suffix == ".pickle":
        data = restricted_load(path.read_bytes(), allowed={("builtins", "list"): list, ("builtins", "str"): str},
                               source=path, error=InputError, what="split files hold a list of image names")
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise InputError(f"split file {path} does not hold a list of image names")
        return data
    return [line.strip() for line in read_text(path, "split file").splitlines() if line.strip()]


def _split_names(root: Path, split: str) -> list[str]:
    for name in ("filenames.pickle", "filenames.txt"):
        if (root / split / name).is_file():
            names = read_name_list(root / split / name)
            if not names:
                raise InputError(f"split file {root / split / name} lists no images")
            return names
    raise InputError(f"no split file for {split!r}: expected {root / split / 'filenames.pickle'} or "
                     f"{root / split / 'filenames.txt'}", param="split")


def _caption_lines(path: Path) -> list[str]:
    caps = [" ".join(c.split()) for c in read_text(path, "caption file").splitlines() if c.strip()]
    if not caps:
        raise InputError(f"caption file {path} is empty")
    return caps


def _find_image(folder: Path, name: str) -> Path | None:
    for ext in (".jpg", ".jpeg", ".png", ".webp"):
        p = folder / f"{name}{ext}"
        if p.is_file():
            return p
    return None


def _captioned_items(image_dir: Path, text_dir: Path, names: list[str], what: str) -> list[Any]:
    from .datasets import Item

    items, missing = [], []
    for name in names:
        img = _find_image(image_dir, name)
        txt = text_dir / f"{name}.txt"
        if img is None or not txt.is_file():
            missing.append(f"{name} ({'image' if img is None else 'captions'})")
            continue
        caps = _caption_lines(txt)
        items.append(Item(path=img, caption=caps[0], captions=caps, meta={"name": name}))
    if missing:
        more = f" and {len(missing) - _MAX_NAMED} more" if len(missing) > _MAX_NAMED else ""
        raise InputError(f"{what}: {len(missing)} listed image(s) lack a file: {', '.join(missing[:_MAX_NAMED])}{more}")
    return items


def _require_root(data_root: Any, what: str) -> Path:
    if data_root is None:
        raise InputError(f"data set {what!r} needs its folder: pass data_root", param="data_root")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise InputError(f"data set {what!r}: folder {root} does not exist", param="data_root")
    return root


def split_folder_set(kind: str, data_root: Any, split: str | None, resolution: int, image_dirs: tuple[str, ...],
                     text_dirs: tuple[str, ...]):
    """CUB-200 / MM-CelebA-HQ style: images and per-image caption files, split files of names."""
    from .datasets import ImageSet

    root = _require_root(data_root, kind)
    split = split or "test"
    names = _split_names(root, split)
    items = _captioned_items(_first_dir(root, image_dirs, "image folder"), _first_dir(root, text_dirs, "caption folder"),
                             names, f"{kind} {split}")
    return ImageSet(items, f"{kind}:{split}", resolution, kind, "center", root, {"split": split})


def ln_coco_set(data_root: Any, captions_file: Any, split: str | None, resolution: int):
    """Localized Narratives captions over COCO images (one item per image, all its narratives)."""
    from .datasets import ImageSet, Item

    root = _require_root(data_root, "ln-coco")
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
        img = _find_image(folder, f"{image_id:012d}") or _find_image(folder, f"COCO_{split}_{image_id:012d}")
        if img is None:
            missing.append(str(image_id))
            continue
        items.append(Item(path=img, caption=caps[image_id][0], captions=caps[image_id], meta={"image_id": image_id}))
    if missing:
        raise InputError(f"ln-coco: {len(missing)} annotated image(s) not in {folder} (e.g. image ids "
                         f"{', '.join(missing[:_MAX_NAMED])})")
    return ImageSet(items, f"ln-coco:{split}", resolution, "ln-coco", "center", folder,
                    {"captions_file": str(captions_file), "split": split})


def cc3m_set(captions_file: Any, resolution: int):
    """A CC3M TSV of ``caption<TAB>path`` (header row optional); local images only."""
    from .datasets import ImageSet, Item

    if captions_file is None:
        raise InputError("data set 'cc3m' needs its TSV (caption, local image path): pass captions_file",
                         param="captions_file")
    tsv = Path(captions_file).expanduser()
    rows = list(csv.reader(io.StringIO(read_text(tsv, "CC3M file"), newline=""), delimiter="\t"))
    if rows and [c.strip().lower() for c in rows[0][:1]] == ["caption"]:
        rows = rows[1:]
    items = []
    for n, row in enumerate(rows, 1):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip():
            raise InputError(f"CC3M file {tsv} row {n}: expected 'caption<TAB>path'")
        ref = row[1].strip()
        if "://" in ref:
            raise InputError(f"CC3M file {tsv} row {n}: {ref} is a URL; lafitebench reads local images only "
                             "(download them first and list their paths)")
        path = Path(ref) if Path(ref).is_absolute() else tsv.parent / ref
        if not path.is_file():
            raise InputError(f"CC3M file {tsv} row {n}: image {path} does not exist")
        cap = " ".join(row[0].split())
        items.append(Item(path=path, caption=cap, captions=[cap]))
    if not items:
        raise InputError(f"CC3M file {tsv} lists no images")
    return ImageSet(items, f"cc3m:{tsv.name}", resolution, "cc3m", "center", tsv.parent, {"captions_file": str(tsv)})


def captioned_folder_set(data_root: Any, resolution: int):
    """Images with a same-named ``.txt`` of captions beside each (the official dataset tool's input)."""
    from .datasets import ImageSet, Item, list_images

    root = _require_root(data_root, "captioned-folder")
    items, missing = [], []
    for img in list_images(root):
        txt = img.with_suffix(".txt")
        if not txt.is_file():
            missing.append(img.name)
            continue
        caps = _caption_lines(txt)
        items.append(Item(path=img, caption=caps[0], captions=caps))
    if missing:
        raise InputError(f"captioned folder {root}: {len(missing)} image(s) without a .txt of captions "
                         f"(e.g. {', '.join(missing[:_MAX_NAMED])})")
    if not items:
        raise InputError(f"captioned folder {root} holds no images")
    return ImageSet(items, f"captioned-folder:{root.name}", resolution, "captioned-folder", "center", root, {})


def _require_zip(data_root: Any) -> Path:
    if data_root is None:
        raise InputError("data set 'official-zip' needs the zip: pass data_root", param="data_root")
    return Path(data_root)


def register(datasets: Any) -> None:
    """Add the readers to the data set registry (called by :mod:`lafitebench.data.datasets`)."""
    def cub(data_root=None, resolution=256, split=None, captions_file=None, crop=None):
        return split_folder_set("cub", data_root, split, resolution, ("images", "CUB_200_2011/images"),
                                ("text", "text_c10"))

    def celeba(data_root=None, resolution=256, split=None, captions_file=None, crop=None):
        return split_folder_set("mm-celeba-hq", data_root, split, resolution, ("images", "CelebA-HQ-img"),
                                ("text", "celeba-caption"))

    datasets.register("cub", cub, aliases=("cub-200", "cub200"))
    datasets.register("mm-celeba-hq", celeba, aliases=("celeba-hq", "mmceleba"))
    datasets.register("ln-coco", lambda data_root=None, resolution=256, split=None, captions_file=None, crop=None:
                      ln_coco_set(data_root, captions_file, split, resolution))
    datasets.register("cc3m", lambda data_root=None, resolution=256, split=None, captions_file=None, crop=None:
                      cc3m_set(captions_file, resolution))
    datasets.register("official-zip", lambda data_root=None, resolution=256, split=None, captions_file=None,
                      crop=None: official_zip_set(_require_zip(data_root), resolution))
    datasets.register("captioned-folder", lambda data_root=None, resolution=256, split=None, captions_file=None,
                      crop=None: captioned_folder_set(data_root, resolution))


__all__ = ["split_folder_set", "ln_coco_set", "cc3m_set", "captioned_folder_set", "read_name_list", "register",
           "read_official_zip", "official_zip_set"]


# --- the official LAFITE dataset zip -----------------------------------------------------------------

OFFICIAL_ZIP_JSON = "dataset.json"
_MAX_JSON_BYTES = 4 << 30


def read_official_zip(path: Any) -> dict[str, Any]:
    """The parsed, checked ``dataset.json`` of an official LAFITE dataset zip.

    Returns ``{"images": [member, ...], "img_features": {member: [D floats]},
    "txt_features": {member: [[D floats], ...]}, "dim": D}`` (features as stored: unnormalised
    CLIP ViT-B/32 outputs). Raises InputError naming the zip and the key that is wrong.
    """
    import zipfile

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
                         f"(e.g. {', '.join(missing[:_MAX_NAMED])})")
    dims = {len(v) for v in img.values()} | {len(r) for v in txt.values() for r in (v or [])}
    if len(dims) > 1:
        raise InputError(f"{z}: features of different widths {sorted(dims)} in {OFFICIAL_ZIP_JSON}")
    return {"images": images, "img_features": img, "txt_features": txt, "dim": dims.pop() if dims else None}


def official_zip_set(path: Any, resolution: int):
    """The images of an official LAFITE dataset zip, read from the zip (no extraction)."""
    from .datasets import ImageSet, Item
    from .images import ZIP_SEP

    z = Path(path).expanduser()
    meta = read_official_zip(z)
    if not meta["images"]:
        raise InputError(f"{z} holds no images")
    items = [Item(path=Path(f"{z}{ZIP_SEP}{m}"), meta={"member": m}) for m in meta["images"]]
    return ImageSet(items, f"official-zip:{z.name}", resolution, "official-zip", "center", None,
                    {"zip": str(z), "features_dim": meta["dim"]})
