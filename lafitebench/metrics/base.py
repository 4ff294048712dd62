"""The contract every metric follows (IS, FID-k, KID, CLIP score, SOA, and any new one).

A metric is a subclass of :class:`Metric`, registered by one line in
:mod:`lafitebench.metrics.registry`. The engine uses it in this order:

1. ``check(config, samples, reference)`` — class method, cheap: every input the metric needs is
   there and every option is valid. Runs before any network is loaded.
2. ``sample_features(config)`` / ``reference_features(config)`` — class methods: which Inception
   features the metric needs, as :data:`FeatureKey` ``(kind, blur level)``. The engine's feature
   stage computes each (image, blur level) once and routes the result to every metric that
   asked (``batch.features[key]``). ``reference_features`` asks for cached reference
   statistics: ``("moments", k)`` (FID statistics at level k) or ``("rows", 0)`` (the features).
3. ``Metric(config)`` then ``bind_reference(stats)`` with the reference statistics it asked for.
4. ``update(batch)`` for every batch of this process's shard.
5. ``sync()`` — combines the states of all processes (a no-op on one): each state was declared
   with ``add_state`` as ``"sum"`` (all-reduced) or ``"cat"`` (rows gathered and put back in
   sample-index order), so no metric writes its own reduction.
6. ``compute()`` → :class:`MetricOutput` (typed rows, optional tables, JSON-able details).
7. ``bootstrap(draws)`` (optional, with ``--bootstrap N``): each row's value on resampled rows,
   for its 95 % interval (``ci_low``/``ci_high``).
8. ``reset()`` restores the declared defaults.

Metrics computed from whole backbone feature matrices (FD, KD, CMMD, P/R/D/C) derive from
:class:`~lafitebench.metrics.embedding.EmbeddingMetric`: they declare ``feature_specs(config)``
and receive both sets' rows with ``bind_embeddings`` before ``compute``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import pandas as pd
import torch

from ..errors import InputError
from ..runtime import distributed as dist

if TYPE_CHECKING:
    from ..data.batch import Batch

#: ``("pool3" | "logits", blur level)`` on samples; ``("moments" | "rows", level)`` on the reference.
FeatureKey = tuple[str, int]
REDUCTIONS = ("sum", "cat")
TABLE_COLUMNS = ["metric_id", "metric", "value", "std", "n", "higher_is_better", "notes", "ci_low", "ci_high"]


@dataclass(frozen=True)
class MetricRow:
    """One line of a result table: the metric id spells out the protocol (``fid30k_blur2_lafite``),
    ``name`` is the paper's (``FID-2``)."""

    id: str
    name: str
    value: float
    std: float = math.nan
    n: int | None = None
    higher_is_better: bool = True
    notes: str = ""
    ci_low: float = math.nan
    ci_high: float = math.nan

    def as_record(self) -> dict[str, Any]:
        """The row in the result table's column names (:data:`TABLE_COLUMNS`)."""
        return {"metric_id": self.id, "metric": self.name, "value": float(self.value),
                "std": math.nan if self.std is None else float(self.std), "n": self.n,
                "higher_is_better": bool(self.higher_is_better), "notes": self.notes,
                "ci_low": float(self.ci_low), "ci_high": float(self.ci_high)}


@dataclass
class MetricOutput:
    """What ``compute()`` returns: rows, optional named tables (e.g. ``soa_per_class``) and
    JSON-able details recorded in the result's provenance."""

    rows: list[MetricRow]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def rows_to_table(rows: list[MetricRow]) -> pd.DataFrame:
    """The result table (columns :data:`TABLE_COLUMNS`) of ``rows`` in order."""
    return pd.DataFrame([r.as_record() for r in rows], columns=TABLE_COLUMNS)


