"""Improved precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et
al. 2020) from k-nearest-neighbour balls, computed in blocks.

With ``r_R(j)`` the distance from real ``j`` to its k-th nearest other real and ``r_F(i)`` the
same among fakes (the (k+1)-th smallest distance, self included, as torch-fidelity and prdc)::

    precision = mean_i [ ∃j: d(f_i, r_j) ⋈ r_R(j) ]       recall   = mean_j [ ∃i: d(r_j, f_i) ⋈ r_F(i) ]
    density   = mean_i  Σ_j [ d(f_i, r_j) < r_R(j) ] / k   coverage = mean_j [ min_i d(r_j, f_i) < r_R(j) ]

``⋈`` is ``<=`` in torch-fidelity 0.4 (``pr_rule``) and ``<`` in prdc / dgm-eval; density and
coverage use ``dc_rule`` (``<``, prdc). P/R and D/C have their own k (``pr_k`` = 3 as torch-fidelity,
``dc_k`` = 5 as prdc). Distances are float64; the n × m matrix is never held: blocks of
``block`` fakes against all reals, and the radii from blocks, so 50,000 × 50,000 runs in
``O(block · n)`` memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..encoders.backbone import backbone_option
from ..errors import InputError
from ..options import Cli, Options, option, positive_int
from ..runtime.device import resolve_device
from .base import MetricOutput, MetricRow, count_tag
from .embedding import EmbeddingMetric, blocks_progress, check_pair

RULES = ("<=", "<")
BLOCK = 2048


@dataclass
class PrdcOptions(Options):
    """The k-NN metrics: backbone, k and comparison of P/R and of D/C."""

    PANEL = "Backbones"

    prdc_backbone: str = option("inception", "Backbone of prdc (P/R/D/C): inception, dinov2-*, clip-*.",
                                cli=Cli("--prdc-backbone", metavar="NAME"))
    pr_k: int = option(3, "k of precision/recall (torch-fidelity: 3; dgm-eval: 5).", cli=Cli("--pr-k", minimum=1))
    pr_rule: str = option("<=", "Ball membership of precision/recall: <= (torch-fidelity) or < (prdc, dgm-eval).",
                          cli=Cli("--pr-rule", metavar="<=|<"))
    dc_k: int = option(5, "k of density/coverage (prdc: 5).", cli=Cli("--dc-k", minimum=1))
    dc_rule: str = option("<", "Ball membership of density/coverage (prdc: <).", cli=Cli("--dc-rule", metavar="<=|<"))

    @classmethod
    def check(cls, config: Any) -> None:
        """A known backbone, k >= 1, rules <= or <."""
        backbone_option(config, "prdc_backbone")
        positive_int(config, "pr_k", 1)
        positive_int(config, "dc_k", 1)
        for name in ("pr_rule", "dc_rule"):
            if getattr(config, name) not in RULES:
                raise InputError(f"{name} must be <= or <, got {getattr(config, name)!r}", param=name)


def _inside(d: torch.Tensor, r: torch.Tensor, rule: str) -> torch.Tensor:
    return d <= r if rule == "<=" else d < r


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return d2.clamp_min_(0).sqrt_()


def knn_radii(x: torch.Tensor, ks: tuple[int, ...], block: int = BLOCK,
              tick: Callable[[], None] | None = None) -> dict[int, torch.Tensor]:
    """For each k in ``ks``: every row's distance to its k-th nearest other row (the (k+1)-th
    smallest distance, self included), from blocks of ``block`` rows (float64, on ``x``'s device)."""
    x = x.double()
    kmax = max(ks) + 1
    parts: list[torch.Tensor] = []
    for i in range(0, len(x), block):
        parts.append(torch.topk(_dist(x[i:i + block], x), kmax, dim=1, largest=False).values)
        if tick is not None:
            tick()
    small = torch.cat(parts)
    return {k: small[:, k] for k in ks}


@dataclass
class PrdcTerms:
    """Per-point terms: ``precision``/``density`` per fake, ``recall``/``coverage`` per real."""

    precision: np.ndarray
    density: np.ndarray
    recall: np.ndarray
    coverage: np.ndarray

    def values(self) -> dict[str, float]:
        return {k: float(getattr(self, k).mean()) for k in ("precision", "recall", "density", "coverage")}


def blocks(n_fake: int, n_real: int, block: int = BLOCK) -> int:
    """How many row blocks one P/R/D/C computation walks (its progress total)."""
    return 2 * -(-n_fake // block) + -(-n_real // block)


def prdc_terms(fake: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, *, pr_k: int = 3, pr_rule: str = "<=",
               dc_k: int = 5, dc_rule: str = "<", block: int = BLOCK, device: str | torch.device = "cpu",
               tick: Callable[[], None] | None = None) -> PrdcTerms:
    """The per-point terms of P/R/D/C (see the module docstring); one blocked pass on ``device``;
    ``tick`` is called after each block of rows (``blocks(n_fake, n_real)`` calls in all).

    Raises:
        InputError: a set with fewer than k + 1 rows, different widths, or an unknown rule.
    """
    f = torch.as_tensor(np.asarray(fake)).to(device, torch.float64)
    r = torch.as_tensor(np.asarray(real)).to(device, torch.float64)
    check_pair(f, r, "precision/recall")
    check_knn_sizes(len(f), len(r), max(pr_k, dc_k))
    for rule in (pr_rule, dc_rule):
        if rule not in RULES:
            raise InputError(f"ball membership rule must be <= or <, got {rule!r}", param="pr_rule")
    rr = knn_radii(r, (pr_k, dc_k), block, tick)
    rf = knn_radii(f, (pr_k,), block, tick)[pr_k]
    prec, dens = [], []
    recall = torch.zeros(len(r), dtype=torch.bool, device=r.device)
    nearest = torch.full((len(r),), float("inf"), dtype=torch.float64, device=r.device)
    for i in range(0, len(f), block):
        d = _dist(f[i:i + block], r)  # [b, m]
        prec.append(_inside(d, rr[pr_k][None, :], pr_rule).any(1))
        dens.append(_inside(d, rr[dc_k][None, :], dc_rule).sum(1).double() / dc_k)
        recall |= _inside(d, rf[i:i + block, None], pr_rule).any(0)
        nearest = torch.minimum(nearest, d.min(0).values)
        if tick is not None:
            tick()
    coverage = _inside(nearest, rr[dc_k], dc_rule)
    np_ = lambda t: t.double().cpu().numpy()  # noqa: E731
    return PrdcTerms(np_(torch.cat(prec)), np_(torch.cat(dens)), np_(recall), np_(coverage))


def check_knn_sizes(n_fake: int, n_real: int, k: int) -> None:
    """InputError unless both sets have at least k + 1 points (a k-th neighbour besides itself)."""
    if n_fake < k + 1 or n_real < k + 1:
        raise InputError(f"precision/recall/density/coverage with k={k} need at least {k + 1} images in each set "
                         f"(samples: {n_fake}, reference: {n_real}); give more images or a smaller --pr-k / --dc-k",
                         param="pr_k")


class PrdcMetric(EmbeddingMetric):
    """Precision, recall, density and coverage on ``prdc_backbone`` features (four rows)."""

    name = "prdc"
    higher_is_better = True
    backbone_option = "prdc_backbone"

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any) -> None:
        n_ref = len(reference.items) if reference is not None else 0
        check_knn_sizes(len(samples.items), n_ref, max(config.pr_k, config.dc_k))
        cls.spec(config).check()

    def _quantities(self) -> list[str]:
        # torch-fidelity defines precision and recall only
        return ["precision", "recall"] if self.config.preset == "torch-fidelity" else \
            ["precision", "recall", "density", "coverage"]

    def compute(self) -> MetricOutput:
        c = self.config
        fs, x, y = self.pair()
        with blocks_progress(c, "P/R/D/C distance blocks", blocks(len(x), len(y))) as tick:
            self.terms = prdc_terms(x, y, pr_k=c.pr_k, pr_rule=c.pr_rule, dc_k=c.dc_k, dc_rule=c.dc_rule,
                                    device=resolve_device(c.device), tick=tick)
        values = self.terms.values()
        rows, self._ids = [], {}
        for q in self._quantities():
            k, rule = (c.pr_k, c.pr_rule) if q in ("precision", "recall") else (c.dc_k, c.dc_rule)
            rid = f"{q}{count_tag(len(x))}[{fs.tag},k={k},{rule}]"
            self._ids[q] = rid
            rows.append(MetricRow(rid, f"{q.capitalize()}[{fs.backbone}]", values[q], n=len(x), higher_is_better=True,
                                  notes=f"k={k}, ball membership {rule}, on {fs.tag} features; reference "
                                        f"{self.reference_name} ({len(y)})"))
        return MetricOutput(rows=rows, details={**values, "feature": fs.tag})

    def bootstrap(self, draws: list[np.ndarray]) -> dict[str, list[float]]:
        t = self.terms
        out: dict[str, list[float]] = {rid: [] for rid in self._ids.values()}
        m = len(t.recall)
        for b, idx in enumerate(draws):
            ridx = np.random.Generator(np.random.PCG64([int(self.config.seed), b, 1])).integers(0, m, m)
            vals = {"precision": t.precision[idx].mean(), "density": t.density[idx].mean(),
                    "recall": t.recall[ridx].mean(), "coverage": t.coverage[ridx].mean()}
            for q, rid in self._ids.items():
                out[rid].append(float(vals[q]))
        return out


__all__ = ["PrdcOptions", "PrdcMetric", "PrdcTerms", "prdc_terms", "knn_radii", "check_knn_sizes"]
