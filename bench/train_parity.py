"""The official LAFITE training loop beside ``lafitebench train``: same data, same configuration,
same kimg, several seeds each; s/kimg of both (measured in this run, alternating) and G_ema's FID
at each snapshot for both, as a table (JSON + Markdown) and one plot.

The official ``training/training_loop.py`` from ``--official-src`` runs on the CPU with the
stand-ins its README lists (tests/helpers/official.py): a stub ``clip`` whose ``load`` returns a
small random open_clip model (no CLIP weights here; ``--itc 0`` on both sides, so it only feeds
the official loop's preview grid), the NN mapper file, fp32 networks; plus, for the CPU, a
``torch`` seen by that module whose ``device('cuda', rank)`` is the CPU and whose ``cuda`` timing
and memory calls are no-ops, ``Tensor.pin_memory`` as identity, and ``Sampler.__init__`` taking
the data set argument that torch 2.x dropped (the official ``InfiniteSampler`` passes it).

Data: the 80 real COCO train2017 images of ``../shared/assets/coco/coco_mini`` with their
captions, prepared by ``lafitebench data prepare`` (the same small random CLIP) at 32² and
exported as the official zip, which both loops read. Configuration: the ``tiny`` preset's
architecture and optimiser with the official objective forms (exp-logit contrastive, batch-summed
semantic term), Lafite-G (mixing 1), itd 5, itc 0. FID: each snapshot's G_ema through the metric
engine against the 80 training images (real pool3 Inception, ``LAFITEBENCH_WEIGHTS``), the same
latents and conditions (each image's first caption feature) for both.

Usage:
    LAFITEBENCH_WEIGHTS=../shared/assets/inception python bench/train_parity.py \\
        --official-src ../shared/reference/lafite-official --kimg 6 --snap 2 --seeds 0,1,2 --out runs/parity
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers.official import official_modules  # noqa: E402
from helpers.tiny_clip import CLIP_NAME, tiny_clip, tiny_clip_224  # noqa: E402

TINY = dict(resolution=32, batch=8, z_dim=64, mapping_layers=2, channel_base=512, channel_max=64, lr=0.0025,
            gamma=0.05, r1_interval=4, pl_interval=4, pl_weight=2.0, style_mixing=0.9, ema_kimg=0.01,
            ema_rampup=0.05, itd=5.0, itc=0.0, temp=0.5, lam=0.0)


def prepare(work: Path, shared: Path) -> tuple[Path, Path, Path]:
    """The official zip of the real COCO images (and the CLIP files used to make it)."""
    from lafitebench.data.store import FeatureStore, PrepareConfig, export_official, prepare_store

    cfg_path, weights = tiny_clip(work)
    store = work / "store"
    if not (work / "coco32.zip").is_file():
        prepare_store(PrepareConfig(source="coco", data_root=str(shared / "assets/coco/coco_mini"), split="train2017",
                                    out=str(store), resolution=TINY["resolution"], clip_model=CLIP_NAME,
                                    clip_weights=str(weights), device="cpu", progress=False))
        export_official(FeatureStore(store), work / "coco32.zip")
    return work / "coco32.zip", cfg_path, weights


def run_ours(zip_path: Path, out: Path, seed: int, kimg: float, snap: float) -> float:
    """``lafitebench train`` on the zip; returns the wall time."""
    from lafitebench.jobs.train import run_train
    from lafitebench.training.config import TrainConfig

    t = time.perf_counter()
    run_train(TrainConfig(variant="g", data=str(zip_path), out=str(out), preset="tiny", kimg=kimg, snap=snap,
                          seed=seed, contrastive="official", semantic_term="official", itc=TINY["itc"],
                          itd=TINY["itd"], metrics="none", device="cpu", progress=False, tensorboard=False))
    return time.perf_counter() - t


class _Event:
    def record(self, *a):
        return None

    def synchronize(self):
        return None

    def elapsed_time(self, other):
        return 0.0


def _cpu_torch() -> types.ModuleType:
    """``torch`` as the official training loop should see it on a CPU."""
    proxy = types.ModuleType("torch")
    proxy.__dict__.update({k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    proxy.device = lambda *a, **k: torch.device("cpu")
    proxy.cuda = types.SimpleNamespace(Event=lambda **k: _Event(), current_stream=lambda *a: None,
                                       max_memory_allocated=lambda *a: 0, reset_peak_memory_stats=lambda *a: None)
    return proxy


def run_official(off, zip_path: Path, out: Path, seed: int, kimg: float, snap: float) -> float:
    """The official ``training_loop`` on the zip (CPU stand-ins); returns the wall time."""
    import training.training_loop as tl  # type: ignore[import-not-found]

    t_ = TINY
    kwargs = dict(
        run_dir=str(out),
        training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path=str(zip_path), use_labels=False,
                                 max_size=None, xflip=True, resolution=t_["resolution"], use_clip=True, ratio=1.0),
        data_loader_kwargs=dict(pin_memory=False, num_workers=0),
        G_kwargs=dict(class_name="training.networks.Generator", z_dim=t_["z_dim"], w_dim=t_["z_dim"],
                      m_layer_features=64, m_num_layers=8, mapping_kwargs=dict(num_layers=t_["mapping_layers"]),
                      synthesis_kwargs=dict(channel_base=t_["channel_base"], channel_max=t_["channel_max"],
                                            num_fp16_res=0, conv_clamp=256, change=256, f_dim=64)),
        D_kwargs=dict(class_name="training.networks.Discriminator", use_norm=False, use_fts=True,
                      channel_base=t_["channel_base"], channel_max=t_["channel_max"], num_fp16_res=0, conv_clamp=256,
                      block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=4, f_dim=64)),
        G_opt_kwargs=dict(class_name="torch.optim.Adam", lr=t_["lr"], betas=[0, 0.99], eps=1e-8),
        D_opt_kwargs=dict(class_name="torch.optim.Adam", lr=t_["lr"], betas=[0, 0.99], eps=1e-8),
        augment_kwargs=None,
        loss_kwargs=dict(class_name="training.loss.StyleGAN2Loss", r1_gamma=t_["gamma"],
                         style_mixing_prob=t_["style_mixing"], pl_weight=t_["pl_weight"]),
        metrics=[], random_seed=seed, num_gpus=1, rank=0, batch_size=t_["batch"], batch_gpu=t_["batch"],
        ema_kimg=t_["ema_kimg"], ema_rampup=t_["ema_rampup"], G_reg_interval=t_["pl_interval"],
        D_reg_interval=t_["r1_interval"], total_kimg=kimg, kimg_per_tick=snap, image_snapshot_ticks=None,
        network_snapshot_ticks=1, f_dim=64, d_use_norm=False, d_use_fts=True, mixing_prob=1.0, lam=t_["lam"],
        temp=t_["temp"], gather=False, itd=t_["itd"], itc=t_["itc"], iid=0.0, iic=0.0)
    out.mkdir(parents=True, exist_ok=True)
    saved = tl.torch, torch.Tensor.pin_memory, torch.utils.data.Sampler.__init__
    tl.torch = _cpu_torch()
    torch.Tensor.pin_memory = lambda self, *a, **k: self
    # the official InfiniteSampler calls Sampler.__init__(dataset), an argument torch 2.x dropped
    torch.utils.data.Sampler.__init__ = lambda self, *a, **k: None
    t = time.perf_counter()
    try:
        tl.training_loop(**kwargs)
    finally:
        tl.torch, torch.Tensor.pin_memory, torch.utils.data.Sampler.__init__ = saved
    return time.perf_counter() - t


def image_stats(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and std and the 8×8-pooled mean image of images in [-1, 1]."""
    return torch.cat([x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)),
                      torch.nn.functional.avg_pool2d(x, 8).mean(0).flatten()])


