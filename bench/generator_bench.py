"""Throughput and peak memory of the LAFITE generator (``G_ema``) at 256², with its baselines
measured in the same run.

Usage::

    python bench/generator_bench.py                                   # CPU (and the GPU modes when CUDA is present)
    python bench/generator_bench.py --official-src /path/to/Lafite    # + the official implementation, same weights
    python bench/generator_bench.py --checkpoint lafite-coco-g        # a real model (zoo id or file)

Modes, timed in alternation (iteration i runs every mode once, in rotated order) so that each
ratio compares figures from the same minutes of the same machine:

- ``cpu-baseline``: our generator on the official implementation's path, the straightforward
  per-sample modulated convolution (one grouped convolution with per-sample weights, NCHW;
  ``G.set_layout(fused=True, channels_last=False)``);
- ``cpu``: the default CPU path (input scaling + one shared-weight convolution, channels-last,
  activations updated in place);
- ``cpu-official``: the official LAFITE ``training.networks.Generator`` from ``--official-src``
  (a checkout of https://github.com/drboog/Lafite; run, not copied), loaded with the same weights;
- on CUDA: ``cuda-fp32`` (official rule), ``cuda-fp32-cl`` (channels-last), ``cuda-fp16`` (the
  official mixed precision, fp16 in the 4 highest-resolution blocks), ``cuda-fp16-cl``,
  ``cuda-bf16`` (``torch.autocast`` bfloat16 over the fp32 network).

Every mode's output is compared with its baseline's (max |difference|, reported): a speed-up
that changes images is not one. Architecture (default): 256², z = w = f_dim = 512, style
structure 2 everywhere, conv_clamp 256, channel_base 32768, channel_max 512, 8 mapping layers,
batch 8, fp32, random weights (throughput does not depend on their values).
Peak memory: CUDA ``max_memory_allocated``; CPU the process peak RSS (``ru_maxrss``).
Results: a table on stdout and JSON at ``--out`` (default ``bench/out/generator_bench.json``).
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lafitebench.io.files import write_json_atomic  # noqa: E402
from lafitebench.models.generator import Generator  # noqa: E402


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build_random(args: argparse.Namespace, num_fp16_res: int) -> Generator:
    """Our generator at the benchmark architecture, weights drawn with seed 0."""
    torch.manual_seed(0)
    return Generator(
        z_dim=512, w_dim=512, img_resolution=args.resolution, img_channels=3, f_dim=args.f_dim,
        mapping_kwargs={"num_layers": args.mapping_layers},
        synthesis_kwargs={"channel_base": args.channel_base, "channel_max": args.channel_max,
                          "num_fp16_res": num_fp16_res, "conv_clamp": 256, "change": 256},
    ).eval().requires_grad_(False)


def build_official(src: str, G: Generator) -> Callable:
    """The official generator with ``G``'s architecture and weights, as ``f(z, h) -> images``."""
    sys.path.insert(0, str(Path(src).resolve()))
    from training.networks import Generator as OfficialGenerator  # the official code, imported from its checkout

    kw = G.init_kwargs
    syn = dict(kw["synthesis_kwargs"], f_dim=kw["f_dim"])
    og = OfficialGenerator(z_dim=kw["z_dim"], c_dim=0, w_dim=kw["w_dim"], img_resolution=kw["img_resolution"],
                           img_channels=kw["img_channels"], mapping_kwargs=dict(kw["mapping_kwargs"]),
                           synthesis_kwargs=syn, m_layer_features=kw["f_dim"])
    og.load_state_dict(G.state_dict(), strict=True)
    og = og.eval().requires_grad_(False)
    return lambda z, h: og(z, None, fts=h, noise_mode="const")


def make_modes(G: Generator, G16: Generator | None, args: argparse.Namespace, device: str) -> dict:
    """name -> (callable(z, h), baseline name)."""
    if device == "cpu":
        base = lambda z, h: G.set_layout(fused=True, channels_last=False)(z, h, noise_mode="const")  # noqa: E731
        modes = {"cpu-baseline": (base, None),
                 "cpu": (lambda z, h: G.set_layout()(z, h, noise_mode="const"), "cpu-baseline")}
        if args.official_src:
            modes["cpu-official"] = (build_official(args.official_src, G), "cpu-baseline")
        return modes

    def run(net, layout, fp16=False, autocast=None):
        def f(z, h):
            net.set_layout(**layout)
            ctx = torch.autocast("cuda", dtype=autocast) if autocast else contextlib.nullcontext()
            with ctx:
                return net(z, h, noise_mode="const", force_fp32=not fp16).float()
        return f

    modes = {"cuda-fp32": (run(G, {"fused": None, "channels_last": False}), None),
             "cuda-fp32-cl": (run(G, {"channels_last": True}), "cuda-fp32"),
             "cuda-bf16": (run(G, {}, autocast=torch.bfloat16), "cuda-fp32")}
    if G16 is not None:
        modes["cuda-fp16"] = (run(G16, {}, fp16=True), "cuda-fp32")
        modes["cuda-fp16-cl"] = (run(G16, {"channels_last": True}, fp16=True), "cuda-fp32")
    return modes


