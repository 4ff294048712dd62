"""An image set whose images come from a function (generated on the fly, or held in memory),
with the interface the metric engine reads (``items``, ``loader``, ``fingerprint``, ``provenance``)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import torch

from ..runtime import distributed
from .batch import Batch
from .datasets import Item


class CallableImageSet:
    """``n`` images, ``produce(indices) -> uint8 [len, 3, R, R]``; ``key`` identifies the content
    (it keys the reference-statistics cache, so it must change whenever the images do)."""

    crop = "none"

    def __init__(self, name: str, n: int, resolution: int, produce: Callable[[list[int]], torch.Tensor], key: str,
                 kind: str = "in-memory", info: dict[str, Any] | None = None) -> None:

        self.name, self.resolution, self.kind, self._produce, self._key = name, resolution, kind, produce, key
        self.items = [Item(path=Path(f"{i:06d}.png")) for i in range(n)]
        self.root = None
        self.skipped: list[str] = []
        self.info = dict(info or {})

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        """sha256 of the content key."""
        return hashlib.sha256(self._key.encode()).hexdigest()

    def find_bad(self, quick: bool = True) -> list[tuple[str, str]]:
        """Produced images are never unreadable."""
        return []

    def validate(self, quick: bool = True) -> None:
        """Nothing to check before the pass."""
        return None

    def loader(self, batch_size: int, num_workers: int = 0, skip_bad: bool = False, shard: bool = False):
        """Batches of produced images in index order (``shard``: this rank's batches under torchrun)."""

        batches = [list(range(s, min(s + batch_size, len(self.items)))) for s in range(0, len(self.items), batch_size)]
        if shard:
            batches = distributed.shard_batches(batches)
        for idx in batches:
            imgs = self._produce(idx)
            yield Batch(images=imgs.cpu(), files=[str(self.items[i].path) for i in idx], captions=[None] * len(idx),
                        soa_classes=[None] * len(idx), indices=list(idx))

    def provenance(self, fingerprint: bool = True) -> dict[str, Any]:
        """Name, kind, count and resolution (plus the fingerprint)."""
        d = {"name": self.name, "kind": self.kind, "n": len(self.items), "resolution": self.resolution,
             "skipped": [], **self.info}
        if fingerprint:
            d["fingerprint"] = self.fingerprint()
        return d


__all__ = ["CallableImageSet"]
