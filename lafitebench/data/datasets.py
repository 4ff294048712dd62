"""Image sets (reference data and generated samples) and the dataset registry.

Names in :data:`DATASETS`:

- ``coco-mini``: 100 COCO val2017 images bundled with the package (256², centre crop +
  Lanczos, JPEG q90) with their 5 captions; ``coco-mini:a`` / ``coco-mini:b`` are its first and
  second 50 images (e.g. to evaluate one half against the other).
- ``coco``: a COCO 2017 folder given as ``data_root`` (``<root>/val2017/*.jpg`` and
  ``<root>/annotations/captions_val2017.json``, or ``data_root`` = the image folder itself);
  ``split`` ``val2017`` (default) or ``train2017``; ``captions_file`` overrides the caption
  JSON. Images are centre-cropped and Lanczos-resized to ``resolution`` on the fly.

Anything else that is a folder is a folder set: its images, recursively, sorted by relative
path (hidden files and folders skipped), or the files of its ``manifest.jsonl`` /
``manifest.csv`` in manifest order.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from lafitebench.data import images as _img
from lafitebench.data.manifest import MANIFEST_NAMES, read_manifest
from lafitebench.io.files import read_text
from lafitebench.errors import InputError
from lafitebench.data.batch import Batch
from lafitebench.registry import Registry

__all__ = [
    "Item",
    "ImageSet",
    "DATASETS",
    "get_dataset",
    "sample_set",
    "folder_set",
    "coco_set",
    "coco_mini",
    "list_images",
    "COCO_MINI_DIR",
    "COCO_SPLITS",
]

COCO_MINI_DIR = Path(__file__).resolve().parent / "coco_mini"
COCO_SPLITS = ("val2017", "train2017", "val2014", "train2014")
FINGERPRINT_VERSION = "lafitebench-imageset-v1"
_MAX_NAMED = 10


@dataclass
class Item:
    """One image: its file, the caption used for it (if any), its SOA class, all its captions."""

    path: Path
    caption: str | None = None
    soa_class: str | None = None
    captions: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive; suffix in IMAGE_EXTENSIONS; hidden entries skipped), sorted by relative path."""
    root = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith(".") and Path(f).suffix.lower() in _img.IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / f)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


class _DecodeDataset(Dataset):
    def __init__(self, paths: Sequence[Path], resolution: int, crop: str, skip_bad: bool) -> None:
        self.paths = list(paths)
        self.resolution = resolution
        self.crop = crop
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:  # i: index in the set
        try:
            return i, _img.load_image(self.paths[i], self.resolution, crop=self.crop), None
        except InputError as e:
            if not self.skip_bad:
                raise
            return i, None, str(e)


def worker_message(text: str) -> str:
    """The error message a DataLoader worker raised, without torch's "Caught ... in DataLoader worker
    process N. Original Traceback ..." wrapper."""
    if "Original Traceback" not in text:
        return text
    m = re.search(r"\n(?:lafitebench\.errors\.)?\w+Error: (.*)\Z", text.rstrip(), flags=re.S)
    return m.group(1).strip() if m else text.splitlines()[-1]


def _without_worker_tracebacks(loader: Iterable[Any]) -> Iterator[Any]:
    """Iterate a DataLoader; our own errors raised in a worker come out with their plain message."""
    it = iter(loader)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except InputError as e:
            raise InputError(worker_message(str(e)), param=getattr(e, "param", None)) from None
        yield item


def _collate(samples: list[tuple[int, torch.Tensor | None, str | None]]) -> dict[str, Any]:
    good = [(i, t) for i, t, _ in samples if t is not None]
    return {
        "indices": [i for i, _ in good],
        "images": torch.stack([t for _, t in good]) if good else None,
        "bad": [(i, msg) for i, t, msg in samples if t is None],
    }


