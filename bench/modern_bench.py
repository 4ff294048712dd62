"""Benchmark: backbone metrics from one pass, and blocked CMMD / P/R/D/C at 50,000 points.

Part ``pass`` — one evaluation computing FID (Inception), CLIP-FD (a CLIP ViT-B/32 image tower),
FD-DINOv2 (a DINOv2 ViT-L/14) and P/R/D/C (Inception features) in ONE pass over each set, against
the same four metrics as four evaluations (one pass each, the way one runs four toolkits). Both
in this run, feature cache off. No CLIP or DINOv2 weights exist on the build machine: the
networks are the real architectures with random weights (timing only; the values mean nothing).

Part ``blocked`` — CMMD (float64 RBF kernel sums) and P/R/D/C (float64 distances, k-NN radii) on
N random 1,024-d features per set, computed in blocks: wall time and the peak resident memory of
a fresh process (the feature matrices included), each metric in its own process.

Not part of the test suite. Examples:

    python bench/modern_bench.py pass --n 50
    python bench/modern_bench.py blocked --n 50000
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT = REPO / "bench" / "out"


def _random_backbones(root: Path) -> tuple[dict[str, str], str]:
    """Random-weight files for a CLIP ViT-B/32 tower and a DINOv2 ViT-L/14 (Meta's file layout),
    registered as backbones ``clip-vitb32-random`` and ``dinov2-vitl14`` (whose hash is unpublished,
    so a local file is accepted as it is)."""
    import open_clip
    import timm

    from lafitebench.encoders.backbone import BACKBONES, BackboneSpec
    from lafitebench.encoders.clip import CLIP_MEAN, CLIP_STD
    from lafitebench.encoders.inception import save_random_inception_weights

    torch.manual_seed(0)
    clip_file = root / "clip-vitb32-random.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), clip_file)
    dino = timm.create_model("vit_large_patch14_dinov2", pretrained=False, num_classes=0, img_size=518)
    sd = dict(dino.state_dict())
    sd["mask_token"] = torch.zeros(1, 1024)
    dino_file = root / "dinov2_vitl14_pretrain.pth"
    torch.save(sd, dino_file)
    if "clip-vitb32-random" not in BACKBONES:
        BACKBONES.register("clip-vitb32-random", BackboneSpec("clip-vitb32-random", "clip", 512, 224, "clip:ViT-B-32/openai",
                                                              "ViT-B-32", None, CLIP_MEAN, CLIP_STD))
    inception = save_random_inception_weights(root / "inception-random.pth")
    return {"clip-vitb32-random": str(clip_file), "dinov2-vitl14": str(dino_file)}, str(inception)


def bench_pass(args: argparse.Namespace) -> dict:
    from lafitebench.data.sources.coco import coco_mini
    from lafitebench.metrics.config import EvalConfig
    from lafitebench.metrics.engine import evaluate

    full = coco_mini(args.resolution)
    half = min(args.n, len(full) // 2)
    samples, reference = full.subset(range(half)), full.subset(range(len(full) // 2, len(full) // 2 + half))
    with tempfile.TemporaryDirectory() as tmp:
        weights, inception = _random_backbones(Path(tmp))
        base = dict(resolution=args.resolution, batch_size=args.batch_size, device=args.device, use_cache=False,
                    progress=False, inception_weights=inception, clip_fd_backbone="clip-vitb32-random",
                    fd_backbone="dinov2-vitl14", prdc_backbone="inception", backbone_weights=weights)
        all_metrics = ["fid", "clip-fd", "fd", "prdc"]
        times: dict[str, float] = {}
        values: dict[str, dict] = {}
        t0 = time.perf_counter()
        one = evaluate(samples, reference, EvalConfig(metrics=all_metrics, **base))
        times["one pass"] = time.perf_counter() - t0
        values["one pass"] = dict(zip(one.table.metric_id, one.table.value))
        separate = 0.0
        values["separate"] = {}
        for m in all_metrics:
            t0 = time.perf_counter()
            r = evaluate(samples, reference, EvalConfig(metrics=[m], **base))
            times[f"separate: {m}"] = time.perf_counter() - t0
            separate += times[f"separate: {m}"]
            values["separate"].update(dict(zip(r.table.metric_id, r.table.value)))
        times["separate passes (sum)"] = separate
    same = all(abs(values["one pass"][k] - v) <= 1e-9 * max(abs(v), 1e-30) for k, v in values["separate"].items())
    return {"n": half, "times_s": {k: round(v, 2) for k, v in times.items()},
            "speedup_one_pass": round(separate / times["one pass"], 3), "values_equal_1e-9": same,
            "backbones": "Inception-v3 (random), CLIP ViT-B/32 image tower (random), DINOv2 ViT-L/14 (random)",
            "device": args.device, "torch_threads": torch.get_num_threads()}


def _child(metric: str, n: int, d: int, block: int) -> None:
    """In a fresh process: N×d features per set, one blocked metric, time and peak RSS."""
    import numpy as np

    from lafitebench.metrics import cmmd, prdc

    g = np.random.default_rng(0)
    x = g.normal(size=(n, d)).astype(np.float32)
    y = (g.normal(size=(n, d)) + 0.05).astype(np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if metric == "cmmd":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y /= np.linalg.norm(y, axis=1, keepdims=True)
        value = {"cmmd": cmmd.cmmd_from_features(x, y, block=block)}
    else:
        value = prdc.prdc_terms(x, y, pr_k=3, dc_k=5, block=block).values()
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"metric": metric, "n": n, "d": d, "block": block, "seconds": round(secs, 1),
                      "peak_rss_gib": round(peak / 2**20, 2), "rss_before_gib": round(base / 2**20, 2),
                      "full_matrix_gib_float64": round(3 * n * n * 8 / 2**30, 1), "value": value}))


def bench_blocked(args: argparse.Namespace) -> list[dict]:
    out = []
    for metric in ("cmmd", "prdc"):
        proc = subprocess.run([sys.executable, __file__, "_child", metric, str(args.n), str(args.dim),
                               str(args.block)], capture_output=True, text=True, check=True)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(out[-1], flush=True)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["pass", "blocked"])
    ap.add_argument("--n", type=int, default=50, help="images per set (pass) or features per set (blocked)")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--block", type=int, default=4096)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    res = bench_pass(args) if args.part == "pass" else bench_blocked(args)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"modern_{args.part}.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
