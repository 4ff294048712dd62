"""CUB-200-2011 (``cub``): ``<root>/images/<name>.jpg`` (or ``CUB_200_2011/images``), captions in
``<root>/text/<name>.txt`` (or ``text_c10``), one per line; a split's image names in
``<root>/<split>/filenames.pickle`` (the AttnGAN/DM-GAN files, read with the restricted
unpickler) or ``filenames.txt``."""
from __future__ import annotations

from ..datasets import ImageSet
from .common import split_folder_set, unused


def dataset(data_root=None, resolution: int = 256, split=None, captions_file=None, crop=None) -> ImageSet:
    """The CUB images of ``split`` (default ``test``) with their ten captions each."""
    unused("cub", captions_file=captions_file, crop=crop)
    return split_folder_set("cub", data_root, split, resolution, ("images", "CUB_200_2011/images"), ("text", "text_c10"))
