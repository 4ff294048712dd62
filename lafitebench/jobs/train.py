"""The ``train`` and ``train-mapper`` jobs: options → data → networks → the loop, with snapshots,
exact resume, logs, sample grids and snapshot FID (see :mod:`lafitebench.training`).

A run folder holds ``config.json`` (the resolved options, data and versions), ``log.jsonl``
(one line per step), ``network-snapshot-<kimg>.safetensors`` (native: G, G_ema, D, [P]; loads
with ``load_model``), ``training-state-<kimg>.safetensors`` (everything ``--resume`` needs),
``grid-<kimg>.png`` with ``grid.json`` (the fixed conditions), ``metric-fid.jsonl`` and, when
tensorboard is installed, TensorBoard event files under ``tb/``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..assets.backbones import CLIP_BACKBONES, clip_config
from ..checkpoints.load import load_model
from ..data.store import PrepareConfig, check_clip_match, is_store, prepare_store, same_backbone
from ..encoders.clip import load_clip
from ..encoders.inception import load_inception
from ..errors import InputError
from ..io.files import write_json_atomic
from ..models.discriminator import Discriminator
from ..models.generator import Generator
from ..models.pseudo_text import load_perturbation_network
from ..runtime import distributed
from ..runtime.device import resolve_device
from ..runtime.progress import stderr_console as err_console
from ..training.config import PRESETS, TrainConfig, resolve
from ..training.data import TrainingData
from ..training.mapper import mapper_loss, train_mapper
from ..training.training_loop import Trainer, config_dict, latest_state, read_state

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
    nonfinite_steps: int = 0


def _data(cfg: TrainConfig, device: torch.device) -> TrainingData:
    """A store or zip as it is; a data set name or folder is prepared into ``out/data`` first."""

    p = Path(cfg.data).expanduser()
    if is_store(p) or (p.is_file() and p.suffix.lower() == ".zip"):
        return TrainingData(p)
    target = Path(cfg.out) / "data"
    if distributed.is_main():
        prepare_store(PrepareConfig(source=cfg.data, out=str(target),
                                    resolution=cfg.resolution or PRESETS.get(cfg.preset)["resolution"],
                                    clip_model=cfg.clip_model or "ViT-B-32", clip_pretrained=cfg.clip_pretrained or "openai",
                                    clip_weights=cfg.clip_weights, device=str(device), progress=cfg.progress))
    distributed.barrier()
    return TrainingData(target)


def _check_data(cfg: TrainConfig, data: TrainingData) -> None:
    if cfg.resolution is not None and cfg.resolution != data.resolution:
        raise InputError(f"resolution {cfg.resolution} but the data {data.path} holds {data.resolution}² images: "
                         f"prepare it at {cfg.resolution} or set the resolution to {data.resolution}", param="resolution")
    needs_text = cfg.mixing_prob < 1.0
    if needs_text and data.n_with_text < data.n:
        raise InputError(f"variant {cfg.variant} with mixing_prob {cfg.mixing_prob} trains on captions, but "
                         f"{data.n - data.n_with_text} of the {data.n} images of {data.path} have no text features",
                         param="mixing_prob")
    if cfg.clip_model:
        have = data.clip.get("model")
        if have and not same_backbone(have, cfg.clip_model):
            raise InputError(f"clip_model {cfg.clip_model} but the features of {data.path} come from CLIP {have}: "
                             "training mixes the two; prepare the data with the same backbone", param="clip_model")


def _clip_block(data: TrainingData) -> dict[str, Any]:
    name = data.clip.get("model")
    if name and name in CLIP_BACKBONES:
        return clip_config(name)
    return {"name": name or "unknown", "open_clip_model": name, "open_clip_pretrained": data.clip.get("pretrained"),
            "f_dim": data.f_dim}


def _load_clip_for_itc(cfg: TrainConfig, data: TrainingData, device: torch.device):
    """The frozen CLIP image encoder of the data's features (weights resolver; offline: a clear error)."""

    name = cfg.clip_model or data.clip.get("model") or "ViT-B-32"
    pretrained = cfg.clip_pretrained if cfg.clip_pretrained is not None else data.clip.get("pretrained")
    model, _, _, info = load_clip(name, pretrained, cfg.clip_weights, device)
    want = data.clip.get("weights_sha256")
    if want and info.get("weights_sha256") and want != info["weights_sha256"]:
        raise InputError(f"the CLIP weights loaded for the CLIP terms ({info.get('weights_sha256')[:12]}) are not the ones "
                         f"the features of {data.path} were made with ({want[:12]}); pass those as clip_weights",
                         param="clip_weights")
    model = model.eval().requires_grad_(False)
    return model, dict(model.visual.preprocess_cfg)