def count_tag(n: int) -> str:
    """30000 → "30k", 50 → "50" (for metric ids)."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


class Metric:
    """Base class of every metric (see the module docstring for the life cycle).

    ``context`` carries facts about the run that metrics may quote in their notes (e.g.
    ``inception_tag``, ``pool3_dim``). Subclasses set ``name`` (registry name), ``needs_reference``
    and ``higher_is_better``,
    declare their states in :meth:`setup` with :meth:`add_state`, and implement :meth:`update`
    and :meth:`compute`; :meth:`check`, :meth:`sample_features`, :meth:`reference_features` and
    :meth:`bind_reference` as needed.
    """

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True

    def __init__(self, config: Any, context: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.context = dict(context or {})
        self._sum_defaults: dict[str, torch.Tensor] = {}
        self._sums: dict[str, torch.Tensor] = {}
        self._cats: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._cat_specs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self.synced = False
        self._seen = 0
        self.setup()

    # --- declared by subclasses ------------------------------------------------------------------

    def setup(self) -> None:
        """Declare states with :meth:`add_state` (called by ``__init__`` and never again)."""

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any) -> None:
        """Cheap checks before any network runs; raise InputError / WeightsError naming the problem."""

    @classmethod
    def sample_features(cls, config: Any) -> set[FeatureKey]:
        """Inception features this metric reads from ``batch.features`` (default: none)."""
        return set()

    @classmethod
    def reference_features(cls, config: Any) -> set[FeatureKey]:
        """Reference statistics this metric needs (default: none)."""
        return set()

    def feature_keys(self) -> set[FeatureKey]:
        """The feature keys this instance reads (default: :meth:`sample_features` of its config)."""
        return type(self).sample_features(self.config)

    def bind_reference(self, stats: Mapping[int, Any]) -> None:
        """Receive the reference statistics (``{level: RefStats}``) asked for by :meth:`reference_features`."""

    def update(self, batch: "Batch") -> None:
        """Consume one batch (``batch.images``, ``batch.indices``, captions, SOA classes, features)."""
        raise NotImplementedError

    def compute(self) -> MetricOutput:
        """The metric's rows from the (synced) states."""
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """Extra JSON-able facts about how the metric ran (weights, detector, ...)."""
        return {}

    def bootstrap(self, draws: list[Any]) -> dict[str, list[float]]:
        """Replicate values per row id, one per draw (an index array into the samples, in sample
        order; see :mod:`.bootstrap`), after :meth:`compute`. Default: none (no interval)."""
        return {}

    # --- states ------------------------------------------------------------------------------------

    def add_state(self, name: str, default: torch.Tensor | None = None, *, reduce: str = "sum",
                  row_shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float64) -> None:
        """Declare a state: ``reduce="sum"`` (a tensor, ``default`` its initial value, summed across
        processes) or ``reduce="cat"`` (rows of shape ``row_shape`` with their sample indices,
        gathered across processes in sample-index order)."""
        if reduce not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}.{name}: reduce must be one of {REDUCTIONS}, got {reduce!r}")
        if name in self._sum_defaults or name in self._cat_specs:
            raise ValueError(f"{type(self).__name__}: state {name!r} declared twice")
        if reduce == "sum":
            if default is None:
                raise ValueError(f"{type(self).__name__}.{name}: a sum state needs a default tensor")
            self._sum_defaults[name] = default.detach().clone()
            self._sums[name] = default.detach().clone()
        else:
            self._cat_specs[name] = (tuple(row_shape), dtype)
            self._cats[name] = []

    def add(self, name: str, value: torch.Tensor) -> None:
        """Add ``value`` into sum state ``name``."""
        self._sums[name] += value.detach().to(self._sums[name].device, self._sums[name].dtype)

    def append(self, name: str, rows: torch.Tensor, index: torch.Tensor | list[int]) -> None:
        """Append ``rows`` [N, *row_shape] with their sample indices to cat state ``name``."""
        shape, dtype = self._cat_specs[name]
        rows = rows.detach().to("cpu", dtype)
        if tuple(rows.shape[1:]) != shape:
            raise ValueError(f"{type(self).__name__}.{name}: rows shaped {tuple(rows.shape)}, declared [N, {shape}]")
        idx = torch.as_tensor(index, dtype=torch.int64).reshape(-1)
        if idx.numel() != rows.shape[0]:
            raise ValueError(f"{type(self).__name__}.{name}: {rows.shape[0]} rows but {idx.numel()} indices")
        self._cats[name].append((rows, idx))

    def indices_of(self, batch: "Batch") -> list[int]:
        """The sample indices of ``batch``: ``batch.indices`` when the engine set them, else the
        running count of images this instance has seen (direct use without the engine)."""
        n = int(batch.images.shape[0])
        if batch.indices:
            if len(batch.indices) != n:
                raise InputError(f"batch has {n} images but {len(batch.indices)} indices")
            return [int(i) for i in batch.indices]
        start = self._seen
        self._seen += n
        return list(range(start, start + n))

    def value(self, name: str) -> torch.Tensor:
        """A sum state's tensor."""
        return self._sums[name]

    def rows(self, name: str) -> torch.Tensor:
        """A cat state's rows in ascending sample-index order."""
        return self._cat_sorted(name)[0]

    def row_index(self, name: str) -> torch.Tensor:
        """The sample indices of :meth:`rows`."""
        return self._cat_sorted(name)[1]

    def _cat_sorted(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        shape, dtype = self._cat_specs[name]
        parts = self._cats[name]
        rows = torch.cat([r for r, _ in parts]) if parts else torch.zeros((0, *shape), dtype=dtype)
        idx = torch.cat([i for _, i in parts]) if parts else torch.zeros(0, dtype=torch.int64)
        order = torch.argsort(idx, stable=True)
        return rows[order], idx[order]

    def sync(self) -> None:
        """Combine this metric's states across processes (sums all-reduced, rows gathered in
        sample-index order). Idempotent; a no-op on one process."""
        if self.synced:
            return
        for name in self._sums:
            self._sums[name] = dist.all_reduce_sum(self._sums[name])
        for name in self._cats:
            rows, idx = self._cat_sorted(name)
            self._cats[name] = [dist.gather_rows(rows, idx)]
        self.synced = True

    def merge(self, other: "Metric") -> None:
        """Add another instance's states into this one (e.g. shards computed in one process)."""
        for name, t in other._sums.items():
            self._sums[name] = self._sums[name] + t
        for name, parts in other._cats.items():
            self._cats[name].extend(parts)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every state as tensors: sums by name, cats as ``<name>`` rows and ``<name>.index``."""
        out = {k: v.clone() for k, v in self._sums.items()}
        for name in self._cats:
            out[name], out[f"{name}.index"] = self._cat_sorted(name)
        return out

    def reset(self) -> None:
        """Back to the declared defaults."""
        self._sums = {k: v.clone() for k, v in self._sum_defaults.items()}
        self._cats = {k: [] for k in self._cat_specs}
        self.synced = False
        self._seen = 0
