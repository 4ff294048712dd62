"""Toolkit presets: the choices each toolkit makes, so a number can be compared with its papers.

A preset fixes, for the backbone-feature metrics, the preprocessing of each backbone family
(resize filter, crop, normalisation), whether features are L2-normalised, the k and comparison of
the k-NN metrics, the CMMD estimator, and which metrics it defines; the sample count its papers
use is recorded and a different count is said in the row's notes. A metric the preset does not
define is refused (e.g. ``--preset clean-fid --metrics fid``: clean-fid's Inception resize is not
implemented here, so a number under that name would not be clean-fid's).

``lafitebench`` (the default) takes each metric's reference toolkit: FD-DINOv2 as dgm-eval
(Stein et al. 2023), CLIP-FD as clean-fid, CMMD as google-research/cmmd, precision/recall as
torch-fidelity (k=3, ``<=``) and density/coverage as ``prdc`` (k=5, ``<``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..encoders.backbone import INCEPTION_PREPROCESS, FeatureSpec, backbone_spec
from ..errors import InputError
from ..options import Cli, Options, option
from ..registry import Registry, UnknownNameError

#: metric → backbone family → (preprocessing, L2-normalised)
FeedTable = Mapping[str, Mapping[str, tuple[str, bool]]]
_DEFAULT_FEED = {"inception": (INCEPTION_PREPROCESS, False), "dinov2": ("pil-bicubic", False),
                 "clip": ("pil-bicubic-crop", False), "vgg16": ("tf-bilinear", False)}


@dataclass(frozen=True)
class Preset:
    """A toolkit's choices: ``feed`` per metric and backbone family, option values it fixes,
    the metrics it defines (None: all), the sample count of its papers, and notes."""

    name: str
    feed: FeedTable
    options: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] | None = None
    n: int | None = None
    notes: str = ""

    def feature(self, metric: str, backbone: str) -> FeatureSpec:
        """The :class:`FeatureSpec` ``metric`` reads from ``backbone`` under this preset."""
        family = backbone_spec(backbone).family
        table = self.feed.get(metric, self.feed.get("*", {}))
        if family not in table:
            raise InputError(f"preset {self.name} does not define how {metric} reads the {backbone} backbone "
                             f"({family}); choose another backbone or preset", param="preset")
        pre, l2 = table[family]
        return FeatureSpec(backbone, pre, l2)


PRESETS: Registry[Preset] = Registry("preset")
PRESETS.register("lafitebench", Preset(
    "lafitebench", {"*": _DEFAULT_FEED, "cmmd": {"clip": ("cmmd", True), "dinov2": ("pil-bicubic", True),
                                                 "inception": (INCEPTION_PREPROCESS, True)}},
    notes="each metric as its reference toolkit: FD-DINOv2 as dgm-eval, CLIP-FD as clean-fid, CMMD as "
          "google-research/cmmd, P/R as torch-fidelity (k=3, <=), D/C as prdc (k=5, <)"))
PRESETS.register("torch-fidelity", Preset(
    "torch-fidelity", {"*": {"inception": (INCEPTION_PREPROCESS, False), "dinov2": ("tf-bilinear", False),
                             "clip": ("tf-bilinear", False), "vgg16": ("tf-bilinear", False)}},
    options={"pr_k": 3, "pr_rule": "<=", "prdc_backbone": "vgg16"},
    metrics=("is", "fid", "kid", "fd", "clip-fd", "kd", "prdc"),
    notes="torch-fidelity 0.4: TF1-compatible bilinear resize for every extractor, raw features, P/R k=3 with "
          "<= on VGG16 fc2+ReLU features (its default)"))
PRESETS.register("clean-fid", Preset(
    "clean-fid", {"*": {"clip": ("pil-bicubic-crop", False)}}, metrics=("clip-fd",), n=None,
    notes="clean-fid's clip_vit_b_32 mode: PIL bicubic resize of the shortest side to 224, centre crop, raw "
          "(unnormalised) CLIP image features; its Inception 'clean' resize is not implemented here"))
PRESETS.register("dgm-eval", Preset(
    "dgm-eval", {"*": {"dinov2": ("pil-bicubic", False), "inception": (INCEPTION_PREPROCESS, False)}},
    options={"prdc_backbone": "dinov2-vitl14", "fd_backbone": "dinov2-vitl14", "pr_k": 5, "pr_rule": "<",
             "dc_k": 5, "dc_rule": "<"},
    metrics=("fd", "kd", "prdc"), n=50_000,
    notes="dgm-eval (Stein et al. 2023): DINOv2 ViT-L/14 CLS features, PIL bicubic resize to 224x224, "
          "P/R/D/C with k=5 and strict <, 50,000 samples"))
PRESETS.register("edm2", Preset(
    "edm2", {"*": {"dinov2": ("torch-bicubic-aa", False)}}, options={"fd_backbone": "dinov2-vitl14"},
    metrics=("fd",), n=50_000,
    notes="edm2 calculate_metrics.py: DINOv2 ViT-L/14, antialiased bicubic torch resize to 224, 50,000 samples"))
PRESETS.register("cmmd", Preset(
    "cmmd", {"*": {"clip": ("cmmd", True)}}, options={"cmmd_backbone": "clip-vitl14-336", "cmmd_estimator": "biased"},
    metrics=("cmmd",), n=30_000,
    notes="google-research/cmmd: CLIP ViT-L/14@336 image embeddings, L2-normalised, RBF sigma=10, scale 1000, "
          "biased estimator; its paper reports COCO-30k"))


def get_preset(name: str) -> Preset:
    """The registered preset; InputError naming ``preset`` otherwise."""
    try:
        return PRESETS.get(name)
    except UnknownNameError as e:
        raise InputError(f"{e}", param="preset") from None


@dataclass
class PresetOptions(Options):
    """The toolkit preset and the bootstrap intervals."""

    PANEL = "Metrics"

    preset: str = option("lafitebench", "Toolkit whose choices the backbone metrics follow: lafitebench, "
                                        "torch-fidelity, clean-fid, dgm-eval, edm2, cmmd.",
                         cli=Cli("--preset", metavar="NAME"))
    bootstrap: int = option(0, "Bootstrap resamples of the per-image features for a 95% interval on every "
                               "feature metric (0: none; no new forward passes).", cli=Cli("--bootstrap", minimum=0))

    @classmethod
    def check(cls, config: Any) -> None:
        """A known preset; a non-negative bootstrap count."""
        get_preset(config.preset)
        b = config.bootstrap
        if isinstance(b, bool) or not isinstance(b, int) or b < 0 or b == 1:
            raise InputError(f"bootstrap must be 0 (off) or an integer >= 2, got {b!r}", param="bootstrap")


def resolve_preset(config: Any) -> Any:
    """``config`` with the options its preset fixes, where the option is still at its default
    (an option set to anything else is the user's choice and is kept; the result's provenance
    records both)."""
    p = get_preset(config.preset)
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    changes = {k: v for k, v in p.options.items() if getattr(config, k) == defaults.get(k)}
    return dataclasses.replace(config, **changes) if changes else config


def check_preset_metrics(config: Any, names: list[str]) -> None:
    """Refuse metrics the preset does not define (InputError naming ``preset``)."""
    p = get_preset(config.preset)
    if p.metrics is None:
        return
    bad = [n for n in names if n not in p.metrics]
    if bad:
        raise InputError(f"preset {p.name} does not define {', '.join(bad)} (it defines {', '.join(p.metrics)}): "
                         f"a number under that name would not be {p.name}'s; drop them or use --preset lafitebench",
                         param="preset")


__all__ = ["PRESETS", "Preset", "PresetOptions", "resolve_preset", "check_preset_metrics", "get_preset"]
