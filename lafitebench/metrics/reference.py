"""Reference-set statistics: from the cache, or from one (sharded) pass over the reference set.

For each blur level a metric asked for (``("moments", k)``: FID statistics; ``("rows", 0)``:
the float32 pool3 features KID needs), :func:`reference_statistics` looks up the on-disk cache
(rank 0 only), runs one pass over the reference set for the levels it missed (every rank, each
on its shard, through the same feature stage as the samples), reduces the states across
processes, and writes the new entries to the cache (rank 0 only; a cache that cannot be written
is a warning, not a failure).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ..runtime import distributed as dist
from .base import FeatureKey, Metric, MetricOutput
from .cache import CONTENT_FID, CONTENT_KID, RefStats, RefStatsCache, refstats_key
from .features import CombinedStage, InceptionStage, feed
from .fid import POOL3_DIM, add_moment_states, add_moments, centred_factor, moment_stats, sqrt_factor


@dataclass
class ReferenceStats:
    """What reference-based metrics receive: ``levels`` maps a blur level to its :class:`RefStats`."""

    name: str | None
    n: int
    levels: dict[int, RefStats]
    report: dict[str, Any] = field(default_factory=dict)
    embeddings: dict[Any, Any] = field(default_factory=dict)  # FeatureSpec → rows (backbone metrics)


def extractor_identity(extractor: Any) -> dict[str, Any]:
    """What about the extractor changes features (part of every reference cache key)."""
    import torch_fidelity

    return {"weights_sha256": extractor.sha256, "channels_last": extractor.channels_last,
            "device_type": extractor.device.type,
            "torch_fidelity": str(getattr(torch_fidelity, "__version__", "unknown"))}


class ReferenceCollector(Metric):
    """Accumulates reference statistics per blur level: float64 moments (sums), plus the rows
    while the set is no larger than the feature width (their centred matrix is an exact
    square-root factor of the covariance), plus level-0 float32 features for KID."""

    name = "reference"

    def setup(self) -> None:
        self.levels: list[int] = list(self.context["levels"])
        self.kid = bool(self.context.get("kid_features"))
        self.keep_rows = bool(self.context.get("keep_rows"))
        dim = int(self.context.get("pool3_dim", POOL3_DIM))
        for k in self.levels:
            add_moment_states(self, k, dim)
            if self.keep_rows:
                self.add_state(f"rows{k}", reduce="cat", row_shape=(dim,), dtype=torch.float64)
        if self.kid:
            self.add_state("features0", reduce="cat", row_shape=(dim,), dtype=torch.float32)

    def feature_keys(self) -> set[FeatureKey]:
        return {("pool3", k) for k in self.levels}

    def update(self, batch: Any) -> None:
        idx = self.indices_of(batch)
        for k in self.levels:
            f = batch.features[("pool3", k)]
            x = add_moments(self, k, f)
            if self.keep_rows:
                self.append(f"rows{k}", x, idx)
            if k == 0 and self.kid:
                self.append("features0", f, idx)

    def stats(self, level: int, with_factor: bool) -> RefStats:
        """The :class:`RefStats` of ``level`` (after :meth:`sync`)."""
        st = moment_stats(self, level)
        n = st.n
        factor = None
        if with_factor:
            rows = self.rows(f"rows{level}").numpy() if self.keep_rows and n <= st.mu.shape[0] else None
            factor = centred_factor(rows, st.mu) if rows is not None else sqrt_factor(st.sigma)
        feats = self.rows("features0").numpy() if (level == 0 and self.kid) else None
        return RefStats(stats=st, features=feats, factor=factor)

    def compute(self) -> MetricOutput:  # pragma: no cover - statistics are read with stats()
        return MetricOutput(rows=[])


def _keys_for(fingerprint: str, reference: Any, preset: str, level: int, ident: dict[str, Any],
              kid: bool, skip_bad: bool) -> list[tuple[str, dict[str, Any]]]:
    """Cache keys that can serve ``level``: the exact contents first; for FID alone, a FID+KID
    entry serves too."""
    def key(contents: list[str]) -> tuple[str, dict[str, Any]]:
        return refstats_key(fingerprint=fingerprint, resolution=reference.resolution,
                            crop=getattr(reference, "crop", None), blur_preset=preset, blur_level=level,
                            inception=ident, contents=contents, skip_bad=skip_bad)
    exact = key([CONTENT_FID] + ([CONTENT_KID] if (level == 0 and kid) else []))
    return [exact] if (level == 0 and kid) else [exact, key([CONTENT_FID, CONTENT_KID])]


def reference_statistics(reference: Any, extractor: Any, levels: list[int], preset: str, kid_features: bool,
                         config: Any, cache: RefStatsCache | None = None,
                         progress: Any = None, extra: tuple[Metric, ...] = (),
                         embedding_stage: Any = None) -> tuple[dict[int, RefStats], dict[str, Any]]:
    """Reference statistics for each blur level in ``levels``, from the cache or one pass.

    ``kid_features`` also keeps (and caches) the level-0 float32 pool3 features. Returns the
    stats per level (complete on rank 0; other ranks get the levels they computed) and a cache
    report ``{"hits": [...], "misses": [...], "files": {...}, "forwards": n}``.

    ``extra`` collectors (the backbone features' :class:`~.embedding.EmbeddingCollector`) ride
    along in the same pass, fed by ``embedding_stage``; they are synced here.

    Raises:
        InputError: unreadable images (unless ``config.skip_bad``) or too few images.
    """
    ident = extractor_identity(extractor) if extractor is not None else {}
    out: dict[int, RefStats] = {}
    report: dict[str, Any] = {"hits": [], "misses": [], "files": {}, "forwards": 0, "forward_s": 0.0}
    keys: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    if cache is not None and dist.is_main():
        fingerprint = reference.fingerprint()
        for k in levels:
            keys[k] = _keys_for(fingerprint, reference, preset, k, ident, kid_features, bool(config.skip_bad))
            for key, payload in keys[k]:
                hit = cache.load(key, payload)
                if hit is not None:
                    out[k] = hit
                    report["files"][k] = str(cache.path(hit.key))
                    break
    hits = dist.broadcast_object(sorted(out))
    report["hits"] = list(hits)
    todo = [k for k in levels if k not in hits]
    collectors: list[Metric] = list(extra)
    if todo:
        report["misses"] = todo
        dim = int(getattr(extractor, "pool3_dim", POOL3_DIM))
        collector = ReferenceCollector(config, {"levels": todo, "kid_features": kid_features and 0 in todo,
                                                "keep_rows": len(reference.items) <= dim, "pool3_dim": dim})
        collectors.insert(0, collector)
    if collectors:
        stage = InceptionStage(extractor, preset) if extractor is not None else None
        what = [f"{len(todo)} blur level{'s' if len(todo) > 1 else ''}"] if todo else []
        what += ["backbone features"] if extra else []
        feed(reference, collectors, CombinedStage(stage, embedding_stage), config, progress,
             f"reference ({', '.join(what)})")
        for c in collectors:
            c.sync()
        report["forwards"] = int(dist.all_reduce_sum(torch.tensor(stage.forwards if stage else 0)))
        report["forward_s"] = stage.forward_s if stage else 0.0
        if todo and dist.is_main():
            for k in todo:
                out[k] = collector.stats(k, with_factor=config.fid_trace == "eigh")
                if cache is not None:
                    _save(cache, keys[k][0], out[k], report, k)
    dist.barrier()
    return out, report


def _save(cache: RefStatsCache, key_payload: tuple[str, dict[str, Any]], ref: RefStats, report: dict[str, Any],
          level: int) -> None:
    key, payload = key_payload
    ref.key, ref.key_payload = key, payload
    try:
        report["files"][level] = str(cache.save(key, payload, ref))
    except OSError as e:
        warnings.warn(f"reference statistics were computed but could not be cached in {cache.root} ({e}); "
                      "the evaluation goes on (use_cache=False silences this)", RuntimeWarning, stacklevel=2)
