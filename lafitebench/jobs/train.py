"""The ``train`` and ``train-mapper`` jobs: options → data → networks → the loop, with snapshots,
exact resume, logs, sample grids and snapshot FID (see :mod:`lafitebench.training`).

A run folder holds ``config.json`` (the resolved options, data and versions), ``log.jsonl``
(one line per step), ``network-snapshot-<kimg>.safetensors`` (native: G, G_ema, D, [P]; loads
with ``load_model``), ``training-state-<kimg>.safetensors`` (everything ``--resume`` needs),
``grid-<kimg>.png`` with ``grid.json`` (the fixed conditions), ``metric-fid.jsonl`` and, when
tensorboard is installed, TensorBoard event files under ``tb/``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..io.files import atomic_write, write_json_atomic
from ..runtime import distributed
from ..runtime.device import resolve_device
from ..training.config import TrainConfig, resolve
from ..training.data import TrainingData
from ..training.loop import Trainer, config_dict, latest_state, read_state

#: Options that may differ between a run and its continuation.
_RESUMABLE = {"kimg", "resume", "progress", "device", "tensorboard", "snap", "metrics"}


@dataclass
class TrainJob:
    """What :func:`run_train` returns."""

    run_dir: Path
    snapshots: list[Path] = field(default_factory=list)
    kimg: float = 0.0
    resumed_from: Path | None = None
    fid: list[dict[str, Any]] = field(default_factory=list)
    losses: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _data(cfg: TrainConfig, device: torch.device) -> TrainingData:
    """A store or zip as it is; a data set name or folder is prepared into ``out/data`` first."""
    from ..data.store import PrepareConfig, is_store, prepare_store

    p = Path(cfg.data).expanduser()
    if is_store(p) or (p.is_file() and p.suffix.lower() == ".zip"):
        return TrainingData(p)
    target = Path(cfg.out) / "data"
    if distributed.is_main():
        from ..training.config import PRESETS

        prepare_store(PrepareConfig(source=cfg.data, out=str(target),
                                    resolution=cfg.resolution or PRESETS.get(cfg.preset)["resolution"],
                                    clip_model=cfg.clip_model or "ViT-B-32", clip_pretrained=cfg.clip_pretrained or "openai",
                                    clip_weights=cfg.clip_weights, device=str(device), progress=cfg.progress))
    distributed.barrier()
    return TrainingData(target)


def _check_data(cfg: TrainConfig, data: TrainingData) -> None:
    if cfg.resolution is not None and cfg.resolution != data.resolution:
        raise InputError(f"--resolution {cfg.resolution} but the data {data.path} holds {data.resolution}² images: "
                         f"prepare it at {cfg.resolution} or pass --resolution {data.resolution}", param="resolution")
    needs_text = cfg.mixing_prob < 1.0
    if needs_text and data.n_with_text < data.n:
        raise InputError(f"variant {cfg.variant} with mixing_prob {cfg.mixing_prob} trains on captions, but "
                         f"{data.n - data.n_with_text} of the {data.n} images of {data.path} have no text features",
                         param="mixing_prob")
    if cfg.clip_model:
        from ..data.store import same_backbone

        have = data.clip.get("model")
        if have and not same_backbone(have, cfg.clip_model):
            raise InputError(f"--clip-model {cfg.clip_model} but the features of {data.path} come from CLIP {have}: "
                             "training mixes the two; prepare the data with the same backbone", param="clip_model")


def _clip_block(data: TrainingData) -> dict[str, Any]:
    from ..encoders.clip import CLIP_BACKBONES, clip_config

    name = data.clip.get("model")
    if name and name in CLIP_BACKBONES:
        return clip_config(name)
    return {"name": name or "unknown", "open_clip_model": name, "open_clip_pretrained": data.clip.get("pretrained"),
            "f_dim": data.f_dim}


def _load_clip_for_itc(cfg: TrainConfig, data: TrainingData, device: torch.device):
    """The frozen CLIP image encoder of the data's features (weights resolver; offline: a clear error)."""
    from ..encoders.clip import load_clip

    name = cfg.clip_model or data.clip.get("model") or "ViT-B-32"
    pretrained = cfg.clip_pretrained if cfg.clip_pretrained is not None else data.clip.get("pretrained")
    model, _, _, info = load_clip(name, pretrained, cfg.clip_weights, device)
    want = data.clip.get("weights_sha256")
    if want and info.get("weights_sha256") and want != info["weights_sha256"]:
        raise InputError(f"the CLIP weights loaded for --itc ({info.get('weights_sha256')[:12]}) are not the ones the "
                         f"features of {data.path} were made with ({want[:12]}); pass those with --clip-weights",
                         param="clip_weights")
    model = model.eval().requires_grad_(False)
    return model, dict(model.visual.preprocess_cfg)


