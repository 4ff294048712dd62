"""Semantic Object Accuracy (SOA, Hinz et al.) caption lists and the generation split.

The official lists are ``label_XX_name.pkl`` files, XX being the COCO class index in the
order of darknet's ``coco.names`` (0..79), which is also the order of the 80 class ids of
ultralytics' COCO detectors. Each file is a plain pickled list of dicts
``{"idx": [img_idx, cap_idx], "image_id": int, "id": int, "caption": str}``; they are read
with an unpickler that allows no globals except ``list``/``dict``/``str``/``int`` (no code runs).

A class is named everywhere by its key ``label_XX_name`` (the samples manifest's ``soa_class``);
:func:`soa_class` also accepts the index, the SOA short name or the COCO name.
Protocol: 3 images per caption; for 'person' 30,000 randomly sampled captions × 1 image.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..encoders.detector import COCO80_NAMES  # noqa: F401 (the detector's class order)
from ..io.unpickle import restricted_load

# The names the SOA files use (``label_XX_<short>.pkl``), same order.
SOA_SHORT_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "plane", "bus", "train", "truck", "boat", "trafficlight",
    "hydrant", "stopsign", "parkingmeter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "ball", "kite", "baseballbat", "baseballglove", "skateboard", "surfboard",
    "racket", "bottle", "wineglass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "oranges", "broccoli", "carrot", "hotdog", "pizza", "donut", "cake", "chair", "sofa",
    "pottedplant", "bed", "table", "toilet", "monitor", "laptop", "computermouse", "remote", "keyboard",
    "cellphone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissor", "teddybear", "hairdrier", "toothbrush",
)

PERSON_KEY = "label_00_person"
SOA_IMAGES_PER_CAPTION = 3
SOA_PERSON_SAMPLES = 30_000
_KEY_RE = re.compile(r"^label_(\d{2})_([a-z]+)$")


@dataclass(frozen=True)
class SoaClass:
    """One of the 80 SOA classes: COCO index (= detector class id), file key, short and COCO name."""

    index: int
    key: str
    short: str
    coco_name: str


SOA_CLASSES: tuple[SoaClass, ...] = tuple(
    SoaClass(i, f"label_{i:02d}_{s}", s, c) for i, (s, c) in enumerate(zip(SOA_SHORT_NAMES, COCO80_NAMES))
)
_LOOKUP: dict[str, SoaClass] = {}
for _c in SOA_CLASSES:
    for _alias in (_c.key, _c.short, _c.coco_name, _c.coco_name.replace(" ", ""), str(_c.index)):
        _LOOKUP.setdefault(_alias.lower(), _c)
del _c, _alias


def soa_class(name: str | int) -> SoaClass:
    """The SOA class for a key (``label_15_cat``), index (15 / ``"15"``), short or COCO name.

    Raises:
        InputError: unknown class (or a key whose index and name disagree).
    """
    if isinstance(name, (int, np.integer)):
        if not 0 <= int(name) < len(SOA_CLASSES):
            raise InputError(f"SOA class index {name} is outside 0..79")
        return SOA_CLASSES[int(name)]
    text = str(name).strip().lower()
    m = _KEY_RE.match(text)
    if m:
        idx = int(m.group(1))
        if idx >= len(SOA_CLASSES) or SOA_CLASSES[idx].key != text:
            expect = SOA_CLASSES[idx].key if idx < len(SOA_CLASSES) else "an index 00..79"
            raise InputError(f"SOA class key {name!r} does not match the official list (expected {expect})")
        return SOA_CLASSES[idx]
    if text in _LOOKUP:
        return _LOOKUP[text]
    raise InputError(
        f"unknown SOA class {name!r}: use a key like 'label_15_cat', an index 0..79, or a COCO name"
    )


_CAPTION_ALLOWED = {("builtins", "list"): list, ("builtins", "dict"): dict, ("builtins", "str"): str,
                    ("builtins", "int"): int}


def read_caption_pickle(path: str | Path) -> list[dict[str, Any]]:
    """Read one ``label_XX_name.pkl`` safely and check its structure.

    Raises:
        InputError: unreadable/unsafe pickle, or entries lacking ``caption``/``id``/``image_id``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the SOA caption file ({exc})") from None
    data = restricted_load(raw, allowed=_CAPTION_ALLOWED, source=path, error=InputError,
                           what="SOA caption files hold plain lists of dicts",
                           hint="not a readable SOA caption pickle")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of caption dicts, got {type(data).__name__}")
    for i, e in enumerate(data):
        if not (
            isinstance(e, dict)
            and isinstance(e.get("caption"), str)
            and isinstance(e.get("id"), int)
            and isinstance(e.get("image_id"), int)
        ):
            raise InputError(f"{path}: entry {i} is not a dict with str 'caption', int 'id' and int 'image_id': {e!r:.200}")
    return data


