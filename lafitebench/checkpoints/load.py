"""``load_model``: one entry point for zoo ids, native checkpoints and official snapshots."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from lafitebench.assets import zoo
from lafitebench.assets.backbones import UNKNOWN_CLIP, clip_config
from lafitebench.checkpoints import native, official
from lafitebench.errors import CheckpointError, InputError, WeightsError
from lafitebench.io.files import looks_like_path, sha256_file
from lafitebench.models.sampling import generate
from lafitebench.runtime.rng import check_seed

__all__ = ["LoadedModel", "load_model"]

# A pickle stream starts with the PROTO opcode (protocol 2+).
_PICKLE_MAGIC = b"\x80"
# Tolerance on ||h|| - 1 for the features given to ``generate`` (fp16 round trips stay well inside).
_NORM_TOL = 1e-2


def _check_unit_rows(text_features: torch.Tensor) -> None:
    """InputError naming the first row whose L2 norm is not 1 (within fp16 round trips)."""
    norms = text_features.float().norm(dim=1)
    bad = (norms - 1).abs() > _NORM_TOL
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise InputError(
            f"text_features row {i} has L2 norm {float(norms[i]):.4f}; LAFITE expects L2-normalised CLIP "
            "features: pass torch.nn.functional.normalize(h, dim=-1) (or check_normalized=False)",
            param="text_features")


@dataclass
class LoadedModel:
    """Networks of one LAFITE model plus what is known about it.

    ``G_ema`` is the generator to sample from; ``G``, ``D`` (and ``P``, the Lafite-NN
    perturbation network) are set when the checkpoint holds them and they were requested.
    ``metadata`` keys: ``model_id``, ``variant``, ``resolution``, ``clip_backbone`` (a name, or
    ``"unknown (...)"``), ``clip`` (open_clip names, f_dim), ``format`` ("native" or
    "official-pkl"), ``path``, ``sha256`` (of the loaded file), ``source_sha256`` and
    ``source_url`` (the released file it was converted from), ``networks``, ``provenance``.
    """

    G_ema: nn.Module
    metadata: dict[str, Any]
    G: nn.Module | None = None
    D: nn.Module | None = None
    P: nn.Module | None = None
    config: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.G_ema.parameters()).device

    @property
    def z_dim(self) -> int:
        return int(self.G_ema.z_dim)

    @property
    def f_dim(self) -> int:
        return int(self.G_ema.f_dim)

    @property
    def resolution(self) -> int:
        return int(self.G_ema.img_resolution)

    @torch.no_grad()
    def generate(
        self,
        z: torch.Tensor,
        text_features: torch.Tensor,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
        *,
        check_normalized: bool = True,
        noise_generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Images ``G_ema(z, h)`` in about [-1, 1], float32 [N, 3, R, R], on the model's device.

        ``z`` [N, z_dim]; ``text_features`` [N, f_dim], L2-normalised CLIP features of the
        backbone in ``metadata["clip"]`` (fp16 is cast to float32). ``noise_mode`` "const" |
        "random" | "none". Raises InputError for a missing or mis-shaped condition, or (with
        ``check_normalized``) features whose L2 norms are not 1 -- normalise them with
        ``torch.nn.functional.normalize(h, dim=-1)``; LAFITE never normalises inside G.
        """
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
            shape = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(f"z must have shape [N, {self.z_dim}], got {shape}")
        if check_normalized and isinstance(text_features, torch.Tensor) and text_features.ndim == 2:
            _check_unit_rows(text_features)
        dev = self.device
        h = text_features.to(dev) if isinstance(text_features, torch.Tensor) else text_features
        return self.G_ema(z.to(dev, torch.float32), h, truncation_psi=truncation_psi, noise_mode=noise_mode,
                          noise_generator=noise_generator)


    @torch.no_grad()
    def sample(self, text_features: torch.Tensor, seed: int, indices: Sequence[int] | None = None, *,
               truncation_psi: float = 1.0, noise_mode: str = "const", check_normalized: bool = True) -> torch.Tensor:
        """Seeded images for samples ``indices`` (default ``0..N-1``): z and layer noise of sample
        ``i`` come from ``(seed, i)`` only, so an image does not depend on the batching (see
        :func:`lafitebench.models.sampling.generate`). Float32 [N, 3, R, R] in about [-1, 1].

        Raises InputError for a bad seed, a mis-shaped condition or (``check_normalized``)
        features that are not L2-normalised.
        """
        check_seed(seed)
        n = text_features.shape[0] if isinstance(text_features, torch.Tensor) else 0
        indices = list(range(n)) if indices is None else [int(i) for i in indices]
        self._check_condition(text_features, len(indices), check_normalized)
        return generate(self.G_ema, text_features, seed, indices, truncation_psi=truncation_psi, noise_mode=noise_mode)

    def _check_condition(self, text_features: torch.Tensor, n: int, check_normalized: bool) -> None:
        if not isinstance(text_features, torch.Tensor) or text_features.ndim != 2 or text_features.shape != (n, self.f_dim):
            got = list(text_features.shape) if isinstance(text_features, torch.Tensor) else type(text_features).__name__
            raise InputError(f"text_features must have shape [{n}, {self.f_dim}], got {got}", param="text_features")
        if check_normalized:
            _check_unit_rows(text_features)


