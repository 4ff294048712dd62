"""Multi-modal CelebA-HQ (``mm-celeba-hq``): ``<root>/images/<name>.jpg`` (or ``CelebA-HQ-img``),
captions in ``<root>/text/<name>.txt`` (or ``celeba-caption``), split files as for CUB."""
from __future__ import annotations

from ..datasets import ImageSet
from .common import split_folder_set, unused


def dataset(data_root=None, resolution: int = 256, split=None, captions_file=None, crop=None) -> ImageSet:
    """The MM-CelebA-HQ images of ``split`` (default ``test``) with their captions."""
    unused("mm-celeba-hq", captions_file=captions_file, crop=crop)
    return split_folder_set("mm-celeba-hq", data_root, split, resolution, ("images", "CelebA-HQ-img"),
                            ("text", "celeba-caption"))
