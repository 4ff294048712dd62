"""DINOv2 ViTs built with timm from Meta's released ``dinov2_vit*14_pretrain.pth`` files.

No ``torch.hub`` code is fetched or run: the architecture is timm's ``vit_*_patch14_dinov2``
(a maintained implementation of the same network) and the weights are Meta's state dict, read
with ``torch.load(weights_only=True)``. The output is the CLS token after the final norm (what
``model(x)`` of the hub model returns and FD-DINOv2 uses).

Meta's model keeps its 37×37 position grid (518² training size) and resamples it on every forward
for other sizes (``interpolate_pos_encoding``: bicubic ``F.interpolate`` with
``scale_factor=(w0 + 0.1) / 37``, no antialiasing — the hub defaults ``interpolate_offset=0.1``,
``interpolate_antialias=False``). timm's own loader resamples with a different rule (output size,
antialiased), which changes the features, so :func:`meta_pos_embed` resamples as Meta's model
does, once, at load time.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ..errors import WeightsError
from ..io.state_dict import safe_torch_load

#: timm architecture of each DINOv2 size (patch 14; giant uses SwiGLU, Meta's ``w12``/``w3``).
TIMM_ARCH = {"s": "vit_small_patch14_dinov2", "b": "vit_base_patch14_dinov2", "l": "vit_large_patch14_dinov2",
             "g": "vit_giant_patch14_dinov2"}
INTERPOLATE_OFFSET = 0.1


def meta_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Meta DINOv2's position embedding [1, 1+M², D] resampled to a ``grid``×``grid`` patch grid
    the way its ``interpolate_pos_encoding`` does (bicubic, scale factor ``(grid + 0.1) / M``,
    no antialiasing, in float32)."""
    n = pos_embed.shape[1] - 1
    m = int(math.sqrt(n))
    if m * m != n:
        raise WeightsError(f"DINOv2 position embedding has {n} patch positions, not a square grid")
    if m == grid:
        return pos_embed
    dtype, pos = pos_embed.dtype, pos_embed.float()
    dim = pos.shape[-1]
    scale = float(grid + INTERPOLATE_OFFSET) / m
    patch = F.interpolate(pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2), scale_factor=(scale, scale),
                          mode="bicubic", antialias=False)
    if tuple(patch.shape[-2:]) != (grid, grid):
        raise WeightsError(f"DINOv2 position grid {m} cannot be resampled to {grid}×{grid}")
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([pos[:, :1], patch], dim=1).to(dtype)


def build_dinov2(arch: str, weights: str | Path, image_size: int = 224,
                 arch_kwargs: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """A timm DINOv2 ViT (``arch``, input ``image_size``²) with Meta's weights from ``weights``;
    eval mode, frozen. ``arch_kwargs`` are passed to ``timm.create_model`` (tests build small ones).

    Raises:
        WeightsError: the file is not a DINOv2 state dict for ``arch`` (names the file and the keys).
    """
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    kwargs = {"pretrained": False, "num_classes": 0, "img_size": image_size, **dict(arch_kwargs or {})}
    model = timm.create_model(arch, **kwargs)
    sd = safe_torch_load(Path(weights), f"DINOv2 weights {weights}", WeightsError)
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or "pos_embed" not in sd or "cls_token" not in sd:
        raise WeightsError(f"{weights} is not a DINOv2 state dict (no pos_embed / cls_token); give Meta's "
                           "dinov2_vit*14_pretrain.pth file")
    patch = model.patch_embed.patch_size[0]
    sd = dict(sd)
    sd["pos_embed"] = meta_pos_embed(sd["pos_embed"], image_size // patch)
    sd = checkpoint_filter_fn(sd, model)  # Meta → timm names (mask_token dropped, SwiGLU w12/w3)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{weights} does not match the DINOv2 architecture {arch}: "
                           f"{str(e).splitlines()[0]} — check the backbone name") from None
    return model.eval().requires_grad_(False)


__all__ = ["TIMM_ARCH", "build_dinov2", "meta_pos_embed"]
