"""The contract every metric accumulator follows, so the engine decodes each image once.

The engine decodes a batch of images to uint8 NCHW RGB tensors at the evaluation resolution
and hands the same tensor (plus the batch's captions / SOA classes) to every accumulator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class Batch:
    """One decoded batch: ``images`` uint8 [N,3,H,W] RGB at the evaluation resolution."""

    images: torch.Tensor
    files: list[str]
    captions: list[str | None] = field(default_factory=list)
    soa_classes: list[str | None] = field(default_factory=list)


class Accumulator(Protocol):
    """Streams batches, then reduces to named results (plus an optional per-item table)."""

    def update(self, batch: Batch) -> None: ...

    def compute(self) -> dict[str, Any]: ...
