"""Small randomly initialised feature backbones for tests (no DINOv2 or CLIP weights exist here),
registered and saved as a user's local files would be: a DINOv2-architecture ViT whose file is
in Meta's release format (``mask_token``, a 4×4 position grid resampled at load), and the tiny
open_clip model of :mod:`tiny_clip` as ``clip:<model>``."""
from __future__ import annotations

from pathlib import Path

import torch

from lafitebench.encoders.backbone import BACKBONES, BackboneSpec

DINO = "dinov2-test"
CLIP = "clip:lafitebench-test-clip-64"  # any open_clip model by name (its config registered, its file given)
DINO_KW = {"embed_dim": 32, "depth": 1, "num_heads": 2}


def meta_dinov2_file(path: Path, seed: int = 0, grid: int = 4) -> Path:
    """Seeded random DINOv2 weights in Meta's file format (as ``dinov2_vit*14_pretrain.pth``)."""
    import timm

    torch.manual_seed(seed)
    m = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=14 * grid, **DINO_KW)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    for k in sd:
        if k.endswith("ls1.gamma") or k.endswith("ls2.gamma"):
            sd[k] = torch.rand_like(sd[k])  # timm initialises LayerScale to 1e-5; make the blocks count
    sd["pos_embed"] = torch.randn_like(sd["pos_embed"])
    sd["mask_token"] = torch.zeros(1, DINO_KW["embed_dim"])
    torch.save(sd, path)
    return path


def register_specs() -> None:
    """Register ``dinov2-test`` (28² input, 2×2 patches of a 4×4 released grid). The tiny CLIP
    needs no registration: ``clip:<model>`` names any open_clip model whose config is registered."""
    if DINO not in BACKBONES:
        BACKBONES.register(DINO, BackboneSpec(DINO, "dinov2", 32, 28, "dinov2-vits14", "vit_small_patch14_dinov2",
                                              arch_kwargs=DINO_KW))


def register_test_backbones(root: Path) -> dict[str, str]:
    """Write both test backbones' files under ``root``, register them; return their
    ``backbone_weights`` mapping."""
    from helpers.tiny_clip import tiny_clip

    _, clip_file = tiny_clip(root)
    dino_file = meta_dinov2_file(root / "dinov2_test_pretrain.pth")
    register_specs()
    return {DINO: str(dino_file), CLIP: str(clip_file)}
