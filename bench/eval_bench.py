"""Benchmark: the one-pass engine vs the naive torch-fidelity recipe for IS + FID-k (5 levels) + KID.

Naive recipe (what one would do by hand): for every blur level k, write blurred PNG copies of the
generated and the reference images to disk, then call ``torch_fidelity.calculate_metrics`` on the
two folders (FID at every level; IS and KID too at k = 0, in the same call).

Engine: ``lafitebench.metrics.engine.evaluate`` decodes each image once, blurs in tensor ops and
runs one Inception forward per image per level; reference statistics are cached per level.
Measured: the engine cold (empty cache) and warm (reference statistics cached), the naive recipe,
and the pure Inception-forward time of the passes each engine run needs (forwards on pre-decoded
tensors, no decode / blur / statistics).

Not part of the test suite. Examples:

    python bench/eval_bench.py --inception-weights ../shared/assets/inception/inception-2015-12-05-pool3-fidelity-layout.pth --n 50
    python bench/eval_bench.py --random-inception --n 50       # IS included (random weights: timing only!)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lafitebench.data.sources.coco import coco_mini  # noqa: E402
from lafitebench.data.sources.folder import folder_set  # noqa: E402
from lafitebench.metrics.blur import BLUR_PRESETS, blur  # noqa: E402
from lafitebench.metrics.engine import EvalConfig, evaluate  # noqa: E402
from lafitebench.encoders.inception import (InceptionExtractor, save_random_inception_weights,  # noqa: E402
                                           state_dict_has_classifier, load_inception_state_dict)


def _sets(args):
    if args.samples and args.reference:
        s = folder_set(args.samples, resolution=args.resolution)
        r = folder_set(args.reference, resolution=args.resolution)
    else:
        full = coco_mini(args.resolution)
        half = len(full) // 2
        if args.n > half:
            raise SystemExit(f"coco-mini has {len(full)} images: --n at most {half} per side (or pass folders)")
        s, r = full.subset(range(args.n), "coco-mini[:n]"), full.subset(range(half, half + args.n), "coco-mini[50:50+n]")
    return s, r


def _write_level(image_set, k: int, preset: str, out: Path) -> str:
    """Blurred PNG copies (k > 0) or the original files (k = 0) in a folder torch-fidelity can read."""
    out.mkdir(parents=True, exist_ok=True)
    for i, it in enumerate(image_set.items):
        name = f"{i:05d}"
        if k == 0:
            shutil.copyfile(it.path, out / f"{name}{it.path.suffix.lower()}")
            continue
        im = Image.open(it.path).convert("RGB")
        if im.size != (image_set.resolution, image_set.resolution):
            im = im.resize((image_set.resolution, image_set.resolution), Image.BICUBIC)
        x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None]
        Image.fromarray(blur(x, k, preset)[0].permute(1, 2, 0).numpy()).save(out / f"{name}.png")
    return str(out)


def naive(s, r, levels, preset, weights, with_is, kid_subset, workdir: Path) -> tuple[float, dict]:
    import torch_fidelity

    t0 = time.perf_counter()
    values = {}
    for k in levels:
        d1 = _write_level(s, k, preset, workdir / f"s{k}")
        d2 = _write_level(r, k, preset, workdir / f"r{k}")
        m = torch_fidelity.calculate_metrics(
            input1=d1, input2=d2, cuda=False, fid=True, isc=(with_is and k == 0), kid=(k == 0),
            kid_subset_size=kid_subset, feature_extractor_weights_path=str(weights), verbose=False, cache=False)
        values[f"FID-{k}"] = m["frechet_inception_distance"]
        if k == 0:
            values["KID"] = m["kernel_inception_distance_mean"]
            if with_is:
                values["IS"] = m["inception_score_mean"]
    return time.perf_counter() - t0, values


def pure_forward_time(s, r, weights, levels, channels_last, with_is) -> dict:
    """Seconds of Inception forwards alone: one timed pass over both sets, scaled to the pass counts."""
    ex = InceptionExtractor(weights, device="cpu", logits=with_is, channels_last=channels_last)
    xs = torch.cat([b.images for b in s.loader(32)])
    xr = torch.cat([b.images for b in r.loader(32)])
    ex(xs[:2])  # warm-up
    t0 = time.perf_counter()
    for x in (xs, xr):
        for i in range(0, len(x), 32):
            ex(x[i:i + 32])
    per_image = (time.perf_counter() - t0) / (len(xs) + len(xr))
    return {"per_image_s": per_image,
            "cold_s": per_image * len(levels) * (len(xs) + len(xr)),
            "warm_s": per_image * len(levels) * len(xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    w = ap.add_mutually_exclusive_group(required=True)
    w.add_argument("--inception-weights", type=Path, help="Inception file in torch-fidelity layout (real weights)")
    w.add_argument("--random-inception", action="store_true",
                   help="save random Inception weights locally and use them (IS included; TIMING ONLY)")
    ap.add_argument("--n", type=int, default=50, help="images per set (coco-mini halves: at most 50)")
    ap.add_argument("--samples", type=Path, help="folder of generated images (instead of coco-mini)")
    ap.add_argument("--reference", type=Path, help="folder of reference images (instead of coco-mini)")
    ap.add_argument("--levels", default="0,1,2,4,8")
    ap.add_argument("--preset", default="lafite", choices=BLUR_PRESETS.names())
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--kid-subset-size", type=int, default=None, help="default: min(1000, n)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=0, help="decoding workers (0 = the CLI default; a worker competes with the 2-thread forward on small CPUs)")
    ap.add_argument("--exact-layout", action="store_true",
                    help="run the engine's Inception in torch-fidelity's memory layout (the CLI's --exact-layout; "
                         "default: channels-last, the CLI default)")
    ap.add_argument("--other-layout-too", action="store_true",
                    help="also time the engine cold with the other memory layout")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "eval_bench.json")
    args = ap.parse_args()

    levels = [int(v) for v in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="lafitebench-bench-"))
    os.environ["LAFITEBENCH_CACHE"] = str(work / "cache")  # cold start guaranteed
    try:
        if args.random_inception:
            weights = save_random_inception_weights(work / "random_inception.pth", seed=0)
            label = "RANDOM Inception weights (timing only, values meaningless)"
        else:
            weights = args.inception_weights
            label = f"Inception weights {weights.name}"
        with_is = state_dict_has_classifier(load_inception_state_dict(weights))
        s, r = _sets(args)
        kid_subset = args.kid_subset_size or min(1000, len(s.items), len(r.items))
        metrics = (["is"] if with_is else []) + ["fid", "kid"]
        cfg = EvalConfig(metrics=metrics, fid_blur=levels, blur_preset=args.preset, resolution=args.resolution,
                         batch_size=args.batch_size, num_workers=args.num_workers, device="cpu",
                         inception_weights=str(weights), kid_subset_size=kid_subset, progress=False,
                         inception_channels_last=not args.exact_layout)
        print(f"# {label}; {len(s.items)} samples vs {len(r.items)} reference at {args.resolution}², "
              f"levels {levels} ({args.preset}), metrics {metrics}, torch threads {torch.get_num_threads()}",
              flush=True)
        res = {"loadavg_start": os.getloadavg(), "label": label, "n_samples": len(s.items), "n_reference": len(r.items), "levels": levels,
               "preset": args.preset, "metrics": metrics, "kid_subset_size": kid_subset,
               "torch_threads": torch.get_num_threads()}

        t0 = time.perf_counter()
        cold = evaluate(s, r, cfg)
        res["engine_cold_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = evaluate(s, r, cfg)
        res["engine_warm_s"] = time.perf_counter() - t0
        assert warm.provenance["cache"]["hits"] == sorted(set(levels)), warm.provenance["cache"]
        res["engine_cold_breakdown"] = {**cold.provenance["timing"], **cold.provenance["inception_pass"]}
        res["engine_warm_breakdown"] = {**warm.provenance["timing"], **warm.provenance["inception_pass"]}
        ours = dict(zip(cold.table.metric, cold.table.value))
        res["engine_values"] = ours
        res["pure_forward"] = pure_forward_time(s, r, weights, levels, not args.exact_layout, with_is)
        print(f"engine cold {res['engine_cold_s']:.1f}s, warm {res['engine_warm_s']:.1f}s; "
              f"pure Inception forward {res['pure_forward']['per_image_s'] * 1e3:.1f} ms/img", flush=True)
        other = args.exact_layout  # channels_last value of the other layout
        if args.other_layout_too:
            os.environ["LAFITEBENCH_CACHE"] = str(work / "cache-other-layout")
            t0 = time.perf_counter()
            evaluate(s, r, EvalConfig(**{**cfg.__dict__, "inception_channels_last": other}))
            res["engine_other_layout_cold_s"] = time.perf_counter() - t0
            res["pure_forward_other_layout"] = pure_forward_time(s, r, weights, levels, other, with_is)
            print(f"engine cold, channels_last={other}: {res['engine_other_layout_cold_s']:.1f}s", flush=True)
        if not args.skip_naive:
            res["naive_s"], naive_vals = naive(s, r, levels, args.preset, weights, with_is, kid_subset, work / "naive")
            res["naive_values"] = naive_vals
            res["max_rel_diff_fid_vs_naive"] = max(abs(ours[m] - v) / abs(v) for m, v in naive_vals.items()
                                                   if m.startswith("FID"))
            res["speedup_cold"] = res["naive_s"] / res["engine_cold_s"]
            res["speedup_warm"] = res["naive_s"] / res["engine_warm_s"]
        res["cold_over_pure_forward"] = res["engine_cold_s"] / res["pure_forward"]["cold_s"]
        res["warm_over_pure_forward"] = res["engine_warm_s"] / res["pure_forward"]["warm_s"]
        # FID's 2048x2048 non-symmetric eigensolve (torch-fidelity's formula, ~2 s per level on 2 cores),
        # KID and IS: the same numerics torch-fidelity runs; independent of N, so they dominate at small N.
        res["cold_numerics_s"] = cold.provenance["timing"]["compute_s"]
        res["warm_numerics_s"] = warm.provenance["timing"]["compute_s"]
        res["loadavg_end"] = os.getloadavg()

        print("\n| run | seconds | vs naive | vs pure forward | metric numerics | rest vs pure forward |\n"
              "| --- | --- | --- | --- | --- | --- |")
        if "naive_s" in res:
            print(f"| naive torch-fidelity, {len(levels)} calls + PNG copies | {res['naive_s']:.1f} | 1.00x | | | |")
        for name, key, pure, num in (("engine cold", "engine_cold_s", "cold_s", "cold_numerics_s"),
                                     ("engine warm", "engine_warm_s", "warm_s", "warm_numerics_s")):
            sp = f"{res['naive_s'] / res[key]:.2f}x faster" if "naive_s" in res else ""
            print(f"| {name} | {res[key]:.1f} | {sp} | {res[key] / res['pure_forward'][pure]:.2f}x "
                  f"({res['pure_forward'][pure]:.1f}s) | {res[num]:.1f}s | "
                  f"{(res[key] - res[num]) / res['pure_forward'][pure]:.2f}x |")
        if "engine_other_layout_cold_s" in res:
            sp = f"{res['naive_s'] / res['engine_other_layout_cold_s']:.2f}x faster" if "naive_s" in res else ""
            print(f"| engine cold, channels_last={other} | {res['engine_other_layout_cold_s']:.1f} | {sp} | "
                  f"{res['engine_other_layout_cold_s'] / res['pure_forward_other_layout']['cold_s']:.2f}x | | |")
        print(f"\nload average start {res['loadavg_start']}, end {res['loadavg_end']} (2 cores shared)")
        if "max_rel_diff_fid_vs_naive" in res:
            print(f"\nmax relative FID difference engine vs naive: {res['max_rel_diff_fid_vs_naive']:.2e}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2, default=float) + "\n")
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
