"""End-to-end generation throughput (text features → G → uint8 → PNG write) beside the bare
generator forward, both measured in the same run.

Usage::

    python bench/generate_bench.py                      # 256², the official configuration, CPU
    python bench/generate_bench.py --num 64 --rounds 3 --device cuda

What is timed, alternating ``--rounds`` times so both figures come from the same minutes:

- ``bare``: ``G_ema(z, h)`` on precomputed latents and text features, batch ``--batch``, nothing
  else (noise 'random' from one generator per batch);
- ``pipeline``: what ``lafitebench generate`` does per sample, through the library's own
  functions: the captions through the CLIP text encoder (uncached: a fresh cache folder each
  round), per-sample seeded latents and noise, the official quantisation, one atomic PNG write per
  image. Model and CLIP loading are one-time costs, reported separately (``setup``), and one full
  ``run_generate`` call is timed too (``run_generate total``).

The network is the official 256² configuration (z = w = f_dim = 512, channel_base 32768,
channel_max 512, 8 mapping layers) with random weights, saved as a native file; the CLIP text
encoder is open_clip ViT-B-32 with random weights (timing does not depend on weight values; no
weights are downloaded). The target: pipeline / bare ≤ 1.15 on CPU. JSON to ``--out``.
"""
from __future__ import annotations

import argparse
import os
import platform
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

CAPTIONS = ["a man riding a wave on top of a surfboard", "a plate of food with broccoli and rice",
            "two giraffes standing next to each other in a field", "a red double decker bus on a city street",
            "a cat sleeping on a laptop keyboard", "a kitchen with wooden cabinets and a white stove",
            "a group of people flying kites on a beach", "a bowl of fruit on a wooden table"]


def _setup(root: Path, args: argparse.Namespace) -> dict:
    """A native 256² model, random ViT-B-32 text weights and a caption file under ``root``."""
    import open_clip

    from lafitebench.checkpoints.native import save_native
    from lafitebench.assets.backbones import clip_config
    from lafitebench.models.generator import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=512, w_dim=512, img_resolution=args.resolution, f_dim=512,
                  mapping_kwargs={"num_layers": 8},
                  synthesis_kwargs={"channel_base": 32768, "channel_max": 512, "conv_clamp": 256, "change": 256}).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    model = save_native(root / "g256.safetensors", {"G_ema": G},
                        {"variant": "g", "resolution": args.resolution, "clip": clip_config("ViT-B/32"),
                         "provenance": {"note": "random weights for timing (bench/generate_bench.py)"}})
    clip_file = root / "random-vit-b-32.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), clip_file)
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(CAPTIONS[i % len(CAPTIONS)] + f" ({i})" for i in range(args.num)) + "\n")
    return {"model": model, "clip_weights": clip_file, "prompts": prompts}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, default=48)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "generate_bench.json"))
    args = p.parse_args(argv)

    from lafitebench import settings
    from lafitebench.data.splits import get_split
    from lafitebench.jobs import generate as gen
    from lafitebench.checkpoints.load import load_model
    from lafitebench.runtime.device import resolve_device

    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    root = Path(tempfile.mkdtemp(prefix="lafitebench-genbench-"))
    try:
        files = _setup(root, args)
        cfg = gen.GenerateConfig(model=str(files["model"]), split=str(files["prompts"]), out="", batch_size=args.batch,
                                 device=str(device), clip_weights=str(files["clip_weights"]), progress=False)
        cfg = gen.resolve_noise_mode(cfg)
        t0 = time.perf_counter()
        model = load_model(cfg.model, device=device, networks=("G_ema",))
        t_model = time.perf_counter() - t0
        t0 = time.perf_counter()
        clip = gen._load_clip(cfg, model, device)
        t_clip = time.perf_counter() - t0
        split = get_split(cfg.split)
        seeds = {r.index: r.seed for r in split.rows}
        G = model.G_ema
        g = torch.Generator().manual_seed(1)
        z = torch.randn(args.num, G.z_dim, generator=g).to(device)
        h = torch.nn.functional.normalize(torch.randn(args.num, G.f_dim, generator=g), dim=1).to(device)
        batches = [list(range(s, min(s + args.batch, args.num))) for s in range(0, args.num, args.batch)]

        def bare() -> float:
            t = time.perf_counter()
            with torch.no_grad():
                for b in batches:
                    G(z[b], h[b], noise_mode="random")
            sync()
            return time.perf_counter() - t

        def pipeline(k: int) -> tuple[float, float]:
            out = root / f"out{k}"
            out.mkdir()
            os.environ[settings.ENV_CACHE] = str(root / f"cache{k}")  # uncached text features each round
            t = time.perf_counter()
            feats = gen.split_features(split, clip, cfg, model)
            t_text = time.perf_counter() - t
            for b in batches:
                order, imgs = gen.generate_uint8(model, feats, b, seeds, cfg)
                for i, img in zip(order, imgs):
                    gen._write_image(out / f"{i:06d}.png", img, "png")
            sync()
            return time.perf_counter() - t, t_text

        bare()  # warm-up
        rounds = []
        for k in range(args.rounds):
            tb = bare()
            tp, tt = pipeline(k)
            rounds.append({"bare_s": tb, "pipeline_s": tp, "text_encoding_s": tt})
        t0 = time.perf_counter()
        job = gen.run_generate(gen.GenerateConfig(**{**cfg.__dict__, "out": str(root / "full")}))
        t_full = time.perf_counter() - t0
        assert job.generated == args.num
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    tb, tp = med([r["bare_s"] for r in rounds]), med([r["pipeline_s"] for r in rounds])
    result = {
        "benchmark": "generate end to end vs bare G_ema forward, alternating rounds", "num": args.num,
        "batch": args.batch, "resolution": args.resolution, "device": str(device),
        "cpu": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__, "rounds": rounds,
        "bare_images_per_second": args.num / tb, "pipeline_images_per_second": args.num / tp,
        "pipeline_over_bare": tp / tb, "setup": {"load_model_s": t_model, "load_clip_s": t_clip},
        "run_generate_total_s": t_full, "run_generate_images_per_second": args.num / t_full,
    }
    write_json_atomic(args.out, result)

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"generate {args.num} × {args.resolution}² (batch {args.batch}, {device})")
    for c in ("what", "seconds", "img/s", "vs bare"):
        t.add_column(c)
    t.add_row("bare G_ema forward", f"{tb:.2f}", f"{args.num / tb:.2f}", "1.00×")
    t.add_row("pipeline: text → G → uint8 → PNG", f"{tp:.2f}", f"{args.num / tp:.2f}", f"{tp / tb:.3f}× the time")
    t.add_row("  of which text encoding", f"{med([r['text_encoding_s'] for r in rounds]):.2f}", "", "")
    t.add_row("setup: load model + CLIP", f"{t_model + t_clip:.2f}", "", "one-time")
    t.add_row("run_generate, everything", f"{t_full:.2f}", f"{args.num / t_full:.2f}", f"{t_full / tb:.3f}× the time")
    Console().print(t)
    print(f"JSON: {args.out}")
    return result


if __name__ == "__main__":
    main()
