"""The ``generate`` job: a model and a caption split → a folder of images + ``manifest.jsonl``.

Sample ``i`` of the split is generated from the per-sample streams of ``(row.seed, i)`` (see
:mod:`lafitebench.models.sampling`), quantised as the official code does
(``clamp(x * 127.5 + 128, 0, 255)`` → uint8) and written atomically as ``{i:06d}.png`` (or
``.jpg``), so a run killed at any point resumes where it stopped, and a finished run re-run does
nothing. ``generate.json`` records the run's identity (model and checkpoint sha256, split id and
hash, every setting); a folder holding another run is refused unless ``overwrite``. Under
torchrun each rank generates every N-th batch of indices; rank 0 writes the manifest.

Text features: the split's captions through the model's CLIP text encoder (L2-normalised),
computed in batches once and cached under ``cache_dir()/textfeatures`` keyed by the split hash and
the CLIP weights' sha256.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__, settings
from ..checkpoints.load import load_model
from ..data.batch import Batch
from ..data.datasets import Item
from ..data.images import pil_to_tensor, resize_to
from ..data.splits import get_split
from ..data.store import check_clip_match
from ..encoders.clip import encode_text, load_clip
from ..errors import InputError
from ..io.files import atomic_write, chmod_default, clean_stale_temps, read_text, write_json_atomic
from ..models.generator import NOISE_MODES
from ..models.sampling import generate, to_uint8
from ..runtime import distributed
from ..runtime.device import resolve_device
from ..runtime.progress import progress
from ..runtime.rng import check_seed

IMAGE_FORMATS = ("png", "jpg")
IDENTITY_FILE = "generate.json"
MANIFEST = "manifest.jsonl"


@dataclass
class GenerateConfig:
    """Every option of a generation run (all recorded in ``generate.json`` and the manifest).

    Attributes:
        model: a zoo id, a native ``.safetensors`` file or an official snapshot ``.pkl``.
        split: a registered caption split or a caption file (see :mod:`lafitebench.data.splits`).
        out: the output folder.
        num: how many samples (default: the whole split); more than the split needs ``cycle``.
        seed: the split's seed (caption draws and the per-sample image streams).
        batch_size: samples per step (results do not depend on it).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        truncation: truncation psi (1 = none).
        noise_mode: ``random`` (the official FID/IS protocol; seeded per sample here, so reproducible),
            ``const`` (the official SOA protocol) or ``none``. The ``soa`` split defaults to ``const``.
        fp16: half-precision synthesis layers where the network has them (CUDA only).
        image_format: ``png`` (lossless) or ``jpg`` (quality 95).
        data_root, captions_file: inputs of COCO / SOA splits.
        clip_model, clip_pretrained, clip_weights: the CLIP text encoder (default: the model's backbone).
        cycle: repeat the split to reach ``num``.
        overwrite: replace another run's samples in ``out``.
        progress: Rich progress bar on stderr.
    """

    model: str = ""
    split: str = "coco-mini"
    out: str = ""
    num: int | None = None
    seed: int = 0
    batch_size: int = 8
    device: str = "auto"
    truncation: float = 1.0
    noise_mode: str | None = None  # None: random, or const for the soa split (the official protocols)
    fp16: bool = False
    image_format: str = "png"
    data_root: str | None = None
    captions_file: str | None = None
    clip_model: str | None = None
    clip_pretrained: str | None = None
    clip_weights: str | None = None
    cycle: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class GenerateJob:
    """What :func:`run_generate` returns."""

    out: Path
    manifest: Path
    generated: int
    reused: int
    identity: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def check_config(cfg: GenerateConfig) -> None:
    """Option checks before anything is loaded. Raises InputError naming the option."""

    if not cfg.model:
        raise InputError("no model given: pass a zoo id, a .safetensors file or an official .pkl", param="model")
    if not cfg.out:
        raise InputError("no output folder given", param="out")
    check_seed(cfg.seed)
    if cfg.noise_mode is not None and cfg.noise_mode not in NOISE_MODES:
        raise InputError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {cfg.noise_mode!r}", param="noise_mode")
    if isinstance(cfg.batch_size, bool) or not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {cfg.batch_size!r}", param="batch_size")
    if cfg.image_format not in IMAGE_FORMATS:
        raise InputError(f"image_format must be png or jpg, got {cfg.image_format!r}", param="image_format")
    if not 0.0 <= float(cfg.truncation) <= 2.0:
        raise InputError(f"truncation must be in [0, 2], got {cfg.truncation}", param="truncation")
    resolve_device(cfg.device)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file", param="out")


def _identity(cfg: GenerateConfig, model: Any, split: Any, clip_info: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs produce the same files (compared on resume)."""

    meta = model.metadata
    return {
        "kind": "lafitebench-samples", "version": 1,
        "model": {"id": meta.get("model_id"), "path": meta.get("path"), "sha256": meta.get("sha256"),
                  "variant": meta.get("variant"), "clip_backbone": meta.get("clip_backbone")},
        "split": split.provenance(),
        "settings": {"seed": cfg.seed, "truncation": float(cfg.truncation), "noise_mode": cfg.noise_mode,
                     "fp16": bool(cfg.fp16), "image_format": cfg.image_format,
                     "quantisation": "clamp(x * 127.5 + 128, 0, 255) -> uint8 (official)",
                     "per_sample_streams": "z, noise from (row.seed, index) (lafitebench.runtime.rng)"},
        "clip": {k: clip_info.get(k) for k in ("model", "pretrained", "weights_sha256")},
        "lafitebench_version": __version__,
    }


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("model", "split", "settings", "clip")
    strip = lambda d: {k: {kk: vv for kk, vv in d.get(k, {}).items() if kk != "path"} for k in keys}  # noqa: E731
    return strip(a) == strip(b)


def _prepare_out(out: Path, identity: dict[str, Any], overwrite: bool) -> None:
    """Refuse another run's folder (unless overwrite, which removes its samples); write the identity."""
    ident = out / IDENTITY_FILE
    if ident.is_file():
        try:
            old = json.loads(read_text(ident, "run identity"))
        except json.JSONDecodeError:
            old = {}
        if not _same_run(old, identity):
            if not overwrite:
                raise InputError(f"output folder {out} holds samples of another run (other model, split or settings, "
                                 f"see {ident}); pass overwrite or choose another folder", param="overwrite")
            _remove_samples(out)
    elif out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"output folder {out} is not empty and holds no lafitebench samples; pass overwrite or "
                             "choose another folder", param="overwrite")
        _remove_samples(out)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out, max_age_s=0)  # half-written images of a killed run (never under a sample's name)
    write_json_atomic(ident, identity)


