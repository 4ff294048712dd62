"""Training data: images and CLIP features from a feature store or an official LAFITE zip,
read lazily, with a sampler whose whole state is one number (images consumed).

Order: epoch ``e`` visits the images in the permutation seeded by ``(seed, e)``; global batch
``k`` is positions ``[k·B, (k+1)·B)`` of the concatenated epochs, and rank ``r`` of ``W`` takes
the ``r``-th slice of ``B / W``. Which caption an image gets and whether it is flipped depend on
``(seed, epoch, index)`` only. So a resumed run needs the position alone to continue exactly.
"""
from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data.images import pil_to_tensor, to_rgb
from ..data.sources.official_zip import read_official_zip
from ..data.store import FeatureStore, is_store
from ..errors import InputError
from ..runtime.rng import sample_seed


class TrainingData:
    """Images (uint8, read on demand) and CLIP features (in memory) of a training set.

    Raises InputError for a path that is neither a finished feature store nor an official zip.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._order_key: tuple[int, int] | None = None
        self._order = torch.empty(0, dtype=torch.int64)
        if is_store(self.path):
            store = FeatureStore(self.path)
            self.kind, self._store = "feature-store", store
            self.resolution, self.clip = store.resolution, store.clip
            self._shards = store.shards
            self._shard_of, img, txt, off = self._read_store()
        elif self.path.is_file() and self.path.suffix.lower() == ".zip":
            self.kind = "official-zip"
            img, txt, off = self._read_zip()
            self.clip = {"model": "ViT-B-32", "pretrained": "openai", "weights_sha256": None,
                         "f_dim": img.shape[1] if img is not None else None,
                         "note": "the official dataset tool always uses CLIP ViT-B/32"}
        else:
            raise InputError(f"{self.path} is neither a feature store (`lafitebench data prepare`) nor an official "
                             "LAFITE dataset .zip", param="data")
        self.img_features = img
        self.txt_features, self.txt_offsets = txt, off
        self.n = int(img.shape[0]) if img is not None else 0
        if self.n == 0:
            raise InputError(f"training data {self.path} holds no images", param="data")
        self.f_dim = int(img.shape[1])
        self.n_with_text = int(((off[1:] - off[:-1]) > 0).sum()) if off is not None else 0

    # -- reading ------------------------------------------------------------------------------

    def _read_store(self):
        d = self._store.load(images=False)  # images stay on disk, read per item
        shard_of = [(k, r) for k, size in enumerate(d["shard_sizes"]) for r in range(size)]
        return shard_of, d["img_features"], d["txt_features"], d["txt_offsets"]

    def _read_zip(self):
        meta = read_official_zip(self.path)
        if not meta["img_features"]:
            raise InputError(f"{self.path} has no clip_img_features: LAFITE training needs the CLIP image features "
                             "(prepare the images with `lafitebench data prepare`)", param="data")
        self._members = meta["images"]
        img = torch.tensor([meta["img_features"][m] for m in self._members], dtype=torch.float32)
        caps = [meta["txt_features"].get(m) or [] for m in self._members]
        off = torch.tensor([0] + [len(c) for c in caps], dtype=torch.int64).cumsum(0)
        flat = [row for c in caps for row in c]
        txt = torch.tensor(flat, dtype=torch.float32) if flat else torch.empty(0, img.shape[1])
        from PIL import Image

        with zipfile.ZipFile(self.path) as zf, Image.open(io.BytesIO(zf.read(self._members[0]))) as im:
            self.resolution = int(im.size[0])
        return img, txt, off

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` as uint8 [3, R, R]."""
        if self.kind == "feature-store":
            k, r = self._shard_of[i]
            return _shard_slice(str(self._shards[k]), r)
        from PIL import Image


        with Image.open(io.BytesIO(_zip_handle(str(self.path)).read(self._members[i]))) as im:
            return pil_to_tensor(to_rgb(im))

    # -- sampling -----------------------------------------------------------------------------

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        """The seeded permutation of epoch ``epoch`` (the latest one is kept: steps reuse it)."""
        if self._order_key != (seed, epoch):
            g = torch.Generator().manual_seed(sample_seed(seed, epoch, "epoch-order"))
            self._order_key, self._order = (seed, epoch), torch.randperm(self.n, generator=g)
        return self._order

    def indices(self, seed: int, start: int, count: int) -> list[tuple[int, int]]:
        """``(epoch, image index)`` of positions ``start .. start+count-1``."""
        return [(e, int(self.order(seed, e)[j])) for e, j in (divmod(p, self.n) for p in range(start, start + count))]

    def batch(self, picks: Sequence[tuple[int, int]], seed: int, mirror: bool,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Images in [-1, 1] [B, 3, R, R], image features and one text feature per image (None
        when the data has none); captions and flips drawn from ``(seed, epoch, index)``."""
        imgs, txt_rows = [], []
        for e, i in picks:
            img = self.image(i)
            if mirror and sample_seed(seed, e * self.n + i, "xflip") % 2:
                img = img.flip(2)
            imgs.append(img)
            lo, hi = int(self.txt_offsets[i]), int(self.txt_offsets[i + 1])
            txt_rows.append(lo + sample_seed(seed, e * self.n + i, "caption") % (hi - lo) if hi > lo else -1)
        x = torch.stack(imgs).to(device=device, dtype=torch.float32) / 127.5 - 1.0
        feats = F.normalize(self.img_features[[i for _, i in picks]], dim=1).to(device)
        txt = None
        if all(r >= 0 for r in txt_rows):
            txt = F.normalize(self.txt_features[txt_rows], dim=1).to(device)
        return x, feats, txt

    def describe(self) -> dict[str, Any]:
        """Provenance of the data: path, kind, counts, resolution, CLIP."""
        return {"path": str(self.path), "kind": self.kind, "images": self.n, "images_with_text": self.n_with_text,
                "resolution": self.resolution, "clip": self.clip}


@lru_cache(maxsize=64)
def _shard_reader(path: str):
    from safetensors import safe_open

    return safe_open(path, framework="pt")


def _shard_slice(path: str, row: int) -> torch.Tensor:
    return _shard_reader(path).get_slice("images")[row:row + 1][0]


@lru_cache(maxsize=8)
def _zip_handle(path: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)


__all__ = ["TrainingData"]
