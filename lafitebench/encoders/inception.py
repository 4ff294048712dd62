"""The FID Inception-v3 feature extractor (torch-fidelity's ``FeatureExtractorInceptionV3``).

One forward pass per image gives both the 2048-d pool3 features (FID, KID) and the 1008-way
unbiased logits (IS). The network takes uint8 NCHW images of any size and resizes them to 299²
itself with torch-fidelity's TensorFlow-1-compatible bilinear resize (part of the metric's
identity), then normalises with (x - 128) / 128.

Weights are loaded without executing code from the file (``torch.load(weights_only=True)``),
checked against the network's keys, and then handed to torch-fidelity's class as an in-memory
state dict we serialised ourselves. A file whose classifier ``fc.weight`` is all zeros (the
pool3-only conversion shared with this project) cannot give an Inception Score: asking for
logits from it raises a WeightsError before any work.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..assets.weights import resolve
from ..errors import InputError, WeightsError
from ..io.files import atomic_write, sha256_file
from ..io.state_dict import safe_torch_load
from ..options import Cli, Options, option
from ..runtime.device import resolve_device

DEFAULT_INCEPTION = "inception-2015-12-05"
POOL3 = "2048"
LOGITS = "logits_unbiased"


@dataclass
class InceptionOptions(Options):
    """The FID Inception backbone: its weights file and memory layout."""

    PANEL = "FID / KID"

    inception_weights: str | None = option(None, "Inception file (torch-fidelity layout); default: the 2015-12-05 "
                                                 "network, downloaded once.", cli=Cli("--inception-weights", metavar="PATH|NAME"))
    inception_channels_last: bool = option(
        True, "Inception memory layout: torch-fidelity's own (bit-level parity) or channels-last (faster on CPU; "
              "FID/IS within 1e-6 relative of torch-fidelity).",
        cli=Cli("--exact-layout/--channels-last", bool, lambda exact: not exact, lambda last: not last),
        panel="Performance")


RESIZE_FILTER = "torch-fidelity interpolate_bilinear_2d_like_tensorflow1x to 299x299 (align_corners=False)"


def load_inception_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load an Inception state dict safely (tensors only). Raises WeightsError naming the file."""
    p = Path(path)
    sd = safe_torch_load(p, f"Inception weights {p}", WeightsError)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"Inception weights {p} are not a state dict of tensors")
    return sd


def state_dict_has_classifier(sd: dict[str, torch.Tensor]) -> bool:
    """False when the 1008-way classifier is absent or all zeros (pool3-only conversions)."""
    w = sd.get("fc.weight")
    return w is not None and bool(torch.count_nonzero(w).item() > 0)


@dataclass
class InceptionOutput:
    """Features of one batch on the CPU: ``pool3`` float32 [N,2048], ``logits`` float32 [N,1008] or None."""

    pool3: torch.Tensor
    logits: torch.Tensor | None


