"""Backbone features for the metrics that read whole feature sets (FD, KD, CMMD, P/R/D/C).

An :class:`EmbeddingMetric` declares the :class:`~lafitebench.encoders.backbone.FeatureSpec` s it
reads (``feature_specs(config)``), for the samples and the reference. The engine gets each set's
rows once per spec — from the feature cache (:class:`FeatureCache`, keyed by the set's content
fingerprint and everything about the backbone that changes a number) or from the pass it makes
anyway: an :class:`EmbeddingCollector` rides along with the other metrics, and
:class:`EmbeddingStage` sends each decoded batch through every requested backbone's own
preprocessing (the ``inception`` backbone reuses the Inception stage's level-0 pool3). Rows are
gathered across processes in sample order, so the metrics see the same matrices on 1 or N
processes and compute on rank 0.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

import numpy as np
import torch

from .. import settings
from ..encoders.backbone import Embedder, FeatureSpec
from ..errors import InputError
from ..io.files import atomic_write, clean_stale_temps
from ..runtime import distributed as dist
from ..runtime.progress import progress
from .base import FeatureKey, Metric, MetricOutput
from .cache import decoder_versions
from .presets import get_preset

FEATURES_VERSION = 1
EMB = "emb:"


def feature_key(fs: FeatureSpec) -> FeatureKey:
    """The batch-feature key of ``fs`` (``("emb:<tag>", 0)``)."""
    return (EMB + fs.tag, 0)


class EmbeddingMetric(Metric):
    """Base of the metrics computed from whole backbone feature matrices.

    Subclasses implement ``feature_specs(config)`` and :meth:`compute`; the engine calls
    :meth:`bind_embeddings` with ``{spec: float32 rows}`` of the samples and of the reference (in
    sample order) before ``compute``. ``update`` ignores batches: the rows come from the engine.
    """

    needs_reference = True
    higher_is_better = False
    #: the config field naming the backbone this metric reads
    backbone_option: ClassVar[str] = ""

    def setup(self) -> None:
        self.samples: dict[FeatureSpec, torch.Tensor] = {}
        self.reference_rows: dict[FeatureSpec, torch.Tensor] = {}
        self.reference_name = None

    @classmethod
    def spec(cls, config: Any) -> FeatureSpec:
        """The features this metric reads: its backbone option, fed as the config's preset says."""
        return get_preset(config.preset).feature(cls.name, getattr(config, cls.backbone_option))

    @classmethod
    def feature_specs(cls, config: Any) -> set[FeatureSpec]:
        """The features this metric reads (on both sets)."""
        return {cls.spec(config)}

    def pair(self) -> tuple[FeatureSpec, torch.Tensor, torch.Tensor]:
        """Its spec and the samples' and reference rows (checked comparable)."""
        fs = type(self).spec(self.config)
        x, y = self.samples[fs], self.reference_rows[fs]
        check_pair(x, y, type(self).name)
        return fs, x, y

    def bind_reference(self, reference: Any) -> None:
        self.reference_name = getattr(reference, "name", None)

    def bind_embeddings(self, samples: Mapping[FeatureSpec, torch.Tensor],
                        reference: Mapping[FeatureSpec, torch.Tensor]) -> None:
        """Receive the feature rows of both sets."""
        mine = type(self).feature_specs(self.config)
        self.samples = {fs: samples[fs] for fs in mine}
        self.reference_rows = {fs: reference[fs] for fs in mine}

    def update(self, batch: Any) -> None:
        """Nothing: the rows come from the engine's feature stage or cache."""


def check_pair(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, what: str,
               tag_a: str | None = None, tag_b: str | None = None) -> None:
    """Two feature matrices that can be compared: same backbone/preprocessing tags (when given)
    and the same width. InputError otherwise."""
    if tag_a is not None and tag_b is not None and tag_a != tag_b:
        raise InputError(f"{what}: features of different backbones or preprocessings cannot be compared "
                         f"({tag_a} vs {tag_b}); compute both sets with the same backbone and preset",
                         param="preset")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"{what}: feature matrices of different widths ({tuple(a.shape)} vs {tuple(b.shape)}): "
                         "they come from different backbones", param="preset")


