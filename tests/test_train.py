"""Training: loss terms against direct formulas, pseudo-text statistics, gradient flow through
CLIP, the tiny preset end to end, exact resume, the mapper, DDP batch split, bad input."""
from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from helpers.tiny_clip import CLIP_NAME, tiny_clip
from lafitebench.cli import app
from lafitebench.errors import InputError
from lafitebench.jobs.train import run_train
from lafitebench.training.config import TrainConfig
from lafitebench.training.data import TrainingData
from lafitebench.training.loss import (clip_view, condition, contrastive_loss, d_adversarial, g_adversarial,
                                       r1_penalty, view_crop)

runner = CliRunner()
DRIVER = Path(__file__).parent / "helpers" / "train_driver.py"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from lafitebench.data.store import PrepareConfig, prepare_store

    root = tmp_path_factory.mktemp("train")
    cfg, _ = tiny_clip(root)
    prepare_store(PrepareConfig(source="coco-mini", out=str(root / "store"), resolution=32, clip_model=CLIP_NAME,
                                clip_weights=str(root / "clip.pt"), shard_size=50, device="cpu", progress=False))
    return {"root": root, "store": root / "store", "clip": root / "clip.pt", "clip_config": cfg}


def _cfg(env, out: Path, **kw) -> TrainConfig:
    base = dict(variant="g", data=str(env["store"]), out=str(out), preset="tiny", device="cpu", kimg=0.048, snap=0.024,
                metrics="none", progress=False, tensorboard=False)
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------------------------------ losses

def test_contrastive_forms_against_direct_formulas():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    s = F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()
    tau = 0.5
    # paper InfoNCE, both directions mixed by lam
    row = torch.stack([-(s[i, i] / tau - torch.logsumexp(s[i] / tau, 0)) for i in range(5)])
    col = torch.stack([-(s[i, i] / tau - torch.logsumexp(s[:, i] / tau, 0)) for i in range(5)])
    assert torch.allclose(contrastive_loss(a, b, tau, 0.3, "paper"), 0.3 * row + 0.7 * col, atol=1e-6)
    # official: exp(S/τ) logits, log(τ·p), lam = 0 → the column softmax only
    e = torch.exp(s / tau)
    p_col = torch.stack([torch.exp(e[i, i]) / torch.exp(e[:, i]).sum() for i in range(5)])
    assert torch.allclose(contrastive_loss(a, b, tau, 0.0, "official"), -torch.log(tau * p_col), atol=1e-5)
    p_row = torch.stack([torch.exp(e[i, i]) / torch.exp(e[i]).sum() for i in range(5)])
    assert torch.allclose(contrastive_loss(a, b, tau, 1.0, "official"), -torch.log(tau * p_row), atol=1e-5)
    assert torch.allclose(contrastive_loss(a, b, 0.0), -torch.diagonal(s), atol=1e-6)
    with pytest.raises(InputError, match="lam"):
        contrastive_loss(a, b, tau, 1.5)


def test_adversarial_and_r1_terms():
    real, fake = torch.tensor([[0.5], [-1.0]]), torch.tensor([[2.0], [0.1]])
    assert torch.allclose(g_adversarial(fake), torch.log1p(torch.exp(-fake.flatten())))
    assert torch.allclose(d_adversarial(real, fake), torch.log1p(torch.exp(fake.flatten())) +
                          torch.log1p(torch.exp(-real.flatten())))
    x = torch.randn(3, 3, 4, 4, requires_grad=True)
    w = torch.randn(3, 4, 4)
    logits = (x * w).sum(dim=[1, 2, 3])  # d logit / dx = w: ||w||² per sample
    assert torch.allclose(r1_penalty(logits, x), w.square().sum().expand(3), atol=1e-5)


def test_gaussian_pseudo_text_statistics_and_mixing():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(4000, 512, generator=g), dim=1)
    unit = lambda: F.normalize(torch.randn(4000, 512, generator=g), dim=1)  # noqa: E731
    coin = lambda: torch.rand(4000, generator=g)  # noqa: E731
    h = condition(img, None, 1.0, unit())
    cos = (h * img).sum(1)
    assert abs(float(cos.mean()) - 0.32) < 0.01 and torch.allclose(h.norm(dim=1), torch.ones(4000), atol=1e-5)
    txt = F.normalize(torch.randn(4000, 512, generator=g), dim=1)
    sup = condition(img, txt, 0.0, unit())
    assert float((sup * txt).sum(1).mean()) > 0.99 and float((sup * img).sum(1).abs().mean()) < 0.05
    half = condition(img, txt, 0.5, unit(), coin())
    frac = float(((half * img).sum(1) > 0.2).float().mean())
    assert 0.45 < frac < 0.55


