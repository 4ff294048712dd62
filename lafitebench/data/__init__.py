"""Data layer: image decoding (``images``), image sets and the dataset registry (``datasets``),
samples manifests (``manifest``), and the bundled ``coco_mini`` data."""
from lafitebench.data.registry import DATASETS, get_dataset
from lafitebench.data.datasets import ImageSet, Item
from lafitebench.data.sources.folder import sample_set
from lafitebench.data.images import load_image
from lafitebench.data.manifest import read_manifest, write_manifest

__all__ = ["DATASETS", "ImageSet", "Item", "get_dataset", "sample_set", "load_image", "read_manifest", "write_manifest"]
