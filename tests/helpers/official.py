"""The official LAFITE source (``../shared/reference/lafite-official``) run beside ours, in the
test or benchmark process only, with the stand-ins its README lists for a CPU machine without
internet: a stub ``clip`` module whose ``load`` returns a small random open_clip model (the one
our side uses), the NN mapper file ``./implicit.0.001.64.True.0.0.pth`` written with random
weights in the working directory, fp32 networks (``num_fp16_res=0``). Nothing here is product code.
"""
from __future__ import annotations

import contextlib
import copy
import os
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import torch

MAPPER_FILE = "implicit.0.001.64.True.0.0.pth"


@contextlib.contextmanager
def official_modules(src: Path, clip_model: Any, workdir: Path) -> Iterator[types.SimpleNamespace]:
    """Import the official ``training.loss``/``training.networks`` with the stand-ins; undone on exit."""
    src = Path(src).resolve()
    before = set(sys.modules)
    stub = types.ModuleType("clip")
    stub.load = lambda name, device=None, jit=False, **kw: (clip_model, None)  # noqa: E731
    stub.tokenize = lambda text, *a, **kw: __import__("open_clip").tokenize(text)  # noqa: E731
    old_clip = sys.modules.get("clip")
    sys.modules["clip"] = stub
    sys.path.insert(0, str(src))
    cwd = os.getcwd()
    try:
        import training.loss as loss  # type: ignore[import-not-found]
        import training.networks as networks  # type: ignore[import-not-found]
        from torch_utils import training_stats  # type: ignore[import-not-found]

        workdir.mkdir(parents=True, exist_ok=True)
        torch.save(loss.Model("cpu").state_dict(), workdir / MAPPER_FILE)
        os.chdir(workdir)
        yield types.SimpleNamespace(loss=loss, networks=networks, training_stats=training_stats, src=src)
    finally:
        os.chdir(cwd)
        sys.path.remove(str(src))
        for name in set(sys.modules) - before:
            mod = sys.modules.get(name)
            if name == "clip" or str(getattr(mod, "__file__", "") or "").startswith(str(src)):
                del sys.modules[name]
        if old_clip is not None:
            sys.modules["clip"] = old_clip
        else:
            sys.modules.pop("clip", None)


def tiny_kwargs(resolution: int, f_dim: int, channel_base: int = 512, channel_max: int = 32,
                z_dim: int = 32) -> tuple[dict, dict]:
    """Official ``Generator`` and ``Discriminator`` kwargs of a small fp32 LAFITE."""
    g = dict(z_dim=z_dim, c_dim=0, w_dim=z_dim, img_resolution=resolution, img_channels=3,
             mapping_kwargs=dict(num_layers=2),
             synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=0, conv_clamp=256,
                                   change=256, f_dim=f_dim))
    d = dict(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=channel_base, channel_max=channel_max,
             num_fp16_res=0, conv_clamp=256, use_norm=False, use_fts=True,
             block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=4, f_dim=f_dim))
    return g, d


def perturb_(module: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """Move every parameter and buffer off its initial value (zero-initialised paths exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.add_(torch.randn(t.shape, generator=g) * scale * (t.abs().mean() + 0.1))
    return module


def twin_networks(off: types.SimpleNamespace, resolution: int, f_dim: int, seed: int = 0, **kw):
    """``(official G, official D, our G, our D)`` with the same weights (ours loaded strictly from
    the official state dicts, converted by the product's own official-kwargs translation)."""
    from lafitebench.checkpoints.official import discriminator_kwargs_from_official, generator_kwargs_from_official
    from lafitebench.models.discriminator import Discriminator
    from lafitebench.models.generator import Generator

    g_kw, d_kw = tiny_kwargs(resolution, f_dim, **kw)
    torch.manual_seed(seed)
    oG = perturb_(off.networks.Generator(**copy.deepcopy(g_kw)), seed + 1)
    oD = perturb_(off.networks.Discriminator(**copy.deepcopy(d_kw)), seed + 2)
    G = Generator(**generator_kwargs_from_official(g_kw))
    D = Discriminator(**discriminator_kwargs_from_official(d_kw))
    G.load_state_dict(oG.state_dict(), strict=True)
    D.load_state_dict(oD.state_dict(), strict=True)
    for m in (oG, oD, G, D):
        m.train().requires_grad_(False)
    return oG, oD, G, D


class ConstNoiseSynthesis(torch.nn.Module):
    """The official synthesis network with ``noise_mode='const'`` (no random draws inside)."""

    def __init__(self, synthesis: torch.nn.Module) -> None:
        super().__init__()
        self.synthesis = synthesis

    def forward(self, ws: torch.Tensor, fts: torch.Tensor) -> torch.Tensor:
        return self.synthesis(ws, fts=fts, noise_mode="const")


class _OfficialMapping(torch.nn.Module):
    def __init__(self, mapping: torch.nn.Module) -> None:
        super().__init__()
        self.m = mapping

    def forward(self, z: torch.Tensor, update_w_avg: bool = True) -> torch.Tensor:
        return self.m(z, torch.zeros(z.shape[0], 0, device=z.device), skip_w_avg_update=not update_w_avg)


class _OfficialSynthesis(torch.nn.Module):
    def __init__(self, synthesis: torch.nn.Module) -> None:
        super().__init__()
        self.s = synthesis

    def forward(self, ws, h, noise_mode="const", noise_generator=None):
        assert noise_mode == "const", "the parity runs use constant noise"
        return self.s(ws, fts=h, noise_mode="const")


class OfficialG(torch.nn.Module):
    """The official generator behind our ``Generator`` interface (``mapping``, ``synthesis``)."""

    def __init__(self, G: torch.nn.Module) -> None:
        super().__init__()
        self.mapping, self.synthesis = _OfficialMapping(G.mapping), _OfficialSynthesis(G.synthesis)
        self.z_dim, self.num_ws = G.z_dim, G.num_ws


class OfficialD(torch.nn.Module):
    """The official discriminator behind our ``Discriminator`` interface (batch-summed semantic term)."""

    def __init__(self, D: torch.nn.Module) -> None:
        super().__init__()
        self.d = D

    def forward(self, img, h, semantic_term="official"):
        assert semantic_term == "official", "the official discriminator has the batch-summed semantic term only"
        return self.d(img, None, fts=h)