def _networks(cfg: TrainConfig, data: TrainingData, device: torch.device):
    """(G, D, G_ema or None, provenance of the start) from the preset or ``--init``."""
    from ..models.discriminator import Discriminator
    from ..models.generator import Generator

    if cfg.init:
        return _init_networks(cfg, data, device)
    torch.manual_seed(cfg.seed)
    syn = {"channel_base": cfg.channel_base, "channel_max": cfg.channel_max, "conv_clamp": 256, "change": 256,
           "num_fp16_res": cfg.num_fp16_res if device.type == "cuda" else 0}
    G = Generator(z_dim=cfg.z_dim, w_dim=cfg.w_dim, img_resolution=data.resolution, f_dim=data.f_dim,
                  mapping_kwargs={"num_layers": cfg.mapping_layers}, synthesis_kwargs=syn)
    D = Discriminator(data.resolution, f_dim=data.f_dim, channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                      num_fp16_res=syn["num_fp16_res"], mbstd_group_size=min(4, cfg.batch_gpu))
    return G, D, None, {"init": "random", "seed": cfg.seed}


def _init_networks(cfg: TrainConfig, data: TrainingData, device: torch.device):
    import copy

    from ..loading import load_model

    model = load_model(cfg.init, device="cpu")
    G_ema = model.G_ema
    G = model.G if model.G is not None else copy.deepcopy(G_ema)
    D = model.D
    if D is None:
        raise InputError(f"--init {cfg.init} holds no discriminator (D): fine-tuning needs one; use a full snapshot",
                         param="init")
    res, f_dim = G_ema.img_resolution, G_ema.f_dim
    if res != data.resolution:
        raise InputError(f"--init {cfg.init} is a {res}² model but the data {data.path} holds {data.resolution}² images",
                         param="init")
    if f_dim != data.f_dim:
        raise InputError(f"--init {cfg.init} takes {f_dim}-d CLIP features but the data's are {data.f_dim}-d "
                         "(another CLIP backbone)", param="init")
    from ..data.store import check_clip_match

    check_clip_match(data.clip.get("model"), model.metadata.get("clip"), f"data {data.path}", f"--init {cfg.init}")
    return G, D, G_ema, {"init": str(cfg.init), "sha256": model.metadata.get("sha256")}


def _mapper(cfg: TrainConfig, data: TrainingData, run_dir: Path, device: torch.device):
    from ..models.pseudo_text import load_perturbation_network
    from ..training.mapper import train_mapper

    if cfg.variant != "nn":
        return None, None
    if cfg.mapper:
        return load_perturbation_network(cfg.mapper, feature_dim=data.f_dim, device=device), str(cfg.mapper)
    path = run_dir / "mapper.pth"
    if path.is_file():
        return load_perturbation_network(path, feature_dim=data.f_dim, device=device), str(path)
    if distributed.is_main():
        train_mapper(data, path, steps=200 if cfg.preset == "tiny" else 2000, seed=cfg.seed, device=device,
                     progress=cfg.progress)
    distributed.barrier()
    return load_perturbation_network(path, feature_dim=data.f_dim, device=device), str(path)


def _identity(cfg: TrainConfig, data: TrainingData) -> dict[str, Any]:
    from .. import __version__

    return {"kind": "lafitebench-training-run", "config": config_dict(cfg), "data": data.describe(),
            "lafitebench_version": __version__, "torch": torch.__version__}


