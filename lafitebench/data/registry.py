"""The data sets by name, and their evaluation protocols.

:data:`DATASETS` maps a name (``coco``, ``cub`` ...) to the ``dataset`` factory of its source
module in :mod:`lafitebench.data.sources` (imported when first used); :func:`get_dataset` also
takes a folder or a manifest. :data:`PROTOCOLS` holds each data set's standard evaluation as the
LAFITE paper ran it (reference images and their split, caption split, number of samples,
resolution, the metrics protocol) and where its files are found (an option and an environment
variable): what ``lafitebench eval --dataset NAME`` runs. The caption splits are in
:mod:`lafitebench.data.splits`.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..registry import Registry
from .datasets import ImageSet
from .sources.folder import folder_set

DatasetFactory = Callable[..., ImageSet]
DATASETS: Registry[DatasetFactory] = Registry("dataset")
_SOURCES = "lafitebench.data.sources"
for _name, _entry, _aliases in (
    ("coco", "coco:dataset", ()), ("coco-mini", "coco:mini", ()), ("coco-mini:a", "coco:mini_a", ()),
    ("coco-mini:b", "coco:mini_b", ()), ("cub", "cub:dataset", ("cub-200", "cub200")),
    ("mm-celeba-hq", "mm_celeba:dataset", ("celeba-hq", "mmceleba")), ("ln-coco", "ln_coco:dataset", ()),
    ("cc3m", "cc3m:dataset", ()), ("official-zip", "official_zip:dataset", ()),
    ("captioned-folder", "captioned_folder:dataset", ()),
):
    DATASETS.register(_name, f"{_SOURCES}.{_entry}", aliases=_aliases)


def get_dataset(name_or_dir: str | os.PathLike, data_root: str | os.PathLike | None = None, resolution: int = 256,
                split: str | None = None, *, captions_file: str | os.PathLike | None = None,
                crop: str | None = None, allow_outside_paths: bool = False) -> ImageSet:
    """A registered dataset (``coco-mini``, ``coco-mini:a``/``:b``, ``coco``), a folder, or a
    manifest file (``.jsonl``/``.csv``; its folder is the set's root).

    ``crop`` defaults to the dataset's own (``center`` for ``coco``, ``none`` for folders).

    Raises:
        InputError: unknown name (with a did-you-mean), ``coco`` without ``data_root``, empty
            folder, bad manifest, unknown option for a bundled set.
    """
    s = os.fspath(name_or_dir)
    if not isinstance(name_or_dir, os.PathLike) and s in DATASETS:
        return DATASETS.get(s)(data_root=data_root, resolution=resolution, split=split,
                               captions_file=captions_file, crop=crop)
    p = Path(s).expanduser()
    if p.is_dir():
        if split is not None or data_root is not None:
            raise InputError(f"{p} is a folder set; data_root / split do not apply to it", param="data_root")
        return folder_set(p, resolution=resolution, crop=crop or "none", captions_file=captions_file,
                          allow_outside_paths=allow_outside_paths)
    if p.is_file() and p.suffix.lower() in (".jsonl", ".csv"):
        if captions_file is not None:
            raise InputError(f"{p} is itself a manifest; do not also pass captions_file", param="captions_file")
        return folder_set(p.parent, resolution=resolution, crop=crop or "none", captions_file=p,
                          allow_outside_paths=allow_outside_paths)
    if p.exists():
        raise InputError(f"{p} is a file, not a folder of images, a manifest or a dataset name")
    close = difflib.get_close_matches(s.lower(), DATASETS.names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InputError(
        f"unknown dataset {s!r}.{hint} Known: {', '.join(DATASETS.names())}; or give a folder of images "
        f"or a manifest (no file or folder {p} exists)"
    )




@dataclass(frozen=True)
class Locator:
    """One input a protocol needs: the option that passes it, the environment variable that
    locates it, and what it must hold (for the error message)."""

    option: str
    env: str
    holds: str
    is_file: bool = False

    def find(self, given: str | os.PathLike | None) -> Path:
        """The given path, else the environment variable's; checked to exist.

        Raises:
            InputError: neither given, or the path does not exist (names option, variable and content).
        """
        raw = os.fspath(given) if given is not None else os.environ.get(self.env)
        how = f"pass {self.option} or set {self.env}"
        if not raw:
            raise InputError(f"this data set needs {self.holds}: {how}", param=self.option.lstrip("-").replace("-", "_"))
        p = Path(raw).expanduser()
        ok = p.is_file() if self.is_file else p.is_dir()
        if not ok:
            src = self.option if given is not None else self.env
            raise InputError(f"{'file' if self.is_file else 'folder'} {p} (from {src}) does not exist; it should hold "
                             f"{self.holds} ({how})", param=self.option.lstrip("-").replace("-", "_"))
        return p


@dataclass(frozen=True)
class EvalProtocol:
    """A data set's standard evaluation.

    Attributes:
        name: the ``--dataset`` value.
        title: one line for tables.
        reference: the data set (registry name) of the reference images; ``reference_split`` its split.
        split: the caption split the samples are generated from.
        num: samples per model (None: the split's length).
        resolution: evaluation resolution.
        metrics_protocol: ``lafite-official`` (covariance / N, IS splits in generation order) or ``torch-fidelity``.
        data: where the reference images (and the split's data) are found; None for bundled data.
        captions: a second input (Localized Narratives JSONL, CC3M TSV), or None.
        soa: whether SOA (``--metrics soa``) is part of this protocol (the COCO SOA caption lists).
        zoo_tag: zoo manifests whose ``datasets`` list this tag are swept.
        notes: protocol facts shown under the table.
    """

    name: str
    title: str
    reference: str
    reference_split: str | None
    split: str
    num: int | None
    resolution: int = 256
    metrics_protocol: str = "lafite-official"
    data: Locator | None = None
    captions: Locator | None = None
    soa: bool = False
    zoo_tag: str = ""
    notes: tuple[str, ...] = ()

    def locate(self, data_root: Any = None, captions: Any = None) -> tuple[Path | None, Path | None]:
        """The data folder and captions file of this protocol (given or from the environment).

        Raises:
            InputError: a needed input is missing, naming the option and environment variable.
        """
        root = self.data.find(data_root) if self.data else None
        if self.data is None and data_root is not None:
            raise InputError(f"data set {self.name!r} is bundled; --data-root does not apply", param="data_root")
        cap = self.captions.find(captions) if self.captions else None
        return root, cap

    def to_dict(self) -> dict[str, Any]:
        """The protocol's facts for provenance."""
        return {"dataset": self.name, "reference": self.reference, "reference_split": self.reference_split,
                "split": self.split, "num": self.num, "resolution": self.resolution,
                "metrics_protocol": self.metrics_protocol, "soa": self.soa}


SOA_LISTS = Locator("--soa-lists", "LAFITEBENCH_SOA_LISTS", "the SOA caption lists (label_XX_name.pkl)")

PROTOCOLS: Registry[EvalProtocol] = Registry("data set protocol")


def _add(p: EvalProtocol, aliases: tuple[str, ...] = ()) -> None:
    PROTOCOLS.register(p.name, p, aliases=aliases)


_add(EvalProtocol(
    "coco", "MS-COCO 256², 30,000 samples (captions of the 2014 val images)", "coco", "train2014", "coco-val-30k",
    30_000, data=Locator("--data-root", "LAFITEBENCH_COCO",
                         "the COCO 2014 images (train2014/, val2014/) and annotations/captions_{train,val}2014.json"),
    soa=True, zoo_tag="coco",
    notes=("reference: the COCO train2014 images, as the official evaluation (the authors report the val2014 "
           "reference within 0.1-0.2 FID; --reference-split val2014 uses it)",
           "samples: one seeded caption per val2014 image, cycling to 30,000; lafite-official statistics")),
    aliases=("mscoco", "ms-coco"))
_add(EvalProtocol(
    "coco-mini", "coco-mini: the 100 bundled COCO val2017 images (a quick look, not the paper's protocol)",
    "coco-mini", None, "coco-mini", 100, zoo_tag="coco",
    notes=("100 samples against 100 reference images: FID is dominated by small-sample bias; compare only runs "
           "of this protocol with each other",)))
_add(EvalProtocol(
    "cub", "CUB-200-2011 256², test split", "cub", "test", "cub-test", 30_000,
    data=Locator("--data-root", "LAFITEBENCH_CUB", "CUB images (images/) with text_c10/ and test/filenames.pickle"),
    zoo_tag="cub", notes=("30,000 samples: one seeded caption per test image, cycling",)), aliases=("cub-200",))
_add(EvalProtocol(
    "ln-coco", "LN-COCO 256² (Localized Narratives over COCO val2017)", "ln-coco", "val2017", "ln-coco-test",
    30_000, data=Locator("--data-root", "LAFITEBENCH_LN_COCO", "the COCO images (val2017/)"),
    captions=Locator("--reference-captions", "LAFITEBENCH_LN_COCO_CAPTIONS",
                     "the Localized Narratives JSONL of COCO val2017", is_file=True),
    zoo_tag="ln-coco", notes=("30,000 samples: one seeded narrative per val2017 image, cycling",)))
_add(EvalProtocol(
    "mm-celeba", "MM-CelebA-HQ 256², test split", "mm-celeba-hq", "test", "mm-celeba-hq-test", 6_000,
    data=Locator("--data-root", "LAFITEBENCH_MM_CELEBA",
                 "CelebA-HQ-img/ with celeba-caption/ and test/filenames.pickle"),
    zoo_tag="mm-celeba", notes=("6,000 samples, as the official evaluation of MM-CelebA-HQ",)),
    aliases=("mm-celeba-hq",))
_add(EvalProtocol(
    "cc3m", "Google CC3M 256², validation captions", "cc3m", None, "cc3m-val", 30_000,
    captions=Locator("--reference-captions", "LAFITEBENCH_CC3M",
                     "a CC3M TSV of caption<TAB>local image path (the validation set)", is_file=True),
    zoo_tag="cc3m", notes=("30,000 samples: one caption per validation image, cycling",)))


def get_protocol(name: str) -> EvalProtocol:
    """The protocol of ``--dataset NAME``.

    Raises:
        InputError: unknown name (lists the known ones, suggests the closest).
    """
    try:
        return PROTOCOLS.get(name)
    except KeyError as e:
        raise InputError(f"--dataset: {e}", param="dataset") from None


__all__ = ["DATASETS", "get_dataset", "EvalProtocol", "Locator", "PROTOCOLS", "SOA_LISTS", "get_protocol"]