def _remove_samples(out: Path) -> None:
    for p in out.iterdir():
        if p.is_file() and (p.suffix in (".png", ".jpg") or p.name in (MANIFEST, IDENTITY_FILE)):
            p.unlink()


def text_features(captions: list[str], split_hash: str, clip: Any, batch_size: int) -> torch.Tensor:
    """L2-normalised CLIP text features of ``captions`` [N, D], cached by split hash and CLIP weights."""
    from safetensors.torch import load_file, save_file


    model, tokenizer, info = clip
    key = hashlib.sha256(f"{split_hash}:{info.get('model')}:{info.get('weights_sha256')}".encode()).hexdigest()
    path = settings.cache_dir() / "textfeatures" / f"{key}.safetensors"
    if path.is_file():
        try:
            feats = load_file(str(path))["features"]
            if feats.shape[0] == len(captions):
                return feats
        except Exception:  # noqa: BLE001 - an unreadable cache entry is recomputed and rewritten
            path.unlink(missing_ok=True)
    feats, _ = encode_text(model, tokenizer, captions, batch_size=max(batch_size, 64))
    feats = torch.nn.functional.normalize(feats.float(), dim=-1).cpu().contiguous()
    if distributed.is_main():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file({"features": feats}, str(tmp))
            chmod_default(tmp)
            os.replace(tmp, path)
        except OSError as e:
            warnings.warn(f"text features could not be cached in {path.parent} ({e}); generation goes on",
                          RuntimeWarning, stacklevel=2)
    return feats


