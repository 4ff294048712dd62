"""Training options and the named presets (the official README's settings, plus ``tiny``).

A preset fills every option the user did not set; what a run used is written to its
``config.json`` and into every snapshot's provenance.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..registry import Registry, UnknownNameError
from .loss import CONTRASTIVE_FORMS

TRAIN_VARIANTS = ("g", "nn", "supervised")
SEMANTIC_TERMS = ("official", "paper")
NONFINITE = ("stop", "zero")
NN_FEATURES = ("stored", "clip-view")


@dataclass
class TrainConfig:
    """Every option of ``lafitebench train`` (``None`` = from the preset, then the variant).

    Attributes:
        variant: ``g`` (Gaussian pseudo text), ``nn`` (perturbation network), ``supervised``.
        data: a feature store (``lafitebench data prepare``), an official LAFITE ``.zip``, or a
            data set name / folder (prepared into the run folder with the CLIP model first).
        out: the run folder.  preset: a named preset (``lafitebench train --help`` lists them).
        resolution: must equal the data's (stores and zips are prepared at one resolution).
        kimg: length in thousands of real images shown.  batch: global batch.  batch_gpu: per
            round (gradient accumulation when smaller than batch / world size).
        mixing_prob: probability of the pseudo-text condition per sample (1 language-free,
            0 supervised; default from the variant).
        itc / itd: weights of the CLIP image–text and discriminator contrastive terms.
        gamma: R1 weight.  temp / lam: contrastive temperature and direction mix.
        contrastive: ``official`` (exp-logit form) or ``paper`` (InfoNCE).
        semantic_term: discriminator's ``official`` (batch-summed) or ``paper`` (per sample) term.
        snap: kimg between snapshots.  metrics: ``fid`` or ``none`` at each snapshot.
        fid_num: samples for the snapshot FID.  init: model to fine-tune from.  resume: continue
            the latest training state in ``out``.  mapper: Lafite-NN perturbation network file.
        mirror: x-flip augmentation (kept with precomputed features: the unflipped image's
            features are used, recorded in the run config).
        gather: contrastive negatives gathered across ranks.
        r1_interval / pl_interval: lazy regularisation intervals; 0 runs the term every step in the
            main pass (the official ``Dboth``/``Gboth``, no Adam adjustment).
        ema_kimg: G_ema half-life; default the official ``16 · GPUs · 10/32`` kimg: the preset's batch
            per process × the number of processes × 10/32 (5 kimg on one process, 20 at the paper's 4).
        nonfinite: ``stop`` (default: a NaN/Inf loss stops the run naming the step, last snapshot
            intact) or ``zero`` (the official loop: NaN gradients zeroed, ±Inf clamped, go on).
        allow_tf32: TF32 matmul/cuDNN on CUDA (off, as the official loop).
        nn_features: Lafite-NN's mapper input: ``stored`` (the data's precomputed, unflipped image
            feature) or ``clip-view`` (the official NN branch: CLIP of a 0.99 crop of the real,
            possibly flipped, image; needs the CLIP weights, as ``itc``).
    """

    variant: str = "g"
    data: str = ""
    out: str = ""
    preset: str = "coco-language-free"
    resolution: int | None = None
    kimg: float | None = None
    batch: int | None = None
    batch_gpu: int | None = None
    mixing_prob: float | None = None
    itc: float | None = None
    itd: float | None = None
    gamma: float | None = None
    temp: float | None = None
    lam: float | None = None
    contrastive: str | None = None
    semantic_term: str | None = None
    lr: float | None = None
    style_mixing: float | None = None
    pl_weight: float | None = None
    r1_interval: int | None = None
    pl_interval: int | None = None
    ema_kimg: float | None = None
    ema_rampup: float | None = None
    mirror: bool | None = None
    gather: bool | None = None
    snap: float | None = None
    metrics: str | None = None
    fid_num: int | None = None
    fid_reference: str | None = None
    init: str | None = None
    resume: bool = False
    mapper: str | None = None
    seed: int = 0
    device: str = "auto"
    z_dim: int | None = None
    w_dim: int | None = None
    mapping_layers: int | None = None
    channel_base: int | None = None
    channel_max: int | None = None
    num_fp16_res: int | None = None
    clip_model: str | None = None
    clip_pretrained: str | None = None
    clip_weights: str | None = None
    grid_captions: list[str] = field(default_factory=list)
    progress: bool = True
    tensorboard: bool = True
    nonfinite: str = "stop"
    allow_tf32: bool = False
    nn_features: str = "stored"


_COCO = dict(resolution=256, kimg=25000, batch=16, temp=0.5, lam=0.0, contrastive="official",
             semantic_term="official", lr=0.0025, style_mixing=0.9, pl_weight=2.0, r1_interval=16, pl_interval=4,
             ema_rampup=0.05, mirror=True, gather=False, snap=50, metrics="fid", fid_num=5000, gamma=10.0,
             z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512, num_fp16_res=4)

PRESETS: Registry[dict[str, Any]] = Registry("training preset")
PRESETS.register("coco-language-free", {**_COCO, "itc": 10.0, "itd": 10.0,
                                        "cost": "256², 25,000 kimg: the paper's run, weeks on 4 GPUs"})
PRESETS.register("coco-supervised", {**_COCO, "itc": 10.0, "itd": 5.0,
                                     "cost": "256², 25,000 kimg: weeks on 4 GPUs"})
PRESETS.register("finetune", {**_COCO, "itc": 10.0, "itd": 5.0, "kimg": 1000, "snap": 20, "ema_rampup": None,
                              "cost": "256², 1,000 kimg from init: days on one GPU"})
# tiny: a CPU smoke test. At this scale the official exp-logit contrastive form and batch-summed
# semantic term make D's signal noisy; the paper's forms train.
PRESETS.register("tiny", dict(resolution=32, kimg=0.4, batch=8, temp=0.5, lam=0.0, contrastive="paper",
                              semantic_term="paper", lr=0.0025, style_mixing=0.9, pl_weight=2.0, r1_interval=4,
                              pl_interval=4, ema_kimg=0.01, ema_rampup=0.05, mirror=True, gather=False, snap=0.1,
                              metrics="none", fid_num=64, gamma=0.05, itc=0.0, itd=5.0, z_dim=64, w_dim=64,
                              mapping_layers=2, channel_base=512, channel_max=64, num_fp16_res=0,
                              cost="32², 0.4 kimg: about 10 s on 2 CPU cores"))

VARIANT_MIXING = {"g": 1.0, "nn": 1.0, "supervised": 0.0}


def resolve(cfg: TrainConfig, world_size: int = 1) -> TrainConfig:
    """``cfg`` with every unset option filled from its preset and variant; checks each option
    (InputError naming it) before any file is read.

    Under torchrun (``world_size`` > 1) an unset ``batch`` is the preset's batch on *each* process
    (the official rule: ``--batch`` is per GPU there), and the default ``ema_kimg`` follows that
    global batch (official ``ema_kimg = batch · 10/32``: 20 kimg at the paper's 4 × 16)."""
    if cfg.variant not in TRAIN_VARIANTS:
        raise InputError(f"variant must be one of {', '.join(TRAIN_VARIANTS)}, got {cfg.variant!r}", param="variant")
    try:
        preset = PRESETS.get(cfg.preset)
    except UnknownNameError as e:
        raise InputError(f"preset: {e}", param="preset") from None
    values = {k: (getattr(cfg, k) if getattr(cfg, k) is not None else preset.get(k))
              for k in (f.name for f in dataclasses.fields(cfg))}
    values["resolution"] = cfg.resolution  # the data's unless given (the preset's only to prepare a data set)
    if cfg.mixing_prob is None:  # the variant decides: 1 language-free, 0 supervised
        values["mixing_prob"] = VARIANT_MIXING[cfg.variant]
    if cfg.itd is None and cfg.variant == "supervised" and cfg.preset == "coco-language-free":
        values["itd"] = 5.0  # the README's supervised setting
    if cfg.batch is None and world_size > 1:
        values["batch"] = values["batch"] * world_size
    if values["ema_kimg"] is None:  # official train.py: spec.ema = spec.mb · 10/32 with spec.mb = 16 · gpus, the
        # preset's per-GPU batch times the processes, even when --batch overrides the batch
        values["ema_kimg"] = preset["batch"] * world_size * 10 / 32
    if values["batch_gpu"] is None:
        values["batch_gpu"] = values["batch"] // world_size if values["batch"] % world_size == 0 else values["batch"]
    out = TrainConfig(**values)
    _check(out)
    return out


def _check(c: TrainConfig) -> None:
    if not c.data:
        raise InputError("no training data given: a feature store, an official .zip or a data set name", param="data")
    if not c.out:
        raise InputError("no run folder given", param="out")
    positive_int = ("batch", "batch_gpu", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "fid_num")
    for name in positive_int:
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}", param=name)
    for name in ("r1_interval", "pl_interval"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InputError(f"{name} must be an integer >= 0 (0: no lazy regularisation), got {v!r}", param=name)
    for name in ("kimg", "snap", "lr", "ema_kimg"):
        if not float(getattr(c, name)) > 0:
            raise InputError(f"{name} must be positive, got {getattr(c, name)!r}", param=name)
    for name in ("itc", "itd", "gamma", "pl_weight"):
        if float(getattr(c, name)) < 0:
            raise InputError(f"{name} must be >= 0, got {getattr(c, name)!r}", param=name)
    for name in ("mixing_prob", "lam", "style_mixing"):
        if not 0.0 <= float(getattr(c, name)) <= 1.0:
            raise InputError(f"{name} must be in [0, 1], got {getattr(c, name)!r}", param=name)
    if c.contrastive not in CONTRASTIVE_FORMS:
        raise InputError(f"contrastive must be one of {', '.join(CONTRASTIVE_FORMS)}", param="contrastive")
    if c.semantic_term not in SEMANTIC_TERMS:
        raise InputError(f"semantic_term must be one of {', '.join(SEMANTIC_TERMS)}", param="semantic_term")
    if c.nonfinite not in NONFINITE:
        raise InputError(f"nonfinite must be one of {', '.join(NONFINITE)}, got {c.nonfinite!r}", param="nonfinite")
    if c.nn_features not in NN_FEATURES:
        raise InputError(f"nn_features must be one of {', '.join(NN_FEATURES)}, got {c.nn_features!r}",
                         param="nn_features")
    if c.metrics not in ("fid", "none"):
        raise InputError(f"metrics must be fid or none, got {c.metrics!r}", param="metrics")
    if c.batch % c.batch_gpu:
        raise InputError(f"batch {c.batch} is not a multiple of batch_gpu {c.batch_gpu}", param="batch_gpu")
    if c.variant == "supervised" and c.mixing_prob > 0:
        raise InputError(f"variant supervised trains on ground-truth text: mixing_prob must be 0, got {c.mixing_prob} "
                         "(use variant g or nn for the semi-supervised setting)", param="mixing_prob")
    if c.mapper is not None and c.variant != "nn":
        raise InputError(f"mapper applies to variant nn, not {c.variant}", param="mapper")


def preset_help() -> str:
    """One line per preset for ``--help``: what it costs and its main values."""
    return "\n".join(f"  {n}: {PRESETS.get(n).get('cost', '')}" for n in PRESETS.names())


def per_preset(key: str) -> str:
    """``key``'s value in every preset, for an option's help: ``coco-language-free 25000, ..., tiny 0.4``."""
    return ", ".join(f"{n} {PRESETS.get(n).get(key)}" for n in PRESETS.names())


__all__ = ["TrainConfig", "PRESETS", "resolve", "TRAIN_VARIANTS", "preset_help", "per_preset"]