def time_modes(modes: dict, z: torch.Tensor, h: torch.Tensor, args: argparse.Namespace) -> dict:
    """Alternating timing: per iteration every mode once, in rotated order. name -> row."""
    cuda = z.is_cuda
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    names = list(modes)
    outputs, times = {}, {n: [] for n in names}
    with torch.no_grad():
        for n in names:
            for _ in range(args.warmup):
                outputs[n] = modes[n][0](z, h)
        sync()
        for it in range(args.iters):
            for n in names[it % len(names):] + names[: it % len(names)]:
                t0 = time.perf_counter()
                modes[n][0](z, h)
                sync()
                times[n].append(time.perf_counter() - t0)
    rows = {}
    for n in names:
        med = sorted(times[n])[len(times[n]) // 2]
        base = modes[n][1]
        row = {"mode": n, "baseline": base, "seconds_per_batch_median": med, "seconds_per_batch_all": times[n],
               "images_per_second": args.batch / med}
        if base is not None:
            bmed = sorted(times[base])[len(times[base]) // 2]
            row["speed_vs_baseline"] = bmed / med
            row["max_abs_diff_vs_baseline"] = (outputs[n].float() - outputs[base].float()).abs().max().item()
        rows[n] = row
    if "cpu-official" in rows:
        rows["cpu"]["speed_vs_official"] = rows["cpu-official"]["seconds_per_batch_median"] / rows["cpu"]["seconds_per_batch_median"]
        rows["cpu"]["max_abs_diff_vs_official"] = (outputs["cpu"] - outputs["cpu-official"]).abs().max().item()
    return rows


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
    p.add_argument("--official-src", default=None, help="a checkout of the official LAFITE code, timed beside ours (CPU)")
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "generator_bench.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" \
        else [d.strip() for d in args.devices.split(",") if d.strip()]
    if "cuda" in devices and not torch.cuda.is_available():
        p.error("--devices cuda: CUDA is not available")

    if args.checkpoint:
        from lafitebench.checkpoints.load import load_model

        G = load_model(args.checkpoint, networks=["G_ema"]).G_ema.requires_grad_(False)
        G16 = G if G.init_kwargs["synthesis_kwargs"].get("num_fp16_res", 0) else None
        arch = {"checkpoint": args.checkpoint, "init_kwargs": G.init_kwargs, "weights": "checkpoint"}
    else:
        G, G16 = build_random(args, 0), None
        arch = {"init_kwargs": G.init_kwargs, "weights": "random init (throughput does not depend on values)"}

    gen = torch.Generator().manual_seed(1)
    z = torch.randn(args.batch, G.z_dim, generator=gen)
    h = torch.nn.functional.normalize(torch.randn(args.batch, G.f_dim, generator=gen), dim=1)
    rows = []
    for dev in devices:
        if dev != "cpu" and G16 is None and not args.checkpoint:
            G16 = build_random(args, 4)
        G.to(dev)
        if G16 is not None:
            G16.to(dev)
        if dev.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        found = time_modes(make_modes(G, G16, args, dev), z.to(dev), h.to(dev), args)
        peak = (torch.cuda.max_memory_allocated() / 2**20, "torch.cuda.max_memory_allocated (all modes)") \
            if dev.startswith("cuda") else (_peak_rss_mib(), "process peak RSS (all modes)")
        for r in found.values():
            r["peak_memory_mib"], r["peak_memory_kind"] = peak
        rows.extend(found.values())
        G.to("cpu")

    result = {
        "benchmark": "LAFITE generator G_ema forward, noise_mode='const', psi=1, alternating modes",
        "architecture": arch, "batch": args.batch, "iters": args.iters, "warmup": args.warmup,
        "num_params": sum(t.numel() for t in G.parameters()),
        "device": platform.processor() or platform.machine(),
        "torch": torch.__version__, "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
        "results": rows,
    }
    write_json_atomic(args.out, result)

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"G_ema {G.img_resolution}² batch {args.batch} ({result['num_params'] / 1e6:.1f} M params)")
    for c in ("mode", "img/s", "s/batch (median)", "× baseline", "max |Δ| vs baseline", "peak MiB"):
        t.add_column(c)
    for r in rows:
        ratio = f"{r['speed_vs_baseline']:.2f}× vs {r['baseline']}" if r.get("baseline") else "baseline"
        diff = f"{r['max_abs_diff_vs_baseline']:.1e}" if r.get("baseline") else ""
        t.add_row(r["mode"], f"{r['images_per_second']:.2f}", f"{r['seconds_per_batch_median']:.3f}", ratio, diff,
                  f"{r['peak_memory_mib']:.0f}")
    Console().print(t)
    cpu = next((r for r in rows if r["mode"] == "cpu" and "speed_vs_official" in r), None)
    if cpu:
        print(f"cpu vs the official implementation (same run): {cpu['speed_vs_official']:.2f}x, "
              f"max |diff| {cpu['max_abs_diff_vs_official']:.1e}")
    print(f"JSON: {args.out}")
    return result


if __name__ == "__main__":
    main()
