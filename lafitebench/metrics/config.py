"""The options of an evaluation: the union of the option groups each metric and backbone declares
next to its code (:mod:`lafitebench.options`), the single source of defaults for the API and the CLI."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from ..encoders.backbone import BackboneOptions
from ..encoders.inception import InceptionOptions
from ..errors import InputError
from ..options import Cli, Options, option, positive_int
from ..runtime.device import resolve_device
from ..runtime.rng import check_seed
from .clip_score import ClipOptions
from .cmmd import CmmdOptions
from .fd import FdOptions
from .fid import FidOptions
from .isc import IsOptions
from .kid import KidOptions
from .prdc import PrdcOptions
from .presets import PresetOptions
from .soa import SoaOptions

#: The FID-k blur levels of LAFITE's tables.
PAPER_BLUR_LEVELS = (0, 1, 2, 4, 8)


@dataclass
class RunOptions(Options):
    """What every evaluation shares: metrics, resolution, seeds, batching, device, cache, progress."""

    PANEL = "Performance"

    metrics: list[str] = option(default_factory=lambda: ["is", "fid"],
                                help="Names from the metric registry (fid, kid, is, clip, soa, fd-dinov2, clip-fd, kd, "
                                     "cmmd, prdc), or 'auto' (the first five).")
    resolution: int = option(256, "Evaluation resolution (images of other sizes are resized, bicubic).",
                             cli=Cli("--resolution", minimum=8), panel="Samples")
    batch_size: int = option(32, "Images per forward pass (results do not depend on it).", cli=Cli("--batch-size", minimum=1))
    num_workers: int = option(0, "Image-decoding worker processes.", cli=Cli("--num-workers", minimum=0))
    device: str = option("auto", "auto, cpu, cuda, cuda:1 ...", cli="--device")
    protocol: str = option("torch-fidelity", "The named protocol the options came from (recorded).")
    seed: int = option(2020, "Seed of the IS shuffle and KID subsets.", cli=Cli("--seed", minimum=0), panel="Metrics")
    skip_bad: bool = option(False, "Skip unreadable images (counted in the report) instead of failing.",
                            cli="--skip-bad", panel="Samples")
    use_cache: bool = option(True, "Read and write cached reference statistics.",
                             cli=Cli("--no-cache", bool, lambda no: not no, lambda use: not use))
    progress: bool = option(True, "Rich progress bars on stderr.")

    @classmethod
    def check(cls, config: Any) -> None:
        """Batching, resolution, seed and the device."""
        for name, minimum in (("batch_size", 1), ("num_workers", 0), ("resolution", 8)):
            positive_int(config, name, minimum)
        check_seed(config.seed)
        if config.seed >= 2**32:  # the IS shuffle and KID subsets use numpy.random.RandomState(seed)
            raise InputError(f"seed must be below 2**32 for the IS shuffle and KID subsets, got {config.seed}",
                             param="seed")
        resolve_device(config.device)


@dataclass
class EvalConfig(PrdcOptions, CmmdOptions, FdOptions, BackboneOptions, PresetOptions, SoaOptions, ClipOptions,
                 IsOptions, KidOptions, FidOptions, InceptionOptions, RunOptions):
    """Every option of an evaluation (all of it is recorded in the result's provenance): the
    fields of :class:`RunOptions` and of each metric's and backbone's options
    (:class:`~lafitebench.encoders.inception.InceptionOptions`, :class:`~.fid.FidOptions`,
    :class:`~.kid.KidOptions`, :class:`~.isc.IsOptions`, :class:`~.clip_score.ClipOptions`,
    :class:`~.soa.SoaOptions`, :class:`~.presets.PresetOptions`,
    :class:`~lafitebench.encoders.backbone.BackboneOptions`, :class:`~.fd.FdOptions`,
    :class:`~.cmmd.CmmdOptions`, :class:`~.prdc.PrdcOptions`), where each is documented and checked."""

#: The option groups in ``--help`` order; ``validate_config`` checks each.
OPTION_GROUPS: tuple[type[Options], ...] = (RunOptions, PresetOptions, InceptionOptions, FidOptions, KidOptions,
                                            IsOptions, ClipOptions, SoaOptions, BackboneOptions, FdOptions,
                                            CmmdOptions, PrdcOptions)


def validate_config(config: EvalConfig) -> None:
    """Every group's checks (whatever the metrics): InputError naming the option."""
    for group in OPTION_GROUPS:
        group.check(config)


def field_help(name: str) -> str:
    """The declared help text of an EvalConfig field."""
    return next(f.metadata.get("help", "") for f in fields(EvalConfig) if f.name == name)


#: Named protocols: the options each sets, and what else it asks of the user (recorded in results).
PROTOCOLS: dict[str, dict] = {
    "torch-fidelity": {"options": {}, "notes": "torch-fidelity's definitions (the default)"},
    "lafite-official": {
        "options": {"fid_covariance": "population", "isc_shuffle": False, "protocol": "lafite-official"},
        "notes": ("the official LAFITE / StyleGAN2-ADA evaluation: covariance divided by N, IS splits in generation "
                  "order; its reference set is the TRAINING set (--reference) and its samples are 30,000 images "
                  "from the test captions in order (6,000 for MM-CelebA-HQ): --split coco-val-30k"),
    },
}


def apply_protocol(config: "EvalConfig", name: str) -> "EvalConfig":
    """``config`` with the options of protocol ``name``. Raises InputError for an unknown name."""

    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}", param="protocol")
    return dataclasses.replace(config, **{"protocol": name, **PROTOCOLS[name]["options"]})