def _prepare_run(cfg: TrainConfig, data: TrainingData) -> tuple[Path, Path | None]:
    """The run folder checked against its config; the state to resume from (or None)."""
    run_dir = Path(cfg.out)
    ident_path = run_dir / "config.json"
    state = latest_state(run_dir) if run_dir.is_dir() else None
    mine = _identity(cfg, data)
    if ident_path.is_file():
        old = json.loads(ident_path.read_text(encoding="utf-8"))
        strip = lambda d: {k: v for k, v in d.get("config", {}).items() if k not in _RESUMABLE}  # noqa: E731
        if strip(old) != strip(mine) and not cfg.resume:
            diff = sorted(k for k in set(strip(old)) | set(strip(mine)) if strip(old).get(k) != strip(mine).get(k))
            raise InputError(f"run folder {run_dir} holds another run's config (differs in {', '.join(diff[:6])}); "
                             "pass --resume to continue it with its own options, or choose another --out",
                             param="resume")
    elif run_dir.is_dir() and any(p for p in run_dir.iterdir() if p.name != "data"):
        raise InputError(f"run folder {run_dir} is not empty and holds no lafitebench run; choose another --out",
                         param="out")
    if cfg.resume and state is None:
        raise InputError(f"--resume: {run_dir} holds no training state to continue", param="resume")
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not ident_path.is_file():
            write_json_atomic(ident_path, mine)
    return run_dir, state