class ImageSet:
    """An ordered set of images decoded to uint8 [N,3,R,R] batches.

    Attributes:
        items: the images (:class:`Item`), in evaluation order.
        name: e.g. ``"coco-mini"``, ``"coco:val2017"``, a folder path.
        resolution: side R of the decoded images.
        kind: ``"coco-mini"``, ``"coco"``, ``"folder"`` or ``"samples"``.
        crop: ``"none"`` (BICUBIC resize when the size differs) or ``"center"`` (centre crop + LANCZOS).
        root: folder that file names in the fingerprint are relative to.
        info: extra provenance (caption file, preprocessing of bundled data, ...).
        skipped: files skipped as unreadable during the last ``loader(skip_bad=True)`` pass.
    """

    def __init__(self, items: Sequence[Item], name: str, resolution: int = 256, kind: str = "folder",
                 crop: str = "none", root: str | os.PathLike | None = None,
                 info: dict[str, Any] | None = None) -> None:
        if crop not in _img.CROP_MODES:
            raise InputError(f"unknown crop mode {crop!r}; use one of {', '.join(_img.CROP_MODES)}")
        if not isinstance(resolution, int) or resolution < 1:
            raise InputError(f"resolution must be a positive integer, got {resolution!r}")
        if not items:
            raise InputError(f"image set {name!r} has no images")
        self.items = list(items)
        self.name = name
        self.resolution = resolution
        self.kind = kind
        self.crop = crop
        self.root = Path(root) if root is not None else None
        self.info = dict(info or {})
        self.skipped: list[str] = []
        self.skip_reasons: dict[str, str] = {}
        self._fingerprint: str | None = None
        self._content_hashes: list[str] = []

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"ImageSet(name={self.name!r}, n={len(self)}, resolution={self.resolution}, kind={self.kind!r}, crop={self.crop!r})"

    @property
    def captions(self) -> list[str | None]:
        return [it.caption for it in self.items]

    def _relname(self, p: Path) -> str:
        if self.root is not None and p.is_relative_to(self.root):
            return p.relative_to(self.root).as_posix()
        return p.as_posix()

    def fingerprint(self) -> str:
        """sha256 over (format version, resolution, crop mode, decode policy, and for each item
        in order: its file name relative to ``root``, byte size and raw bytes). Stable across
        machines and install locations; changes when any file's content, the file list, the
        order, the resolution or the crop mode changes. Computed once per instance.

        Raises:
            InputError: a listed file cannot be read.
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            policy = "none=bicubic-if-size-differs" if self.crop == "none" else "center=crop-square+lanczos"
            h.update(f"{FINGERPRINT_VERSION}\nresolution={self.resolution}\ncrop={policy}\n".encode())
            hashes = []
            for it in self.items:
                try:
                    size = _img.image_size(it.path)
                    h.update(f"{self._relname(it.path)}\0{size}\0".encode("utf-8"))
                    one = hashlib.sha256()
                    src = _img.image_source(it.path)
                    with (open(src, "rb") if not hasattr(src, "read") else src) as fh:
                        while block := fh.read(1 << 20):
                            h.update(block)
                            one.update(block)
                    hashes.append(one.hexdigest())
                except (OSError, KeyError) as e:
                    raise InputError(f"cannot read image {it.path} of set {self.name!r}: {e}") from None
            self._fingerprint, self._content_hashes = h.hexdigest(), hashes
        return self._fingerprint

    def identities(self) -> list[set[str]]:
        """Per item, what identifies the picture: the sha256 of its file and, for COCO-derived
        sets, its COCO image id (a bundled crop and the original file are the same picture).
        Computed with :meth:`fingerprint` (one read of every file)."""
        self.fingerprint()
        return [{f"sha256:{d}"} | ({f"coco:{it.meta['image_id']}"} if "image_id" in it.meta else set())
                for it, d in zip(self.items, self._content_hashes)]

    def find_bad(self, quick: bool = True) -> list[tuple[str, str]]:
        """Return ``(file, reason)`` for every image that does not open.

        ``quick=True`` parses headers only (Pillow ``verify``; cheap, misses truncated JPEG
        data); ``quick=False`` decodes every image as the loader would.
        """
        bad = []
        for it in self.items:
            if quick:
                reason = _img.check_image(it.path)
            else:
                try:
                    _img.load_image(it.path, self.resolution, crop=self.crop)
                    reason = None
                except InputError as e:
                    reason = str(e)
            if reason is not None:
                bad.append((str(it.path), reason))
        return bad

    def validate(self, quick: bool = True) -> None:
        """Fail before expensive work if any image does not open (see :meth:`find_bad`).

        Raises:
            InputError: naming the bad files (first ten) and how many there are.
        """
        bad = self.find_bad(quick=quick)
        if bad:
            named = "; ".join(f"{f} ({r})" for f, r in bad[:_MAX_NAMED])
            more = f" and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
            raise InputError(
                f"image set {self.name!r}: {len(bad)} unreadable image(s): {named}{more}. "
                "Remove them, or skip them explicitly (skip_bad)."
            )

    def loader(self, batch_size: int, num_workers: int = 0, skip_bad: bool = False,
               shard: bool = False) -> Iterator[Batch]:
        """Yield :class:`~lafitebench.data.batch.Batch` objects (uint8 [N,3,R,R]) in item order,
        each with the items' indices in this set.

        With ``shard=True`` under torchrun, this process gets batches ``rank, rank+W, ...`` of the
        same batching (see :mod:`lafitebench.runtime.distributed`). With ``skip_bad=True``
        unreadable images are left out; after the pass their files are in ``self.skipped``
        (reasons in ``self.skip_reasons``; this process's shard only). With ``skip_bad=False``
        the first unreadable image raises.

        Raises:
            InputError: an unreadable image (names the file) when ``skip_bad`` is False;
                a non-positive ``batch_size``.
        """
        from ..runtime import distributed

        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}", param="batch_size")
        self.skipped = []
        self.skip_reasons = {}
        batches = [list(range(s, min(s + batch_size, len(self.items)))) for s in range(0, len(self.items), batch_size)]
        if shard:
            batches = distributed.shard_batches(batches)
        ds = _DecodeDataset([it.path for it in self.items], self.resolution, self.crop, skip_bad)
        dl = DataLoader(ds, batch_sampler=batches, num_workers=num_workers, collate_fn=_collate)
        for out in _without_worker_tracebacks(dl):
            for i, msg in out["bad"]:
                f = str(self.items[i].path)
                self.skipped.append(f)
                self.skip_reasons[f] = msg
            if out["images"] is None:
                continue
            its = [self.items[i] for i in out["indices"]]
            yield Batch(
                images=out["images"],
                files=[str(it.path) for it in its],
                captions=[it.caption for it in its],
                soa_classes=[it.soa_class for it in its],
                indices=list(out["indices"]),
            )

    def subset(self, indices: Sequence[int], name: str | None = None) -> "ImageSet":
        """A new set of ``items[i] for i in indices`` with the same preprocessing."""
        items = [self.items[i] for i in indices]
        return ImageSet(items, name or f"{self.name}[subset of {len(items)}]", self.resolution, self.kind,
                        self.crop, self.root, {**self.info, "subset_of": self.name})

    def split_halves(self) -> tuple["ImageSet", "ImageSet"]:
        """The first ``ceil(n/2)`` and the remaining items, named ``<name>:a`` and ``<name>:b``."""
        if len(self) < 2:
            raise InputError(f"image set {self.name!r} has {len(self)} image(s); cannot split it in halves")
        k = (len(self) + 1) // 2
        return self.subset(range(k), f"{self.name}:a"), self.subset(range(k, len(self)), f"{self.name}:b")

    def provenance(self, fingerprint: bool = True) -> dict[str, Any]:
        """Plain dict describing the set and its preprocessing, for result provenance."""
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "n": len(self),
            "resolution": self.resolution,
            "crop": self.crop,
            "resize": _img.DECODE_POLICY["resize_center" if self.crop == "center" else "resize_none"],
            "decode": {k: v for k, v in _img.DECODE_POLICY.items() if not k.startswith("resize")},
            "root": str(self.root) if self.root else None,
            "n_with_caption": sum(it.caption is not None for it in self.items),
            "skipped": list(self.skipped),
            **self.info,
        }
        if fingerprint:
            d["fingerprint"] = self.fingerprint()
        return d


# --- constructors -----------------------------------------------------------------------------

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


# --- registry -----------------------------------------------------------------------------------

DatasetFactory = Callable[..., ImageSet]
DATASETS: Registry[DatasetFactory] = Registry("dataset")


def _no_options(name: str, data_root, split, captions_file) -> None:
    for opt, val in (("data_root", data_root), ("captions_file", captions_file)):
        if val is not None:
            raise InputError(f"dataset {name!r} is bundled with the package; {opt} does not apply to it")
    if split not in (None, "val2017"):
        raise InputError(f"dataset {name!r} is a subset of val2017; split {split!r} does not apply")


def _mini_factory(half: str | None, name: str) -> DatasetFactory:
    def make(data_root=None, resolution=256, split=None, captions_file=None, crop=None) -> ImageSet:
        _no_options(name, data_root, split, captions_file)
        if crop not in (None, "none"):
            raise InputError(f"dataset {name!r} is already centre-cropped to 256²; crop {crop!r} does not apply")
        return coco_mini(resolution, half)
    make.__doc__ = f"Bundled {name}."
    return make


DATASETS.register("coco-mini", _mini_factory(None, "coco-mini"))
DATASETS.register("coco-mini:a", _mini_factory("a", "coco-mini:a"))
DATASETS.register("coco-mini:b", _mini_factory("b", "coco-mini:b"))


def _register_readers() -> None:
    from . import readers

    readers.register(DATASETS)


_register_readers()


@DATASETS.register("coco")
def _coco_factory(data_root=None, resolution=256, split=None, captions_file=None, crop=None) -> ImageSet:
    return coco_set(data_root, split=split, resolution=resolution, captions_file=captions_file, crop=crop or "center")


def get_dataset(name_or_dir: str | os.PathLike, data_root: str | os.PathLike | None = None, resolution: int = 256,
                split: str | None = None, *, captions_file: str | os.PathLike | None = None,
                crop: str | None = None, allow_outside_paths: bool = False) -> ImageSet:
    """A registered dataset (``coco-mini``, ``coco-mini:a``/``:b``, ``coco``), a folder, or a
    manifest file (``.jsonl``/``.csv``; its folder is the set's root).

    ``crop`` defaults to the dataset's own (``center`` for ``coco``, ``none`` for folders).

    Raises:
        InputError: unknown name (with a did-you-mean), ``coco`` without ``data_root``, empty
            folder, bad manifest, unknown option for a bundled set.
    """
    s = os.fspath(name_or_dir)
    if not isinstance(name_or_dir, os.PathLike) and s in DATASETS:
        return DATASETS.get(s)(data_root=data_root, resolution=resolution, split=split,
                               captions_file=captions_file, crop=crop)
    p = Path(s).expanduser()
    if p.is_dir():
        if split is not None or data_root is not None:
            raise InputError(f"{p} is a folder set; data_root / split do not apply to it", param="data_root")
        return folder_set(p, resolution=resolution, crop=crop or "none", captions_file=captions_file,
                          allow_outside_paths=allow_outside_paths)
    if p.is_file() and p.suffix.lower() in (".jsonl", ".csv"):
        if captions_file is not None:
            raise InputError(f"{p} is itself a manifest; do not also pass captions_file", param="captions_file")
        return folder_set(p.parent, resolution=resolution, crop=crop or "none", captions_file=p,
                          allow_outside_paths=allow_outside_paths)
    if p.exists():
        raise InputError(f"{p} is a file, not a folder of images, a manifest or a dataset name")
    close = difflib.get_close_matches(s.lower(), DATASETS.names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InputError(
        f"unknown dataset {s!r}.{hint} Known: {', '.join(DATASETS.names())}; or give a folder of images "
        f"or a manifest (no file or folder {p} exists)"
    )