def split_features(split: Any, clip: Any, cfg: GenerateConfig, model: Any) -> torch.Tensor:
    """The split's own text features (official zips) or its captions through CLIP; checked
    against the model's feature width (a different CLIP backbone is refused, naming both)."""
    if split.features is not None:
        check_clip_match(split.info.get("clip_model"), model.metadata.get("clip"), f"split {split.id}",
                         f"model {cfg.model}")
        feats, source = split.features, f"split {split.id}"
    else:
        feats = text_features([r.caption for r in split.rows], split.hash, clip, cfg.batch_size)
        source = f"CLIP {clip[2].get('model')}"
    if feats.shape[1] != model.f_dim:
        raise InputError(f"{source} gives {feats.shape[1]}-d text features but model {cfg.model} takes "
                         f"{model.f_dim}-d: use the CLIP backbone it was trained with", param="clip_model")
    return feats


def _load_clip(cfg: GenerateConfig, model: Any, device: torch.device) -> tuple[Any, Any, dict[str, Any]]:
    clip_meta = model.metadata.get("clip") or {}
    known = clip_meta.get("open_clip_model")
    if cfg.clip_model and known and cfg.clip_model != known:
        raise InputError(f"model {cfg.model} was trained with CLIP {clip_meta.get('name')} ({known}) but clip_model is "
                         f"{cfg.clip_model}: its text features would not be the ones the model expects",
                         param="clip_model")
    name = cfg.clip_model or known
    pretrained = cfg.clip_pretrained if cfg.clip_model else clip_meta.get("open_clip_pretrained")
    if not name:
        raise InputError(f"the CLIP backbone of {cfg.model} is unknown (official snapshots do not record it): pass "
                         "clip_model (and clip_pretrained or clip_weights)", param="clip_model")
    clip_model, _, tokenizer, info = load_clip(name, pretrained, cfg.clip_weights, device)
    return clip_model, tokenizer, info


