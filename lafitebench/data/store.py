"""CLIP feature stores: a data set prepared for LAFITE training, and its official-zip export.

A store is a folder::

    STORE/store.json                 identity (source, resolution, CLIP model + weights sha256,
                                     preprocessing, dtype, long-caption rule) + status + counts
    STORE/shards/shard-00000.safetensors
        images        uint8 [n, 3, R, R]   centre-cropped, LANCZOS-resized (StyleGAN2-ADA dataset_tool)
        img_features  float16|32 [n, D]    CLIP image features, unnormalised (as the official zips)
        txt_features  float16|32 [m, D]    CLIP text features of every caption, unnormalised
        txt_offsets   int64 [n + 1]        captions of image i: rows txt_offsets[i]:txt_offsets[i+1]
        (metadata "rows": JSON list of {source, captions, mode}; "counts": JSON)
    STORE/index.csv                  one row per image: idx, shard, row, source, mode, n_captions, captions (JSON)

Shards cover fixed ranges of the source's items and are written atomically, so a run killed at
any point resumes at the first missing shard; ``store.json`` says ``complete`` only after the
index is written. Image features follow the official dataset tool by default (``official``: a
random square crop of 99-100 % of the side, or white padding below 224, bicubic to 224, CLIP
normalisation; seeded per image here, so reproducible), or open_clip's eval transform
(``open_clip``). Captions longer than CLIP's 77-token context are split at '.' and ',' and their
features averaged (``split``, the official tool's rule) or truncated (``truncate``); both counted.
Grayscale, palette, CMYK and 16-bit images are converted (:mod:`lafitebench.data.images`) and
counted by original mode.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from .. import __version__
from ..encoders.clip import CLIP_MEAN, CLIP_STD, caption_token_lengths, clip_preprocess_uint8, load_clip
from ..errors import InputError
from ..io.files import atomic_path, atomic_write, read_text, write_json_atomic
from ..runtime.device import resolve_device
from ..runtime.progress import progress
from ..runtime.rng import sample_generator
from .datasets import _without_worker_tracebacks
from .images import DecodeDataset
from .registry import get_dataset

STORE_FORMAT = "lafitebench-feature-store"
STORE_VERSION = 1
STORE_FILE = "store.json"
INDEX_FILE = "index.csv"
DTYPES = {"float16": torch.float16, "float32": torch.float32}
LONG_CAPTIONS = ("split", "truncate")
IMAGE_FEATURES = ("official", "open_clip")
CLIP_INPUT = 224
CONTEXT_LENGTH = 77


@dataclass
class PrepareConfig:
    """Options of ``lafitebench data prepare`` (all recorded in ``store.json``).

    Attributes:
        source: a data set name (``coco``, ``cub``, ``mm-celeba-hq``, ``ln-coco``, ``cc3m``,
            ``captioned-folder``, ``official-zip``, ``coco-mini``), a folder of images with
            ``name.txt`` captions, or an official LAFITE ``.zip``.
        out: the store folder.
        data_root, split, captions_file: the data set's inputs (as for ``eval --reference``).
        resolution: training resolution (centre crop + LANCZOS).
        clip_model, clip_pretrained, clip_weights: the CLIP model (default ViT-B-32 / openai).
        dtype: ``float16`` or ``float32`` feature storage.
        long_captions: ``split`` (official) or ``truncate``.
        image_features: ``official`` (seeded random crop / pad, bicubic) or ``open_clip``.
        shard_size: images per shard.  batch_size: CLIP batch.  num_workers: DataLoader workers.
        seed: seed of the official crops.  device: ``auto``/``cpu``/``cuda``.
        skip_bad: leave out unreadable images (counted) instead of stopping.
        overwrite: replace a store of other settings in ``out``.
    """

    source: str = "coco-mini"
    out: str = ""
    data_root: str | None = None
    split: str | None = None
    captions_file: str | None = None
    resolution: int = 256
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = "openai"
    clip_weights: str | None = None
    dtype: str = "float16"
    long_captions: str = "split"
    image_features: str = "official"
    shard_size: int = 1024
    batch_size: int = 64
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    skip_bad: bool = False
    overwrite: bool = False
    progress: bool = True


def check_prepare_config(cfg: PrepareConfig) -> None:
    """Option checks before any file is read. Raises InputError naming the option."""
    if not cfg.out:
        raise InputError("no store folder given", param="out")
    for name, allowed in (("dtype", DTYPES), ("long_captions", LONG_CAPTIONS), ("image_features", IMAGE_FEATURES)):
        if getattr(cfg, name) not in allowed:
            raise InputError(f"{name} must be one of {', '.join(allowed)}, got {getattr(cfg, name)!r}", param=name)
    for name in ("resolution", "shard_size", "batch_size"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}", param=name)
    if cfg.resolution & (cfg.resolution - 1) or cfg.resolution < 4:
        raise InputError(f"resolution must be a power of two (LAFITE's generators need one), got {cfg.resolution}",
                         param="resolution")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"store {out} is a file; give a folder", param="out")


# --------------------------------------------------------------------------------------------
# Small pure functions.


def split_long_caption(text: str) -> list[str]:
    """The official dataset tool's pieces of a caption too long for CLIP: split at '.', then
    each piece at ',', blank pieces dropped (their features are averaged)."""
    pieces = []
    for sentence in text.split("."):
        if sentence.strip():
            pieces += [p for p in sentence.split(",") if p.strip()]
    return pieces or [text]


def official_clip_view(image: torch.Tensor, generator: torch.Generator, size: int = CLIP_INPUT,
                       mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """The official dataset tool's CLIP input for one uint8 image [3, R, R]: below ``size``
    (224 for ViT-B/32), white padding at a random offset; otherwise a random square crop of side
    in [0.99 R, R) at a random position, bicubic (no antialias) to ``size``; then CLIP
    normalisation. Returns [3, size, size]."""
    x = image.float().unsqueeze(0) / 255.0
    r = x.shape[-1]
    if r < size:
        p1 = int(torch.randint(0, size - r, (), generator=generator))
        p2 = int(torch.randint(0, size - r, (), generator=generator))
        x = F.pad(x, (p1, size - r - p1, p2, size - r - p2), value=1.0)
    else:
        cut = int(torch.randint(int(0.99 * r), r, (), generator=generator)) if int(0.99 * r) < r else r
        left = int(torch.randint(0, r - cut, (), generator=generator)) if cut < r else 0
        top = int(torch.randint(0, r - cut, (), generator=generator)) if cut < r else 0
        x = F.interpolate(x[:, :, top:top + cut, left:left + cut], (size, size), mode="bicubic", align_corners=False)
    m = torch.tensor(list(mean)).view(1, 3, 1, 1)
    sd = torch.tensor(list(std)).view(1, 3, 1, 1)
    return ((x - m) / sd)[0]


def shard_name(k: int) -> str:
    """File name of shard ``k``."""
    return f"shard-{k:05d}.safetensors"


# --------------------------------------------------------------------------------------------
# Decoding.


def _collate(samples: list) -> list:
    return samples


def _mode_group(mode: str) -> str:
    if mode in ("L", "LA", "1"):
        return "grayscale"
    if mode.startswith("I;16") or mode == "I":
        return "16-bit"
    if mode == "CMYK":
        return "cmyk"
    if mode in ("P", "PA"):
        return "palette"
    if mode in ("RGB", "RGBA"):
        return "rgb"
    return "other"


# --------------------------------------------------------------------------------------------
# Encoding.


def _encode_captions(clip: Any, captions: list[str], rule: str, batch_size: int,
                     bar: Any = None) -> tuple[torch.Tensor, dict]:
    """Unnormalised CLIP text features [len(captions), D] with the long-caption rule; counts.
    ``bar``: a Rich progress to show the encoding on (a task per call, removed when done)."""

    model, tokenizer = clip[0], clip[1]
    lengths = caption_token_lengths(tokenizer, captions) if captions else []
    pieces, owner = [], []
    n_long = 0
    for k, (cap, n) in enumerate(zip(captions, lengths)):
        parts = split_long_caption(cap) if (rule == "split" and n > CONTEXT_LENGTH) else [cap]
        n_long += n > CONTEXT_LENGTH
        pieces += parts
        owner += [k] * len(parts)
    device = next(model.parameters()).device
    feats = []
    task = bar.add_task("encode captions", total=len(pieces)) if bar is not None and pieces else None
    with torch.inference_mode():
        for s in range(0, len(pieces), batch_size):
            feats.append(model.encode_text(tokenizer(pieces[s:s + batch_size]).to(device)).float().cpu())
            if task is not None:
                bar.update(task, advance=len(pieces[s:s + batch_size]))
    if task is not None:
        bar.remove_task(task)
    dim = int(model.text_projection.shape[-1])
    raw = torch.cat(feats) if feats else torch.empty(0, dim)
    out = torch.zeros(len(captions), dim)
    counts = torch.zeros(len(captions))
    idx = torch.tensor(owner, dtype=torch.long)
    if len(owner):
        out.index_add_(0, idx, raw)
        counts.index_add_(0, idx, torch.ones(len(owner)))
    out = out / counts.clamp(min=1).unsqueeze(1)  # the mean over a caption's pieces (official rule)
    key = "long_captions_split" if rule == "split" else "long_captions_truncated"
    return out, {key: int(n_long)}


def _encode_images(clip: Any, images: torch.Tensor, indices: Sequence[int], cfg: PrepareConfig,
                   preprocess_cfg: dict) -> torch.Tensor:

    model = clip[0]
    device = next(model.parameters()).device
    if cfg.image_features == "official":
        size = preprocess_cfg.get("size", CLIP_INPUT)
        size = size if isinstance(size, int) else int(size[0])
        norm = {k: preprocess_cfg[k] for k in ("mean", "std") if k in preprocess_cfg}
        x = torch.stack([official_clip_view(img, sample_generator(cfg.seed, i, "clip-crop"), size, **norm)
                         for img, i in zip(images, indices)])
    else:
        x = clip_preprocess_uint8(images, preprocess_cfg)
    with torch.inference_mode():
        return model.encode_image(x.to(device)).float().cpu()


# --------------------------------------------------------------------------------------------
# Preparing.


@dataclass
class PreparedStore:
    """What :func:`prepare_store` returns."""

    path: Path
    n_images: int
    n_captions: int
    shards_written: int
    shards_reused: int
    counts: dict[str, Any]


def _identity(cfg: PrepareConfig, dataset: Any, clip_info: dict, dim: int) -> dict[str, Any]:
    return {
        "source": {k: v for k, v in dataset.provenance().items() if k in ("name", "kind", "n", "fingerprint")},
        "resolution": cfg.resolution, "crop": "center crop + PIL LANCZOS (StyleGAN2-ADA dataset_tool center-crop)",
        "clip": {"model": clip_info.get("model"), "pretrained": clip_info.get("pretrained"),
                 "weights_sha256": clip_info.get("weights_sha256"), "f_dim": dim},
        "image_features": cfg.image_features, "long_captions": cfg.long_captions, "dtype": cfg.dtype,
        "normalized": False, "seed": cfg.seed, "shard_size": cfg.shard_size, "skip_bad": cfg.skip_bad,
    }


def _start(out: Path, identity: dict, overwrite: bool) -> None:
    head = out / STORE_FILE
    if head.is_file():
        try:
            old = json.loads(read_text(head, "feature store header"))
        except json.JSONDecodeError:
            old = {}
        if old.get("identity") != identity:
            if not overwrite:
                raise InputError(f"{out} holds a feature store of other settings or data (see {head}); pass "
                                 "--overwrite or choose another folder", param="overwrite")
            for p in (out / "shards").glob("shard-*.safetensors"):
                p.unlink()
            (out / INDEX_FILE).unlink(missing_ok=True)
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out} is not empty and holds no feature store; choose an empty or new folder", param="out")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    write_json_atomic(head, {"format": STORE_FORMAT, "version": STORE_VERSION, "status": "in-progress",
                             "identity": identity})


def _shard_ok(path: Path) -> bool:
    from safetensors import safe_open

    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return {"images", "img_features", "txt_features", "txt_offsets"} <= set(f.keys())
    except Exception:  # noqa: BLE001 - any unreadable shard is rewritten
        return False


def _write_shard(path: Path, images: list, img_f: list, caps: list, txt_f: torch.Tensor, rows: list,
                 counts: dict, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    offsets = torch.tensor([0] + [len(c) for c in caps], dtype=torch.int64).cumsum(0)
    tensors = {"images": torch.stack(images).contiguous() if images else torch.empty(0, 3, 1, 1, dtype=torch.uint8),
               "img_features": torch.stack(img_f).to(dtype).contiguous() if img_f else torch.empty(0, txt_f.shape[1]),
               "txt_features": txt_f.to(dtype).contiguous(), "txt_offsets": offsets}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"rows": json.dumps(rows, ensure_ascii=False),
                                               "counts": json.dumps(counts)})


def _captions_of(item: Any) -> list[str]:
    caps = list(item.captions) if item.captions else ([item.caption] if item.caption else [])
    return [c for c in caps if isinstance(c, str) and c.strip()]


def prepare_store(cfg: PrepareConfig) -> PreparedStore:
    """Build (or resume) the feature store ``cfg.out`` from ``cfg.source`` (module docstring).

    Raises:
        InputError: bad options, unknown data set, a folder of another store (without
            ``overwrite``), an unreadable image (without ``skip_bad``, naming the file);
        WeightsError: CLIP weights missing (offline: names the file and its sha256).
    """

    check_prepare_config(cfg)
    src = Path(str(cfg.source)).expanduser()
    if src.is_file() and src.suffix.lower() == ".zip":
        dataset = get_dataset("official-zip", data_root=src, resolution=cfg.resolution)
    elif src.is_dir() and cfg.data_root is None and str(cfg.source) not in ("coco-mini",):
        dataset = get_dataset("captioned-folder", data_root=src, resolution=cfg.resolution)
    else:
        dataset = get_dataset(cfg.source, data_root=cfg.data_root, resolution=cfg.resolution, split=cfg.split,
                              captions_file=cfg.captions_file)  # decoded here: centre crop + LANCZOS
    if len(dataset) == 0:
        raise InputError(f"data set {cfg.source} holds no images", param="source")
    device = resolve_device(cfg.device)
    model, _, tokenizer, info = load_clip(cfg.clip_model, cfg.clip_pretrained, cfg.clip_weights, device)
    model.eval()
    clip = (model, tokenizer)
    dim = int(model.text_projection.shape[-1])
    out = Path(cfg.out)
    identity = _identity(cfg, dataset, info, dim)
    _start(out, identity, cfg.overwrite)
    items = dataset.items
    n_shards = -(-len(items) // cfg.shard_size)
    written = reused = 0
    with progress(disable=not cfg.progress) as bar:
        task = bar.add_task(f"prepare {dataset.name}", total=len(items))
        for k in range(n_shards):
            lo, hi = k * cfg.shard_size, min(len(items), (k + 1) * cfg.shard_size)
            path = out / "shards" / shard_name(k)
            if _shard_ok(path):
                reused += 1
                bar.update(task, advance=hi - lo)
                continue
            _prepare_shard(items[lo:hi], lo, path, clip, info, cfg, bar, task)
            written += 1
    return _finish(out, identity, written, reused)


def _prepare_shard(items: Sequence[Any], lo: int, path: Path, clip: Any, info: dict, cfg: PrepareConfig,
                   bar: Any, task: Any) -> None:

    ds = DecodeDataset([it.path for it in items], cfg.resolution, "center", cfg.skip_bad)
    dl = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=_collate)
    images, img_f, caps, rows = [], [], [], []
    counts: dict[str, Any] = {"modes": {}, "skipped": []}
    for batch in _without_worker_tracebacks(dl):
        good = [(i, t, m) for i, t, m in batch if t is not None]
        for i, _, msg in batch:
            if _ is None:
                counts["skipped"].append(msg)
        if good:
            feats = _encode_images(clip, torch.stack([t for _, t, _ in good]), [lo + i for i, _, _ in good], cfg,
                                   info.get("preprocess", {}))
            for (i, t, mode), f in zip(good, feats):
                group = _mode_group(mode)
                counts["modes"][group] = counts["modes"].get(group, 0) + 1
                images.append(t)
                img_f.append(f)
                caps.append(_captions_of(items[i]))
                rows.append({"idx": lo + i, "source": str(items[i].path), "mode": mode, "captions": caps[-1]})
        bar.update(task, advance=len(batch))
    flat = [c for cs in caps for c in cs]
    txt_f, long_counts = _encode_captions(clip, flat, cfg.long_captions, cfg.batch_size, bar)
    counts.update(long_counts)
    _write_shard(path, images, img_f, caps, txt_f, rows, counts, DTYPES[cfg.dtype])


def _finish(out: Path, identity: dict, written: int, reused: int) -> PreparedStore:
    import pandas as pd

    store = FeatureStore(out, require_complete=False)
    totals: dict[str, Any] = {"modes": {}, "skipped": 0, "long_captions_split": 0, "long_captions_truncated": 0}
    records = []
    for k, meta in enumerate(store.shard_meta()):
        c = meta["counts"]
        for mode, n in c["modes"].items():
            totals["modes"][mode] = totals["modes"].get(mode, 0) + n
        totals["skipped"] += len(c["skipped"])
        for key in ("long_captions_split", "long_captions_truncated"):
            totals[key] += c.get(key, 0)
        for r, row in enumerate(meta["rows"]):
            records.append({"idx": row["idx"], "shard": k, "row": r, "source": row["source"], "mode": row["mode"],
                            "n_captions": len(row["captions"]),
                            "captions": json.dumps(row["captions"], ensure_ascii=False)})
    with atomic_write(out / INDEX_FILE, "w") as f:
        pd.DataFrame.from_records(records, columns=["idx", "shard", "row", "source", "mode", "n_captions",
                                                    "captions"]).to_csv(f, index=False)
    totals["images"] = len(records)
    totals["captions"] = sum(r["n_captions"] for r in records)
    totals["images_without_captions"] = sum(r["n_captions"] == 0 for r in records)

    write_json_atomic(out / STORE_FILE, {"format": STORE_FORMAT, "version": STORE_VERSION, "status": "complete",
                                         "identity": identity, "counts": totals,
                                         "shards": [shard_name(k) for k in range(len(store.shards))],
                                         "lafitebench_version": __version__})
    return PreparedStore(out, totals["images"], totals["captions"], written, reused, totals)


# --------------------------------------------------------------------------------------------
# Reading.


def is_store(path: str | Path) -> bool:
    """True when ``path`` is a folder with a feature store header."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / STORE_FILE).is_file()