def _resumed_config(cfg: TrainConfig, state: Path) -> TrainConfig:
    """With ``--resume``: the run's own options; ``kimg`` and the other resumable ones from the command."""
    _, _, saved = read_state(state)
    given = {k: getattr(cfg, k) for k in _RESUMABLE}
    merged = {**saved, **{k: v for k, v in given.items() if v is not None}}
    return TrainConfig(**{f.name: merged.get(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(TrainConfig)})


def run_train(cfg: TrainConfig) -> TrainJob:
    """Train (or continue) a LAFITE generator as ``cfg`` says; see the module docstring.

    Raises:
        InputError: bad options, data without captions for a supervised run, mismatched CLIP
            backbones, an ``--init`` of another resolution or feature width, a folder of another
            run without ``--resume`` — before training starts.
        WeightsError: CLIP (``--itc > 0``) or Inception (``--metrics fid``) weights unavailable offline.
        TrainingDiverged: a loss became NaN/Inf (step named; the last snapshot is intact).
    """
    started = time.perf_counter()
    per_gpu_batch = cfg.batch is None  # the official default: the preset's batch on every process
    cfg = resolve(cfg)
    device = resolve_device(cfg.device)
    distributed.init(device)
    if per_gpu_batch and distributed.world_size() > 1:
        cfg = dataclasses.replace(cfg, batch=cfg.batch * distributed.world_size())
    pre_state = latest_state(Path(cfg.out)) if cfg.resume and Path(cfg.out).is_dir() else None
    if pre_state is not None:
        cfg = _resumed_config(cfg, pre_state)
    data = _data(cfg, device)
    _check_data(cfg, data)
    run_dir, state = _prepare_run(cfg, data)
    extractor = _fid_extractor(cfg) if cfg.metrics == "fid" else None  # offline: fails here, before training
    clip = _load_clip_for_itc(cfg, data, device) if cfg.itc > 0 else None
    G, D, G_ema, start = _networks(cfg, data, device)
    mapper, mapper_src = _mapper(cfg, data, run_dir, device)
    trainer = Trainer(cfg, data, G, D, run_dir, device, clip=clip, mapper=mapper, G_ema=G_ema, clip_block=_clip_block(data))
    if state is not None:
        tensors, meta, _ = read_state(state)
        trainer.load_state(tensors, meta)
    job = TrainJob(run_dir=run_dir, resumed_from=state)
    _loop(trainer, cfg, data, job, extractor, {"start": start, "mapper": mapper_src})
    job.seconds = time.perf_counter() - started
    return job


def _loop(trainer: Trainer, cfg: TrainConfig, data: TrainingData, job: TrainJob, extractor: Any,
          origin: dict[str, Any]) -> None:
    from ..runtime.progress import progress

    total = int(cfg.kimg * 1000)
    main = distributed.is_main()
    tb = _tensorboard(trainer.run_dir) if (main and cfg.tensorboard) else None
    log_path = trainer.run_dir / "log.jsonl"
    t_last, n_last = time.perf_counter(), trainer.nimg
    with progress(disable=not (cfg.progress and main)) as bar:
        task = bar.add_task("train", total=total, completed=trainer.nimg)
        if trainer.nimg == 0:  # as StyleGAN2-ADA: a snapshot (and FID) of the starting point
            _snapshot(trainer, cfg, data, job, extractor, origin, tb)
        while trainer.nimg < total:
            losses = trainer.train_step()
            now = time.perf_counter()
            spk = (now - t_last) / max(trainer.nimg - n_last, 1) * 1000
            t_last, n_last = now, trainer.nimg
            picks = [i for _, i in trainer.last_picks]
            rec = {"step": trainer.step, "kimg": trainer.nimg / 1000, "sec_per_kimg": spk, "losses": losses,
                   "rank_images": distributed.gather_objects(picks) if trainer.world > 1 else [picks]}
            job.losses.append(losses)
            if main:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
                if tb is not None:
                    for k, v in losses.items():
                        tb.add_scalar(f"Loss/{k}", v, trainer.nimg)
            bar.update(task, completed=min(trainer.nimg, total),
                       description=f"train {trainer.nimg / 1000:.2f} kimg " + " ".join(f"{k} {v:.2f}" for k, v in losses.items())
                       + f" {spk:.1f} s/kimg")
            done = trainer.nimg >= total
            if trainer.nimg >= trainer.next_snap or done:
                trainer.next_snap = (trainer.nimg // int(cfg.snap * 1000) + 1) * cfg.snap * 1000
                _snapshot(trainer, cfg, data, job, extractor, origin, tb)
    if tb is not None:
        tb.close()
    job.kimg = trainer.nimg / 1000


def _snapshot(trainer: Trainer, cfg: TrainConfig, data: TrainingData, job: TrainJob, extractor: Any,
              origin: dict[str, Any], tb: Any) -> None:
    from ..checkpoints.native import save_native

    kimg = trainer.nimg / 1000
    fid = _snapshot_fid(trainer, cfg, data, extractor) if extractor is not None else None
    if not distributed.is_main():
        return
    nets = {"G_ema": trainer.G_ema, "G": trainer.G, "D": trainer.D}
    if trainer.mapper is not None:
        nets["P"] = trainer.mapper
    variant = cfg.variant
    config = {"variant": variant, "resolution": data.resolution, "clip": trainer.clip_block,
              "provenance": {"training": config_dict(cfg), "kimg": kimg, "step": trainer.step, "data": data.describe(),
                             "world_size": trainer.world, **origin,
                             "xflip": "on: flipped images keep the unflipped image's CLIP features" if cfg.mirror
                             else "off"}}
    path = trainer.run_dir / f"network-snapshot-{int(round(kimg * 1000)):09d}.safetensors"
    save_native(path, nets, config)
    trainer.save_state(config_dict(cfg))
    _grid(trainer, data, cfg, trainer.run_dir / f"grid-{int(round(kimg * 1000)):09d}.png")
    job.snapshots.append(path)
    if fid is not None:
        rec = {"kimg": kimg, "fid": fid, "n": min(cfg.fid_num, data.n), "snapshot": path.name}
        job.fid.append(rec)
        with open(trainer.run_dir / "metric-fid.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if tb is not None:
            tb.add_scalar("Metrics/fid", fid, trainer.nimg)


def _fixed_conditions(trainer: Trainer, data: TrainingData, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents and conditions for images 0..n-1 of the data: their first caption's feature, or
    (no captions) the Gaussian pseudo-text of their image feature; seeded, the same at every snapshot."""
    from ..models.pseudo_text import gaussian_pseudo_text

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, trainer.G_ema.z_dim, generator=g)
    rows = []
    for i in range(n):
        lo, hi = int(data.txt_offsets[i]), int(data.txt_offsets[i + 1])
        rows.append(data.txt_features[lo] if hi > lo else None)
    img = torch.nn.functional.normalize(data.img_features[:n], dim=1)
    pseudo = gaussian_pseudo_text(img, generator=g)
    h = torch.stack([torch.nn.functional.normalize(r, dim=0) if r is not None else pseudo[i] for i, r in enumerate(rows)])
    return z, h


@torch.no_grad()
def _grid(trainer: Trainer, data: TrainingData, cfg: TrainConfig, path: Path) -> None:
    from PIL import Image

    from ..models.sampling import to_uint8

    n = min(8, data.n)
    z, h = _fixed_conditions(trainer, data, n, seed=12345)
    imgs = to_uint8(trainer.G_ema(z.to(trainer.device), h.to(trainer.device), noise_mode="const")).cpu()
    real = torch.stack([data.image(i) for i in range(n)])
    rows = torch.cat([real, imgs])  # top row: the real images whose conditions are used; bottom: G_ema
    r = data.resolution
    grid = rows.reshape(2, n, 3, r, r).permute(0, 3, 1, 4, 2).reshape(2 * r, n * r, 3)
    with atomic_write(path, "wb") as f:
        Image.fromarray(grid.numpy()).save(f, format="PNG")
    grid_info = trainer.run_dir / "grid.json"
    if not grid_info.is_file():
        write_json_atomic(grid_info, {"rows": ["real images", "G_ema(z, h) with h = their first caption's CLIP "
                                       "feature, or the Gaussian pseudo-text of their image feature"],
                                      "images": [str(i) for i in range(n)], "z_seed": 12345})


def _fid_extractor(cfg: TrainConfig) -> Any:
    """The Inception network for snapshot FID, loaded before training (offline: WeightsError now)."""
    from ..encoders.inception import load_inception

    return load_inception(None, device=cfg.device, logits=False, progress=cfg.progress, channels_last=True)


def _snapshot_fid(trainer: Trainer, cfg: TrainConfig, data: TrainingData, extractor: Any) -> float | None:
    """FID of G_ema against the first ``fid_num`` training images (conditions as for the grid),
    through the metric engine, shared across ranks under torchrun."""
    from ..data.tensor_set import CallableImageSet
    from ..metrics.config import EvalConfig
    from ..metrics.engine import evaluate
    from ..models.sampling import to_uint8

    n = min(cfg.fid_num, data.n)
    z, h = _fixed_conditions(trainer, data, n, seed=54321)

    def fake(idx: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return to_uint8(trainer.G_ema(z[idx].to(trainer.device), h[idx].to(trainer.device), noise_mode="const")).cpu()

    real = CallableImageSet(f"training images ({n})", n, data.resolution, lambda idx: torch.stack([data.image(i) for i in idx]),
                            key=f"{data.path}:{data.describe()}:{n}", kind="training-data")
    gen = CallableImageSet(f"G_ema at {trainer.nimg / 1000:.3f} kimg", n, data.resolution, fake,
                           key=f"{trainer.run_dir}:{trainer.nimg}", kind="generated")
    res = evaluate(gen, real, EvalConfig(metrics=["fid"], fid_blur=[0], resolution=data.resolution, progress=False,
                                         device=str(trainer.device)), extractor=extractor)
    return float(res.table["value"].iloc[0])


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None  # tensorboard is optional; the JSONL log has the same numbers
    return SummaryWriter(str(run_dir / "tb"))


# ------------------------------------------------------------------------------------- mapper

@dataclass
class MapperJob:
    """What :func:`run_train_mapper` returns."""

    path: Path
    pairs: int
    loss_start: float
    loss_end: float


def run_train_mapper(data: str, out: str, *, steps: int = 2000, batch: int = 256, lr: float = 1e-4,
                     temp: float = 0.1, seed: int = 0, device: str = "auto", progress: bool = True) -> MapperJob:
    """Train the Lafite-NN perturbation network on a store's / zip's paired features; save to ``out``.

    Raises InputError for data without text features or a bad path."""
    from ..training.mapper import mapper_loss, train_mapper

    if not out:
        raise InputError("no output file given", param="out")
    import os

    folder = Path(out).expanduser().resolve().parent
    if Path(out).is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the mapper to {out}: give a file name in an existing, writable folder",
                         param="out")
    td = TrainingData(data)
    result = train_mapper(td, out, steps=steps, batch=batch, lr=lr, temp=temp, seed=seed,
                          device=resolve_device(device), progress=progress)
    return MapperJob(result.path, result.pairs, result.losses[0] if result.losses else float("nan"),
                     mapper_loss(result.network, td, temp))


__all__ = ["TrainJob", "run_train", "MapperJob", "run_train_mapper"]
