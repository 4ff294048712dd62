"""Training cost and a training curve.

Usage::

    python bench/train_bench.py speed --steps 2                  # s/kimg and peak memory at 64² and 256²
    python bench/train_bench.py speed --resolutions 64 --device cuda
    LAFITEBENCH_WEIGHTS=../shared/assets/inception \\
        python bench/train_bench.py curve --coco-root ../shared/assets/coco/coco_mini --kimg 4

``speed``: the official architecture (channel_base 32768, channel_max 512, 8 mapping layers,
z = w = f_dim = 512, style structure 2 everywhere) at each resolution, batch ``--batch``, every
phase of a training step (G main + path length, D main + R1: the lazy-regularisation intervals
are set to 1 so each timed step pays for all four), itc off (no CLIP weights here; pass
``--itc`` with real CLIP weights to include it). Data: random images and unit features in a
feature store written by this script. Baseline in the same run: the bare forward + backward of
G and D on the same batch (what any GAN step costs before LAFITE's terms), so the ratio shows
what the objective adds. The official training loop is not run: it needs the OpenAI ``clip``
package and the ViT-B/32 download (no internet here) and CUDA-only custom ops.

``curve``: the ``tiny`` preset on real COCO images (``coco`` reader, ``--split``), prepared
at 32² with a random-weight CLIP (features only steer the condition; FID does not use them),
trained for ``--kimg`` with a snapshot FID of G_ema against the training images every
``--snap`` kimg (real Inception weights from ``LAFITEBENCH_WEIGHTS``). Prints FID per kimg.
``--synthetic N``: instead, N generated smooth two-colour gradients (a control that a working
GAN loop fits within a kimg or two).
JSON to ``bench/out/train_bench_<part>.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lafitebench.io.files import write_json_atomic  # noqa: E402

CLIP_NAME = "lafitebench-bench-clip-64"
CLIP_CONFIG = {"embed_dim": 64,
               "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def _random_store(root: Path, resolution: int, n: int, f_dim: int) -> Path:
    """A feature store of ``n`` random images with random unit features (timing only)."""
    from safetensors.torch import save_file

    from lafitebench.data.store import STORE_FILE, STORE_FORMAT, STORE_VERSION

    g = torch.Generator().manual_seed(0)
    (root / "shards").mkdir(parents=True)
    save_file({"images": torch.randint(0, 256, (n, 3, resolution, resolution), dtype=torch.uint8, generator=g),
               "img_features": torch.randn(n, f_dim, generator=g), "txt_features": torch.randn(n, f_dim, generator=g),
               "txt_offsets": torch.arange(n + 1, dtype=torch.int64)}, str(root / "shards" / "shard-00000.safetensors"),
              metadata={"rows": json.dumps([{"idx": i, "source": "random", "mode": "RGB", "captions": ["random"]}
                                            for i in range(n)]), "counts": "{}"})
    (root / STORE_FILE).write_text(json.dumps({
        "format": STORE_FORMAT, "version": STORE_VERSION, "status": "complete",
        "identity": {"resolution": resolution, "clip": {"model": None, "f_dim": f_dim}}}))
    return root


def speed(args: argparse.Namespace) -> dict:
    from lafitebench.jobs.train import _networks
    from lafitebench.runtime.device import resolve_device
    from lafitebench.training.config import TrainConfig, resolve
    from lafitebench.training.data import TrainingData
    from lafitebench.training.training_loop import Trainer

    device = resolve_device(args.device)
    rows = []
    for res in [int(r) for r in args.resolutions.split(",")]:
        root = Path(tempfile.mkdtemp(prefix="lafitebench-trainbench-"))
        try:
            store = _random_store(root / "store", res, max(args.batch * 4, 16), 512)
            cfg = resolve(TrainConfig(variant="g", data=str(store), out=str(root / "run"), preset="coco-language-free",
                                      batch=args.batch, itc=args.itc, r1_interval=1, pl_interval=1, metrics="none",
                                      device=str(device), progress=False))
            data = TrainingData(store)
            G, D, _, _ = _networks(cfg, data, device)
            trainer = Trainer(cfg, data, G, D, root / "run", device)
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            trainer.train_step()  # warm-up
            step_t, bare_t = [], []
            for _ in range(args.steps):
                sync()
                t = time.perf_counter()
                trainer.train_step()
                sync()
                step_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                _bare(trainer, data, args.batch, device)
                sync()
                bare_t.append(time.perf_counter() - t)
            med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
            peak = (torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated") if device.type == "cuda" \
                else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS")
            rows.append({"resolution": res, "batch": args.batch, "step_s": med(step_t), "bare_fwd_bwd_s": med(bare_t),
                         "s_per_kimg": med(step_t) / args.batch * 1000, "objective_over_bare": med(step_t) / med(bare_t),
                         "peak_memory_mib": peak[0], "peak_kind": peak[1], "steps": args.steps,
                         "params_G": sum(p.numel() for p in G.parameters()),
                         "params_D": sum(p.numel() for p in D.parameters())})
            print(json.dumps(rows[-1]), flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {"part": "speed", "device": str(device), "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "itc": args.itc, "rows": rows}


def _bare(trainer, data, batch: int, device: torch.device) -> None:
    """One forward + backward of G and D on a batch, no LAFITE terms, no regularisation."""
    picks = data.indices(0, 0, batch)
    x, img_f, _ = data.batch(picks, 0, False, device)
    h = torch.nn.functional.normalize(img_f, dim=1)
    z = torch.randn(batch, trainer.G.z_dim, device=device)
    trainer.G.requires_grad_(True)
    trainer.D.requires_grad_(True)
    img = trainer.G(z, h, noise_mode="random")
    (trainer.D(img, h)[0].sum() + trainer.D(x, h)[0].sum()).backward()
    trainer.G.zero_grad(set_to_none=True)
    trainer.D.zero_grad(set_to_none=True)
    trainer.G.requires_grad_(False)
    trainer.D.requires_grad_(False)


def curve(args: argparse.Namespace) -> dict:
    import open_clip

    from lafitebench.data.store import PrepareConfig, prepare_store
    from lafitebench.jobs.train import run_train
    from lafitebench.training.config import TrainConfig

    root = Path(tempfile.mkdtemp(prefix="lafitebench-traincurve-"))
    try:
        cfg = root / f"{CLIP_NAME}.json"
        cfg.write_text(json.dumps(CLIP_CONFIG))
        open_clip.add_model_config(cfg)
        torch.manual_seed(0)
        torch.save(open_clip.create_model(CLIP_NAME).state_dict(), root / "clip.pt")
        source = dict(source="coco", data_root=args.coco_root, split=args.split)
        if args.synthetic:
            source = dict(source=str(_gradients(root / "synthetic", args.synthetic)))
        prepare_store(PrepareConfig(**source, out=str(root / "store"), resolution=32, clip_model=CLIP_NAME,
                                    clip_weights=str(root / "clip.pt"), device="cpu", progress=False))
        t = time.perf_counter()
        job = run_train(TrainConfig(variant="g", data=str(root / "store"), out=str(root / "run"), preset="tiny",
                                    kimg=args.kimg, snap=args.snap, metrics="fid", fid_num=args.fid_num, device="cpu",
                                    seed=args.seed, progress=True, tensorboard=False))
        seconds = time.perf_counter() - t
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for rec in job.fid:
        print(f"kimg {rec['kimg']:.2f}  FID {rec['fid']:.1f}  (G_ema vs {rec['n']} training images)")
    return {"part": "curve", "data": f"synthetic gradients ({args.synthetic})" if args.synthetic else
            f"coco {args.coco_root} {args.split}", "kimg": args.kimg, "snap": args.snap,
            "fid_num": args.fid_num, "seconds": seconds, "fid": job.fid, "torch": torch.__version__}


def _gradients(folder: Path, n: int) -> Path:
    """``n`` 32² images of smooth two-colour gradients with a caption file each (seeded)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    for i in range(n):
        c0, c1, a = rng.integers(0, 256, 3), rng.integers(0, 256, 3), rng.uniform(0, 2 * np.pi)
        t = ((np.cos(a) * xx + np.sin(a) * yy + 1.5) / 3)[..., None]
        Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8)).save(folder / f"{i:04d}.png")
        (folder / f"{i:04d}.txt").write_text("a smooth colour gradient\n")
    return folder


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=("speed", "curve"))
    p.add_argument("--resolutions", default="64,256")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--itc", type=float, default=0.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--coco-root", default=str(REPO.parent / "shared" / "assets" / "coco" / "coco_mini"))
    p.add_argument("--split", default="train2017")
    p.add_argument("--kimg", type=float, default=4.0)
    p.add_argument("--snap", type=float, default=0.5)
    p.add_argument("--fid-num", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic", type=int, default=0, help="curve: N synthetic gradient images instead of COCO")
    args = p.parse_args(argv)
    result = speed(args) if args.part == "speed" else curve(args)
    write_json_atomic(REPO / "bench" / "out" / f"train_bench_{args.part}.json", result)
    return result


if __name__ == "__main__":
    main()