def test_clip_view_of_generated_images():
    g = torch.Generator().manual_seed(0)
    draw = lambda lo, hi: int(torch.randint(lo, hi, (), generator=g))  # noqa: E731
    small = clip_view(torch.zeros(2, 3, 32, 32), view_crop(32, 224, 0.5, draw), size=224)
    assert small.shape == (2, 3, 224, 224)
    white = (1.0 - 0.48145466) / 0.26862954  # padding is white (1.0 in [-1, 1])
    assert torch.isclose(small[:, 0], torch.tensor(white)).float().mean() > 0.9
    crop = view_crop(256, 224, 0.5, draw)
    assert 128 <= crop[0] < 256 and crop[1] + crop[0] <= 256 and crop[2] + crop[0] <= 256
    big = clip_view(torch.zeros(2, 3, 256, 256, requires_grad=True), crop, size=224)
    assert big.shape == (2, 3, 224, 224) and big.requires_grad


def test_gradient_flows_through_clip_into_the_generator(env):
    from lafitebench.encoders.clip import load_clip
    from lafitebench.models.generator import Generator

    model, _, _, _ = load_clip(CLIP_NAME, None, env["clip"], "cpu")
    model.requires_grad_(False)
    torch.manual_seed(0)
    G = Generator(z_dim=16, w_dim=16, img_resolution=32, f_dim=64, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 256, "channel_max": 32})
    h = F.normalize(torch.randn(4, 64), dim=1)
    img = G(torch.randn(4, 16), h, noise_mode="const")
    feats = model.encode_image(clip_view(img, (32, 0, 0), size=32))
    contrastive_loss(feats, h, 0.5).mean().backward()
    grads = [p.grad for n, p in G.named_parameters() if n.startswith("synthesis") and p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in model.parameters())  # CLIP stays frozen


# ------------------------------------------------------------------------------------------ training

def _snapshot_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _image_stats(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)), F.avg_pool2d(x, 8).mean(0).flatten()])


