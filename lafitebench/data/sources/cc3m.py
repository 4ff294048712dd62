"""Google Conceptual Captions (``cc3m``): a TSV (``captions_file``) of ``caption<TAB>path`` with paths
relative to the TSV's folder; local images only (URLs are refused: download them first)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...io.files import read_text
from ..datasets import ImageSet, Item
from .common import unused


def cc3m_set(captions_file: Any, resolution: int):
    """A CC3M TSV of ``caption<TAB>path`` (header row optional); local images only."""
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


def dataset(data_root=None, resolution: int = 256, split=None, captions_file=None, crop=None) -> ImageSet:
    """:func:`cc3m_set` (the TSV locates everything: no ``data_root`` or ``split``)."""
    unused("cc3m", data_root=data_root, split=split, crop=crop)
    return cc3m_set(captions_file, resolution)