def _write_image(path: Path, img: torch.Tensor, fmt: str) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).cpu().numpy()).save(buf, format="PNG" if fmt == "png" else "JPEG",
                                                             **({"quality": 95} if fmt == "jpg" else {}))
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _manifest_rows(split: Any, identity: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    model = identity["model"]
    return [{"file": f"{r.index:06d}.{fmt}", "index": r.index, "caption": r.caption, "seed": r.seed,
             "soa_class": r.soa_class, "split": split.id, "split_hash": split.hash,
             "model": model["id"] or model["path"], "checkpoint_sha256": model["sha256"]} for r in split.rows]


def _by_seed(indices: list[int], seeds: dict[int, int]) -> list[tuple[int, list[int]]]:
    """``indices`` grouped by their row seed (usually one group), order kept within a group."""
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(seeds[i], []).append(i)
    return list(groups.items())


def resolve_noise_mode(cfg: GenerateConfig) -> GenerateConfig:
    """``noise_mode`` None → the official protocol's: const for the SOA split, random otherwise."""
    if cfg.noise_mode is not None:
        return cfg
    return dataclasses.replace(cfg, noise_mode="const" if str(cfg.split) == "soa" else "random")


def generate_uint8(model: Any, feats: torch.Tensor, indices: list[int], seeds: dict[int, int],
                   cfg: GenerateConfig) -> tuple[list[int], torch.Tensor]:
    """Samples ``indices`` as official uint8 images [N, 3, R, R] on the CPU, grouped by row seed;
    returns the sample order of the rows and the images."""

    groups = _by_seed(indices, seeds)
    imgs = torch.cat([to_uint8(generate(model.G_ema, feats[g], s, g, truncation_psi=cfg.truncation,
                                        noise_mode=cfg.noise_mode, force_fp32=not cfg.fp16)) for s, g in groups])
    return [i for _, g in groups for i in g], imgs.cpu()


def run_generate(cfg: GenerateConfig) -> GenerateJob:
    """Generate ``cfg.split`` with ``cfg.model`` into ``cfg.out`` (see the module docstring).

    Raises:
        InputError / WeightsError / CheckpointError: bad options, split, model or CLIP weights —
            all before the first image is generated.
    """

    started = time.perf_counter()
    check_config(cfg)
    cfg = resolve_noise_mode(cfg)
    split = get_split(cfg.split, data_root=cfg.data_root, captions_file=cfg.captions_file, seed=cfg.seed)
    split = split.head(cfg.num, cycle=cfg.cycle)
    device = resolve_device(cfg.device)
    distributed.init(device)
    model = load_model(cfg.model, device=device, networks=("G_ema",))
    clip = _load_clip(cfg, model, device) if split.features is None else (None, None, {"model": "from the split"})
    feats = split_features(split, clip, cfg, model)  # a backbone mismatch fails before the folder is touched
    identity = _identity(cfg, model, split, clip[2])
    out = Path(cfg.out)
    if distributed.is_main():
        _prepare_out(out, identity, cfg.overwrite)
    distributed.barrier()
    todo = [r.index for r in split.rows if not (out / f"{r.index:06d}.{cfg.image_format}").is_file()]
    batches = distributed.shard_batches([todo[s:s + cfg.batch_size] for s in range(0, len(todo), cfg.batch_size)])
    made = 0
    with progress(disable=not (cfg.progress and distributed.is_main())) as bar:
        task = bar.add_task(f"generate {split.id}", total=len(todo))
        seeds = {r.index: r.seed for r in split.rows}
        for idx in batches:
            order, imgs = generate_uint8(model, feats, idx, seeds, cfg)
            for i, img in zip(order, imgs):
                _write_image(out / f"{i:06d}.{cfg.image_format}", img, cfg.image_format)
            made += len(idx)
            bar.update(task, completed=min(len(todo), made * distributed.world_size()))
    distributed.barrier()
    manifest = out / MANIFEST
    if distributed.is_main():
        with atomic_write(manifest, "w") as f:
            for row in _manifest_rows(split, identity, cfg.image_format):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    distributed.barrier()
    total = int(distributed.all_reduce_sum(torch.tensor(made)))
    return GenerateJob(out=out, manifest=manifest, generated=total, reused=len(split) - len(todo),
                       identity=identity, seconds=time.perf_counter() - started)


__all__ = ["GenerateConfig", "GenerateJob", "GeneratedSet", "run_generate", "prepare_stream", "text_features",
           "default_samples_dir", "IMAGE_FORMATS"]


class GeneratedSet:
    """Samples generated on the fly, with the interface of an image set (``items``, ``loader``,
    ``fingerprint``, ``provenance``): ``lafitebench eval --model ... --stream`` feeds generated
    batches straight to the metric stage (edm2's generator mode) without writing files.

    The images are the ones :func:`run_generate` would write (same seeds, the same official
    quantisation, PNG is lossless), resized to the evaluation resolution exactly as a written
    file would be decoded, so the numbers equal an evaluation of the written folder.
    """

    kind = "generated"
    crop = "none"

    def __init__(self, model: Any, split: Any, feats: torch.Tensor, cfg: GenerateConfig, identity: dict[str, Any],
                 resolution: int) -> None:

        self.model, self.split, self.feats, self.cfg, self.identity = model, split, feats, cfg, identity
        self.resolution = resolution
        self.items = [Item(path=Path(f"{r.index:06d}.{cfg.image_format}"), caption=r.caption, soa_class=r.soa_class)
                      for r in split.rows]
        self.name = f"{identity['model']['id'] or Path(str(identity['model']['path'])).name}:{split.id} (streamed)"
        self.root = None
        self.skipped: list[str] = []

    def fingerprint(self) -> str:
        """sha256 of the run identity (model checkpoint, split hash, settings)."""
        text = json.dumps({k: self.identity[k] for k in ("model", "split", "settings", "clip")}, sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def find_bad(self, quick: bool = True) -> list[tuple[str, str]]:
        """Generated images are never unreadable."""
        return []

    def validate(self, quick: bool = True) -> None:
        """Nothing to check: the images do not exist yet."""
        return None

    def loader(self, batch_size: int, num_workers: int = 0, skip_bad: bool = False, shard: bool = False):
        """Yield :class:`~lafitebench.data.batch.Batch` objects of generated uint8 images in sample order."""

        rows = self.split.rows
        batches = [list(range(s, min(s + batch_size, len(rows)))) for s in range(0, len(rows), batch_size)]
        if shard:
            batches = distributed.shard_batches(batches)
        seeds = {r.index: r.seed for r in rows}
        for idx in batches:
            order, imgs = generate_uint8(self.model, self.feats, idx, seeds, self.cfg)
            if imgs.shape[-1] != self.resolution:
                from PIL import Image

                imgs = torch.stack([pil_to_tensor(resize_to(Image.fromarray(im.permute(1, 2, 0).numpy()), self.resolution))
                                    for im in imgs])
            yield Batch(images=imgs, files=[str(self.items[i].path) for i in order],
                        captions=[rows[i].caption for i in order], soa_classes=[rows[i].soa_class for i in order],
                        indices=order)

    def provenance(self, fingerprint: bool = True) -> dict[str, Any]:
        """The run identity, the number of samples and the resize policy."""
        d = {"name": self.name, "kind": self.kind, "n": len(self.items), "resolution": self.resolution,
             "resize": "PIL BICUBIC when the generator's resolution differs (as for files)",
             "generation": self.identity, "skipped": []}
        if fingerprint:
            d["fingerprint"] = self.fingerprint()
        return d


def prepare_stream(cfg: GenerateConfig, resolution: int) -> GeneratedSet:
    """Load model, split and text features for a streamed evaluation (no files are written).

    Raises InputError / WeightsError / CheckpointError before any image is generated.
    """

    check_config(dataclasses.replace(cfg, out=cfg.out or "-"))
    cfg = resolve_noise_mode(cfg)
    split = get_split(cfg.split, data_root=cfg.data_root, captions_file=cfg.captions_file, seed=cfg.seed)
    split = split.head(cfg.num, cycle=cfg.cycle)
    device = resolve_device(cfg.device)
    model = load_model(cfg.model, device=device, networks=("G_ema",))
    clip = _load_clip(cfg, model, device) if split.features is None else (None, None, {"model": "from the split"})
    feats = split_features(split, clip, cfg, model)
    return GeneratedSet(model, split, feats, cfg, _identity(cfg, model, split, clip[2]), resolution)


def default_samples_dir(cfg: GenerateConfig) -> Path:
    """Where ``eval --model`` keeps generated samples when no folder is given (reused on the next run)."""

    split = get_split(cfg.split, data_root=cfg.data_root, captions_file=cfg.captions_file, seed=cfg.seed)
    split = split.head(cfg.num, cycle=cfg.cycle)
    tag = hashlib.sha256(json.dumps([cfg.model, split.hash, cfg.seed, cfg.truncation, resolve_noise_mode(cfg).noise_mode,
                                     cfg.fp16,
                                     cfg.clip_model, cfg.clip_weights]).encode()).hexdigest()[:12]
    return settings.cache_dir() / "samples" / f"{Path(str(cfg.model)).stem}-{split.id.replace(':', '_')}-{tag}"