class FeatureStore:
    """A prepared feature store, read lazily shard by shard (safetensors: no code executes).

    Raises InputError (not a store, another format version, an unfinished store when
    ``require_complete``) on opening.
    """

    def __init__(self, path: str | Path, require_complete: bool = True) -> None:
        self.path = Path(path).expanduser()
        head = self.path / STORE_FILE
        if not head.is_file():
            raise InputError(f"{self.path} is not a feature store (no {STORE_FILE}); make one with "
                             "`lafitebench data prepare`")
        try:
            self.header = json.loads(read_text(head, "feature store header"))
        except json.JSONDecodeError as e:
            raise InputError(f"{head} is not valid JSON ({e})") from None
        if self.header.get("format") != STORE_FORMAT or self.header.get("version") != STORE_VERSION:
            raise InputError(f"{head}: format {self.header.get('format')!r} version {self.header.get('version')!r}; "
                             f"this lafitebench reads {STORE_FORMAT} version {STORE_VERSION}")
        if require_complete and self.header.get("status") != "complete":
            raise InputError(f"feature store {self.path} is unfinished: run the same `lafitebench data prepare` "
                             "command again to complete it")
        self.identity = self.header["identity"]
        self.shards = sorted((self.path / "shards").glob("shard-*.safetensors"))

    @property
    def clip(self) -> dict[str, Any]:
        """The CLIP model, tag, weights sha256 and feature width the features were made with."""
        return dict(self.identity["clip"])

    @property
    def resolution(self) -> int:
        return int(self.identity["resolution"])

    def shard_meta(self) -> Iterator[dict[str, Any]]:
        """Per shard: ``{"rows": [...], "counts": {...}}`` from its metadata."""
        from safetensors import safe_open

        for p in self.shards:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
            yield {"rows": json.loads(meta.get("rows", "[]")), "counts": json.loads(meta.get("counts", "{}"))}

    def load(self, images: bool = True) -> dict[str, Any]:
        """All shards concatenated: images uint8 [N,3,R,R] (only with ``images``; they are most
        of a store's size), img_features [N,D], txt_features [M,D], txt_offsets [N+1],
        rows (source, mode, captions), shard_sizes (images per shard)."""
        from safetensors import safe_open

        keys = ("img_features", "txt_features", "txt_offsets") + (("images",) if images else ())
        parts = []
        for p in self.shards:
            with safe_open(str(p), framework="pt") as f:
                parts.append({k: f.get_tensor(k) for k in keys})
        rows = [r for m in self.shard_meta() for r in m["rows"]]
        base, offsets = 0, [torch.zeros(1, dtype=torch.int64)]
        for part in parts:
            offsets.append(part["txt_offsets"][1:] + base)
            base += int(part["txt_offsets"][-1])
        out = {"img_features": torch.cat([p["img_features"] for p in parts]).float(),
               "txt_features": torch.cat([p["txt_features"] for p in parts]).float(),
               "txt_offsets": torch.cat(offsets), "rows": rows,
               "shard_sizes": [int(p["img_features"].shape[0]) for p in parts]}
        if images:
            out["images"] = torch.cat([p["images"] for p in parts])
        return out

    def check_backbone(self, clip_meta: dict[str, Any] | None, what: str) -> None:
        """Refuse a model whose CLIP backbone differs from the store's (names both)."""
        check_clip_match(self.clip.get("model"), clip_meta, f"feature store {self.path}", what)


