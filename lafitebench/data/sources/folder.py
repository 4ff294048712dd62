"""Folders of images: a samples folder (with an optional ``manifest.jsonl`` / ``.csv`` or a
``.txt`` of captions) or a reference folder; images sorted by relative path, or in manifest order."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...io.files import read_text
from .. import images as _img
from ..datasets import ImageSet, Item, list_images
from ..manifest import MANIFEST_NAMES, read_manifest


def _items_from_manifest(manifest: Path, base_dir: Path, allow_outside: bool = False) -> list[Item]:
    return [
        Item(path=r.path, caption=r.caption, soa_class=r.soa_class, captions=list(r.captions), meta=dict(r.extra))
        for r in read_manifest(manifest, base_dir=base_dir, allow_outside=allow_outside)
    ]


def _find_manifest(folder: Path) -> Path | None:
    found = [folder / n for n in MANIFEST_NAMES if (folder / n).is_file()]
    if len(found) > 1:
        raise InputError(f"folder {folder} has both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def _txt_captions(folder: Path, files: list[Path], captions_file: Path) -> list[Item]:
    lines = read_text(captions_file, "captions file").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != len(files):
        raise InputError(
            f"captions file {captions_file} has {len(lines)} lines but {folder} has {len(files)} images; "
            "a .txt captions file needs one caption per image, in sorted file order"
        )
    return [Item(path=f, caption=c.strip() or None, captions=[c.strip()] if c.strip() else []) for f, c in zip(files, lines)]


def _folder_items(folder: Path, captions_file: str | os.PathLike | None,
                  allow_outside: bool = False) -> tuple[list[Item], dict[str, Any]]:
    if not folder.exists():
        raise InputError(f"folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    if captions_file is not None:
        cf = Path(captions_file)
        if not cf.is_file():
            raise InputError(f"captions file {cf} does not exist")
        if cf.suffix.lower() in (".jsonl", ".csv"):
            return _items_from_manifest(cf, folder, allow_outside), {"manifest": str(cf)}
        if cf.suffix.lower() == ".txt":
            files = list_images(folder)
            if not files:
                raise InputError(f"folder {folder} contains no images ({', '.join(sorted(_img.IMAGE_EXTENSIONS))})")
            return _txt_captions(folder, files, cf), {"captions_file": str(cf)}
        raise InputError(f"captions file {cf}: unknown format; use a .jsonl/.csv manifest or a .txt (one caption per line)")
    manifest = _find_manifest(folder)
    if manifest is not None:
        return _items_from_manifest(manifest, folder, allow_outside), {"manifest": str(manifest)}
    files = list_images(folder)
    if not files:
        raise InputError(
            f"folder {folder} contains no images (looked recursively for {', '.join(sorted(_img.IMAGE_EXTENSIONS))})"
        )
    return [Item(path=f) for f in files], {}


def folder_set(folder: str | os.PathLike, *, resolution: int = 256, crop: str = "none",
               captions_file: str | os.PathLike | None = None, kind: str = "folder",
               allow_outside_paths: bool = False) -> ImageSet:
    """A folder of images (recursive, sorted) or the files of its manifest (which may list files
    outside the folder only with ``allow_outside_paths``).

    Raises:
        InputError: missing folder, no images, bad manifest, missing listed files.
    """
    folder = Path(folder).expanduser()
    items, info = _folder_items(folder, captions_file, allow_outside_paths)
    return ImageSet(items, str(folder), resolution, kind, crop, folder, info)


def sample_set(dir: str | os.PathLike, captions_file: str | os.PathLike | None = None,
               resolution: int = 256, allow_outside_paths: bool = False) -> ImageSet:
    """Generated samples: ``dir``'s ``manifest.jsonl`` / ``manifest.csv`` if present (or
    ``captions_file``: a manifest, or a .txt with one caption per sorted image), else all images.

    Images are decoded with ``crop="none"`` (BICUBIC resize only when the size differs).

    Raises:
        InputError: missing folder, no images, bad manifest, caption count mismatch.
    """
    return folder_set(dir, resolution=resolution, crop="none", captions_file=captions_file, kind="samples",
                      allow_outside_paths=allow_outside_paths)
