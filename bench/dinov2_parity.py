"""Parity check: our DINOv2 (timm's ViT + Meta's file + Meta's position resampling) against Meta's
own model code, on the same random weights, at the 224² input FD-DINOv2 uses.

Meta's ``dinov2`` package is imported from a checkout given on the command line (run, never
copied): its model is built as ``torch.hub``'s ``dinov2_vit*14`` builds it (518² position grid,
``init_values=1.0``, ``interpolate_offset=0.1``, ``interpolate_antialias=False``; SwiGLU for giant),
its state dict is saved as the released ``.pth`` files are, and
:func:`lafitebench.encoders.dinov2.build_dinov2` loads that file. Both networks then embed the same
images: the CLS features must agree to float32 rounding. Giant is checked at 2 blocks (same block
type and width) to keep it cheap on a CPU.

Not part of the test suite (it needs the checkout). Example:

    python bench/dinov2_parity.py --dinov2-src /path/to/facebookresearch/dinov2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lafitebench.encoders.dinov2 import TIMM_ARCH, build_dinov2  # noqa: E402

CASES = {  # name: (Meta architecture function, its kwargs, timm size key, timm overrides)
    "vits14": ("vit_small", {}, "s", {}),
    "vitb14": ("vit_base", {}, "b", {}),
    "vitg14 (2 blocks)": ("vit_giant2", {"ffn_layer": "swiglufused"}, "g", {"depth": 2}),
}


def _meta_model(vits, arch: str, extra: dict, depth: int | None) -> torch.nn.Module:
    kw = dict(img_size=518, patch_size=14, init_values=1.0, block_chunks=0, num_register_tokens=0,
              interpolate_antialias=False, interpolate_offset=0.1, **extra)
    if depth is None:
        return vits.__dict__[arch](**kw)
    from functools import partial

    from dinov2.layers import MemEffAttention, NestedTensorBlock as Block

    return vits.DinoVisionTransformer(embed_dim=1536, depth=depth, num_heads=24, mlp_ratio=4,
                                      block_fn=partial(Block, attn_class=MemEffAttention), **kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dinov2-src", required=True, help="a checkout of facebookresearch/dinov2")
    ap.add_argument("--n", type=int, default=4)
    args = ap.parse_args()
    os.environ["XFORMERS_DISABLED"] = "1"
    sys.path.insert(0, str(Path(args.dinov2_src).resolve()))
    from dinov2.models import vision_transformer as vits

    torch.manual_seed(0)
    images = torch.rand(args.n, 3, 224, 224) * 4 - 2  # normalised-image range
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (arch, extra, size, over) in CASES.items():
            meta = _meta_model(vits, arch, extra, over.get("depth")).eval()
            with torch.no_grad():
                for p in meta.parameters():  # random, not the near-identity init: every weight matters
                    p.copy_(torch.randn_like(p) * 0.02 + (1.0 if p.ndim == 1 and p.shape[0] == meta.embed_dim else 0))
            f = Path(tmp) / f"{size}.pth"
            torch.save(meta.state_dict(), f)
            ours = build_dinov2(TIMM_ARCH[size], f, 224, over)
            with torch.no_grad():
                a, b = meta(images), ours(images)
            err = float((a - b).abs().max() / a.abs().max())
            out[name] = {"max_abs_diff_rel": err, "shape": list(a.shape), "ok": err < 1e-4}
            print(name, out[name], flush=True)
    print(json.dumps(out, indent=2))
    (REPO / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (REPO / "bench" / "out" / "dinov2_parity.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
