"""On-disk cache of reference-set Inception statistics, one file per blur level.

A cache entry lives at ``settings.cache_dir()/refstats/<key>.npz`` where ``key`` is the sha256
of the canonical JSON of everything that changes the stored numbers (:func:`refstats_key`):
the reference set's fingerprint (file list + contents), its resolution and crop/resize mode,
the blur preset and level, the Inception weights' sha256 and how the network was run (memory
layout, device type), the torch-fidelity version (its resize is part of the features), this
module's ``STATS_VERSION`` (bumped whenever the numerics change) and what the file stores
(FID statistics, plus the float32 pool3 features KID needs at level 0). The JSON itself is
stored inside the file and compared on load, so a renamed, stale or foreign file is never
served. Writes are atomic (temporary file + ``os.replace``).
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .. import settings
from ..io.files import atomic_write, clean_stale_temps
from .fid import FidStats, sqrt_factor

# Bump when anything that changes cached numbers changes (feature extraction, blur, statistics).
STATS_VERSION = 2  # 2: entries also store the FID square-root factor of the covariance

CONTENT_FID = "fid_stats"
CONTENT_KID = "kid_features"


@dataclass
class RefStats:
    """Cached statistics of one reference set at one blur level.

    ``stats``: FID mean/covariance; ``features``: float32 pool3 rows [N,2048] (for KID) or None;
    ``factor``: ``R`` with ``R Rᵀ = sigma`` (:func:`lafitebench.metrics.fid.sqrt_factor`), computed
    once per entry so the FID trace term needs no eigendecomposition of the reference side.
    """

    stats: FidStats
    features: np.ndarray | None = None
    factor: np.ndarray | None = None
    key: str = ""
    key_payload: dict[str, Any] = field(default_factory=dict)


def decoder_versions() -> dict[str, str | None]:
    """Versions of the libraries that decode, resize and blur images (part of every cache key)."""

    out: dict[str, str | None] = {}
    for name in ("pillow", "torch", "torchvision"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def refstats_key(*, fingerprint: str, resolution: int, crop: str | None, blur_preset: str, blur_level: int,
                 inception: dict[str, Any], contents: list[str] | tuple[str, ...],
                 skip_bad: bool = False) -> tuple[str, dict[str, Any]]:
    """Cache key (sha256 hex) and the JSON payload it hashes.

    ``inception`` must hold everything about the extractor that changes features (weights
    sha256, memory layout, device type, torch-fidelity version). ``contents`` is the list of
    stored items (``CONTENT_FID`` and optionally ``CONTENT_KID``). ``skip_bad`` and the decoding
    libraries' versions are keyed too: with the files' contents they determine which files an
    evaluation skipped.
    """
    payload = {
        "kind": "lafitebench-refstats",
        "stats_version": STATS_VERSION,
        "reference_fingerprint": fingerprint,
        "resolution": int(resolution),
        "crop": crop,
        "blur_preset": blur_preset if blur_level else None,  # level 0 is the same for every preset
        "blur_level": int(blur_level),
        "inception": inception,
        "contents": sorted(contents),
        "skip_bad": bool(skip_bad),  # with the file contents and decoders, fixes which files were skipped
        "decoders": decoder_versions(),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), payload


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Folder holding the reference-statistics files (``cache_dir()/refstats`` by default)."""
    return Path(root) if root is not None else settings.cache_dir() / "refstats"


class RefStatsCache:
    """Load/save :class:`RefStats` by key; a file whose stored key payload differs is a miss."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = cache_root(root)
        clean_stale_temps(self.root)  # left by writers killed mid-write

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str, payload: dict[str, Any]) -> RefStats | None:
        """The entry for ``key`` if present, readable and stored under the same payload; else None."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                stored = json.loads(str(z["key_payload"]))
                if str(z["key"]) != key or stored != json.loads(json.dumps(payload)):
                    return None
                stats = FidStats(mu=z["mu"].astype(np.float64), sigma=z["sigma"].astype(np.float64), n=int(z["n"]))
                feats = z["features"].astype(np.float32) if CONTENT_KID in payload["contents"] else None
                factor = z["factor"].astype(np.float64)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # unreadable or truncated: recomputed and overwritten by the caller
        if CONTENT_KID in payload["contents"] and (feats is None or len(feats) != stats.n):
            return None
        return RefStats(stats=stats, features=feats, factor=factor, key=key, key_payload=stored)

    def save(self, key: str, payload: dict[str, Any], ref: RefStats) -> Path:
        """Write an entry atomically; returns its path."""
        arrays: dict[str, Any] = {
            "key": np.array(key),
            "key_payload": np.array(json.dumps(payload, sort_keys=True)),
            "mu": ref.stats.mu,
            "sigma": ref.stats.sigma,
            "n": np.int64(ref.stats.n),
            "factor": sqrt_factor(ref.stats.sigma) if ref.factor is None else ref.factor,
        }
        if CONTENT_KID in payload["contents"]:
            if ref.features is None:
                raise ValueError("KID features requested in the cache payload but not given")
            arrays["features"] = np.asarray(ref.features, dtype=np.float32)
        p = self.path(key)
        with atomic_write(p, "wb") as f:
            np.savez(f, **arrays)
        return p
