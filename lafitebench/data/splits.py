"""Caption splits: deterministic, versioned lists of what to generate.

A split is a list of rows ``(index, caption, seed, soa_class)`` with an id, a version and a
content hash (sha256 of the canonical JSON of the rows), recorded in every samples manifest and
result. Sample ``index`` is generated with the per-sample streams of ``(seed, index)``.

Registered splits (:data:`SPLITS`; unknown names get a did-you-mean):

- ``coco-mini``: the 100 bundled COCO val2017 images, one caption each (seeded draw among its 5).
- ``coco-val-30k``: the official FID protocol as LAFITE runs it: the test images (``data_root`` with
  ``annotations/captions_val2014.json``, or ``captions_file``) in image-id order, one caption per
  image chosen by a seeded draw among its captions, cycling over the images until 30,000 rows.
- ``coco-val-30k-captions``: the variant users also cite: 30,000 captions drawn without
  replacement from all test captions (seeded), in annotation order.
- ``coco-val2017-5k``: the 5,000 val2017 images, one caption each (``captions_val2017.json``).
- ``soa``: the 80 SOA class lists (``data_root`` = the folder of ``label_XX_name.pkl``): 3 images
  per caption, 30,000 sampled ``person`` captions × 1; absent class files are listed in ``info``.
- ``cub-test``, ``ln-coco-test`` (30,000) and ``mm-celeba-hq-test`` (6,000): the data set's test
  images in order (:mod:`lafitebench.data.sources`), one seeded caption each, cycling.

Any other name is a caption file: ``.txt`` (one caption per line), ``.csv`` / ``.jsonl`` with a
``caption`` column and optional ``seed`` and ``soa_class`` columns; or an official LAFITE
dataset ``.zip``, whose stored text features are the split (no CLIP model is needed).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..io.files import read_text
from ..registry import Registry, UnknownNameError
from .registry import get_dataset
from .soa import load_soa_captions, soa_class, soa_split
from .sources.coco import COCO_MINI_DIR
from .sources.official_zip import read_official_zip
from .store import FeatureStore

SPLIT_FORMAT_VERSION = 1
COCO_FID_SAMPLES = 30_000


@dataclass(frozen=True)
class SplitRow:
    """One sample to generate."""

    index: int
    caption: str
    seed: int
    soa_class: str | None = None
    source: str | None = None  # where the caption comes from (image id, caption id, file line)


@dataclass
class CaptionSplit:
    """A named, versioned list of :class:`SplitRow` (see the module docstring)."""

    id: str
    rows: list[SplitRow]
    version: int = SPLIT_FORMAT_VERSION
    info: dict[str, Any] = field(default_factory=dict)
    features: Any = None  # [N, D] text features the split carries (official zips): no CLIP needed

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def hash(self) -> str:
        """sha256 of the split id, version and every row (stable across machines)."""
        rows = [[r.index, r.caption, r.seed, r.soa_class] for r in self.rows]
        text = json.dumps({"id": self.id, "version": self.version, "rows": rows}, ensure_ascii=False,
                          separators=(",", ":"))
        h = hashlib.sha256(text.encode("utf-8"))
        if self.features is not None:
            h.update(np.ascontiguousarray(np.asarray(self.features, dtype=np.float32)).tobytes())
        return h.hexdigest()

    def head(self, num: int | None, *, cycle: bool = False) -> "CaptionSplit":
        """The first ``num`` rows; more than the split has only with ``cycle`` (rows repeat, indices go on).

        Raises:
            InputError: ``num`` < 1, or larger than the split without ``cycle``.
        """
        if num is None or num == len(self.rows):
            return self
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise InputError(f"num must be a positive integer, got {num!r}", param="num")
        if num > len(self.rows) and not cycle:
            raise InputError(f"num {num} is larger than split {self.id!r} ({len(self.rows)} rows); ask for at most "
                             f"{len(self.rows)} or pass cycle to repeat the split", param="cycle")
        pick = [i % len(self.rows) for i in range(num)]
        rows = [SplitRow(i, self.rows[j].caption, self.rows[j].seed, self.rows[j].soa_class, self.rows[j].source)
                for i, j in enumerate(pick)]
        feats = None if self.features is None else self.features[pick]
        return CaptionSplit(f"{self.id}[:{num}]" if num < len(self.rows) else f"{self.id}[cycled to {num}]",
                            rows, self.version, {**self.info, "parent": self.id, "parent_hash": self.hash}, feats)

    def provenance(self) -> dict[str, Any]:
        """id, version, hash, size and how it was made."""
        return {"id": self.id, "version": self.version, "hash": self.hash, "n": len(self.rows), **self.info}


# --- COCO ------------------------------------------------------------------------------------------

def _coco_captions(captions_file: Path) -> tuple[list[int], dict[int, list[tuple[int, str]]]]:
    """Image ids in order and ``{image_id: [(annotation id, caption), ...]}`` of a COCO caption JSON."""
    try:
        ann = json.loads(read_text(captions_file, "COCO captions file"))
        ids = sorted(int(im["id"]) for im in ann["images"])
        caps: dict[int, list[tuple[int, str]]] = {}
        for a in ann["annotations"]:
            caps.setdefault(int(a["image_id"]), []).append((int(a["id"]), " ".join(str(a["caption"]).split())))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError) as e:
        raise InputError(f"COCO captions file {captions_file} is not in the official format: "
                         f"{type(e).__name__}: {e}") from None
    ids = [i for i in ids if caps.get(i)]
    if not ids:
        raise InputError(f"COCO captions file {captions_file} has no captioned images")
    return ids, {i: sorted(caps[i]) for i in ids}


def _coco_file(data_root: Any, captions_file: Any, default: str) -> Path:
    if captions_file is not None:
        return Path(captions_file).expanduser()
    if data_root is None:
        raise InputError(f"this split needs the COCO annotations: pass data_root (a folder with annotations/{default}) "
                         "or captions_file", param="data_root")
    root = Path(data_root).expanduser()
    return root / "annotations" / default if (root / "annotations").is_dir() else root / default


def _one_per_image(split_id: str, captions_file: Path, seed: int, total: int | None) -> CaptionSplit:
    ids, caps = _coco_captions(captions_file)
    rng = np.random.default_rng(seed)
    picks = {i: caps[i][int(rng.integers(len(caps[i])))] for i in ids}  # one seeded draw per image, in id order
    n = total or len(ids)
    rows = [SplitRow(k, picks[ids[k % len(ids)]][1], seed, None, f"image {ids[k % len(ids)]} caption "
                     f"{picks[ids[k % len(ids)]][0]}") for k in range(n)]
    return CaptionSplit(split_id, rows, info={"captions_file": str(captions_file), "images": len(ids),
                                               "draw": f"one caption per image, numpy default_rng({seed})",
                                               "cycled": n > len(ids)})


def coco_val_30k(data_root: Any = None, captions_file: Any = None, seed: int = 0) -> CaptionSplit:
    """30,000 rows over the COCO 2014 test images in id order, one seeded caption per image, cycling."""
    return _one_per_image("coco-val-30k", _coco_file(data_root, captions_file, "captions_val2014.json"), seed,
                          COCO_FID_SAMPLES)


def coco_val_30k_captions(data_root: Any = None, captions_file: Any = None, seed: int = 0) -> CaptionSplit:
    """30,000 captions drawn without replacement from all COCO 2014 test captions (seeded), in annotation order."""
    f = _coco_file(data_root, captions_file, "captions_val2014.json")
    ids, caps = _coco_captions(f)
    every = sorted((aid, text, img) for img in ids for aid, text in caps[img])
    if len(every) < COCO_FID_SAMPLES:
        raise InputError(f"{f} has {len(every)} captions, fewer than the {COCO_FID_SAMPLES} this split draws")
    pick = np.sort(np.random.default_rng(seed).choice(len(every), COCO_FID_SAMPLES, replace=False))
    rows = [SplitRow(k, every[j][1], seed, None, f"image {every[j][2]} caption {every[j][0]}") for k, j in enumerate(pick)]
    return CaptionSplit("coco-val-30k-captions", rows, info={"captions_file": str(f), "captions": len(every)})


def coco_val2017_5k(data_root: Any = None, captions_file: Any = None, seed: int = 0) -> CaptionSplit:
    """The val2017 images in id order, one seeded caption each."""
    return _one_per_image("coco-val2017-5k", _coco_file(data_root, captions_file, "captions_val2017.json"), seed, None)


def coco_mini_split(data_root: Any = None, captions_file: Any = None, seed: int = 0) -> CaptionSplit:
    """The bundled coco-mini images (100), one seeded caption each among their 5."""

    if data_root is not None or captions_file is not None:
        raise InputError("split 'coco-mini' is bundled; data_root / captions_file do not apply", param="data_root")
    meta = json.loads(read_text(COCO_MINI_DIR / "captions.json", "bundled coco-mini metadata"))
    rng = np.random.default_rng(seed)
    rows = []
    for k, rec in enumerate(meta["images"]):
        caps = rec["captions"]
        rows.append(SplitRow(k, " ".join(caps[int(rng.integers(len(caps)))].split()), seed, None,
                             f"image {rec['image_id']}"))
    return CaptionSplit("coco-mini", rows, info={"draw": f"one caption per image, numpy default_rng({seed})"})


def soa_caption_split(data_root: Any = None, captions_file: Any = None, seed: int = 0) -> CaptionSplit:
    """The SOA protocol's rows (see :func:`lafitebench.data.soa.soa_split`)."""

    if data_root is None:
        raise InputError("split 'soa' needs the folder of SOA caption lists (label_XX_name.pkl): pass data_root",
                         param="data_root")
    items = soa_split(data_root, seed=seed)
    absent = list(load_soa_captions(data_root).absent)
    rows = [SplitRow(k, it.caption, seed, it.class_key, f"{it.sample_stem}") for k, it in enumerate(items)]
    return CaptionSplit("soa", rows, info={"captions_dir": str(data_root), "absent_classes": absent,
                                            "protocol": "3 images per caption; 30,000 person captions x 1"})


