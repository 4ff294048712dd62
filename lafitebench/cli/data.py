"""``lafitebench data``: feature stores (options default from :class:`~lafitebench.data.store.PrepareConfig`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..data.store import FeatureStore, PrepareConfig
from ..data.store import export_official as export
from ..data.store import prepare_store
from ..errors import InputError
from .common import err_console, out_console
from .errors import boundary

D = PrepareConfig()

data_app = typer.Typer(help="Prepare data sets for training: CLIP feature stores and official zips.",
                       no_args_is_help=True, rich_markup_mode=None)

PREPARE_HELP = """Prepare a data set for LAFITE training: images centre-cropped and resized to the
training resolution, CLIP image and text features of every image and caption, in shards plus an
index (STORE/store.json, STORE/index.csv, STORE/shards/). Resumable: run the same command again
after a kill and it continues at the first missing shard.

SOURCE: a data set name (coco, cub, mm-celeba-hq, ln-coco, cc3m, captioned-folder, official-zip,
coco-mini), a folder of images with name.txt caption files, or an official LAFITE .zip.

Examples:

\b
  lafitebench data prepare coco-mini --out stores/mini --resolution 64
  lafitebench data prepare coco --data-root /data/coco --split train2014 \\
      --out stores/coco
  lafitebench data prepare /data/my_images --out stores/mine \\
      --export-official mine.zip
"""

@boundary
def prepare_cmd(
    source: str = typer.Argument(..., metavar="NAME|PATH", help="Data set name, folder with name.txt captions, or official .zip."),
    out: Path = typer.Option(..., "--out", metavar="STORE", help="The store folder."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", metavar="DIR", help="The data set's folder."),
    split: Optional[str] = typer.Option(None, "--split", help="The data set's split (train2014, test, ...)."),
    captions_file: Optional[Path] = typer.Option(None, "--captions", metavar="FILE",
                                                 help="Caption file (COCO JSON, LN-COCO JSONL, CC3M TSV)."),
    resolution: int = typer.Option(D.resolution, "--resolution", min=4, help="Training resolution (power of two)."),
    clip_model: str = typer.Option(D.clip_model, "--clip-model", metavar="NAME", help="open_clip model name."),
    clip_pretrained: Optional[str] = typer.Option(D.clip_pretrained, "--clip-pretrained", metavar="TAG"),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", metavar="PATH", help="Local CLIP weights file."),
    dtype: str = typer.Option(D.dtype, "--dtype", metavar="float16|float32", help="Feature storage type."),
    long_captions: str = typer.Option(D.long_captions, "--long-captions", metavar="split|truncate",
                                      help="Captions over 77 tokens: split at '.'/',' and average (official) or truncate."),
    image_features: str = typer.Option(D.image_features, "--image-features", metavar="official|open_clip",
                                       help="CLIP image input: the official tool's seeded 99-100% crop + bicubic, or "
                                            "open_clip's eval transform."),
    shard_size: int = typer.Option(D.shard_size, "--shard-size", min=1, help="Images per shard."),
    batch_size: int = typer.Option(D.batch_size, "--batch-size", min=1),
    num_workers: int = typer.Option(D.num_workers, "--workers", min=0, help="DataLoader decoding workers."),
    seed: int = typer.Option(D.seed, "--seed", min=0, help="Seed of the official crops."),
    device: str = typer.Option(D.device, "--device"),
    skip_bad: bool = typer.Option(D.skip_bad, "--skip-bad", help="Leave out unreadable images (counted)."),
    overwrite: bool = typer.Option(D.overwrite, "--overwrite", help="Replace a store of other settings in --out."),
    export_official: Optional[Path] = typer.Option(None, "--export-official", metavar="ZIP",
                                                   help="Also write the official LAFITE dataset zip format."),
) -> None:
    from rich.table import Table


    if export_official is not None and export_official.suffix.lower() != ".zip":
        raise InputError(f"--export-official needs a .zip file name, got {export_official}", param="export_official")
    cfg = PrepareConfig(source=source, out=str(out), data_root=str(data_root) if data_root else None, split=split,
                        captions_file=str(captions_file) if captions_file else None, resolution=resolution,
                        clip_model=clip_model, clip_pretrained=clip_pretrained,
                        clip_weights=str(clip_weights) if clip_weights else None, dtype=dtype,
                        long_captions=long_captions, image_features=image_features, shard_size=shard_size,
                        batch_size=batch_size, num_workers=num_workers, seed=seed, device=device, skip_bad=skip_bad,
                        overwrite=overwrite)
    done = prepare_store(cfg)
    t = Table(title=f"feature store {done.path}")
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("images", str(done.n_images))
    t.add_row("captions", str(done.n_captions))
    for mode, n in sorted(done.counts["modes"].items()):
        t.add_row(f"  converted from {mode}" if mode != "rgb" else "  RGB(A)", str(n))
    t.add_row("long captions split" if long_captions == "split" else "long captions truncated",
              str(done.counts["long_captions_split" if long_captions == "split" else "long_captions_truncated"]))
    t.add_row("images without captions", str(done.counts["images_without_captions"]))
    t.add_row("unreadable, skipped", str(done.counts["skipped"]))
    t.add_row("shards written / already there", f"{done.shards_written} / {done.shards_reused}")
    out_console.print(t)
    if export_official is not None:
        z = export(FeatureStore(done.path), export_official)
        err_console.print(f"wrote {z} (official LAFITE dataset zip)")


data_app.command("prepare", help=PREPARE_HELP)(prepare_cmd)