def test_tiny_preset_trains_and_its_snapshot_generates(env, tmp_path):
    """The tiny preset end to end: finite losses, D learns to separate real from generated
    (its adversarial loss falls from about 2·log 2, the real-minus-fake logit gap grows), and
    the snapshot loads with load_model and generates through the CLI."""
    from lafitebench.checkpoints.load import load_model

    job = run_train(_cfg(env, tmp_path / "run", kimg=0.4, snap=0.2))
    assert job.kimg == pytest.approx(0.4) and len(job.snapshots) == 3  # at 0 (the start, as StyleGAN2-ADA), 0.2, 0.4
    assert all(math.isfinite(v) for rec in job.losses for v in rec.values())
    n = len(job.losses)
    mean = lambda k, a, b: float(np.mean([rec[k] for rec in job.losses[a:b]]))  # noqa: E731
    assert mean("D_adv", n // 2, n) < mean("D_adv", 0, n // 4) - 0.05
    assert mean("D_real_minus_fake", n // 2, n) > mean("D_real_minus_fake", 0, n // 4) + 0.1
    # G learns: G_ema's images move toward the training images' colour and layout statistics
    # (per-channel mean and std, 8×8 average-pooled mean image). Mutation: G's lr 0, or its optimizer
    # step removed, leaves G_ema at its initial images and fails here.
    data = TrainingData(env["store"])
    real = torch.stack([data.image(i) for i in range(data.n)]).float() / 127.5 - 1
    z = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    h = F.normalize(data.txt_features[data.txt_offsets[:64]], dim=1)

    def gap(snapshot: Path) -> float:
        with torch.no_grad():
            x = load_model(snapshot).G_ema(z, h, noise_mode="const").clamp(-1, 1)
        return float((_image_stats(x) - _image_stats(real)).norm())

    start, end = gap(job.snapshots[0]), gap(job.snapshots[-1])
    assert end < 0.6 * start, f"G_ema did not move toward the data: statistics gap {start:.2f} -> {end:.2f}"
    first, last = load_model(job.snapshots[1]), load_model(job.snapshots[-1])
    assert last.metadata["variant"] == "g" and last.D is not None and last.G is not None
    assert first.metadata["provenance"]["kimg"] == pytest.approx(0.2)
    logs = [json.loads(line) for line in (job.run_dir / "log.jsonl").read_text().splitlines()]
    assert len(logs) == 50 and {"G", "D", "G_adv", "D_adv", "G_pl", "D_r1"} <= set(logs[0]["losses"])
    assert (job.run_dir / "grid-000000400.png").is_file() and (job.run_dir / "config.json").is_file()
    r = runner.invoke(app, ["generate", "--model", str(job.snapshots[-1]), "--split", str(env["store"]), "--num", "4",
                            "--out", str(tmp_path / "gen"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "gen").glob("*.png"))) == 4


def test_resume_equals_an_uninterrupted_run_bit_for_bit(env, tmp_path):
    """Stopped after 3 steps and continued, a run equals an uninterrupted one bit for bit.

    Mutations that fail it (each applied alone in Trainer.load_state_dict): the Adam states not
    loaded; G_ema not loaded; the position (nimg, the sampler's whole state, which with the seed
    also keys every random draw: there is no other RNG state) not restored; the step counter (the
    lazy-regularisation phase) not restored; pl_mean not restored."""
    full = run_train(_cfg(env, tmp_path / "full"))
    part = run_train(_cfg(env, tmp_path / "part", kimg=0.024))
    assert len(part.snapshots) == 2
    again = run_train(_cfg(env, tmp_path / "part", kimg=0.048, resume=True))
    assert again.resumed_from is not None and again.kimg == pytest.approx(0.048)
    a, b = _snapshot_tensors(full.snapshots[-1]), _snapshot_tensors(again.snapshots[-1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # starting again in a finished run folder with the same options resumes (and has nothing to do)
    same = run_train(_cfg(env, tmp_path / "full"))
    assert same.resumed_from is not None and same.snapshots == []


def test_another_runs_folder_is_refused_and_bad_options(env, tmp_path):
    run_train(_cfg(env, tmp_path / "run", kimg=0.008, snap=0.008))
    with pytest.raises(InputError, match="another run's config"):
        run_train(_cfg(env, tmp_path / "run", kimg=0.008, snap=0.008, itd=1.0))
    with pytest.raises(InputError, match="CLIP lafitebench-test-clip-64"):
        run_train(_cfg(env, tmp_path / "b", clip_model="ViT-B-16"))
    with pytest.raises(InputError, match="mixing_prob must be 0"):
        run_train(_cfg(env, tmp_path / "c", variant="supervised", mixing_prob=0.5))
    r = runner.invoke(app, ["train", "--variant", "x", "--data", str(env["store"]), "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "--variant" in r.output
    r = runner.invoke(app, ["train", "--variant", "g", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "e"),
                            "--preset", "tiny", "--metrics", "none"])
    assert r.exit_code == 2


def test_itc_loads_the_frozen_clip_or_fails_before_training(env, tmp_path):
    from lafitebench.errors import WeightsError

    with pytest.raises(WeightsError):
        run_train(_cfg(env, tmp_path / "offline", itc=1.0))
    assert not list((tmp_path / "offline").glob("*.safetensors")) and not (tmp_path / "offline" / "log.jsonl").exists()
    job = run_train(_cfg(env, tmp_path / "itc", itc=1.0, clip_weights=str(env["clip"]), kimg=0.016, snap=0.016,
                         batch_gpu=4))  # with gradient accumulation in rounds of 4
    assert job.snapshots and all("G_itc" in rec for rec in job.losses)


def test_finetune_from_a_snapshot(env, tmp_path):
    base = run_train(_cfg(env, tmp_path / "base", kimg=0.008, snap=0.008))
    job = run_train(_cfg(env, tmp_path / "ft", init=str(base.snapshots[-1]), kimg=0.008, snap=0.008))
    from lafitebench.checkpoints.load import load_model

    meta = load_model(job.snapshots[-1]).metadata
    assert meta["provenance"]["start"]["init"] == str(base.snapshots[-1])


def test_init_from_a_model_of_another_resolution_is_refused(env, tmp_path, shared_dir):
    from lafitebench.assets import zoo
    from lafitebench.checkpoints import convert as convert_mod

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_mod.convert(shared_dir / "fixtures/lafite_official/lafite_tiny64.pkl", tmp_path / "tiny64.safetensors",
                            variant="g")
    with pytest.raises(InputError, match="64² model but the data .* holds 32² images"):
        run_train(_cfg(env, tmp_path / "ft", init=str(model), preset="tiny"))


def _zip_without_text(env, path: Path) -> Path:
    """An official-format zip with image features only (a language-free data set)."""
    from lafitebench.data.store import FeatureStore

    data = FeatureStore(env["store"]).load()
    img_feats = []
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(24):
            name = f"{i:08d}"
            member = f"{name[:5]}/img{name}.png"
            buf = io.BytesIO()
            Image.fromarray(data["images"][i].permute(1, 2, 0).numpy()).save(buf, format="png")
            zf.writestr(member, buf.getvalue())
            img_feats.append([member, data["img_features"][i].tolist()])
        zf.writestr("dataset.json", json.dumps({"labels": None, "clip_img_features": img_feats,
                                                "clip_txt_features": None}))
    return path


def test_language_free_data_without_captions(env, tmp_path):
    z = _zip_without_text(env, tmp_path / "nocap.zip")
    job = run_train(_cfg(env, tmp_path / "g", data=str(z), kimg=0.016, snap=0.016))
    assert job.snapshots
    with pytest.raises(InputError, match="have no text features"):
        run_train(_cfg(env, tmp_path / "s", data=str(z), variant="supervised"))
    with pytest.raises(InputError, match="--mapper|mapper"):
        run_train(_cfg(env, tmp_path / "nn", data=str(z), variant="nn"))


def test_mapper_training_reduces_its_contrastive_loss_and_nn_uses_it(env, tmp_path):
    from lafitebench.models.pseudo_text import load_perturbation_network
    from lafitebench.training.data import TrainingData
    from lafitebench.training.mapper import mapper_loss, train_mapper

    data = TrainingData(env["store"])
    before = train_mapper(data, tmp_path / "m0.pth", steps=1, seed=0, hidden=256, progress=False)
    after = train_mapper(data, tmp_path / "m.pth", steps=60, lr=1e-3, seed=0, hidden=256, progress=False)
    assert mapper_loss(after.network, data) < mapper_loss(before.network, data) - 0.05
    net = load_perturbation_network(tmp_path / "m.pth", feature_dim=64)
    assert net.hidden_dim == 256
    job = run_train(_cfg(env, tmp_path / "nn", variant="nn", mapper=str(tmp_path / "m.pth"), kimg=0.008, snap=0.008))
    from lafitebench.checkpoints.load import load_model

    assert load_model(job.snapshots[-1]).P is not None
    r = runner.invoke(app, ["train-mapper", "--data", str(env["store"]), "--out", str(tmp_path / "cli.pth"),
                            "--steps", "5", "--device", "cpu"])
    assert r.exit_code == 0 and "contrastive loss" in r.stdout


def test_phase_gain_rounds_and_ema_order(env, tmp_path):
    """Inside the loop: a phase's gradient is its interval (gain) times the mean over rounds of
    the phase function's gradient; G_ema uses the images shown before the step (official order)."""
    from lafitebench.jobs.train import _networks
    from lafitebench.training.config import resolve
    from lafitebench.training.loss import g_reg
    from lafitebench.training.training_loop import Trainer, ema_beta

    cfg = resolve(_cfg(env, tmp_path / "run", batch=8, batch_gpu=4))
    data = TrainingData(env["store"])
    G, D, _, _ = _networks(cfg, data, torch.device("cpu"))
    tr = Trainer(cfg, data, G, D, tmp_path / "run", torch.device("cpu"))
    greg = next(p for p in tr.phases if p.name == "Greg")
    assert greg.interval == cfg.pl_interval == 4
    x, img_f, txt_f = data.batch(data.indices(cfg.seed, 0, 8), cfg.seed, cfg.mirror, torch.device("cpu"))
    expected = {n: torch.zeros_like(p) for n, p in tr.G.named_parameters()}
    pl_mean = tr.pl_mean.clone()
    tr.G.requires_grad_(True)
    for r in range(2):  # the two rounds of 4, each with its own draws, averaged, times the interval
        s = slice(4 * r, 4 * r + 4)
        part = g_reg(tr.nets, tr.obj, x[s], img_f[s], txt_f[s], tr._draws("Greg", 4 * r, 4), pl_mean)
        grads = torch.autograd.grad(part.loss.mean(), [p for _, p in tr.G.named_parameters()], allow_unused=True)
        for (n, _), g in zip(tr.G.named_parameters(), grads):
            if g is not None:
                expected[n] += g * 4 / 2
    tr.G.requires_grad_(False)
    captured = {}
    greg.opt.step = lambda: captured.update({n: p.grad.clone() for n, p in tr.G.named_parameters() if p.grad is not None})
    tr._run_phase(greg, x, img_f, txt_f, 0, {})
    assert captured and all(torch.allclose(captured[n], expected[n], rtol=1e-5, atol=1e-8) for n in captured)
    tr = Trainer(cfg, data, G, D, tmp_path / "run", torch.device("cpu"))
    tr.train_step()
    before = {n: p.clone() for n, p in tr.G_ema.named_parameters()}
    tr.train_step()
    beta = ema_beta(cfg.batch, cfg.ema_kimg, cfg.ema_rampup, 8)  # 8 images shown before the second step
    assert all(torch.allclose(p_ema, p.lerp(before[n], beta), rtol=0, atol=1e-7)
               for (n, p_ema), p in zip(tr.G_ema.named_parameters(), tr.G.parameters()))


def test_train_cli_says_what_runs_its_help_and_its_own_interrupt(env, tmp_path, monkeypatch):
    """The first lines name the variant, preset, its cost and the settings; the loss line fits 80
    columns; --help describes every option with its preset values; Ctrl-C says what train keeps."""
    from lafitebench.training.training_loop import loss_line

    r = runner.invoke(app, ["train", "--variant", "g", "--data", str(env["store"]), "--out", str(tmp_path / "run"),
                            "--preset", "tiny", "--kimg", "0.016", "--snap", "0.008", "--device", "cpu",
                            "--no-tensorboard"], terminal_width=80)
    assert r.exit_code == 0, r.output
    assert "train: variant g, preset tiny (32², 0.4 kimg" in r.output and "batch 8" in r.output
    assert "kimg 0.016  G " in r.output  # the loss line at the last snapshot
    wide = {"G": 123456.789, "D": -98765.4321, "D_real_minus_fake": -1234.5, "G_pl": 99999.9, "D_r1": 12345.6}
    assert len(loss_line(25_000_000, wide, 123456.7)) < 80
    import typer

    r = runner.invoke(app, ["train", "--help"], terminal_width=80)
    assert r.exit_code == 0 and "--contrastive" in r.output
    train = typer.main.get_command(app).commands["train"]  # the help texts --help renders (in Rich panels)
    text = " ".join(" ".join([train.help or "", *((p.help or "") for p in train.params)]).split())
    for phrase in ("g: Gaussian pseudo-text", "official: the released exp(S/τ) logits", "D's semantic term",
                   "Adam learning rate", "Seeds the networks", "auto, cpu, cuda", "CLIP backbone of the data's",
                   "open_clip pretrained tag", "Local CLIP weights file", "tiny 0.4", "coco-language-free 25000",
                   "tiny: 32², 0.4 kimg: about"):
        assert phrase in text, phrase
    from lafitebench.cli import train as train_cli

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "run_train", interrupted)
    r = runner.invoke(app, ["train", "--data", str(env["store"]), "--out", str(tmp_path / "x")])
    assert r.exit_code == 130 and "training states" in r.output and "reference statistics" not in r.output


def test_tensorboard_event_files_hold_the_losses(env, tmp_path):
    """With tensorboard installed, the run writes event files under tb/ that TensorBoard reads
    back: every logged loss as a scalar, one point per step, steps (images shown) increasing."""
    pytest.importorskip("tensorboard", reason="tensorboard is a test extra; without it see the next test")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    job = run_train(_cfg(env, tmp_path / "run", kimg=0.024, snap=0.024, tensorboard=True))
    acc = EventAccumulator(str(job.run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"Loss/G", "Loss/D", "Loss/G_adv", "Loss/D_adv", "Timing/sec_per_kimg"} <= tags
    events = acc.Scalars("Loss/G")
    assert [e.step for e in events] == [8, 16, 24]
    assert [e.value for e in events] == pytest.approx([rec["G"] for rec in job.losses], rel=1e-6)


def test_without_tensorboard_the_jsonl_log_alone_and_one_line(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    job = run_train(_cfg(env, tmp_path / "run", kimg=0.008, snap=0.008, tensorboard=True, progress=True))
    err = capsys.readouterr().err
    assert err.count("tensorboard is not installed") == 1 and "log.jsonl" in err
    assert not (job.run_dir / "tb").exists() and (job.run_dir / "log.jsonl").is_file()


def test_mapper_training_continues_after_an_interrupt(env, tmp_path, monkeypatch):
    """Ctrl-C during mapper training keeps its progress (saved every save_every steps); the same
    call continues and ends with the network an uninterrupted run gives, bit for bit."""
    from lafitebench.training.data import TrainingData
    from lafitebench.training.mapper import train_mapper

    data = TrainingData(env["store"])
    full = train_mapper(data, tmp_path / "full.pth", steps=30, lr=1e-3, seed=0, hidden=64, progress=False, save_every=10)
    real_step, calls = torch.optim.Adam.step, {"n": 0}

    def interrupt_at_25(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupt_at_25)
    with pytest.raises(KeyboardInterrupt):
        train_mapper(data, tmp_path / "m.pth", steps=30, lr=1e-3, seed=0, hidden=64, progress=False, save_every=10)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert not (tmp_path / "m.pth").exists() and (tmp_path / "m.pth.state").is_file()
    calls["n"] = 0
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (calls.__setitem__("n", calls["n"] + 1),
                                                                         real_step(self, *a, **k))[1])
    again = train_mapper(data, tmp_path / "m.pth", steps=30, lr=1e-3, seed=0, hidden=64, progress=False, save_every=10)
    assert calls["n"] == 10  # continued from the state saved at step 20
    assert not (tmp_path / "m.pth.state").exists()
    a, b = full.network.state_dict(), again.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_snapshot(env, tmp_path, monkeypatch):
    from lafitebench.training import loss as loop
    from lafitebench.training.training_loop import TrainingDiverged

    out = tmp_path / "run"
    run_train(_cfg(env, out, kimg=0.016, snap=0.016))
    before = {p.name: p.read_bytes() for p in out.glob("*.safetensors")}
    real = loop.g_adversarial
    monkeypatch.setattr(loop, "g_adversarial", lambda logits: real(logits) * float("nan"))
    with pytest.raises(TrainingDiverged, match="step 2"):
        run_train(_cfg(env, out, kimg=0.032, snap=0.016, resume=True))
    assert {p.name: p.read_bytes() for p in out.glob("*.safetensors")} == before


def _weights(path: Path) -> dict:
    """G, G_ema and D parameters of a native snapshot (not the w_avg buffer: each process tracks
    its own latents there, as under the official DDP with broadcast_buffers=False)."""
    return {k: v for k, v in _snapshot_tensors(path).items() if not k.endswith("w_avg")}


@pytest.mark.slow
def test_two_processes_equal_one_process_with_rounds(env, tmp_path):
    """2 gloo processes of 4 images (--batch 8) and 1 process with --batch 8 --batch-gpu 4 give the
    same G, G_ema and D after 2 steps (every draw is keyed by the global sample position, gradients
    are averaged over rounds and ranks); each rank trains on its half of every global batch.
    Both sides run one thread per process: a different thread count changes float32 rounding, which
    Adam turns into differences of about 1e-4 after a few steps; at the same count they are bit for bit equal.
    Mutation: removing the all-reduce averaging in _average_gradients fails this test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run_train(_cfg(env, tmp_path / "one", kimg=0.016, snap=0.016, batch=8, batch_gpu=4))
    finally:
        torch.set_num_threads(threads)
    logs_one = [json.loads(line) for line in (one.run_dir / "log.jsonl").read_text().splitlines()]
    torchrun = shutil.which("torchrun") or pytest.fail("torchrun not found")
    args = {"clip_config": str(env["clip_config"]), "delay_rank1": 1.0,
            "train": {"variant": "g", "data": str(env["store"]), "out": str(tmp_path / "two"), "preset": "tiny",
                      "device": "cpu", "kimg": 0.016, "snap": 0.016, "metrics": "none", "progress": False,
                      "tensorboard": False, "batch": 8}}
    (tmp_path / "args.json").write_text(json.dumps(args))
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(DRIVER), str(tmp_path / "args.json")],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    logs_two = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert len(logs_two) == len(logs_one) == 2
    for a, b in zip(logs_one, logs_two):
        r0, r1 = b["rank_images"]
        assert len(r0) == len(r1) == 4 and r0 + r1 == a["rank_images"][0]  # the global batch, split in rank order
        assert a["losses"] == pytest.approx(b["losses"], rel=1e-5)  # logged over the whole batch, all ranks
    config = json.loads((tmp_path / "two" / "config.json").read_text())["config"]
    assert config["batch"] == 8 and config["batch_gpu"] == 4
    a, b = _weights(one.snapshots[-1]), _weights(tmp_path / "two" / one.snapshots[-1].name)
    assert a.keys() == b.keys() and len(a) > 100
    worst = max(float((a[k] - b[k]).abs().max()) / max(float(a[k].abs().max()), 1e-12) for k in a)
    assert worst <= 1e-5, f"1 process and 2 processes differ by {worst:.2e} (relative)"
    start = _weights(one.snapshots[0])
    moved = [k for k in a if k.startswith("G.") and not torch.equal(a[k], start[k])]
    assert len(moved) > 20  # G did train: the equality is not that of two untouched networks


def test_gathered_contrastive_gradient_equals_the_whole_batch():
    """--gather: two gloo processes each holding half the batch, negatives gathered, gradients
    averaged over ranks, equal the contrastive gradient over the whole batch on one process."""
    import torch.multiprocessing as mp

    from lafitebench.training.loss import Objective, contrastive_loss

    torch.manual_seed(0)
    a, b, w = torch.randn(8, 16), torch.randn(8, 16), torch.randn(16, 16)
    obj = Objective(temp=0.5, lam=0.3, contrastive="official")
    weight = w.clone().requires_grad_(True)
    contrastive_loss(a @ weight, b, obj.temp, obj.lam, obj.contrastive).mean().backward()
    with tempfile.TemporaryDirectory() as d:
        port = _free_port()
        mp.spawn(_gather_worker, args=(2, port, a, b, w, obj, d), nprocs=2, join=True)
        got = torch.load(Path(d) / "grad0.pt")
        assert torch.allclose(got, torch.load(Path(d) / "grad1.pt"))
    assert torch.allclose(got, weight.grad, rtol=1e-5, atol=1e-7), float((got - weight.grad).abs().max())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank, world, port, a, b, w, obj, folder):
    import torch.distributed as dist

    from lafitebench.training.training_loop import _average_gradients, gathered_contrast

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        weight = torch.nn.Parameter(w.clone())
        holder = torch.nn.Module()
        holder.weight = weight
        rows = slice(rank * 4, rank * 4 + 4)
        gathered_contrast(obj, world)(a[rows] @ weight, b[rows]).mean().backward()
        _average_gradients(holder, world)
        torch.save(weight.grad, Path(folder) / f"grad{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_only_rank_0_decides_about_the_run_folder(env, tmp_path, monkeypatch):
    """A slower rank must never look at the run folder rank 0 is writing: it takes rank 0's
    decision (here: a folder that would look foreign to it is accepted), and a refusal reaches it."""
    from lafitebench.jobs import train as job
    from lafitebench.runtime import distributed
    from lafitebench.training.config import resolve
    from lafitebench.training.data import TrainingData

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "config.json.tmp-12345").write_text("{")  # what rank 0 may be writing at that moment
    cfg = resolve(_cfg(env, busy))
    data = TrainingData(env["store"])
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    monkeypatch.setattr(distributed, "broadcast_object", lambda obj: ("ok", str(busy), None))
    assert job._prepare_run(cfg, data) == (busy, None)
    monkeypatch.setattr(distributed, "broadcast_object", lambda obj: ("refused", "run folder x is not empty", "out"))
    with pytest.raises(InputError, match="not empty") as e:
        job._prepare_run(cfg, data)
    assert e.value.param == "out"


@pytest.mark.slow
@pytest.mark.real_assets
def test_snapshot_fid_with_the_real_inception(env, tmp_path, shared_dir, monkeypatch):
    monkeypatch.setenv("LAFITEBENCH_WEIGHTS", str(shared_dir / "assets" / "inception"))
    job = run_train(_cfg(env, tmp_path / "fid", kimg=0.016, snap=0.016, metrics="fid", fid_num=16))
    recs = [json.loads(line) for line in (job.run_dir / "metric-fid.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and recs[0]["kimg"] == 0 and recs[1]["n"] == 16 and math.isfinite(recs[0]["fid"]) and recs[0]["fid"] > 0
    assert sys.modules.get("lafitebench") is not None and np.isfinite(job.fid[0]["fid"])