def load_model(
    id_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    clip_backbone: str | None = None,
    variant: str | None = None,
    networks: Iterable[str] | None = None,
) -> LoadedModel:
    """Load a LAFITE model from a zoo id, a native ``.safetensors`` checkpoint, or an official
    snapshot ``.pkl`` (read with the restricted unpickler; nothing in it executes).

    ``networks`` picks what to build (e.g. ``["G_ema"]`` to save memory); default: all the
    file holds. ``clip_backbone`` (e.g. ``"ViT-B/32"``) is required knowledge for official
    snapshots, which do not record it: without it the metadata says "unknown" and a warning is
    issued; for native files it must agree with the recorded backbone. ``variant`` labels an
    official snapshot (default "unknown").

    Raises WeightsError (zoo model not fetched yet: run ``lafitebench zoo fetch ID``),
    InputError (neither a file nor a known id; bad option), CheckpointError (broken file).
    """
    wanted = None if networks is None else list(networks)
    if wanted is not None and "G_ema" not in wanted:
        raise InputError(f"networks={wanted}: load_model always needs 'G_ema' (add it to the list)")
    path = Path(id_or_path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a native .safetensors checkpoint or an official snapshot .pkl")
    if path.is_file():
        return _load_file(path, device, clip_backbone=clip_backbone, variant=variant, networks=wanted)

    name = str(id_or_path)
    if looks_like_path(name) and name not in zoo.MODELS:
        raise InputError(f"checkpoint file {path} does not exist")
    try:
        info = zoo.get_model_info(name)
    except KeyError as e:
        raise InputError(f"{name!r} is neither an existing checkpoint file nor a zoo model id: {e}") from None
    nat = zoo.native_path(info)
    if not nat.is_file():
        where = zoo.official_path(info)
        raise WeightsError(
            f"zoo model {info.id!r} is not fetched yet (no {nat}). Run `lafitebench zoo fetch {info.id}` "
            f"(downloads {info.source.url} and converts it); offline, save the file by hand as {where} first."
        )
    model = _load_file(nat, device, clip_backbone=clip_backbone, variant=variant, networks=wanted)
    recorded = model.metadata.get("model_id")
    if recorded != info.id:
        raise CheckpointError(
            f"{nat} holds model {recorded!r}, not {info.id!r}; run `lafitebench zoo fetch {info.id} --force`"
        )
    return model


def _load_file(path: Path, device, *, clip_backbone, variant, networks) -> LoadedModel:
    if native.is_native(path):
        return _load_native(path, device, clip_backbone=clip_backbone, variant=variant, networks=networks)
    with open(path, "rb") as f:
        head = f.read(1)
    if path.suffix == ".pkl" or head == _PICKLE_MAGIC:
        return _load_official(path, device, clip_backbone=clip_backbone, variant=variant, networks=networks)
    raise CheckpointError(
        f"{path} is neither a native lafitebench checkpoint (.safetensors with a lafitebench config) nor an "
        "official LAFITE snapshot (.pkl)"
    )


def _load_native(path: Path, device, *, clip_backbone, variant, networks) -> LoadedModel:
    nets, cfg = native.load_native(path, device=device, networks=networks)
    clip = dict(cfg["clip"])
    if clip_backbone is not None:
        given = clip_config(clip_backbone)
        if clip["name"] == UNKNOWN_CLIP:
            clip = given
        elif given["name"] != clip["name"]:
            raise InputError(
                f"clip_backbone {given['name']!r} disagrees with {clip['name']!r} recorded in {path}; "
                "leave clip_backbone unset to use the recorded one"
            )
    if variant is not None and variant != cfg["variant"]:
        raise InputError(f"variant {variant!r} disagrees with {cfg['variant']!r} recorded in {path}")
    if clip["name"] == UNKNOWN_CLIP:
        _warn_unknown_clip(path)
    prov = cfg["provenance"]
    meta = {
        "model_id": prov.get("model_id"), "variant": cfg["variant"], "resolution": cfg["resolution"],
        "clip_backbone": clip["name"], "clip": clip, "format": "native", "path": str(path),
        "sha256": sha256_file(path), "source_sha256": prov.get("source_sha256"),
        "source_url": prov.get("source_url"), "networks": sorted(nets), "provenance": prov,
    }
    return LoadedModel(G_ema=nets["G_ema"], G=nets.get("G"), D=nets.get("D"), P=nets.get("P"),
                       metadata=meta, config=cfg)


def _load_official(path: Path, device, *, clip_backbone, variant, networks) -> LoadedModel:
    bad = [n for n in (networks or ()) if n not in official.NETWORK_KEYS]
    if bad:
        raise InputError(f"an official snapshot holds {list(official.NETWORK_KEYS)}; cannot load {bad}")
    nets = official.build_from_official(path, device=device,
                                        **({} if networks is None else {"networks": tuple(networks)}))
    clip = clip_config(clip_backbone)
    if clip_backbone is None:
        _warn_unknown_clip(path)
    v = native.UNKNOWN_VARIANT if variant is None else variant
    if v not in (*native.VARIANTS, native.UNKNOWN_VARIANT):
        raise InputError(f"variant {v!r}: expected one of {[*native.VARIANTS, native.UNKNOWN_VARIANT]}")
    g = nets["G_ema"]
    if clip["f_dim"] is not None and clip["f_dim"] != g.f_dim:
        raise InputError(f"{path}: the generator takes {g.f_dim}-d features, CLIP {clip['name']} gives {clip['f_dim']}-d")
    digest = sha256_file(path)
    meta = {
        "model_id": None, "variant": v, "resolution": int(g.img_resolution), "clip_backbone": clip["name"],
        "clip": clip, "format": "official-pkl", "path": str(path), "sha256": digest, "source_sha256": digest,
        "source_url": None, "networks": sorted(nets), "provenance": {"source_file": path.name},
    }
    return LoadedModel(G_ema=g, G=nets.get("G"), D=nets.get("D"), metadata=meta)


def _warn_unknown_clip(path: Path) -> None:
    warnings.warn(
        f"{path}: the CLIP backbone of this model is unknown (official snapshots do not record it). "
        "Condition it only on features of the backbone it was trained with (ViT-B/32 for every released "
        "model except lafite-coco-supervised-vitb16), and pass clip_backbone= to record it.",
        UserWarning, stacklevel=3,
    )