class SoaCaptions(dict):
    """``{class_key: [caption dicts]}`` for the classes present, in class order; ``absent`` lists
    the keys of the 80 classes whose file is missing, ``directory`` where they were read from."""

    def __init__(self, data: dict[str, list[dict[str, Any]]], absent: list[str], directory: Path) -> None:
        super().__init__(data)
        self.absent = absent
        self.directory = directory


def load_soa_captions(captions_dir: str | Path) -> SoaCaptions:
    """Read every ``label_XX_name.pkl`` in ``captions_dir``.

    File names are checked against the official list (``label_62_monitor`` is COCO class 62,
    'tv'). Missing classes are not an error here: they are listed in ``.absent`` (in the shared
    assets ``label_00_person`` is absent) and metrics report them.

    Raises:
        InputError: folder missing or without caption files, a file name that is not an official
            SOA class key, or an unreadable/unsafe file.
    """
    d = Path(captions_dir).expanduser()
    if not d.is_dir():
        raise InputError(f"SOA captions folder {d} does not exist (soa_captions option): it must hold label_XX_name.pkl files")
    files = sorted(d.glob("label_*.pkl"))
    if not files:
        raise InputError(f"SOA captions folder {d} has no label_XX_name.pkl files")
    found: dict[int, list[dict[str, Any]]] = {}
    for f in files:
        cls = soa_class(f.stem) if _KEY_RE.match(f.stem) else None
        if cls is None:
            raise InputError(f"{f}: not an SOA caption file name (expected label_XX_name.pkl, e.g. label_15_cat.pkl)")
        found[cls.index] = read_caption_pickle(f)
    data = {SOA_CLASSES[i].key: found[i] for i in sorted(found)}
    absent = [c.key for c in SOA_CLASSES if c.index not in found]
    return SoaCaptions(data, absent, d)


@dataclass(frozen=True)
class SoaItem:
    """One image to generate: class key, caption, caption id, repeat number (0-based)."""

    class_key: str
    caption: str
    caption_id: int
    repeat: int
    image_id: int
    class_index: int

    @property
    def sample_stem(self) -> str:
        """A unique, stable file stem: ``label_15_cat_382805_r0``."""
        return f"{self.class_key}_{self.caption_id}_r{self.repeat}"


def soa_split(
    captions_dir: str | Path,
    images_per_caption: int = SOA_IMAGES_PER_CAPTION,
    person_samples: int = SOA_PERSON_SAMPLES,
    seed: int = 0,
) -> list[SoaItem]:
    """The images the SOA protocol generates, in class / caption / repeat order.

    Every caption of every present class gets ``images_per_caption`` items, except 'person':
    ``person_samples`` captions drawn without replacement (numpy ``default_rng(seed)``, kept in
    file order) × 1. Absent classes contribute nothing (see ``load_soa_captions(...).absent``).

    Raises:
        InputError: bad folder/files (see :func:`load_soa_captions`) or non-positive counts.
    """
    if images_per_caption < 1 or person_samples < 1:
        raise InputError("images_per_caption and person_samples must be >= 1")
    caps = load_soa_captions(captions_dir)
    items: list[SoaItem] = []
    for key, entries in caps.items():
        cls = soa_class(key)
        if key == PERSON_KEY:
            rng = np.random.default_rng(seed)
            pick = np.sort(rng.choice(len(entries), size=min(person_samples, len(entries)), replace=False))
            chosen, repeats = [entries[i] for i in pick], 1
        else:
            chosen, repeats = entries, images_per_caption
        for e in chosen:
            for r in range(repeats):
                items.append(SoaItem(key, e["caption"], e["id"], r, e["image_id"], cls.index))
    return items