def check_clip_match(features_model: str | None, clip_meta: dict[str, Any] | None, features_what: str,
                     model_what: str) -> None:
    """InputError when features from CLIP ``features_model`` (open_clip name) meet a model
    trained with another backbone (``clip_meta``: a native config's ``clip`` block)."""
    model_clip = (clip_meta or {}).get("open_clip_model")
    if features_model and model_clip and not same_backbone(features_model, model_clip):
        raise InputError(f"{features_what} holds CLIP {features_model} features but {model_what} was trained with CLIP "
                         f"{(clip_meta or {}).get('name') or model_clip}: the features would not be the ones it "
                         "expects; prepare the data with its backbone (--clip-model)", param="clip_model")


def same_backbone(a: str, b: str) -> bool:
    """Whether two CLIP names are the same backbone (``ViT-B/32`` = ``ViT-B-32`` = ``vit-b-32``)."""
    return a.replace("/", "-").lower() == b.replace("/", "-").lower()


# --------------------------------------------------------------------------------------------
# The official zip format.


def export_official(store: FeatureStore, zip_path: str | Path) -> Path:
    """Write the store as an official LAFITE dataset zip: ``%05d/img%08d.png`` (uncompressed PNG,
    as the official tool) + ``dataset.json`` with ``labels: null``, ``clip_img_features`` and
    ``clip_txt_features`` (unnormalised float lists). Atomic: the zip appears when complete.
    Images without captions are left out (the official loader needs text for every image).
    """
    from PIL import Image

    zip_path = Path(zip_path).expanduser()
    if zip_path.suffix.lower() != ".zip":
        raise InputError(f"--export-official needs a .zip file name, got {zip_path}", param="export_official")
    from safetensors import safe_open

    data = store.load(images=False)
    img_feats, txt_feats = [], []
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        i = k = 0
        for shard in store.shards:  # one shard's images in memory at a time
            with safe_open(str(shard), framework="pt") as f:
                images = f.get_tensor("images")
            for img in images:
                lo, hi = int(data["txt_offsets"][i]), int(data["txt_offsets"][i + 1])
                if hi > lo:
                    name = f"{k:08d}"
                    member = f"{name[:5]}/img{name}.png"
                    buf = io.BytesIO()
                    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="png", compress_level=0)
                    zf.writestr(member, buf.getvalue())
                    img_feats.append([member, data["img_features"][i].tolist()])
                    txt_feats.append([member, data["txt_features"][lo:hi].tolist()])
                    k += 1
                i += 1
        zf.writestr("dataset.json", json.dumps({"labels": None, "clip_img_features": img_feats,
                                                "clip_txt_features": txt_feats}))
    return zip_path


__all__ = ["PrepareConfig", "PreparedStore", "FeatureStore", "prepare_store", "export_official", "is_store",
           "check_clip_match", "same_backbone", "split_long_caption", "official_clip_view", "STORE_FORMAT"]