class InceptionExtractor:
    """torch-fidelity's Inception-v3 in eval mode, returning pool3 (+ unbiased logits) per forward.

    Args:
        weights: a ``ResolvedWeights`` (from :func:`lafitebench.assets.weights.resolve`) or a local path.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        logits: also return the unbiased logits (needed for IS). Raises WeightsError if the file
            has no classifier.
        channels_last: run convolutions in channels-last memory format (about 2x faster on
            CPU with oneDNN; features differ from the default layout by float32 rounding only,
            ~1e-6 relative). Default (None/False): off, so the numbers equal torch-fidelity's.

    Raises:
        WeightsError: unreadable file, keys that do not match the network, or missing classifier
            when ``logits=True``.
    """

    def __init__(self, weights: Any, device: str | torch.device | None = "auto", logits: bool = True,
                 channels_last: bool | None = None) -> None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = Path(getattr(weights, "path", weights))
        self.weights = weights
        self.path = path
        if getattr(weights, "sha256", None):
            self.sha256 = weights.sha256
        else:
            self.sha256 = sha256_file(path)
        sd = load_inception_state_dict(path)
        self.has_classifier = state_dict_has_classifier(sd)
        flag = getattr(weights, "has_classifier", None)
        if flag is False:
            self.has_classifier = False
        if logits and not self.has_classifier:
            raise WeightsError(
                f"Inception weights {path} (sha256 {self.sha256[:12]}…) have no 1008-way classifier "
                f"(fc.weight is all zeros: a pool3-only file), so the Inception Score cannot be computed. "
                f"Use the full weights-inception-2015-12-05-6726825d.pth (torch-fidelity / pytorch-fid release) "
                f"via inception_weights, or drop 'is' from the metrics", param="inception_weights")
        buf = io.BytesIO()
        torch.save(sd, buf)  # our own serialisation of the validated tensors
        buf.seek(0)
        self.features_list = [POOL3, LOGITS] if logits else [POOL3]
        try:
            net = FeatureExtractorInceptionV3("inception-v3-compat", list(self.features_list),
                                              feature_extractor_weights_path=buf)
        except RuntimeError as e:  # strict load_state_dict: missing/unexpected keys or shapes
            raise WeightsError(f"Inception weights {path} do not match torch-fidelity's "
                               f"FeatureExtractorInceptionV3 layout: {str(e)[:500]}") from e
        self.device = resolve_device(device)
        self.channels_last = bool(channels_last)
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        net.requires_grad_(False)
        self.net = net.eval()
        self.logits = logits
        self.pool3_dim, self.logits_dim = 2048, 1008

    @property
    def training(self) -> bool:
        return self.net.training

    def __call__(self, images: torch.Tensor) -> InceptionOutput:
        """Features of a uint8 [N,3,H,W] batch (any H, W; resized to 299² inside)."""
        if not (torch.is_tensor(images) and images.dtype == torch.uint8 and images.dim() == 4
                and images.shape[1] == 3):
            got = f"{images.dtype} {tuple(images.shape)}" if torch.is_tensor(images) else type(images).__name__
            raise InputError(f"Inception expects uint8 RGB images shaped [N,3,H,W], got {got}")
        self.net.eval()
        x = images.to(self.device, non_blocking=True)
        tf32_off = (torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
                    if self.device.type == "cuda" else contextlib.nullcontext())
        with torch.inference_mode(), tf32_off:
            out = self.net(x)
        pool3 = out[0].float().cpu()
        logits = out[1].float().cpu() if self.logits else None
        return InceptionOutput(pool3=pool3, logits=logits)

    def provenance(self) -> dict[str, Any]:
        """What identifies this extractor in a result."""
        base = self.weights.provenance() if hasattr(self.weights, "provenance") else {"path": str(self.path)}
        return {**base, "sha256": self.sha256, "has_classifier": self.has_classifier,
                "device": str(self.device), "channels_last": self.channels_last,
                "features": list(self.features_list), "resize": RESIZE_FILTER,
                "normalisation": "(x - 128) / 128", "cuda_tf32": False}


def load_inception(weights: str | os.PathLike | None = None, *, device: str | torch.device | None = "auto",
                   logits: bool = True, offline: bool | None = None, progress: bool = True,
                   channels_last: bool | None = None) -> InceptionExtractor:
    """Resolve Inception weights (name, local path, or None for the default) and build the extractor.

    ``weights`` None → the registered ``"inception-2015-12-05"`` (explicit → $LAFITEBENCH_WEIGHTS →
    cache → download); a registered name → that; anything else is a local path (passes through
    with its sha256 recorded). Raises WeightsError (missing/offline/wrong hash/no classifier).
    """

    resolved = resolve(os.fspath(weights) if weights is not None else DEFAULT_INCEPTION,
                       offline=offline, progress=progress)
    return InceptionExtractor(resolved, device=device, logits=logits, channels_last=channels_last)


def random_inception_state_dict(seed: int = 0, calibration_images: int = 8) -> dict[str, torch.Tensor]:
    """A randomly initialised Inception state dict, FOR TESTS AND BENCHMARKS ONLY.

    Never used by an evaluation unless its file is passed explicitly as the Inception weights
    (its sha256 then identifies it in the provenance). PyTorch's default initialisation, with
    batch-norm statistics calibrated on smooth random images so activations stay O(1) and the
    random classifier gives spread-out logits (so the Inception Score is not trivially 1).
    Deterministic for a given ``seed``; the global RNG state is preserved.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *a: Any, **k: Any) -> Any:  # keep the random initialisation
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _Unloaded("random", [POOL3], feature_extractor_weights_path=empty)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # running stats = statistics of the calibration batch
        lo = torch.rand(calibration_images, 3, 8, 8) * 255
        x = torch.nn.functional.interpolate(lo, size=(64, 64), mode="bilinear", align_corners=False)
        x = (x + torch.randn_like(x) * 20).clamp(0, 255).to(torch.uint8)
        net.train()
        with torch.no_grad():
            net(x)
        net.eval()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def save_random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write :func:`random_inception_state_dict` to ``path`` (tests / benchmarks only); returns the path."""

    p = Path(path)
    with atomic_write(p, "wb") as f:
        torch.save(random_inception_state_dict(seed), f)
    return p
