"""Throughput and peak memory of the LAFITE generator (``G_ema``) at 256².

Usage::

    python bench/generator_bench.py                       # CPU, and CUDA fp32 + fp16 when available
    python bench/generator_bench.py --devices cpu --iters 3
    python bench/generator_bench.py --checkpoint lafite-coco-g   # a real model (zoo id or file)

Without ``--checkpoint`` the generator is randomly initialised: throughput does not depend
on the weight values, only on the architecture, which is:

- 256², z_dim = w_dim = 512, f_dim = 512 (CLIP ViT-B/32 features), every block style
  structure 2 (``change`` = 256), conv_clamp 256;
- channels per block ``min(channel_base // res, channel_max)`` with channel_base 32768,
  channel_max 512 (StyleGAN2 config-F widths: 512 up to 64², 256 at 128², 128 at 256²) and an
  8-layer mapping network. StyleGAN2-ADA's 'auto' config for 256² would be narrower
  (channel_base 16384, 2 mapping layers): pass ``--channel-base 16384 --mapping-layers 2``.
  The released LAFITE checkpoints record their own widths; ``--checkpoint`` measures those.

Modes: ``cpu`` (fp32); ``cuda-fp32``; ``cuda-fp16`` = the official mixed precision (fp16 in
the 4 highest-resolution blocks, ``num_fp16_res = 4``, clamped at ±256). Peak memory: CUDA
``torch.cuda.max_memory_allocated`` during generation; CPU the process peak RSS
(``getrusage`` ru_maxrss; it includes the model and the Python runtime, so the increase over
the RSS before the first generation is reported too). Results go to stdout (a table) and to
``--out`` as JSON (default ``bench/out/generator_bench.json``).
"""
from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lafitebench.models.generator import Generator  # noqa: E402
from lafitebench.io.files import write_json_atomic  # noqa: E402


def _rss_mib() -> float:
    """Current resident set size of this process (Linux /proc; falls back to the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_rss_mib()


def _peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


def build_random(args: argparse.Namespace, num_fp16_res: int) -> Generator:
    torch.manual_seed(0)
    return Generator(
        z_dim=512, w_dim=512, img_resolution=args.resolution, img_channels=3, f_dim=args.f_dim,
        mapping_kwargs={"num_layers": args.mapping_layers},
        synthesis_kwargs={"channel_base": args.channel_base, "channel_max": args.channel_max,
                          "num_fp16_res": num_fp16_res, "conv_clamp": 256, "change": 256},
    ).eval().requires_grad_(False)


def run_mode(G: Generator, device: str, fp16: bool, args: argparse.Namespace) -> dict:
    G = G.to(device)
    gen = torch.Generator(device="cpu").manual_seed(1)
    z = torch.randn(args.batch, G.z_dim, generator=gen).to(device)
    h = torch.nn.functional.normalize(torch.randn(args.batch, G.f_dim, generator=gen), dim=1).to(device)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rss_before = _rss_mib()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        for _ in range(args.warmup):
            G(z, h, noise_mode="const", force_fp32=not fp16)
        sync()
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            img = G(z, h, noise_mode="const", force_fp32=not fp16)
            sync()
            times.append(time.perf_counter() - t0)
    assert img.shape == (args.batch, 3, G.img_resolution, G.img_resolution) and torch.isfinite(img).all()
    med = sorted(times)[len(times) // 2]
    row = {
        "mode": f"{'cuda' if cuda else 'cpu'}-{'fp16' if fp16 else 'fp32'}",
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
        "batch": args.batch, "iters": args.iters, "warmup": args.warmup,
        "seconds_per_batch_median": med, "seconds_per_batch_all": times,
        "images_per_second": args.batch / med,
    }
    if cuda:
        row["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        row["peak_memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        row["peak_memory_mib"] = _peak_rss_mib()
        row["peak_memory_kind"] = "process peak RSS (ru_maxrss)"
        row["rss_before_generation_mib"] = rss_before
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", default="auto", help="comma list of cpu,cuda (default: cpu, plus cuda when available)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--f-dim", type=int, default=512)
    p.add_argument("--channel-base", type=int, default=32768)
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--mapping-layers", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--checkpoint", default=None, help="zoo id or checkpoint file to time instead of random init")
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "generator_bench.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" \
        else [d.strip() for d in args.devices.split(",") if d.strip()]
    if "cuda" in devices and not torch.cuda.is_available():
        p.error("--devices cuda: CUDA is not available")

    if args.checkpoint:
        from lafitebench.loading import load_model

        model = load_model(args.checkpoint, networks=["G_ema"])
        G = model.G_ema.requires_grad_(False)
        arch = {"checkpoint": args.checkpoint, "init_kwargs": G.init_kwargs, "weights": "checkpoint"}
        if "cuda" in devices and G.init_kwargs["synthesis_kwargs"].get("num_fp16_res", 0) == 0:
            print("note: this checkpoint has num_fp16_res = 0, so cuda-fp16 runs in fp32", file=sys.stderr)
        Gs = {False: G, True: G}
    else:
        Gs = {False: build_random(args, 0), True: None}
        arch = {"init_kwargs": Gs[False].init_kwargs, "weights": "random init (throughput does not depend on values)"}

    rows = []
    for dev in devices:
        if dev == "cpu":
            rows.append(run_mode(Gs[False], "cpu", False, args))
            continue
        rows.append(run_mode(Gs[False], dev, False, args))
        G16 = Gs[True] if Gs[True] is not None else build_random(args, 4)
        rows.append(run_mode(G16, dev, True, args))
        Gs[False].to("cpu")

    result = {
        "benchmark": "LAFITE generator G_ema forward, noise_mode='const', psi=1",
        "architecture": arch,
        "num_params": sum(t.numel() for t in Gs[False].parameters()),
        "torch": torch.__version__, "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
        "results": rows,
    }
    write_json_atomic(args.out, result)

    from rich.console import Console
    from rich.table import Table

    res = Gs[False].img_resolution
    t = Table(title=f"G_ema {res}² batch {args.batch} ({result['num_params'] / 1e6:.1f} M params)")
    for c in ("mode", "img/s", "s/batch (median)", "peak MiB", "peak kind"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["mode"], f"{r['images_per_second']:.2f}", f"{r['seconds_per_batch_median']:.3f}",
                  f"{r['peak_memory_mib']:.0f}", r["peak_memory_kind"])
    Console().print(t)
    print(f"JSON: {args.out}")
    return result


if __name__ == "__main__":
    main()