@contextlib.contextmanager
def blocks_progress(config: Any, label: str, total: int) -> Iterator[Callable[[], None]]:
    """A Rich progress bar (stderr, when ``config.progress``) for a blocked O(n²) computation;
    yields the function to call after each block."""
    with progress(disable=not getattr(config, "progress", False)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


# --- collecting rows in the engine's pass -----------------------------------------------------------

class EmbeddingCollector(Metric):
    """Gathers the rows of each requested :class:`FeatureSpec` (cat states, sample order)."""

    name = "embeddings"

    def setup(self) -> None:
        self.specs: list[FeatureSpec] = sorted(self.context["specs"])
        dims: Mapping[str, int] = self.context["dims"]
        for i, fs in enumerate(self.specs):
            self.add_state(f"rows{i}", reduce="cat", row_shape=(int(dims[fs.backbone]),), dtype=torch.float32)

    def feature_keys(self) -> set[FeatureKey]:
        return {feature_key(fs) for fs in self.specs}

    def update(self, batch: Any) -> None:
        idx = self.indices_of(batch)
        for i, fs in enumerate(self.specs):
            self.append(f"rows{i}", batch.features[feature_key(fs)], idx)

    def result(self) -> dict[FeatureSpec, torch.Tensor]:
        """Rows per spec (after :meth:`sync`)."""
        return {fs: self.rows(f"rows{i}") for i, fs in enumerate(self.specs)}

    def compute(self) -> MetricOutput:  # pragma: no cover - rows are read with result()
        return MetricOutput(rows=[])


class EmbeddingStage:
    """Computes ``("emb:<tag>", 0)`` keys of a decoded batch: one forward per backbone and
    preprocessing; the ``inception`` backbone takes the ``("pool3", 0)`` the Inception stage made."""

    def __init__(self, embedders: Mapping[str, Embedder], specs: Iterable[FeatureSpec]) -> None:
        self.embedders = dict(embedders)
        self.by_key = {feature_key(fs): fs for fs in specs}

    def inception_keys(self, keys: Iterable[FeatureKey]) -> set[FeatureKey]:
        """Inception-stage keys these embedding keys need."""
        return {("pool3", 0) for k in keys if k in self.by_key and self.by_key[k].backbone == "inception"}

    def __call__(self, images: torch.Tensor, keys: Iterable[FeatureKey],
                 done: Mapping[FeatureKey, torch.Tensor]) -> dict[FeatureKey, torch.Tensor]:
        out: dict[FeatureKey, torch.Tensor] = {}
        for k in keys:
            fs = self.by_key.get(k)
            if fs is None:
                continue
            if fs.backbone == "inception":
                x = done[("pool3", 0)].float()
                out[k] = torch.nn.functional.normalize(x, dim=-1) if fs.l2 else x
                self.embedders["inception"].forwards += int(x.shape[0])
            else:
                out[k] = self.embedders[fs.backbone].embed(images, fs)
        return out


# --- the feature cache ------------------------------------------------------------------------------

def features_key(image_set: Any, fs: FeatureSpec, embedder: Embedder, skip_bad: bool) -> tuple[str, dict[str, Any]]:
    """Cache key (sha256) and payload of one set's rows under ``fs``: the set's content
    fingerprint, resolution and crop, the spec, the embedder's identity, decoders and versions."""
    payload = {"kind": "lafitebench-features", "version": FEATURES_VERSION, "set_fingerprint": image_set.fingerprint(),
               "resolution": int(getattr(image_set, "resolution", 0) or 0), "crop": getattr(image_set, "crop", None),
               "feature": fs.tag, "embedder": embedder.identity(), "skip_bad": bool(skip_bad),
               "decoders": decoder_versions()}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest(), json.loads(text)


class FeatureCache:
    """Rows of one (set, feature spec) per file at ``cache_dir()/features/<key>.npz``; the key
    payload is stored in the file and compared on load; writes are atomic."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else settings.cache_dir() / "features"
        clean_stale_temps(self.root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str, payload: dict[str, Any]) -> torch.Tensor | None:
        """The rows stored under ``key`` and the same payload, or None."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                if json.loads(str(z["key_payload"])) != payload:
                    return None
                return torch.from_numpy(z["rows"].astype(np.float32))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def save(self, key: str, payload: dict[str, Any], rows: torch.Tensor) -> Path:
        p = self.path(key)
        with atomic_write(p, "wb") as f:
            np.savez(f, rows=rows.numpy().astype(np.float32), key_payload=np.array(json.dumps(payload, sort_keys=True)))
        return p


def lookup(image_set: Any, specs: Iterable[FeatureSpec], embedders: Mapping[str, Embedder], config: Any,
           cache: FeatureCache | None) -> tuple[dict[FeatureSpec, torch.Tensor], list[FeatureSpec], dict]:
    """Rows found in the cache (rank 0), the specs still to compute (same list on every rank) and
    their cache keys."""
    found: dict[FeatureSpec, torch.Tensor] = {}
    keys: dict[FeatureSpec, tuple[str, dict[str, Any]]] = {}
    specs = sorted(specs)
    if cache is not None and dist.is_main() and hasattr(image_set, "fingerprint"):
        for fs in specs:
            keys[fs] = features_key(image_set, fs, embedders[fs.backbone], bool(config.skip_bad))
            hit = cache.load(*keys[fs])
            if hit is not None:
                found[fs] = hit
    hits = dist.broadcast_object(sorted(found))
    return found, [fs for fs in specs if fs not in hits], keys


def store(cache: FeatureCache | None, keys: Mapping[FeatureSpec, tuple[str, dict[str, Any]]],
          rows: Mapping[FeatureSpec, torch.Tensor]) -> None:
    """Write newly computed rows to the cache (rank 0; a failed write is a warning)."""
    if cache is None or not dist.is_main():
        return
    for fs, r in rows.items():
        if fs in keys:
            try:
                cache.save(*keys[fs], r)
            except OSError as e:
                warnings.warn(f"features were computed but could not be cached in {cache.root} ({e})",
                              RuntimeWarning, stacklevel=2)


__all__ = ["EmbeddingMetric", "EmbeddingCollector", "EmbeddingStage", "FeatureCache", "check_pair", "feature_key",
           "features_key", "lookup", "store"]
