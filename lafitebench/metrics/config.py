"""The options of an evaluation: one dataclass, the single source of defaults for the API and the CLI."""
from __future__ import annotations

from dataclasses import dataclass, field

#: The FID-k blur levels of LAFITE's tables.
PAPER_BLUR_LEVELS = (0, 1, 2, 4, 8)


@dataclass
class EvalConfig:
    """Every option of an evaluation (all of it is recorded in the result's provenance).

    Attributes:
        metrics: names from :data:`METRICS` (``fid``, ``kid``, ``is``, ``clip``, ``soa``).
        fid_blur: FID-k blur levels (0 = plain FID); LAFITE's tables use 0, 1, 2, 4, 8.
        blur_preset: ``lafite`` (LAFITE's torchvision blur) or ``pil`` (see :mod:`.blur`).
        resolution: side of the decoded images; sample and reference sets must be built with it.
        batch_size, num_workers: decoding / forward batching (results do not depend on them).
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda``...
        inception_weights: a registered name, a local file, or None for ``inception-2015-12-05``.
        inception_channels_last: run Inception convolutions channels-last (the default: about 2x
            faster on CPU; FID and IS stay within 1e-6 relative of torch-fidelity, FID ~1e-8 with
            the real weights; KID moves within its own float32 evaluation noise). False runs
            torch-fidelity's exact memory layout (bit-level parity; ``--exact-layout``).
        fid_trace: how FID's ``Tr((S1 S2)^½)`` is computed: ``eigh`` (symmetric form with the
            reference factor cached; exact) or ``eigvals`` (torch-fidelity's formula, bit-for-bit);
            see :func:`lafitebench.metrics.fid.fid_from_stats`.
        fid_covariance: ``unbiased`` (divide by N-1, torch-fidelity / pytorch-fid) or ``population``
            (divide by N, StyleGAN2-ADA's ``FeatureStats`` as the official LAFITE evaluation does).
        protocol: the name of the protocol preset the options came from (:data:`PROTOCOLS`; recorded).
        clip_model, clip_pretrained, clip_weights: CLIP scorer (see clip_score).
        detector, detector_conf: SOA detector name/path and confidence threshold.
        kid_subset_size, kid_subsets: KID protocol (torch-fidelity defaults 1000 x 100).
        isc_splits, isc_shuffle: IS protocol (10 splits; shuffled = torch-fidelity, else
            generation order = StyleGAN2/LAFITE).
        seed: RNG seed of the IS shuffle and the KID subsets (torch-fidelity's 2020).
        skip_bad: leave unreadable images out (listed in provenance) instead of failing.
        use_cache: read/write cached reference statistics.
        progress: Rich progress bars on stderr.
    """

    metrics: list[str] = field(default_factory=lambda: ["is", "fid"])
    fid_blur: list[int] = field(default_factory=lambda: [0])
    blur_preset: str = "lafite"
    resolution: int = 256
    batch_size: int = 32
    num_workers: int = 0
    device: str = "auto"
    inception_weights: str | None = None
    inception_channels_last: bool = True
    fid_trace: str = "eigh"
    fid_covariance: str = "unbiased"
    protocol: str = "torch-fidelity"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = "openai"
    clip_weights: str | None = None
    detector: str = "yolov8n.pt"
    detector_conf: float = 0.5
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    isc_splits: int = 10
    isc_shuffle: bool = True
    seed: int = 2020
    skip_bad: bool = False
    use_cache: bool = True
    progress: bool = True


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
    import dataclasses

    from ..errors import InputError

    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}", param="protocol")
    return dataclasses.replace(config, **{"protocol": name, **PROTOCOLS[name]["options"]})