def snapshot_fids(run: Path, pattern: str, zip_path: Path, extractor) -> list[tuple[float, float, float]]:
    """(kimg, FID, statistics gap) of every snapshot in ``run`` (our native files or the official
    pickles, both loaded by lafitebench's safe loader) against the training images. The gap — the
    distance between G_ema's and the data's colour and layout statistics — is a lower-variance
    learning signal than an FID on 80 images."""
    from lafitebench.data.tensor_set import CallableImageSet
    from lafitebench.checkpoints.load import load_model
    from lafitebench.metrics.config import EvalConfig
    from lafitebench.metrics.engine import evaluate
    from lafitebench.models.sampling import to_uint8
    from lafitebench.training.data import TrainingData

    data = TrainingData(zip_path)
    n = data.n
    g = torch.Generator().manual_seed(54321)
    z = torch.randn(n, TINY["z_dim"], generator=g)
    h = torch.nn.functional.normalize(data.txt_features[data.txt_offsets[:-1]], dim=1)
    real_images = torch.stack([data.image(i) for i in range(n)]).float() / 127.5 - 1
    real = CallableImageSet(f"training images ({n})", n, data.resolution,
                            lambda idx: torch.stack([data.image(i) for i in idx]), key=f"{zip_path}:{n}",
                            kind="training-data")
    out = []
    for path in sorted(run.glob(pattern)):
        G = load_model(path, variant="g").G_ema.eval()
        if path.suffix == ".pkl":  # official: network-snapshot-<kimg//1>.pkl, its images from the log
            kimg = _official_kimg(run, path)
        else:
            kimg = int(path.stem.split("-")[-1]) / 1000

        def fake(idx, G=G):
            with torch.no_grad():
                return to_uint8(G(z[idx], h[idx], noise_mode="const")).cpu()

        gen = CallableImageSet(f"{path.name}", n, data.resolution, fake, key=f"{path}:{path.stat().st_mtime}",
                               kind="generated")
        res = evaluate(gen, real, EvalConfig(metrics=["fid"], fid_blur=[0], resolution=data.resolution,
                                             progress=False, device="cpu"), extractor=extractor)
        with torch.no_grad():
            x = G(z, h, noise_mode="const").clamp(-1, 1)
        gap = float((image_stats(x) - image_stats(real_images)).norm())
        out.append((kimg, float(res.table["value"].iloc[0]), gap))
    return out


