"""Planning an evaluation: which metrics, which features, and every cheap check before any network.

:func:`make_plan` resolves metric names (``"auto"``: every registered metric whose inputs are
there, with the reason for each one left out), validates the options, checks the sets, and asks
each metric class what it needs (``check``, ``sample_features``, ``reference_features``). All of
it runs before a network is loaded, so bad input never costs a forward pass.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..assets.weights import resolve
from ..encoders.backbone import FeatureSpec, backbone_spec, resolve_backbone_weights
from ..errors import InputError, LafitebenchError, WeightsError
from ..registry import UnknownNameError
from .base import FeatureKey, Metric
from .config import EvalConfig, validate_config
from .presets import check_preset_metrics
from .registry import METRICS, NOT_AUTO, ROW_ORDER

AUTO = "auto"


@dataclass
class Plan:
    """The outcome of planning: metric classes in row order, the features they need, and what was left out."""

    names: list[str]
    classes: dict[str, type[Metric]]
    sample_keys: set[FeatureKey] = field(default_factory=set)
    reference_keys: set[FeatureKey] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)
    feature_specs: set[FeatureSpec] = field(default_factory=set)

    @property
    def backbones(self) -> list[str]:
        """The feature backbones the embedding metrics read (sorted)."""
        return sorted({fs.backbone for fs in self.feature_specs})

    @property
    def needs_reference(self) -> bool:
        return any(c.needs_reference for c in self.classes.values())

    @property
    def needs_inception(self) -> bool:
        return bool(self.sample_keys or self.reference_keys)

    @property
    def wants_logits(self) -> bool:
        return any(kind == "logits" for kind, _ in self.sample_keys)

    def levels(self, side: str) -> list[int]:
        """Blur levels with features on ``side`` ("samples" or "reference")."""
        keys = self.sample_keys if side == "samples" else self.reference_keys
        return sorted({k for _, k in keys})


def is_auto(names: Sequence[str] | str) -> bool:
    """True for ``"auto"`` or ``["auto"]``."""
    return (isinstance(names, str) and names == AUTO) or (not isinstance(names, str) and list(names) == [AUTO])


def resolve_names(names: Sequence[str] | str) -> list[str]:
    """Registered spellings of ``names``, duplicates dropped. Raises InputError (did you mean)."""
    names = [names] if isinstance(names, str) else list(names)
    out: list[str] = []
    for n in names:
        try:
            c = METRICS.canonical_name(str(n).strip())
        except UnknownNameError as e:
            raise InputError(f"metrics: {e}", param="metrics") from None
        if c not in out:
            out.append(c)
    if not out:
        raise InputError(f"metrics: no metric requested; choose from {', '.join(METRICS.names())}", param="metrics")
    return out


def validate_options(config: EvalConfig) -> None:
    """Types and ranges of every option (whatever the metrics), the device included: each option
    group's own checks (:func:`lafitebench.metrics.config.validate_config`).

    Raises:
        InputError: naming the option (``param``) and what is allowed.
    """
    validate_config(config)


def check_set(s: Any, role: str, config: EvalConfig) -> None:
    """A set exists, has images and is decoded at ``config.resolution``."""
    if s is None or not getattr(s, "items", None):
        raise InputError(f"no {role} to evaluate (empty image set)", param=role)
    res = getattr(s, "resolution", None)
    if res is not None and res != config.resolution:
        raise InputError(
            f"the {role} set {getattr(s, 'name', '?')!r} is decoded at {res}² but resolution is "
            f"{config.resolution}; build it with resolution={config.resolution}", param="resolution")


def _unavailable(cls: type[Metric], config: EvalConfig, samples: Any, reference: Any) -> str | None:
    """Why ``cls`` cannot run on these inputs (its own check's message), or None."""
    if cls.needs_reference and reference is None:
        return "no reference set (reference)"
    try:
        cls.check(config, samples, reference)
    except WeightsError as e:  # the full instructions are long: the short reason, and how to see them
        return f"{e.short or ' '.join(str(e).split())} (name {cls.name} in metrics for the full instructions)"
    except LafitebenchError as e:
        return e.short or " ".join(str(e).split())
    return None


def _inception_classifier_missing(config: EvalConfig) -> str | None:
    """Reason IS cannot run with the configured Inception file (pool3-only), or None.

    Raises WeightsError when the Inception file itself is missing (every Inception metric needs it)."""

    inc = resolve(os.fspath(config.inception_weights) if config.inception_weights else "inception-2015-12-05",
                  progress=config.progress)
    if inc.has_classifier is False:
        return (f"the Inception weights {inc.path.name} have no 1008-way classifier (pool3-only file); "
                "IS needs the full torch-fidelity file")
    return None


def select_auto(config: EvalConfig, samples: Any, reference: Any) -> tuple[list[str], dict[str, str]]:
    """Every registered metric whose inputs exist (in row order), and the reason for each one left out.

    A missing Inception file is an error, not a reason: every Inception metric needs it.
    """
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    inception_checked = False
    classifier_reason: str | None = None
    for name in [*ROW_ORDER, *[n for n in METRICS.names() if n not in ROW_ORDER]]:
        if name in NOT_AUTO:  # backbone metrics are named explicitly: their weights are large downloads
            continue
        cls = METRICS.get(name)
        uses_inception = bool(cls.sample_features(config) or cls.reference_features(config))
        if uses_inception and not inception_checked:
            classifier_reason = _inception_classifier_missing(config)
            inception_checked = True
        wants_logits = any(k == "logits" for k, _ in cls.sample_features(config))
        reason = (classifier_reason if (wants_logits and classifier_reason)
                  else _unavailable(cls, config, samples, reference))
        if reason is None:
            chosen.append(name)
        else:
            skipped[name] = reason
    return chosen, skipped


def make_plan(samples: Any, reference: Any, config: EvalConfig) -> Plan:
    """Resolve and check everything about an evaluation without running a network.

    Raises:
        InputError: unknown metric or preset, bad options, missing/mismatched sets, inputs a
            metric needs (captions, SOA classes, enough images).
        WeightsError: a weights file a metric needs cannot be found or has the wrong hash.
    """
    validate_options(config)
    check_set(samples, "samples", config)
    skipped: dict[str, str] = {}
    if is_auto(config.metrics):
        names, skipped = select_auto(config, samples, reference)
        if not names:
            raise InputError("no metric can be computed: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
                             param="metrics")
    else:
        names = resolve_names(config.metrics)
    classes = {n: METRICS.get(n) for n in names}
    needs_ref = [n for n, c in classes.items() if c.needs_reference]
    if needs_ref and reference is None:
        raise InputError(f"{', '.join(needs_ref)} need a reference set: pass one (e.g. coco-mini or a folder of "
                         "real images)", param="reference")
    if needs_ref:
        check_set(reference, "reference", config)
    check_preset_metrics(config, names)
    plan = Plan(names=names, classes=classes, skipped=skipped)
    for cls in classes.values():
        cls.check(config, samples, reference if cls.needs_reference else None)
        plan.sample_keys |= cls.sample_features(config)
        plan.reference_keys |= cls.reference_features(config)
        if hasattr(cls, "feature_specs"):
            plan.feature_specs |= cls.feature_specs(config)
    missing: list[WeightsError] = []
    for name in plan.backbones:  # every backbone's weights, before any image is read
        spec = backbone_spec(name)
        if spec.family == "inception":  # the Inception extractor, loaded (and checked) with FID's
            plan.sample_keys.add(("pool3", 0))
            continue
        try:
            resolve_backbone_weights(spec, config)
        except WeightsError as e:
            missing.append(e)
    if len(missing) == 1:
        raise missing[0]
    if missing:  # every missing file named at once
        raise WeightsError(f"{len(missing)} backbone weights files are missing:\n"
                           + "\n".join(f"- {e}" for e in missing), param="backbone_weights",
                           short="; ".join(e.short or str(e) for e in missing))
    if not config.skip_bad:  # headers only: cheap, and names every unreadable file at once
        samples.validate(quick=True)
        if needs_ref:
            reference.validate(quick=True)
    return plan


__all__ = ["AUTO", "Plan", "make_plan", "select_auto", "resolve_names", "validate_options", "check_set", "is_auto"]
