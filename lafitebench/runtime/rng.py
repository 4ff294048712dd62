"""Per-sample random numbers: every draw that shapes sample ``i`` comes from a generator seeded
by ``(seed, i, stream)``, so sample ``i`` is the same whatever the batch size, the order of
batches or the number of processes (edm2's practice: one RNG per sample).

Streams name what a draw is for (``"z"``, ``"noise"``, ``"pseudo_text"``, ``"eps"``), so adding a
draw of one kind never shifts another. Draws are made on the CPU in float32 and then moved, so
a seed gives the same latents on every device.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch

from ..errors import InputError

#: Streams used by LAFITE sampling; any other string is allowed too.
STREAMS = ("z", "noise", "pseudo_text", "eps")
MAX_SEED = 2**63 - 1


def check_seed(seed: int, param: str = "seed") -> int:
    """``seed`` as an int in [0, 2**63); InputError (naming ``param``) otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{param} must be an integer in [0, 2**63), got {seed!r}", param=param)
    return seed


def sample_seed(seed: int, index: int, stream: str) -> int:
    """The 63-bit seed of one sample's stream: sha256 of ``"seed:index:stream"`` (no overlap
    between (seed, index) pairs, unlike ``seed + index``)."""
    digest = hashlib.sha256(f"{int(seed)}:{int(index)}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & MAX_SEED


def sample_generator(seed: int, index: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for one sample's stream."""
    return torch.Generator(device="cpu").manual_seed(sample_seed(seed, index, stream))


def sample_generators(seed: int, indices: Sequence[int], stream: str) -> list[torch.Generator]:
    """One CPU generator per sample index (see :func:`sample_generator`)."""
    check_seed(seed)
    return [sample_generator(seed, int(i), stream) for i in indices]


def randn_from(generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[len(generators), *shape]`` standard normal, row ``k`` drawn from ``generators[k]`` (on the
    CPU in float32; then moved to ``device``/``dtype``). Each call advances every generator."""
    rows = [torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in generators]
    out = torch.stack(rows) if rows else torch.zeros((0, *shape))
    return out.to(device=device, dtype=dtype)


def randn_per_sample(seed: int, indices: Sequence[int], shape: Sequence[int], stream: str,
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[len(indices), *shape]`` standard normal where row ``k`` depends only on ``(seed, indices[k], stream)``."""
    return randn_from(sample_generators(seed, indices, stream), shape, device, dtype)
