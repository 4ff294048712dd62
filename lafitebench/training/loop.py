"""The LAFITE training loop (StyleGAN2-ADA's phases with LAFITE's objective; reference section 3).

One step = the phases ``Gmain`` (every step), ``Greg`` (path length, every ``pl_interval``),
``Dmain`` (every step), ``Dreg`` (R1, every ``r1_interval``), each over the rank's share of the
global batch in rounds of ``batch_gpu``, gradients averaged over rounds and over ranks
(``torch.distributed`` all-reduce), Adam with the lazy-regularisation adjustment, then the EMA
update of ``G_ema`` (half-life ``ema_kimg``, ramp-up ``ema_rampup``).

All randomness after the start comes from one ``torch.Generator`` per rank (latents, noise,
conditions, style-mixing cut-offs, CLIP crops) plus the data order (a function of the seed and
the position), and all of it is saved in the training state, so a resumed run continues exactly.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import LafitebenchError
from ..io.files import atomic_path
from ..runtime import distributed
from .config import TrainConfig
from .data import TrainingData
from .losses import (clip_view_of_generated, condition, contrastive_loss, d_adversarial, g_adversarial, path_lengths,
                     r1_penalty)

STATE_PREFIX = "training-state-"
SNAPSHOT_PREFIX = "network-snapshot-"


class TrainingDiverged(LafitebenchError):
    """A loss became NaN or infinite; the last good snapshot and state are left as they were."""


class Trainer:
    """Holds the networks, optimizers and counters of one run; :meth:`run` trains to ``cfg.kimg``."""

    def __init__(self, cfg: TrainConfig, data: TrainingData, G: torch.nn.Module, D: torch.nn.Module,
                 run_dir: Path, device: torch.device, clip: Any = None, mapper: torch.nn.Module | None = None,
                 G_ema: torch.nn.Module | None = None, clip_block: dict | None = None,
                 log: Callable[[dict], None] | None = None) -> None:
        self.cfg, self.data, self.run_dir, self.device = cfg, data, run_dir, device
        self.G = G.to(device).train()
        self.D = D.to(device).train()
        self.G_ema = (G_ema if G_ema is not None else copy.deepcopy(G)).to(device).eval().requires_grad_(False)
        self.clip, self.mapper, self.clip_block = clip, mapper, clip_block or {}
        self.world, self.rank = distributed.world_size(), distributed.rank()
        if cfg.batch % self.world:
            raise LafitebenchError(f"batch {cfg.batch} does not split over {self.world} processes")
        self.batch_rank = cfg.batch // self.world
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + self.rank)
        self.opt_G = self._adam(self.G, cfg.pl_interval if cfg.pl_weight > 0 else None)
        self.opt_D = self._adam(self.D, cfg.r1_interval if cfg.gamma > 0 else None)
        self.pl_mean = torch.zeros([], device=device)
        self.step = 0
        self.nimg = 0
        self.next_snap = cfg.snap * 1000
        self.last_losses: dict[str, float] = {}
        self.parts: dict[str, float] = {}
        self._n_rounds = 1
        self.log = log or (lambda rec: None)

    # ------------------------------------------------------------------------------- setup

    def _adam(self, module: torch.nn.Module, interval: int | None) -> torch.optim.Adam:
        ratio = interval / (interval + 1) if interval else 1.0  # lazy regularisation (StyleGAN2 appendix B)
        return torch.optim.Adam(module.parameters(), lr=self.cfg.lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)

    # ------------------------------------------------------------------------------- pieces

    def _ws(self, z: torch.Tensor) -> torch.Tensor:
        ws = self.G.mapping(z)
        if self.cfg.style_mixing > 0:
            num = ws.shape[1]
            cutoff = int(torch.randint(1, num, (), generator=self.gen, device=self.device))
            if float(torch.rand((), generator=self.gen, device=self.device)) >= self.cfg.style_mixing:
                cutoff = num
            if cutoff < num:
                z2 = torch.randn(z.shape, generator=self.gen, device=self.device)
                ws = torch.cat([ws[:, :cutoff], self.G.mapping(z2, update_w_avg=False)[:, cutoff:]], dim=1)
        return ws

    def _generate(self, z: torch.Tensor, h: torch.Tensor, ws: torch.Tensor | None = None) -> torch.Tensor:
        ws = self._ws(z) if ws is None else ws
        return self.G.synthesis(ws, h, noise_mode="random", noise_generator=self.gen)

    def _contrastive(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.cfg.gather and self.world > 1:
            a, b = _gather_keep_grad(a), _gather_keep_grad(b)
        return contrastive_loss(a, b, self.cfg.temp, self.cfg.lam, self.cfg.contrastive)

    def _clip_features(self, img: torch.Tensor) -> torch.Tensor:
        model, pre = self.clip
        size = pre.get("size", 224)
        size = size if isinstance(size, int) else int(size[0])
        x = clip_view_of_generated(img, self.gen, size=size, **{k: pre[k] for k in ("mean", "std") if k in pre})
        return model.encode_image(x)

    def _part(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        """Record the batch mean of one loss term for the log (summed over rounds, then averaged)."""
        self.parts[name] = self.parts.get(name, 0.0) + float(loss.detach().mean()) / self._n_rounds
        return loss

    def _checked(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(f"{name} loss is not finite at step {self.step} ({self.nimg / 1000:.3f} kimg); the last "
                                   f"snapshot and training state in {self.run_dir} are intact: lower --lr or --gamma "
                                   "and resume from it with --resume")
        return loss

    # ------------------------------------------------------------------------------- phases

    def _rounds(self, x, img_f, txt_f):
        b = self.cfg.batch_gpu if self.cfg.batch_gpu < self.batch_rank else self.batch_rank
        for s in range(0, x.shape[0], b):
            yield (x[s:s + b], img_f[s:s + b], None if txt_f is None else txt_f[s:s + b])

    def _phase(self, module: torch.nn.Module, opt: torch.optim.Optimizer, body, x, img_f, txt_f, gain: float) -> float:
        module.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        rounds = list(self._rounds(x, img_f, txt_f))
        self._n_rounds = len(rounds)
        total = 0.0
        for xr, ir, tr in rounds:
            h = condition(ir, tr, self.cfg.mixing_prob, self.gen, self.mapper)
            loss = body(xr, h)
            (loss.mean() * gain / len(rounds)).backward()
            total += float(loss.detach().mean()) / len(rounds)
        module.requires_grad_(False)
        _average_gradients(module, self.world)
        for p in module.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()
        return total

    def _g_main(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        z = torch.randn([x.shape[0], self.G.z_dim], generator=self.gen, device=self.device)
        img = self._generate(z, h)
        logits, d_fts = self.D(img, h, semantic_term=c.semantic_term)
        loss = self._part("G_adv", g_adversarial(logits))
        if c.itc > 0:
            loss = loss + c.itc * self._part("G_itc", self._contrastive(self._clip_features(img), h))
        if c.itd > 0:
            loss = loss + c.itd * self._part("G_itd", self._contrastive(d_fts, h))
        return self._checked("G", loss)

    def _g_reg(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        n = max(1, x.shape[0] // 2)  # StyleGAN2: path length on half the batch
        z = torch.randn([n, self.G.z_dim], generator=self.gen, device=self.device)
        ws = self._ws(z)
        img = self._generate(z, h[:n], ws=ws)
        lengths = path_lengths(img, ws, self.gen)
        mean = self.pl_mean.lerp(lengths.mean(), 0.01)
        self.pl_mean.copy_(mean.detach())
        return self._checked("path length", (lengths - mean).square() * self.cfg.pl_weight + img[:, 0, 0, 0] * 0)

    def _d_main(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        z = torch.randn([x.shape[0], self.G.z_dim], generator=self.gen, device=self.device)
        with torch.no_grad():
            fake = self._generate(z, h)
        fake_logits, _ = self.D(fake, h, semantic_term=c.semantic_term)
        real_logits, real_fts = self.D(x, h, semantic_term=c.semantic_term)
        loss = self._part("D_adv", d_adversarial(real_logits, fake_logits))
        self._part("D_real_minus_fake", real_logits.flatten() - fake_logits.flatten())
        if c.itd > 0:
            loss = loss + c.itd * self._part("D_itd", self._contrastive(real_fts, h))
        return self._checked("D", loss)

    def _d_reg(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        real = x.detach().requires_grad_(True)
        logits, _ = self.D(real, h, semantic_term=self.cfg.semantic_term)
        return self._checked("R1", r1_penalty(logits, real) * (self.cfg.gamma / 2) + logits.flatten() * 0)

    def train_step(self) -> dict[str, float]:
        """One step of every due phase on the next global batch; returns the phase losses."""
        c = self.cfg
        picks = self.data.indices(c.seed, self.nimg, c.batch)[self.rank * self.batch_rank:(self.rank + 1) * self.batch_rank]
        self.last_picks = picks
        x, img_f, txt_f = self.data.batch(picks, c.seed, c.mirror, self.device)
        self.G.requires_grad_(False)
        self.D.requires_grad_(False)
        self.parts: dict[str, float] = {}
        out = {"G": self._phase(self.G, self.opt_G, self._g_main, x, img_f, txt_f, 1.0)}
        if c.pl_weight > 0 and self.step % c.pl_interval == 0:
            out["G_pl"] = self._phase(self.G, self.opt_G, self._g_reg, x, img_f, txt_f, c.pl_interval)
        out["D"] = self._phase(self.D, self.opt_D, self._d_main, x, img_f, txt_f, 1.0)
        if c.gamma > 0 and self.step % c.r1_interval == 0:
            out["D_r1"] = self._phase(self.D, self.opt_D, self._d_reg, x, img_f, txt_f, c.r1_interval)
        self.nimg += c.batch
        self._update_ema()
        self.step += 1
        out.update(self.parts)
        self.last_losses = out
        return out

    def _update_ema(self) -> None:
        c = self.cfg
        ema_nimg = c.ema_kimg * 1000
        if c.ema_rampup:
            ema_nimg = min(ema_nimg, self.nimg * c.ema_rampup)
        beta = 0.5 ** (c.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)

    # ------------------------------------------------------------------------------- state

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything a resume needs: tensors (networks, Adam moments, pl_mean, RNG) and JSON counters."""
        tensors: dict[str, torch.Tensor] = {}
        for name, net in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            for k, v in net.state_dict().items():
                tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
        meta: dict[str, Any] = {"step": self.step, "nimg": self.nimg, "next_snap": self.next_snap, "optimizers": {}}
        for name, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            sd = opt.state_dict()
            for pid, st in sd["state"].items():
                for k, v in st.items():
                    tensors[f"{name}.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
            meta["optimizers"][name] = {"param_groups": sd["param_groups"], "params": sorted(sd["state"])}
        tensors["pl_mean"] = self.pl_mean.detach().cpu().reshape(1)
        tensors["rng"] = self.gen.get_state().cpu()
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors` output (same architecture and options)."""
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
        self.gen.set_state(tensors["rng"])
        self.step, self.nimg, self.next_snap = int(meta["step"]), int(meta["nimg"]), float(meta["next_snap"])

    def save_state(self, cfg_dict: dict[str, Any]) -> Path:
        """Write ``training-state-<kimg>.safetensors`` atomically (rank 0); older states are kept."""
        from safetensors.torch import save_file

        tensors, meta = self.state_tensors()
        path = self.run_dir / f"{STATE_PREFIX}{self.nimg // 1000:06d}-{self.nimg:09d}.safetensors"
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta), "config": json.dumps(cfg_dict)})
        return path


def latest_state(run_dir: Path) -> Path | None:
    """The newest complete training state in ``run_dir`` (by images shown), or None."""
    states = sorted(run_dir.glob(f"{STATE_PREFIX}*.safetensors"))
    return states[-1] if states else None


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Tensors, counters and the run config of a training state (safetensors: nothing executes)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, json.loads(meta["meta"]), json.loads(meta["config"])


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
    torch.distributed.all_gather(parts, t.detach())
    parts[distributed.rank()] = t
    return torch.cat(parts)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The run's options as JSON-able data."""
    return {k: v for k, v in asdict(cfg).items()}


__all__ = ["Trainer", "TrainingDiverged", "latest_state", "read_state", "config_dict"]