def _dataset_split(split_id: str, dataset: str, dataset_split: str, total: int | None) -> "SplitFactory":
    """A split over a data set's test images in order: one seeded caption per image, cycling to ``total``."""
    def make(data_root: Any = None, captions_file: Any = None, seed: int = 0) -> CaptionSplit:
        images = get_dataset(dataset, data_root=data_root, split=dataset_split, captions_file=captions_file)
        rng = np.random.default_rng(seed)
        picks = [it.captions[int(rng.integers(len(it.captions)))] for it in images.items]
        n = total or len(picks)
        rows = [SplitRow(k, picks[k % len(picks)], seed, None, str(images.items[k % len(picks)].path.name))
                for k in range(n)]
        return CaptionSplit(split_id, rows, info={"dataset": images.name, "images": len(picks), "cycled": n > len(picks),
                                                   "draw": f"one caption per image, numpy default_rng({seed})"})
    make.__doc__ = f"{split_id}: the {dataset} {dataset_split} images, one seeded caption each" + (
        f", cycling to {total}." if total else ".")
    return make


SplitFactory = Callable[..., CaptionSplit]
SPLITS: Registry[SplitFactory] = Registry("caption split")
SPLITS.register("coco-mini", coco_mini_split)
SPLITS.register("coco-val-30k", coco_val_30k)
SPLITS.register("coco-val-30k-captions", coco_val_30k_captions)
SPLITS.register("coco-val2017-5k", coco_val2017_5k)
SPLITS.register("soa", soa_caption_split)
SPLITS.register("cub-test", _dataset_split("cub-test", "cub", "test", COCO_FID_SAMPLES))
SPLITS.register("ln-coco-test", _dataset_split("ln-coco-test", "ln-coco", "val2017", COCO_FID_SAMPLES))
SPLITS.register("mm-celeba-hq-test", _dataset_split("mm-celeba-hq-test", "mm-celeba-hq", "test", 6000))
SPLITS.register("cc3m-val", _dataset_split("cc3m-val", "cc3m", None, COCO_FID_SAMPLES))