def _official_kimg(run: Path, pkl: Path) -> float:
    """The kimg of an official snapshot: the tick of stats.jsonl with the same kimg // 1."""
    k = int(pkl.stem.split("-")[-1])
    ticks = [json.loads(line)["Progress/kimg"]["mean"] for line in (run / "stats.jsonl").read_text().splitlines()]
    return min((t for t in ticks if int(t) == k), default=float(k))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-src", required=True, type=Path)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--kimg", type=float, default=6.0)
    ap.add_argument("--snap", type=float, default=2.0, help="kimg between snapshots (whole kimg: official names)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rescore", action="store_true", help="score the runs already in --out again (no training)")
    args = ap.parse_args()
    from lafitebench.encoders.inception import load_inception

    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    zip_path, cfg_path, _ = prepare(work, args.shared)
    extractor = load_inception(None, device="cpu", logits=False, progress=False)
    clip = tiny_clip_224(work)
    if args.rescore:
        old = json.loads((work / "train_parity.json").read_text())["rows"]
        rows = []
        for r in old:
            run = work / f"{r['impl']}-seed{r['seed']}"
            pattern = "network-snapshot-*.safetensors" if r["impl"] == "lafitebench" else "network-snapshot-*.pkl"
            rows.append({**r, "fid": snapshot_fids(run, pattern, zip_path, extractor)})
        (work / "train_parity.json").write_text(json.dumps({**json.loads((work / "train_parity.json").read_text()),
                                                            "rows": rows}, indent=1))
        write_report(work, rows)
        return
    rows = []
    with official_modules(args.official_src, clip, work / "official-cwd") as off:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for impl in ("lafitebench", "official"):
                run = work / f"{impl}-seed{seed}"
                shutil.rmtree(run, ignore_errors=True)  # a fresh run: both timed from the start
                if impl == "lafitebench":
                    secs = run_ours(zip_path, run, seed, args.kimg, args.snap)
                    fids = snapshot_fids(run, "network-snapshot-*.safetensors", zip_path, extractor)
                else:
                    secs = run_official(off, zip_path, run, seed, args.kimg, args.snap)
                    fids = snapshot_fids(run, "network-snapshot-*.pkl", zip_path, extractor)
                rows.append({"impl": impl, "seed": seed, "seconds": secs, "s_per_kimg": secs / args.kimg, "fid": fids})
                print(json.dumps(rows[-1]), flush=True)
                (work / "train_parity.json").write_text(json.dumps(
                    {"kimg": args.kimg, "snap": args.snap, "config": TINY, "threads": torch.get_num_threads(),
                     "torch": torch.__version__, "rows": rows}, indent=1))
    write_report(work, rows)


def write_report(work: Path, rows: list[dict]) -> None:
    """Markdown table (FID by kimg, mean ± std over seeds; s/kimg and their ratio) and a PNG plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lines = ["| implementation | seeds | s / kimg | FID by kimg (mean ± std over seeds) | statistics gap by kimg |",
             "|---|---|---|---|---|"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    speed = {}
    for impl in ("official", "lafitebench"):
        rs = [r for r in rows if r["impl"] == impl]
        if not rs:
            continue
        speed[impl] = float(np.mean([r["s_per_kimg"] for r in rs]))
        n = min(len(r["fid"]) for r in rs)
        k = np.array([[r["fid"][i][0] for i in range(n)] for r in rs]).mean(0)
        f = np.array([[r["fid"][i][1] for i in range(n)] for r in rs])
        gap = np.array([[r["fid"][i][2] if len(r["fid"][i]) > 2 else np.nan for i in range(n)] for r in rs])
        sd = (lambda a: a.std(0, ddof=1)) if len(rs) > 1 else (lambda a: np.zeros(a.shape[1]))
        cells = ", ".join(f"{k[i]:.0f}: {f[:, i].mean():.1f} ± {sd(f)[i]:.1f}" for i in range(n))
        gaps = ", ".join(f"{k[i]:.0f}: {gap[:, i].mean():.2f} ± {sd(gap)[i]:.2f}" for i in range(n))
        lines.append(f"| {impl} | {len(rs)} | {speed[impl]:.1f} | {cells} | {gaps} |")
        ax.errorbar(k, f.mean(0), yerr=sd(f), marker="o", capsize=3, label=impl)
        ax2.errorbar(k, gap.mean(0), yerr=sd(gap), marker="o", capsize=3, label=impl)
    if len(speed) == 2:
        lines.append(f"\nlafitebench / official time per kimg: {speed['lafitebench'] / speed['official']:.3f}")
    ax.set_xlabel("kimg")
    ax.set_ylabel("FID of G_ema vs the 80 training images")
    ax.set_title("tiny LAFITE-G on 80 real COCO images, CPU")
    ax.legend()
    ax2.set_xlabel("kimg")
    ax2.set_ylabel("G_ema vs data: colour/layout statistics gap")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(work / "train_parity.png", dpi=120)
    (work / "train_parity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("LAFITEBENCH_OFFLINE", "1")
    main()