def _networks(cfg: TrainConfig, data: TrainingData, device: torch.device):
    """(G, D, G_ema or None, provenance of the start) from the preset or ``--init``."""

    if cfg.init:
        return _init_networks(cfg, data, device)
    torch.manual_seed(cfg.seed)
    syn = {"channel_base": cfg.channel_base, "channel_max": cfg.channel_max, "conv_clamp": 256, "change": 256,
           "num_fp16_res": cfg.num_fp16_res if device.type == "cuda" else 0}
    G = Generator(z_dim=cfg.z_dim, w_dim=cfg.w_dim, img_resolution=data.resolution, f_dim=data.f_dim,
                  mapping_kwargs={"num_layers": cfg.mapping_layers}, synthesis_kwargs=syn)
    D = Discriminator(data.resolution, f_dim=data.f_dim, channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                      num_fp16_res=syn["num_fp16_res"], mbstd_group_size=min(4, cfg.batch_gpu, cfg.batch // distributed.world_size()))
    return G, D, None, {"init": "random", "seed": cfg.seed}


def _init_networks(cfg: TrainConfig, data: TrainingData, device: torch.device):

    model = load_model(cfg.init, device="cpu")
    G_ema = model.G_ema
    G = model.G if model.G is not None else copy.deepcopy(G_ema)
    D = model.D
    if D is None:
        raise InputError(f"init {cfg.init} holds no discriminator (D): fine-tuning needs one; use a full snapshot",
                         param="init")
    res, f_dim = G_ema.img_resolution, G_ema.f_dim
    if res != data.resolution:
        raise InputError(f"init {cfg.init} is a {res}² model but the data {data.path} holds {data.resolution}² images",
                         param="init")
    if f_dim != data.f_dim:
        raise InputError(f"init {cfg.init} takes {f_dim}-d CLIP features but the data's are {data.f_dim}-d "
                         "(another CLIP backbone)", param="init")

    check_clip_match(data.clip.get("model"), model.metadata.get("clip"), f"data {data.path}", f"init {cfg.init}")
    return G, D, G_ema, {"init": str(cfg.init), "sha256": model.metadata.get("sha256")}


def _mapper(cfg: TrainConfig, data: TrainingData, run_dir: Path, device: torch.device):
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
    return {"kind": "lafitebench-training-run", "config": config_dict(cfg), "data": data.describe(),
            "lafitebench_version": __version__, "torch": torch.__version__}


def _claim_run_folder(cfg: TrainConfig, data: TrainingData) -> tuple[Path, Path | None]:
    """Rank 0: the run folder checked against its config (created, with ``config.json``, for a new
    run); the state to resume from (or None)."""
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
                             "pass resume to continue it with its own options, or choose another run folder",
                             param="resume")
    elif run_dir.is_dir() and any(p for p in run_dir.iterdir() if p.name != "data"):
        raise InputError(f"run folder {run_dir} is not empty and holds no lafitebench run; choose another one",
                         param="out")
    if cfg.resume and state is None:
        raise InputError(f"resume: {run_dir} holds no training state to continue", param="resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not ident_path.is_file():
        write_json_atomic(ident_path, mine)
    return run_dir, state


def _prepare_run(cfg: TrainConfig, data: TrainingData) -> tuple[Path, Path | None]:
    """Only rank 0 looks at and creates the run folder; the other ranks wait for its decision (a
    refusal is raised on every rank), so a slow start of one process cannot see a half-made folder."""
    decision: tuple[str, Any, Any] | None = None
    if distributed.is_main():
        try:
            run_dir, state = _claim_run_folder(cfg, data)
            decision = ("ok", str(run_dir), None if state is None else str(state))
        except InputError as e:
            decision = ("refused", str(e), e.param)
    decision = distributed.broadcast_object(decision)
    if decision[0] == "refused":
        raise InputError(decision[1], param=decision[2])
    return Path(decision[1]), None if decision[2] is None else Path(decision[2])


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
            backbones, an ``init`` of another resolution or feature width, a folder of another
            run without ``resume`` — before training starts.
        WeightsError: CLIP (``itc > 0`` or ``nn_features="clip-view"``) or Inception
            (``metrics="fid"``) weights unavailable offline.
        TrainingDiverged: a loss became NaN/Inf (step named; the last snapshot is intact).
    """
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    distributed.init(device)
    cfg = resolve(cfg, distributed.world_size())
    pre_state = latest_state(Path(cfg.out)) if cfg.resume and Path(cfg.out).is_dir() else None
    if pre_state is not None:
        cfg = _resumed_config(cfg, pre_state)
    data = _data(cfg, device)
    _check_data(cfg, data)
    run_dir, state = _prepare_run(cfg, data)
    if distributed.is_main() and cfg.progress:
        for line in describe_run(cfg, data, state):
            err_console.print(line)
    extractor = _fid_extractor(cfg) if cfg.metrics == "fid" else None  # offline: fails here, before training
    needs_clip = cfg.itc > 0 or (cfg.variant == "nn" and cfg.nn_features == "clip-view")
    clip = _load_clip_for_itc(cfg, data, device) if needs_clip else None
    G, D, G_ema, start = _networks(cfg, data, device)
    mapper, mapper_src = _mapper(cfg, data, run_dir, device)
    trainer = Trainer(cfg, data, G, D, run_dir, device, clip=clip, mapper=mapper, G_ema=G_ema, clip_block=_clip_block(data))
    if state is not None:
        tensors, meta, _ = read_state(state)
        trainer.load_state_dict(tensors, meta)
    job = TrainJob(run_dir=run_dir, resumed_from=state)

    def on_snapshot(path: Path, fid: float | None) -> None:
        job.snapshots.append(path)
        if fid is not None:
            job.fid.append({"kimg": trainer.nimg / 1000, "fid": fid, "n": min(cfg.fid_num, data.n),
                            "snapshot": path.name})

    job.losses = trainer.run(extractor, {"start": start, "mapper": mapper_src}, on_snapshot)
    job.kimg = trainer.nimg / 1000
    job.nonfinite_steps = trainer.nonfinite_steps
    job.seconds = time.perf_counter() - started
    return job


def _fid_extractor(cfg: TrainConfig) -> Any:
    """The Inception network for snapshot FID, loaded before training (offline: WeightsError now)."""

    return load_inception(None, device=cfg.device, logits=False, progress=cfg.progress, channels_last=True)


def describe_run(cfg: TrainConfig, data: TrainingData, state: Path | None) -> list[str]:
    """The first lines of a run (each under 80 columns but for long paths): what trains, with
    which preset, what that preset costs, and the settings in use."""

    world = distributed.world_size()
    cost = PRESETS.get(cfg.preset).get("cost", "")
    procs = f"{world} processes" if world > 1 else "1 process"
    return [f"train: variant {cfg.variant}, preset {cfg.preset}" + (f" ({cost})" if cost else ""),
            f"  data {data.path}: {data.n} images, {data.resolution}²",
            f"  {cfg.kimg:g} kimg, batch {cfg.batch} ({procs}, rounds of {cfg.batch_gpu}), lr {cfg.lr:g}",
            f"  itc {cfg.itc:g}, itd {cfg.itd:g}, gamma {cfg.gamma:g}, temp {cfg.temp:g}, lam {cfg.lam:g}, "
            f"mixing {cfg.mixing_prob:g}",
            f"  {cfg.contrastive} contrastive, {cfg.semantic_term} semantic term, EMA {cfg.ema_kimg:g} kimg",
            f"  run folder {cfg.out}" + (f", continuing {state.name}" if state is not None else "")]


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

    if not out:
        raise InputError("no output file given", param="out")

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
