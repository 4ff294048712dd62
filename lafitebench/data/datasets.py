"""Image sets: an ordered list of images (:class:`Item`) decoded to uint8 batches, with a content
fingerprint, shards for torchrun and bad-image handling (:class:`ImageSet`).

Where the items come from is a source's business (:mod:`lafitebench.data.sources`); sets are
looked up by name in :mod:`lafitebench.data.registry`.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from ..errors import InputError
from ..runtime import distributed
from . import images as _img
from .batch import Batch

__all__ = ["Item", "ImageSet", "list_images", "worker_message", "FINGERPRINT_VERSION"]

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

        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}", param="batch_size")
        self.skipped = []
        self.skip_reasons = {}
        batches = [list(range(s, min(s + batch_size, len(self.items)))) for s in range(0, len(self.items), batch_size)]
        if shard:
            batches = distributed.shard_batches(batches)
        ds = _img.DecodeDataset([it.path for it in self.items], self.resolution, self.crop, skip_bad)
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
