"""The metrics registry: one line per metric (a lazy ``"module:Class"`` reference to a
:class:`~lafitebench.metrics.base.Metric` subclass). Adding a metric is one module plus one line here."""
from __future__ import annotations

from ..registry import Registry
from .base import Metric

METRICS: Registry[type[Metric]] = Registry("metric")
METRICS.register("is", "lafitebench.metrics.isc:IsMetric", aliases=("isc", "inception_score"))
METRICS.register("fid", "lafitebench.metrics.fid:FidMetric", aliases=("fid-k", "fidk"))
METRICS.register("kid", "lafitebench.metrics.kid:KidMetric")
METRICS.register("clip", "lafitebench.metrics.clip_score:ClipScoreMetric", aliases=("clip_score", "clipscore"))
METRICS.register("soa", "lafitebench.metrics.soa:SoaMetric")
METRICS.register("fd", "lafitebench.metrics.fd:FdMetric", aliases=("fd-dinov2", "fd_dinov2"))
METRICS.register("clip-fd", "lafitebench.metrics.fd:ClipFdMetric", aliases=("clip_fd", "clipfd"))
METRICS.register("kd", "lafitebench.metrics.fd:KdMetric")
METRICS.register("cmmd", "lafitebench.metrics.cmmd:CmmdMetric")
METRICS.register("prdc", "lafitebench.metrics.prdc:PrdcMetric", aliases=("pr", "precision-recall"))

#: The order of rows in a result table (metrics not listed keep the order they were requested in).
ROW_ORDER = ("is", "fid", "kid", "clip", "soa", "fd", "clip-fd", "kd", "cmmd", "prdc")

#: Metrics "auto" never picks: their backbones are large downloads; name them in ``metrics``.
NOT_AUTO = ("fd", "clip-fd", "kd", "cmmd", "prdc")
