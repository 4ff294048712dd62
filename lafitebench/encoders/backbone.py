"""Feature backbones beside Inception: CLIP image towers (open_clip), DINOv2 ViTs (timm) and VGG16
(torchvision; torch-fidelity's precision/recall features).

A backbone is a registered :class:`BackboneSpec` (``BACKBONES``); a :class:`FeatureSpec` names
what a metric reads: a backbone, the preprocessing that feeds it (:mod:`.preprocess`, one per
toolkit) and whether the features are L2-normalised. Its ``tag`` (``dinov2-vitl14:pil-bicubic``)
is part of metric ids and of the feature cache key, so two numbers with the same id come from
the same features.

:func:`load_embedder` resolves the weights (``backbone_weights`` NAME=PATH, then the resolver:
``$LAFITEBENCH_WEIGHTS`` → cache → download; offline a clear error naming the file and the
option) and builds the network in-process: never ``torch.hub``. ``inception`` is the FID
Inception (pool3, torch-fidelity's resize); the engine feeds it from the Inception stage so a
run with FID computes its features once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ..assets.weights import DINOV2_SIZES, ResolvedWeights, resolve
from ..errors import InputError, WeightsError
from ..options import Cli, Options, option
from ..registry import Registry, UnknownNameError
from ..runtime.device import resolve_device
from .clip import CLIP_MEAN, CLIP_STD, load_clip, resolve_clip_weights
from .dinov2 import TIMM_ARCH, build_dinov2
from .preprocess import PREPROCESSES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_PREPROCESS = "torch-fidelity"  # torch-fidelity's TF1 bilinear resize to 299² inside the extractor


@dataclass(frozen=True)
class BackboneSpec:
    """A feature network: ``family`` (``inception`` | ``clip`` | ``dinov2``), feature width,
    input size, the weights name the resolver knows, the architecture (open_clip model or timm
    name; ``pretrained`` is the open_clip tag) and the input mean/std."""

    name: str
    family: str
    dim: int
    input_size: int
    weights: str
    arch: str
    pretrained: str | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)


BACKBONES: Registry[BackboneSpec] = Registry("backbone")
BACKBONES.register("inception", BackboneSpec("inception", "inception", 2048, 299, "inception-2015-12-05",
                                             "torch-fidelity FeatureExtractorInceptionV3"))
BACKBONES.register("vgg16", BackboneSpec("vgg16", "vgg16", 4096, 224, "vgg16",
                                         "torchvision vgg16, fc2 + ReLU (torch-fidelity's P/R features)"))
for _k, _dim in DINOV2_SIZES.items():
    BACKBONES.register(f"dinov2-vit{_k}14", BackboneSpec(f"dinov2-vit{_k}14", "dinov2", _dim, 224,
                                                         f"dinov2-vit{_k}14", TIMM_ARCH[_k]))
for _name, _model, _dim, _size in (("clip-vitb32", "ViT-B-32", 512, 224), ("clip-vitb16", "ViT-B-16", 512, 224),
                                   ("clip-vitl14", "ViT-L-14", 768, 224), ("clip-vitl14-336", "ViT-L-14-336", 768, 336)):
    BACKBONES.register(_name, BackboneSpec(_name, "clip", _dim, _size, f"clip:{_model}/openai", _model, "openai",
                                           CLIP_MEAN, CLIP_STD))
del _k, _dim, _name, _model, _size


def _open_clip_spec(name: str) -> BackboneSpec:
    """``clip:<open_clip model>[/<pretrained tag>]``: any open_clip image tower (width, input size
    and mean/std from open_clip's own tables); without a tag its file comes from backbone_weights."""
    import open_clip

    model, _, tag = name[len("clip:"):].partition("/")
    cfg = open_clip.get_model_config(model)
    if not cfg:
        raise InputError(f"backbone {name!r}: open_clip has no model {model!r} (see open_clip.list_models())",
                         param="backbone")
    pre = (open_clip.get_pretrained_cfg(model, tag) or {}) if tag else {}
    size = cfg["vision_cfg"].get("image_size", 224)
    return BackboneSpec(name, "clip", int(cfg["embed_dim"]), int(size if isinstance(size, int) else size[0]),
                        f"clip:{model}/{tag}" if tag else "", model, tag or None,
                        tuple(pre.get("mean", CLIP_MEAN)), tuple(pre.get("std", CLIP_STD)))


def backbone_spec(name: str) -> BackboneSpec:
    """The registered backbone ``name``, or ``clip:<open_clip model>[/<tag>]`` for any open_clip
    image tower; InputError listing the known ones otherwise."""
    if name not in BACKBONES and str(name).lower().startswith("clip:"):
        BACKBONES.register(name, _open_clip_spec(name))
    try:
        return BACKBONES.get(name)
    except UnknownNameError as e:
        raise InputError(f"{e} (or clip:<open_clip model>/<pretrained tag>)", param="backbone") from None


def backbone_option(config: Any, name: str) -> BackboneSpec:
    """The backbone the option ``name`` of ``config`` names; InputError naming the option otherwise."""
    try:
        return backbone_spec(getattr(config, name))
    except InputError as e:
        raise InputError(f"{name}: {e}", param=name) from None


@dataclass(frozen=True, order=True)
class FeatureSpec:
    """What an embedding metric reads: backbone, preprocessing, L2-normalised or raw features."""

    backbone: str
    preprocess: str
    l2: bool = False

    @property
    def tag(self) -> str:
        """``backbone:preprocess`` (``+l2`` when normalised): in metric ids and cache keys."""
        return f"{self.backbone}:{self.preprocess}" + ("+l2" if self.l2 else "")

    def check(self) -> None:
        """The backbone and preprocessing exist and fit together."""
        spec = backbone_spec(self.backbone)
        if spec.family == "inception":
            if self.preprocess != INCEPTION_PREPROCESS:
                raise InputError(f"the inception backbone has one preprocessing (torch-fidelity's resize inside the "
                                 f"network), not {self.preprocess!r}", param="preset")
        elif self.preprocess not in PREPROCESSES:
            raise InputError(f"unknown preprocessing {self.preprocess!r}; known: {', '.join(PREPROCESSES.names())}",
                             param="preset")


def parse_weights_map(value: str) -> dict[str, str]:
    """``"dinov2-vitl14=/p/a.pth,clip-vitb32=/p/b.pt"`` → dict; InputError naming the option otherwise."""
    out: dict[str, str] = {}
    for part in [p for p in str(value or "").split(",") if p.strip()]:
        name, sep, path = part.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(f"backbone_weights takes NAME=PATH pairs separated by commas (e.g. "
                             f"dinov2-vitl14=dinov2_vitl14_pretrain.pth), got {part!r}", param="backbone_weights")
        out[name.strip()] = path.strip()
    return out


@dataclass
class BackboneOptions(Options):
    """Weights files of the feature backbones (DINOv2, CLIP towers)."""

    PANEL = "Backbones"

    backbone_weights: dict[str, str] = option(
        default_factory=dict, help="Local weights of feature backbones as NAME=PATH pairs separated by commas, "
                                   "e.g. dinov2-vitl14=FILE (default: $LAFITEBENCH_WEIGHTS, the cache, then "
                                   "the official URL).",
        cli=Cli("--backbone-weights", str, parse_weights_map,
                lambda m: ",".join(f"{k}={v}" for k, v in (m or {}).items()), "NAME=PATH"))

    @classmethod
    def check(cls, config: Any) -> None:
        """Every named backbone exists and its file exists."""
        mapping = config.backbone_weights or {}
        if not isinstance(mapping, Mapping):
            raise InputError("backbone_weights must map backbone names to files", param="backbone_weights")
        for name, path in mapping.items():
            backbone_spec(name)
            if not os.path.exists(os.path.expanduser(str(path))):
                raise InputError(f"backbone_weights: the file for {name} does not exist: {path}",
                                 param="backbone_weights")


def resolve_backbone_weights(spec: BackboneSpec, config: Any) -> ResolvedWeights | None:
    """The weights file of ``spec`` for this run (cheap once local); WeightsError naming the file
    and ``backbone_weights`` when it is missing offline. (``inception`` is the engine's extractor,
    resolved from ``inception_weights``.)"""
    explicit = (getattr(config, "backbone_weights", None) or {}).get(spec.name)
    try:
        if spec.family == "clip":
            return resolve_clip_weights(spec.arch, spec.pretrained, explicit)
        return resolve(spec.weights, explicit=explicit, progress=getattr(config, "progress", True))
    except WeightsError as e:
        text = str(e).replace("clip_weights=PATH", f"backbone_weights={spec.name}=PATH")  # not the CLIP scorer's
        if "backbone_weights" not in text:
            text += f" (give the {spec.name} backbone's file with backbone_weights={spec.name}=PATH)"
        raise WeightsError(f"{spec.name} backbone: {text}", param="backbone_weights", short=e.short) from None


class Embedder:
    """A loaded backbone: ``embed(images_uint8, feature_spec)`` → float32 [N, dim] on the CPU.

    ``identity()`` is what changes its numbers (part of the feature cache key); ``provenance()``
    adds where the weights came from.
    """

    def __init__(self, spec: BackboneSpec, weights: ResolvedWeights | None, module: Any, device: torch.device) -> None:
        self.spec, self.weights, self.module, self.device = spec, weights, module, device
        self.forwards = 0

    @property
    def dim(self) -> int:
        """Feature width (the Inception extractor's own pool3 width for ``inception``)."""
        return int(getattr(self.module, "pool3_dim", self.spec.dim)) if self.spec.family == "inception" else self.spec.dim

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, fs: FeatureSpec) -> torch.Tensor:
        """Features of a uint8 [N,3,H,W] batch under ``fs``'s preprocessing."""
        s = self.spec
        if s.family == "inception":
            out = self.module(images).pool3
        else:
            x = PREPROCESSES.get(fs.preprocess)(images.to(self.device), s.input_size, s.mean, s.std)
            out = self.module.encode_image(x) if s.family == "clip" else self.module(x)
        self.forwards += int(images.shape[0])
        out = out.float()
        return (F.normalize(out, dim=-1) if fs.l2 else out).cpu()

    def identity(self) -> dict[str, Any]:
        """Backbone, architecture, weights sha256, device type and library versions."""
        import open_clip
        import timm
        import torchvision

        return {"backbone": self.spec.name, "arch": self.spec.arch, "input_size": self.spec.input_size,
                "arch_kwargs": dict(self.spec.arch_kwargs),
                "weights_sha256": getattr(self.weights, "sha256", None) or getattr(self.module, "sha256", None),
                "device_type": self.device.type, "torch": torch.__version__,
                "library": {"dinov2": f"timm {timm.__version__}", "clip": f"open_clip {open_clip.__version__}",
                            "inception": "torch-fidelity", "vgg16": f"torchvision {torchvision.__version__}"
                            }[self.spec.family]}

    def provenance(self) -> dict[str, Any]:
        """Identity plus the weights' provenance."""
        w = self.weights.provenance() if hasattr(self.weights, "provenance") else None
        return {**self.identity(), "weights": w, "forwards": self.forwards}


