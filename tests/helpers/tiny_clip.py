"""A small randomly initialised open_clip model for tests (there are no CLIP weights here): its
config is registered with open_clip and its weights saved, as a user's local CLIP file would be."""
from __future__ import annotations

import json
from pathlib import Path

CLIP_NAME = "lafitebench-test-clip-64"
CLIP_CONFIG = {"embed_dim": 64,
               "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def tiny_clip(root: Path) -> tuple[Path, Path]:
    """Register the test CLIP config (written to ``root``) and save seeded random weights there.
    Returns ``(config_path, weights_path)``."""
    import open_clip
    import torch

    cfg = root / f"{CLIP_NAME}.json"
    cfg.write_text(json.dumps(CLIP_CONFIG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    weights = root / "clip.pt"
    torch.save(open_clip.create_model(CLIP_NAME).state_dict(), weights)
    return cfg, weights


def tiny_clip_224(root: Path, seed: int = 0):
    """The same small CLIP with a 224² input (patch 32), as the official loss feeds CLIP 224² views;
    returns the model (eval, frozen)."""
    import open_clip
    import torch

    name = "lafitebench-test-clip-64-224"
    cfg = dict(CLIP_CONFIG, vision_cfg=dict(CLIP_CONFIG["vision_cfg"], image_size=224, patch_size=32))
    path = root / f"{name}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    torch.manual_seed(seed)
    return open_clip.create_model(name).eval().requires_grad_(False)