# --- caption files ---------------------------------------------------------------------------------

def _int_seed(value: Any, where: str, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: seed {value!r} is not an integer") from None
    if not 0 <= seed < 2**63:
        raise InputError(f"{where}: seed {seed} is outside [0, 2**63)")
    return seed


def caption_file_split(path: str | os.PathLike, seed: int = 0) -> CaptionSplit:
    """A user caption file: ``.txt`` (one caption per line, blank lines skipped), or ``.csv`` /
    ``.jsonl`` with a ``caption`` column (optional ``seed``, ``soa_class``).

    Raises:
        InputError: unreadable or non-UTF-8 file, unknown suffix, a row without a caption (named by
            line), a bad seed or SOA class, or no captions at all.
    """

    p = Path(path).expanduser()
    text = read_text(p, "caption file")
    raw: list[tuple[str, dict[str, Any]]] = []
    suffix = p.suffix.lower()
    if suffix == ".txt":
        raw = [(f"line {n}", {"caption": line}) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    elif suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                raise InputError(f"caption file {p} line {n}: invalid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise InputError(f"caption file {p} line {n}: expected a JSON object")
            raw.append((f"line {n}", obj))
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "caption" not in [h.strip() for h in reader.fieldnames]:
            raise InputError(f"caption file {p}: no 'caption' column in the header")
        reader.fieldnames = [h.strip() for h in reader.fieldnames]
        raw = [(f"line {reader.line_num}", row) for row in reader]
    else:
        raise InputError(f"caption file {p}: unknown format {suffix!r}; use .txt, .csv or .jsonl")
    rows = []
    for k, (where, obj) in enumerate(raw):
        cap = obj.get("caption")
        if not isinstance(cap, str) or not cap.strip():
            raise InputError(f"caption file {p} {where}: no caption")
        soa = obj.get("soa_class") or None
        if soa is not None:
            soa = soa_class(str(soa)).key
        rows.append(SplitRow(k, " ".join(cap.split()), _int_seed(obj.get("seed"), f"caption file {p} {where}", seed),
                             soa, where))
    if not rows:
        raise InputError(f"caption file {p} holds no captions")
    return CaptionSplit(f"file:{p.name}", rows, info={"file": str(p)})


def official_zip_split(path: str | os.PathLike, seed: int = 0) -> CaptionSplit:
    """The text features of an official LAFITE dataset zip as a split: one row per image (in the
    zip's order) with one of its caption features chosen by a seeded draw, L2-normalised. The zip
    stores features, not caption text: rows name the image and caption number instead.

    Raises:
        InputError: not an official zip, or one without text features.
    """
    import torch


    meta = read_official_zip(path)
    if not meta["txt_features"]:
        raise InputError(f"{path} has no clip_txt_features: its text features are needed for this split")
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    for k, member in enumerate(m for m in meta["images"] if meta["txt_features"].get(m)):
        options = meta["txt_features"][member]
        j = int(rng.integers(len(options)))
        rows.append(SplitRow(k, f"<text feature {j} of {member}>", seed, None, f"{member}#{j}"))
        feats.append(options[j])
    t = torch.nn.functional.normalize(torch.tensor(feats, dtype=torch.float32), dim=1)
    return CaptionSplit(f"official-zip:{Path(path).name}", rows, info={"zip": str(path), "dim": meta["dim"],
                        "features": "clip_txt_features of the zip (unnormalised there; L2-normalised here)",
                        "clip_model": "ViT-B-32"},  # the official dataset tool always loads ViT-B/32
                        features=t)


def feature_store_split(path: str | os.PathLike, seed: int = 0) -> CaptionSplit:
    """A feature store (``lafitebench data prepare``) as a split: one row per image with a
    caption, one of its captions chosen by a seeded draw, with that caption's stored text
    feature (L2-normalised): generation needs no CLIP model. ``info["clip_model"]`` names the
    backbone, which ``generate`` compares with the model's."""
    import torch


    store = FeatureStore(path)
    data = store.load(images=False)
    rng = np.random.default_rng(seed)
    rows, picks = [], []
    for i, row in enumerate(data["rows"]):
        lo, hi = int(data["txt_offsets"][i]), int(data["txt_offsets"][i + 1])
        if hi == lo:
            continue
        j = int(rng.integers(hi - lo))
        rows.append(SplitRow(len(rows), row["captions"][j], seed, None, f"{row['source']}#{j}"))
        picks.append(lo + j)
    if not rows:
        raise InputError(f"feature store {path} holds no captions")
    feats = torch.nn.functional.normalize(data["txt_features"][picks], dim=1)
    return CaptionSplit(f"store:{Path(path).name}", rows,
                        info={"store": str(path), "clip_model": store.clip.get("model"),
                              "clip_weights_sha256": store.clip.get("weights_sha256"),
                              "features": "the store's text features (unnormalised there; L2-normalised here)"},
                        features=feats)


def get_split(name_or_file: str | os.PathLike, *, data_root: Any = None, captions_file: Any = None,
              seed: int = 0) -> CaptionSplit:
    """A registered split (``coco-mini``, ``coco-val-30k``, ``coco-val-30k-captions``,
    ``coco-val2017-5k``, ``soa``) or a caption file.

    Raises:
        InputError: unknown name (did you mean), missing inputs, bad files.
    """
    s = os.fspath(name_or_file)
    if not isinstance(name_or_file, os.PathLike) and s in SPLITS:
        return SPLITS.get(s)(data_root=data_root, captions_file=captions_file, seed=seed)
    p = Path(s).expanduser()
    if p.is_file() and p.suffix.lower() == ".zip":
        return official_zip_split(p, seed=seed)
    if p.is_dir() and (p / "store.json").is_file():
        return feature_store_split(p, seed=seed)
    if p.is_file():
        return caption_file_split(p, seed=seed)
    try:
        SPLITS.get(s)
    except UnknownNameError as e:
        raise InputError(f"split: {e}; or give a caption file (.txt, .csv, .jsonl) — no file {p} exists",
                         param="split") from None
    raise AssertionError("unreachable")  # pragma: no cover