def load_embedder(name: str, config: Any, inception: Any = None) -> Embedder:
    """Build backbone ``name`` with its weights (see :func:`resolve_backbone_weights`);
    ``inception`` is the engine's Inception extractor, reused for the ``inception`` backbone."""
    spec = backbone_spec(name)
    device = resolve_device(getattr(config, "device", "cpu"))
    if spec.family == "inception":
        if inception is None:
            raise InputError("the inception backbone needs the Inception extractor", param="inception_weights")
        return Embedder(spec, getattr(inception, "weights", None), inception, inception.device)
    weights = resolve_backbone_weights(spec, config)
    if spec.family == "clip":
        explicit = (getattr(config, "backbone_weights", None) or {}).get(spec.name)
        model, _, _, _ = load_clip(spec.arch, spec.pretrained, explicit, device)
        return Embedder(spec, weights, model, device)
    if spec.family == "vgg16":
        return Embedder(spec, weights, build_vgg16(weights.path).to(device), device)
    module = build_dinov2(spec.arch, weights.path, spec.input_size, spec.arch_kwargs).to(device)
    return Embedder(spec, weights, module, device)


def build_vgg16(weights: Any) -> torch.nn.Module:
    """torchvision's VGG16 with a weights file (read as tensors only), cut after the second fully
    connected layer and its ReLU: the 4096-d ``fc2_relu`` features torch-fidelity's precision/recall use."""
    import torchvision

    from ..io.state_dict import safe_torch_load

    model = torchvision.models.vgg16()
    sd = safe_torch_load(weights, f"VGG16 weights {weights}", WeightsError)
    try:
        model.load_state_dict(sd, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise WeightsError(f"{weights} is not a torchvision VGG16 state dict: {str(e).splitlines()[0]}") from None
    model.classifier = torch.nn.Sequential(*list(model.classifier)[:4], torch.nn.ReLU())
    return model.eval().requires_grad_(False)


__all__ = ["BACKBONES", "BackboneSpec", "BackboneOptions", "Embedder", "FeatureSpec", "backbone_spec",
           "backbone_option", "load_embedder", "parse_weights_map", "resolve_backbone_weights", "INCEPTION_PREPROCESS"]
