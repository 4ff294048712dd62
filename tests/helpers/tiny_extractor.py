"""A small random conv net with the Inception extractor's interface, for tests of engine logic
(cache keys, misses, batching) that do not need Inception's numbers: ~1000x cheaper per image."""
from __future__ import annotations

import hashlib
import io

import torch
from torch import nn

from lafitebench.encoders.inception import InceptionOutput


class TinyExtractor:
    """uint8 [N,3,H,W] → pool3-like features [N, 64] and logits [N, 10] (seeded random weights)."""

    def __init__(self, seed: int = 0, pool3_dim: int = 64, logits: bool = True) -> None:
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU(), nn.Conv2d(8, 16, 4, stride=4), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, pool3_dim))
        self.head = nn.Linear(pool3_dim, 10)
        with torch.no_grad():
            for p in [*self.net.parameters(), *self.head.parameters()]:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        buf = io.BytesIO()
        torch.save({**self.net.state_dict(), **{f"head.{k}": v for k, v in self.head.state_dict().items()}}, buf)
        self.sha256 = hashlib.sha256(buf.getvalue()).hexdigest()
        self.device = torch.device("cpu")
        self.channels_last = False
        self.logits = logits
        self.has_classifier = True
        self.pool3_dim, self.logits_dim = pool3_dim, 10
        self.calls = 0

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> InceptionOutput:
        self.calls += 1
        f = self.net((images.float() - 128) / 128)
        return InceptionOutput(pool3=f, logits=self.head(f) if self.logits else None)

    def provenance(self) -> dict:
        return {"sha256": self.sha256, "device": "cpu", "channels_last": False, "resize": "none (tiny test net)",
                "has_classifier": True, "features": ["pool3(64)", "logits(10)"]}
