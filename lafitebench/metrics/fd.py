"""Fréchet distance and kernel distance on any backbone: FD-DINOv2 (Stein et al. 2023, edm2),
CLIP-FD (clean-fid's ``clip_vit_b_32`` mode) and KD.

FD uses the FID estimator of :mod:`.fid` (float64 moments, unbiased covariance, the configured
trace form) on the backbone's rows; KD the KID estimator of :mod:`.kid` (cubic polynomial
kernel, ``kid_subsets`` subsets of ``kid_subset_size``, seed). Metric ids name the backbone, its
preprocessing and the count: ``fd10k[dinov2-vitl14:pil-bicubic]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..encoders.backbone import FeatureSpec, backbone_option, backbone_spec
from ..errors import InputError
from ..options import Cli, Options, option
from .base import MetricOutput, MetricRow, count_tag
from .bootstrap import counts, weighted_moments
from .embedding import EmbeddingMetric, check_pair
from .fid import FidStats, check_two_each, features_to_stats, fid_from_stats, sqrt_factor
from .kid import check_kid_sizes, kid_from_features
from .presets import get_preset


@dataclass
class FdOptions(Options):
    """Which backbone FD, CLIP-FD and KD read."""

    PANEL = "Backbones"

    fd_backbone: str = option("dinov2-vitl14", "Backbone of fd (FD-DINOv2): dinov2-vits14, -vitb14, -vitl14, "
                                               "-vitg14, clip-vitb32, ..., inception.", cli=Cli("--fd-backbone", metavar="NAME"))
    clip_fd_backbone: str = option("clip-vitb32", "CLIP backbone of clip-fd (clean-fid: ViT-B/32).",
                                   cli=Cli("--clip-fd-backbone", metavar="NAME"))
    kd_backbone: str = option("dinov2-vitl14", "Backbone of kd (kernel distance, KID's estimator).",
                              cli=Cli("--kd-backbone", metavar="NAME"))

    @classmethod
    def check(cls, config: Any) -> None:
        """Known backbones; clip-fd's is a CLIP tower."""
        for name in ("fd_backbone", "clip_fd_backbone", "kd_backbone"):
            backbone_option(config, name)
        if backbone_spec(config.clip_fd_backbone).family != "clip":
            raise InputError(f"clip_fd_backbone must be a CLIP backbone (clip-vitb32, ...), got "
                             f"{config.clip_fd_backbone!r}", param="clip_fd_backbone")


def fd_from_features(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, *, method: str = "eigh",
                     tags: tuple[str, str] | None = None) -> float:
    """Fréchet distance between two feature matrices (float64 statistics, unbiased covariance).
    ``tags`` (backbone:preprocessing of each) are compared first: different ones are refused."""
    check_pair(x, y, "FD", *(tags or (None, None)))
    return fid_from_stats(features_to_stats(x), features_to_stats(y), method=method)


class _FdBase(EmbeddingMetric):
    backbone_option = "fd_backbone"
    label = "FD"
    higher_is_better = False

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any) -> None:
        check_two_each(cls.label, samples, reference)
        cls.spec(config).check()

    def _setup_stats(self) -> tuple[FeatureSpec, np.ndarray, FidStats, np.ndarray]:
        """The spec, the samples' rows, and the reference statistics with their square-root factor
        (computed once: ``compute`` and ``bootstrap`` share them)."""
        if getattr(self, "_stats", None) is None:
            fs, x, y = self.pair()
            ref = features_to_stats(y.numpy())
            self._stats = (fs, x.numpy(), ref, sqrt_factor(ref.sigma))
        return self._stats

    def compute(self) -> MetricOutput:
        fs, x, ref, factor = self._setup_stats()
        st = features_to_stats(x)
        value = fid_from_stats(st, ref, method=self.config.fid_trace, factor_b=factor)
        self._ids = [f"{self.name.replace('-', '')}{count_tag(st.n)}[{fs.tag}]"]
        preset = get_preset(self.config.preset)
        note = f"; preset {preset.name} uses {preset.n} samples" if preset.n and preset.n != st.n else ""
        row = MetricRow(self._ids[0], f"{self.label}[{fs.backbone}]", value, n=st.n, higher_is_better=False,
                        notes=f"Fréchet distance on {fs.tag} features ({x.shape[1]}-d), float64 moments, covariance "
                              f"/(N-1); reference {self.reference_name} ({ref.n}); preset {preset.name}{note}")
        return MetricOutput(rows=[row], details={"value": value, "feature": fs.tag, "preset": preset.name})

    def bootstrap(self, draws: list[np.ndarray]) -> dict[str, list[float]]:
        fs, x, ref, factor = self._setup_stats()
        vals = []
        for idx in draws:
            mu, sigma = weighted_moments(x, counts(idx, len(x)))
            vals.append(fid_from_stats(FidStats(mu, sigma, len(x)), ref, method=self.config.fid_trace, factor_b=factor))
        return {self._ids[0]: vals}


class FdMetric(_FdBase):
    """FD on ``fd_backbone`` (default DINOv2 ViT-L/14: FD-DINOv2)."""

    name = "fd"


class ClipFdMetric(_FdBase):
    """FD on a CLIP image tower (``clip_fd_backbone``; clean-fid's CLIP-FID)."""

    name = "clip-fd"
    backbone_option = "clip_fd_backbone"
    label = "CLIP-FD"


class KdMetric(_FdBase):
    """Kernel distance (KID's estimator and subsets) on ``kd_backbone``."""

    name = "kd"
    backbone_option = "kd_backbone"
    label = "KD"

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any) -> None:
        n_ref = len(reference.items) if reference is not None else 0
        check_kid_sizes(len(samples.items), n_ref, config.kid_subset_size, config.kid_subsets)
        cls.spec(config).check()

    def _value(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        c = self.config
        return kid_from_features(x, y, c.kid_subsets, c.kid_subset_size, c.seed)

    def compute(self) -> MetricOutput:
        fs, x, y = self.pair()
        x, y = x.numpy(), y.numpy()
        mean, std = self._value(x, y)
        c = self.config
        self._ids = [f"kd{count_tag(len(x))}_s{c.kid_subset_size}x{c.kid_subsets}[{fs.tag}]"]
        row = MetricRow(self._ids[0], f"KD[{fs.backbone}]", mean, std, len(x), False,
                        f"unbiased MMD^2, kernel (x.y/d+1)^3 on {fs.tag} features, {c.kid_subsets} subsets of "
                        f"{c.kid_subset_size} (seed {c.seed}); reference {self.reference_name} ({len(y)})")
        return MetricOutput(rows=[row], details={"mean": mean, "std": std, "feature": fs.tag})

    def bootstrap(self, draws: list[np.ndarray]) -> dict[str, list[float]]:
        _, x, y = self.pair()
        x, y = x.numpy(), y.numpy()
        return {self._ids[0]: [self._value(x[idx], y)[0] for idx in draws]}


__all__ = ["FdOptions", "FdMetric", "ClipFdMetric", "KdMetric", "fd_from_features"]
