"""The LAFITE training loop: StyleGAN2-ADA's phases with LAFITE's objective (reference section 3).

One step runs the due phases on the next global batch, as the official ``training_loop``:
``Gmain`` (every step), ``Greg`` (path length, every ``pl_interval``), ``Dmain`` (every step),
``Dreg`` (R1, every ``r1_interval``); an interval of 0 turns lazy regularisation off for that
network (the official ``Gboth``/``Dboth``: both terms every step in one pass, no Adam
adjustment). Each phase runs over the rank's share of the batch in rounds of ``batch_gpu`` with
gain = interval; gradients are **averaged** over rounds (the official code sums them; Adam is
invariant to that scale up to its ε, and averaging makes ``batch_gpu`` a memory setting that
leaves the update unchanged) and over ranks (all-reduce), non-finite values clamped as the
official loop does, then Adam (lr and β scaled by ``interval/(interval+1)`` under lazy
regularisation, whatever the weights), then the EMA of G with half-life ``ema_kimg`` and
ramp-up ``ema_rampup`` on the images shown *before* the step (official order).

Random numbers are keyed by the global sample position (:mod:`lafitebench.training.draws`), so
runs are equal across process counts and ``batch_gpu``, and a resumed run continues exactly.
The path-length mean is updated from the mean over all rounds and ranks (the official code keeps
one per GPU, updated per round; with one round on one process the two are the same).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from ..checkpoints.native import save_native
from ..data.tensor_set import CallableImageSet
from ..errors import LafitebenchError
from ..io.files import atomic_path, atomic_write, write_json_atomic
from ..metrics.config import EvalConfig
from ..metrics.engine import evaluate
from ..models.pseudo_text import gaussian_pseudo_text
from ..models.sampling import to_uint8
from ..runtime import distributed
from ..runtime.progress import progress, stderr_console
from .config import TrainConfig
from .data import TrainingData
from .draws import round_draws
from .loss import CLIP_VIEW, Draws, Networks, Objective, PhaseLoss, contrastive_loss, d_main, d_reg, g_main, g_reg

STATE_PREFIX = "training-state-"
SNAPSHOT_PREFIX = "network-snapshot-"


class TrainingDiverged(LafitebenchError):
    """A loss became NaN or infinite; the last good snapshot and state are left as they were."""

class Phase:
    """One official training phase: its name, network, optimizer and interval."""

    def __init__(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, interval: int) -> None:
        self.name, self.module, self.opt, self.interval = name, module, opt, interval


class Trainer:
    """The networks, optimizers, counters and options of one run.

    :meth:`train_step` runs one step; :meth:`run` trains to ``cfg.kimg`` with snapshots, logs,
    grids and snapshot FID; :meth:`state_dict` / :meth:`load_state_dict` hold everything a resume needs.
    """

    def __init__(self, cfg: TrainConfig, data: TrainingData, G: torch.nn.Module, D: torch.nn.Module,
                 run_dir: Path, device: torch.device, clip: Any = None, mapper: torch.nn.Module | None = None,
                 G_ema: torch.nn.Module | None = None, clip_block: dict | None = None) -> None:
        self.cfg, self.data, self.run_dir, self.device = cfg, data, Path(run_dir), device
        # The official loop turns TF32 off for matmul and cuDNN (it changes the R1 and path-length
        # double backward on Ampere and later); --allow-tf32 turns it on.
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.allow_tf32)
        torch.backends.cudnn.allow_tf32 = bool(cfg.allow_tf32)
        self.G = G.to(device).train().requires_grad_(False)
        self.D = D.to(device).train().requires_grad_(False)
        self.G_ema = (G_ema if G_ema is not None else copy.deepcopy(G)).to(device).eval().requires_grad_(False)
        self.mapper, self.clip_block = mapper, clip_block or {}
        model, pre = clip if clip is not None else (None, {})
        size = pre.get("size", CLIP_VIEW)
        self.nets = Networks(self.G, self.D, clip=model, mapper=mapper,
                             clip_size=size if isinstance(size, int) else int(size[0]),
                             clip_norm=(pre.get("mean", Networks.clip_norm[0]), pre.get("std", Networks.clip_norm[1])))
        self.obj = Objective.from_config(cfg)
        self.world, self.rank = distributed.world_size(), distributed.rank()
        if cfg.batch % self.world:
            raise LafitebenchError(f"batch {cfg.batch} does not split over {self.world} processes")
        self.batch_rank = cfg.batch // self.world
        self.round = min(cfg.batch_gpu, self.batch_rank)
        if self.batch_rank % self.round:
            raise LafitebenchError(f"the {self.batch_rank} images per process do not split into rounds of "
                                   f"batch_gpu {cfg.batch_gpu}")
        self.phases = self._phases()
        self.pl_mean = torch.zeros([], device=device)
        self.step = 0
        self.nimg = 0
        self.next_snap = cfg.snap * 1000
        self.nonfinite_steps = 0
        self.last_losses: dict[str, float] = {}
        self.last_picks: list[tuple[int, int]] = []

    # ------------------------------------------------------------------------------- setup

    def _phases(self) -> list[Phase]:
        c = self.cfg
        out = []
        for name, module, interval in (("G", self.G, c.pl_interval), ("D", self.D, c.r1_interval)):
            ratio = interval / (interval + 1) if interval else 1.0  # lazy regularisation (StyleGAN2 appendix B)
            opt = torch.optim.Adam(module.parameters(), lr=c.lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
            if interval:
                out += [Phase(name + "main", module, opt, 1), Phase(name + "reg", module, opt, interval)]
            else:
                out += [Phase(name + "both", module, opt, 1)]
        return out

    @property
    def opt_G(self) -> torch.optim.Optimizer:
        """G's Adam."""
        return self.phases[0].opt

    @property
    def opt_D(self) -> torch.optim.Optimizer:
        """D's Adam."""
        return self.phases[-1].opt

    def ema_beta(self) -> float:
        """The EMA decay of this step (:func:`ema_beta` with the images shown before it)."""
        return ema_beta(self.cfg.batch, self.cfg.ema_kimg, self.cfg.ema_rampup, self.nimg)

    # ------------------------------------------------------------------------------- one step

    def _draws(self, phase: str, start: int, n: int) -> Draws:
        c = self.cfg
        nn_view = self.mapper is not None and c.nn_features == "clip-view"
        return round_draws(c.seed, phase, start, n, z_dim=self.G.z_dim, f_dim=self.data.f_dim,
                           num_ws=self.G.num_ws, resolution=self.data.resolution, style_mixing=c.style_mixing,
                           clip_size=self.nets.clip_size, need_eps=self.mapper is not None,
                           need_gen_crop=c.itc > 0, need_real_crop=nn_view, device=self.device)

    def _contrast(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        return gathered_contrast(self.obj, self.world) if (self.cfg.gather and self.world > 1) else None

    def _run_phase(self, phase: Phase, x: torch.Tensor, img_f: torch.Tensor, txt_f: torch.Tensor | None,
                   base: int, terms: dict[str, float]) -> None:
        phase.opt.zero_grad(set_to_none=True)
        phase.module.requires_grad_(True)
        n_rounds = x.shape[0] // self.round
        lengths = []
        for r in range(n_rounds):
            s = slice(r * self.round, (r + 1) * self.round)
            xr, ir, tr = x[s], img_f[s], None if txt_f is None else txt_f[s]
            draws = self._draws(phase.name, base + r * self.round, self.round)
            parts = []
            if phase.name in ("Gmain", "Gboth"):
                parts.append(g_main(self.nets, self.obj, xr, ir, tr, draws, self._contrast()))
            if phase.name in ("Greg", "Gboth") and self.obj.pl_weight > 0:
                parts.append(g_reg(self.nets, self.obj, xr, ir, tr, draws, self.pl_mean))
                lengths.append(parts[-1].pl_lengths.mean())
            if phase.name in ("Dmain", "Dboth"):
                parts.append(d_main(self.nets, self.obj, xr, ir, tr, draws, self._contrast()))
            if phase.name in ("Dreg", "Dboth") and self.obj.gamma > 0:
                parts.append(d_reg(self.nets, self.obj, xr, ir, tr, draws))
            for p in parts:
                self._check(phase.name, p)
                for k, v in p.terms.items():
                    terms[k] = terms.get(k, 0.0) + float(v.detach().float().mean()) / n_rounds
                (p.loss.mean() * (phase.interval / n_rounds)).backward()
        phase.module.requires_grad_(False)
        if lengths:
            mean = distributed.all_reduce_sum(torch.stack(lengths).mean().reshape(1)) / self.world
            self.pl_mean.copy_(self.pl_mean.lerp(mean.reshape([]), self.obj.pl_decay))
        _average_gradients(phase.module, self.world)
        for p in phase.module.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)
        phase.opt.step()

    def _check(self, phase: str, part: PhaseLoss) -> None:
        if torch.isfinite(part.loss).all():
            return
        if self.cfg.nonfinite == "zero":  # the official loop: gradients' NaN set to 0, ±Inf clamped, go on
            self.nonfinite_steps += 1
            return
        raise TrainingDiverged(f"{phase} loss is not finite at step {self.step} ({self.nimg / 1000:.3f} kimg); the last "
                               f"snapshot and training state in {self.run_dir} are intact: lower lr or gamma and "
                               "resume, or set nonfinite='zero' to go on as the official code does")

    def train_step(self) -> dict[str, float]:
        """One step of every due phase on the next global batch; returns the logged loss terms
        (batch means; ``G``/``D`` the phase totals)."""
        c = self.cfg
        base = self.nimg + self.rank * self.batch_rank
        picks = self.data.indices(c.seed, base, self.batch_rank)
        self.last_picks = picks
        x, img_f, txt_f = self.data.batch(picks, c.seed, c.mirror, self.device)
        terms: dict[str, float] = {}
        for phase in self.phases:
            if self.step % phase.interval == 0:
                self._run_phase(phase, x, img_f, txt_f, base, terms)
        with torch.no_grad():  # G_ema, with the images shown before this step (official order)
            beta = self.ema_beta()
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.nimg += c.batch
        self.step += 1
        if self.world > 1:  # the log is the whole global batch's, the same on every rank and world size
            names = sorted(terms)
            total = distributed.all_reduce_sum(torch.tensor([terms[k] for k in names], dtype=torch.float64))
            terms = {k: float(v) / self.world for k, v in zip(names, total)}
        out = {"G": terms.get("G_loss", 0.0), "D": terms.get("D_loss", 0.0)}
        if "G_reg" in terms:
            out["G_pl"] = terms["G_reg"]
        if "D_reg" in terms:
            out["D_r1"] = terms["D_reg"]
        out.update({k: v for k, v in terms.items() if k not in ("G_loss", "D_loss", "G_reg", "D_reg")})
        self.last_losses = out
        return out

    # ------------------------------------------------------------------------------- state

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything a resume needs: tensors (networks, Adam moments, pl_mean) and JSON counters.
        The random draws are a function of (seed, position), so the position is their state."""
        tensors: dict[str, torch.Tensor] = {}
        for name, net in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            for k, v in net.state_dict().items():
                tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
        meta: dict[str, Any] = {"step": self.step, "nimg": self.nimg, "next_snap": self.next_snap, "optimizers": {},
                                "nonfinite_steps": self.nonfinite_steps}
        for name, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            sd = opt.state_dict()
            for pid, st in sd["state"].items():
                for k, v in st.items():
                    tensors[f"{name}.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
            meta["optimizers"][name] = {"param_groups": sd["param_groups"], "params": sorted(sd["state"])}
        tensors["pl_mean"] = self.pl_mean.detach().cpu().reshape(1)
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (same architecture and options)."""
        for name, net in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            net.load_state_dict(sd, strict=True)
        for name, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            info = meta["optimizers"][name]
            state = {}
            for pid in info["params"]:
                prefix = f"{name}.{pid}."
                state[int(pid)] = {k[len(prefix):]: v.to(self.device) if k[len(prefix):] != "step" else v
                                   for k, v in tensors.items() if k.startswith(prefix)}
            opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        self.pl_mean.copy_(tensors["pl_mean"].reshape([]).to(self.device))
        self.step, self.nimg, self.next_snap = int(meta["step"]), int(meta["nimg"]), float(meta["next_snap"])
        self.nonfinite_steps = int(meta.get("nonfinite_steps", 0))

    def save_state(self, cfg_dict: dict[str, Any]) -> Path:
        """Write ``training-state-<kimg>.safetensors`` atomically (rank 0); older states are kept."""
        from safetensors.torch import save_file

        tensors, meta = self.state_dict()
        path = self.run_dir / f"{STATE_PREFIX}{self.nimg // 1000:06d}-{self.nimg:09d}.safetensors"
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta), "config": json.dumps(cfg_dict)})
        return path

    # ------------------------------------------------------------------------------- the loop

    def run(self, extractor: Any = None, origin: dict[str, Any] | None = None,
            on_snapshot: Callable[[Path, float | None], None] | None = None) -> list[dict[str, float]]:
        """Train to ``cfg.kimg``: snapshots (and FID with ``extractor``) at the start and every
        ``cfg.snap`` kimg, the JSONL/TensorBoard log, a Rich bar with target and ETA and a loss line
        of under 80 columns per snapshot. Returns the logged losses of every step run."""
        c = self.cfg
        total = int(c.kimg * 1000)
        main = distributed.is_main()
        tb = _tensorboard(self.run_dir, announce=main and c.progress) if (main and c.tensorboard) else None
        log_path = self.run_dir / "log.jsonl"
        losses: list[dict[str, float]] = []
        tick_time, tick_images = 0.0, 0  # time in train_step since the last loss line
        with progress(disable=not (c.progress and main)) as bar:
            task = bar.add_task("train (images)", total=total, completed=self.nimg)
            if self.nimg == 0:  # as StyleGAN2-ADA: a snapshot (and FID) of the starting point
                self._snapshot(extractor, origin or {}, tb, on_snapshot)
            while self.nimg < total:
                t0 = time.perf_counter()
                rec_losses = self.train_step()
                step_time = time.perf_counter() - t0
                spk = step_time / c.batch * 1000
                tick_time, tick_images = tick_time + step_time, tick_images + c.batch
                picks = [i for _, i in self.last_picks]
                rec = {"step": self.step, "kimg": self.nimg / 1000, "sec_per_kimg": spk, "losses": rec_losses,
                       "rank_images": distributed.gather_objects(picks) if self.world > 1 else [picks]}
                losses.append(rec_losses)
                if main:
                    with open(log_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(rec) + "\n")
                    if tb is not None:
                        for k, v in rec_losses.items():
                            tb.add_scalar(f"Loss/{k}", v, self.nimg)
                        tb.add_scalar("Timing/sec_per_kimg", spk, self.nimg)
                bar.update(task, completed=min(self.nimg, total))
                done = self.nimg >= total
                if self.nimg >= self.next_snap or done:
                    self.next_snap = (self.nimg // int(c.snap * 1000) + 1) * c.snap * 1000
                    if main and c.progress:
                        bar.console.print(loss_line(self.nimg, rec_losses, tick_time / tick_images * 1000))
                    tick_time, tick_images = 0.0, 0
                    self._snapshot(extractor, origin or {}, tb, on_snapshot)
        if tb is not None:
            tb.close()
        return losses

    def _snapshot(self, extractor: Any, origin: dict[str, Any], tb: Any,
                  on_snapshot: Callable[[Path, float | None], None] | None) -> None:

        kimg = self.nimg / 1000
        fid = _snapshot_fid(self, extractor) if extractor is not None else None
        if not distributed.is_main():
            return
        nets = {"G_ema": self.G_ema, "G": self.G, "D": self.D}
        if self.mapper is not None:
            nets["P"] = self.mapper
        config = {"variant": self.cfg.variant, "resolution": self.data.resolution, "clip": self.clip_block,
                  "provenance": {"training": config_dict(self.cfg), "kimg": kimg, "step": self.step,
                                 "data": self.data.describe(), "world_size": self.world, **origin,
                                 "xflip": "on: flipped images keep the unflipped image's CLIP features"
                                 if self.cfg.mirror else "off"}}
        path = self.run_dir / f"{SNAPSHOT_PREFIX}{int(round(kimg * 1000)):09d}.safetensors"
        save_native(path, nets, config)
        self.save_state(config_dict(self.cfg))
        _grid(self, self.run_dir / f"grid-{int(round(kimg * 1000)):09d}.png")
        if fid is not None:
            rec = {"kimg": kimg, "fid": fid, "n": min(self.cfg.fid_num, self.data.n), "snapshot": path.name}
            with open(self.run_dir / "metric-fid.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            if tb is not None:
                tb.add_scalar("Metrics/fid", fid, self.nimg)
        if on_snapshot is not None:
            on_snapshot(path, fid)


def ema_beta(batch: int, ema_kimg: float, ema_rampup: float | None, nimg: int) -> float:
    """StyleGAN2-ADA's G_ema decay for one step of ``batch`` images: half-life ``ema_kimg``, ramped
    up to ``ema_rampup ×`` the ``nimg`` images shown before the step (official training_loop)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup:
        ema_nimg = min(ema_nimg, nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


def loss_line(nimg: int, losses: dict[str, float], sec_per_kimg: float) -> str:
    """``kimg 0.400  G 1.23  D 1.31  r-f +0.42  G_pl 0.01  D_r1 0.02  11.2 s/kimg`` (under 80 columns)."""
    parts = [f"kimg {nimg / 1000:.3f}", f"G {losses.get('G', 0.0):.3f}", f"D {losses.get('D', 0.0):.3f}"]
    if "D_real_minus_fake" in losses:
        parts.append(f"r-f {losses['D_real_minus_fake']:+.2f}")
    for k in ("G_pl", "D_r1"):
        if k in losses:
            parts.append(f"{k} {losses[k]:.3f}")
    parts.append(f"{sec_per_kimg:.1f} s/kimg")
    return "  ".join(parts)[:79]


def latest_state(run_dir: Path) -> Path | None:
    """The newest complete training state in ``run_dir`` (by images shown), or None."""
    states = sorted(Path(run_dir).glob(f"{STATE_PREFIX}*.safetensors"))
    return states[-1] if states else None


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Tensors, counters and the run config of a training state (safetensors: nothing executes)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, json.loads(meta["meta"]), json.loads(meta["config"])


def gathered_contrast(obj: Objective, world: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The contrastive term with negatives from every rank (``--gather``), for the phase functions."""

    def gathered(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        loss = contrastive_loss(_gather_keep_grad(a), _gather_keep_grad(b), obj.temp, obj.lam, obj.contrastive)
        # Each rank's backward reaches only its own rows, and the all-reduce averages over ranks,
        # which would leave 1/world of the whole batch's gradient (the official code's --gather);
        # scaling the gradient (not the value) by the world size gives exactly the gradient of
        # the contrastive term over the whole global batch.
        return loss * world - loss.detach() * (world - 1)

    return gathered


def _average_gradients(module: torch.nn.Module, world: int) -> None:
    """All-reduce the gradients of ``module`` and divide by the world size (DDP's averaging)."""
    if world <= 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _gather_keep_grad(t: torch.Tensor) -> torch.Tensor:
    """All ranks' rows, this rank's keeping their gradient (contrastive negatives across GPUs)."""
    parts = [torch.zeros_like(t) for _ in range(distributed.world_size())]
    torch.distributed.all_gather(parts, t.detach().contiguous())
    parts[distributed.rank()] = t
    return torch.cat(parts)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The run's options as JSON-able data."""
    return dict(asdict(cfg))


def _fixed_conditions(trainer: Trainer, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents and conditions for images 0..n-1 of the data: their first caption's feature, or
    (no captions) the Gaussian pseudo-text of their image feature; seeded, the same at every snapshot."""

    data = trainer.data
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
def _grid(trainer: Trainer, path: Path) -> None:
    from PIL import Image


    data = trainer.data
    n = min(8, data.n)
    z, h = _fixed_conditions(trainer, n, seed=12345)
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


def _snapshot_fid(trainer: Trainer, extractor: Any) -> float | None:
    """FID of G_ema against the first ``fid_num`` training images (conditions as for the grid),
    through the metric engine, shared across ranks under torchrun."""

    data, cfg = trainer.data, trainer.cfg
    n = min(cfg.fid_num, data.n)
    z, h = _fixed_conditions(trainer, n, seed=54321)

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


def _tensorboard(run_dir: Path, announce: bool = True):
    """A TensorBoard writer under ``run_dir/tb``, or None (one line says so) when tensorboard is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if announce:
            stderr_console.print("tensorboard is not installed: the log is log.jsonl alone "
                                 "(pip install tensorboard for event files)")
        return None
    return SummaryWriter(str(run_dir / "tb"))


__all__ = ["Trainer", "TrainingDiverged", "latest_state", "read_state", "config_dict", "loss_line", "ema_beta"]
