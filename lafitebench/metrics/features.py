"""The shared Inception feature stage: each image goes through blur + Inception once per blur level.

Metrics declare the features they need as :data:`~lafitebench.metrics.base.FeatureKey`
``("pool3", k)`` / ``("logits", 0)``; :class:`InceptionStage` computes the union for a batch
(one forward per needed level, both outputs from the same forward) and returns them by key.
Blur is applied at the evaluation resolution, on uint8 images, before Inception's own resize
(see :mod:`.blur`).
"""
from __future__ import annotations

import time
from typing import Any, Iterable

import torch

from ..runtime import distributed
from .base import FeatureKey
from .blur import blur

FEATURE_KINDS = ("pool3", "logits")


def levels_of(keys: Iterable[FeatureKey]) -> list[int]:
    """The sorted blur levels in ``keys``."""
    return sorted({int(k) for _, k in keys})


class InceptionStage:
    """Routes decoded batches through blur + the Inception extractor.

    Args:
        extractor: an :class:`~lafitebench.encoders.inception.InceptionExtractor` (or anything
            with the same call signature returning ``.pool3`` / ``.logits``).
        preset: the blur preset name for levels > 0.

    Attributes ``forwards`` (images through Inception), ``forward_s`` and ``blur_s`` (seconds)
    are recorded in the result's provenance.
    """

    def __init__(self, extractor: Any, preset: str) -> None:
        self.extractor = extractor
        self.preset = preset
        self.forwards = 0
        self.forward_s = 0.0
        self.blur_s = 0.0

    def __call__(self, images: torch.Tensor, keys: Iterable[FeatureKey]) -> dict[FeatureKey, torch.Tensor]:
        """Features of a uint8 [N,3,H,W] batch for every key in ``keys``."""
        keys = set(keys)
        out: dict[FeatureKey, torch.Tensor] = {}
        if not keys:
            return out
        images = images.to(self.extractor.device)
        for level in levels_of(keys):
            t0 = time.perf_counter()
            x = blur(images, level, self.preset) if level else images
            t1 = time.perf_counter()
            res = self.extractor(x)
            self.blur_s += t1 - t0
            self.forward_s += time.perf_counter() - t1
            self.forwards += int(x.shape[0])
            if ("pool3", level) in keys:
                out[("pool3", level)] = res.pool3
            if ("logits", level) in keys:
                out[("logits", level)] = res.logits
        return out

    def provenance(self) -> dict[str, Any]:
        """Counts and times of this stage's work."""
        return {"forwards": self.forwards, "forward_s": round(self.forward_s, 3), "blur_s": round(self.blur_s, 3)}


class CombinedStage:
    """The Inception stage and the backbone stage (:class:`~.embedding.EmbeddingStage`) over the
    same decoded batch: backbone keys (``"emb:..."``) go to the latter, which may reuse the
    Inception stage's level-0 pool3; every other key to the former."""

    def __init__(self, inception: "InceptionStage | None", embedding: Any = None) -> None:
        self.inception, self.embedding = inception, embedding

    def __call__(self, images: torch.Tensor, keys: Iterable[FeatureKey]) -> dict[FeatureKey, torch.Tensor]:
        keys = set(keys)
        emb = {k for k in keys if str(k[0]).startswith("emb:")}
        inc = (keys - emb) | (self.embedding.inception_keys(emb) if self.embedding is not None else set())
        out = self.inception(images, inc) if inc else {}
        if emb:
            out.update(self.embedding(images, emb, out))
        return out


def feed(image_set: Any, metrics: Iterable[Any], stage: "InceptionStage | None", config: Any,
         bar: Any = None, label: str = "") -> int:
    """One pass over this process's shard of ``image_set``: decode each batch once, compute the
    Inception features every metric asked for (once per blur level), hand the batch to every
    metric. Returns the number of images seen here (this rank)."""
    metrics = list(metrics)
    keys: set[FeatureKey] = set()
    for m in metrics:
        keys |= m.feature_keys()
    task = bar.add_task(label, total=len(image_set.items)) if bar is not None else None
    seen = 0
    for batch in image_set.loader(config.batch_size, config.num_workers, skip_bad=config.skip_bad, shard=True):
        if keys:
            batch.features = stage(batch.images, keys)
        for m in metrics:
            m.update(batch)
        seen += int(batch.images.shape[0])
        if task is not None:  # rank 0 shows progress; the other ranks move at the same pace
            bar.update(task, completed=min(len(image_set.items), seen * distributed.world_size()))
    return seen
