"""One decoded batch of images, as every consumer (metrics, encoders, generation) receives it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Batch:
    """One decoded batch.

    Attributes:
        images: uint8 [N,3,H,W] RGB at the evaluation resolution.
        files: the source file of each image.
        captions: each image's caption (or None).
        soa_classes: each image's SOA class key (or None).
        indices: each image's index in its set (sample order; used to put rows gathered from
            several processes back in order). Empty when the producer does not number them.
        features: network features of these images by key, filled by the metric engine's
            feature stage (e.g. ``("pool3", 2)``: Inception pool3 at blur level 2).
    """

    images: torch.Tensor
    files: list[str]
    captions: list[str | None] = field(default_factory=list)
    soa_classes: list[str | None] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    features: dict[Any, Any] = field(default_factory=dict)
