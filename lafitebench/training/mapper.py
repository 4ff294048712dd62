"""Training the Lafite-NN perturbation network (paper sec. 3.1, eq. 2; reference section 4).

The network maps a CLIP image feature c to ``normalize(c + μ(c) + exp(log σ(c)) ⊙ ε)``; it is
trained on paired (image, caption) features so that its outputs are close to the real text
feature of the same pair and far from the others: InfoNCE between outputs and text features
over the batch (both directions averaged). Saved as the official ``implicit.*.pth`` state dict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.files import atomic_path
from ..io.state_dict import safe_torch_load
from ..models.pseudo_text import PerturbationNetwork
from ..runtime.progress import progress as bar
from .loss import contrastive_loss


@dataclass
class MapperResult:
    """What :func:`train_mapper` returns: the file, the network and the loss per logged step."""

    path: Path
    network: PerturbationNetwork
    losses: list[float] = field(default_factory=list)
    pairs: int = 0


def paired_features(data) -> tuple[torch.Tensor, torch.Tensor]:
    """(image feature, caption feature) pairs of a :class:`~lafitebench.training.data.TrainingData`,
    one row per caption, L2-normalised. InputError when the data has no captions (names --mapper)."""
    off = data.txt_offsets
    counts = (off[1:] - off[:-1]) if off is not None else torch.zeros(0, dtype=torch.int64)
    if off is None or int(counts.sum()) == 0:
        raise InputError(f"{data.path} has no text features, so the Lafite-NN perturbation network cannot be trained "
                         "on it: pass mapper (an official implicit.*.pth or one from `lafitebench train-mapper`)",
                         param="mapper")
    img = torch.repeat_interleave(data.img_features, counts, dim=0)
    return F.normalize(img, dim=1), F.normalize(data.txt_features, dim=1)


def train_mapper(data, out: str | Path, *, steps: int = 2000, batch: int = 256, lr: float = 1e-4,
                 temp: float = 0.1, seed: int = 0, hidden: int = 1024, device: str | torch.device = "cpu",
                 log_every: int = 50, progress: bool = True, save_every: int = 100) -> MapperResult:
    """Train a :class:`PerturbationNetwork` on ``data``'s paired features and save it to ``out``
    (atomically). Deterministic for a seed on CPU. Raises InputError for data without captions.

    Every ``save_every`` steps the network, Adam and the sampling RNG are saved (atomically) to
    ``<out>.state`` (a weights-only torch file); a call with the same settings continues from it
    and ends where an uninterrupted run would, then removes it."""

    img, txt = paired_features(data)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = PerturbationNetwork(feature_dim=img.shape[1], hidden_dim=hidden).to(device)
    with torch.no_grad():  # start near the identity residual: small mu, small sigma
        for k in (4, 8):
            getattr(net, f"linear{k}").weight.mul_(0.01)
            getattr(net, f"linear{k}").bias.zero_()
        net.linear8.bias.fill_(math.log(0.1))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses: list[float] = []
    n = img.shape[0]
    b = min(batch, n)
    out = Path(out)
    state_path = out.with_name(out.name + ".state")
    settings = {"steps": steps, "batch": b, "lr": lr, "temp": temp, "seed": seed, "hidden": hidden, "pairs": n,
                "feature_dim": int(img.shape[1])}
    start = _resume(state_path, settings, net, opt, g, losses)
    with bar(disable=not progress) as pb:
        task = pb.add_task("train mapper", total=steps, completed=start)
        for step in range(start, steps):
            idx = torch.randperm(n, generator=g)[:b]
            eps = torch.randn(b, img.shape[1], generator=g)
            out_feat = net(img[idx].to(device), eps=eps.to(device))
            loss = contrastive_loss(out_feat, txt[idx].to(device), temp, lam=0.5, form="paper").mean()
            if not torch.isfinite(loss):
                raise InputError(f"mapper training diverged at step {step} (loss {loss.item()}); lower the learning rate",
                                 param="lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % log_every == 0 or step == steps - 1:
                losses.append(float(loss.detach()))
            if (step + 1) % save_every == 0 and step + 1 < steps:
                _save_state(state_path, settings, step + 1, net, opt, g, losses)
            pb.update(task, advance=1)
    with atomic_path(out) as tmp:
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
    state_path.unlink(missing_ok=True)
    return MapperResult(out, net.eval(), losses, n)


def _save_state(path: Path, settings: dict, step: int, net, opt, g: torch.Generator, losses: list[float]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"settings": settings, "step": step, "net": net.state_dict(), "opt": opt.state_dict(),
                    "rng": g.get_state(), "losses": losses}, tmp)


def _resume(path: Path, settings: dict, net, opt, g: torch.Generator, losses: list[float]) -> int:
    """Load a saved mapper state made with ``settings`` (weights-only: nothing in it executes);
    returns the step to continue from (0 without one; a state of other settings is ignored)."""

    if not path.is_file():
        return 0
    state = safe_torch_load(path, f"mapper training state {path}")
    if not isinstance(state, dict) or state.get("settings") != settings:
        return 0
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    g.set_state(state["rng"])
    losses[:] = list(state["losses"])
    return int(state["step"])


def mapper_loss(net: PerturbationNetwork, data, temp: float = 0.1, seed: int = 1, batch: int = 256) -> float:
    """The contrastive loss of ``net`` on one fixed batch of ``data``'s pairs (for comparisons)."""
    img, txt = paired_features(data)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(img.shape[0], generator=g)[: min(batch, img.shape[0])]
    eps = torch.randn(len(idx), img.shape[1], generator=g)
    with torch.no_grad():
        dev = next(net.parameters()).device
        return float(contrastive_loss(net(img[idx].to(dev), eps=eps.to(dev)), txt[idx].to(dev), temp, lam=0.5,
                                      form="paper").mean())


__all__ = ["train_mapper", "paired_features", "mapper_loss", "MapperResult"]
