"""The CLIP backbones LAFITE was released with: the name the paper uses, the open_clip model and
pretrained tag that load its weights, and the width of its features (the generator's ``f_dim``)."""
from __future__ import annotations

from ..errors import InputError
from ..registry import Registry

UNKNOWN_CLIP = "unknown (official snapshots do not record it)"

#: CLIP backbones LAFITE conditions on: the name the paper/OpenAI use and the open_clip spelling.
CLIP_BACKBONES: Registry[dict] = Registry("CLIP backbone")
CLIP_BACKBONES.register(
    "ViT-B/32",
    {"name": "ViT-B/32", "open_clip_model": "ViT-B-32", "open_clip_pretrained": "openai", "f_dim": 512},
    aliases=("ViT-B-32", "vitb32"),
)
CLIP_BACKBONES.register(
    "ViT-B/16",
    {"name": "ViT-B/16", "open_clip_model": "ViT-B-16", "open_clip_pretrained": "openai", "f_dim": 512},
    aliases=("ViT-B-16", "vitb16"),
)


def clip_config(backbone: str | None) -> dict:
    """The ``clip`` config block for a backbone name (``"ViT-B/32"``, ``"ViT-B-16"``, ...).

    ``None`` gives the explicit unknown marker. Raises InputError for a name that is not a
    CLIP backbone LAFITE was released with (the message lists the known ones).
    """
    if backbone is None:
        return {"name": UNKNOWN_CLIP, "open_clip_model": None, "open_clip_pretrained": None, "f_dim": None}
    try:
        return dict(CLIP_BACKBONES.get(backbone))
    except KeyError as e:
        raise InputError(f"clip_backbone: {e}", param="clip_backbone") from None


__all__ = ["CLIP_BACKBONES", "UNKNOWN_CLIP", "clip_config"]
