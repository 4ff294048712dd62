"""``lafitebench train`` and ``train-mapper`` (defaults from :class:`~lafitebench.training.config.TrainConfig`
and its presets)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..training.config import TrainConfig, preset_help
from .common import err_console, out_console
from .errors import boundary

D = TrainConfig()

TRAIN_HELP = f"""Train a LAFITE generator (Lafite-G, Lafite-NN or fully supervised).

DATA is a feature store (`lafitebench data prepare`), an official LAFITE dataset .zip, or a
data set name / folder (prepared into OUT/data with the CLIP model first). Options left unset come
from --preset, then the variant (mixing probability 1 for g/nn, 0 for supervised).

Presets: {preset_help()}.

Snapshots (native .safetensors: G, G_ema, D, [P]; `lafitebench generate --model` reads them),
training states for --resume (a run continued from a state equals an uninterrupted one), a JSONL
log, sample grids and snapshot FID (--metrics none turns it off) go to OUT. Multi-GPU: torchrun
--nproc_per_node N -m lafitebench train ... (the batch is split over the processes).

Examples:

\b
  lafitebench data prepare coco-mini --out stores/mini --resolution 32
  lafitebench train --variant g --data stores/mini --out runs/tiny --preset tiny
  lafitebench train --variant nn --data coco.zip --out runs/nn --preset coco-language-free
  lafitebench train --variant supervised --data stores/coco --out runs/sup --preset coco-supervised
  lafitebench train --variant g --data stores/mini --out runs/tiny --resume --kimg 1
  torchrun --standalone --nproc_per_node 4 -m lafitebench train --variant g --data stores/coco --out runs/g
"""


@boundary
def train_cmd(
    variant: str = typer.Option(D.variant, "--variant", metavar="g|nn|supervised"),
    data: str = typer.Option(..., "--data", metavar="NAME|STORE|ZIP", help="Feature store, official .zip or data set."),
    out: Path = typer.Option(..., "--out", metavar="RUN_DIR", help="The run folder."),
    preset: str = typer.Option(D.preset, "--preset", metavar="NAME", help="coco-language-free, coco-supervised, finetune, tiny."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Must match the data (default: the data's)."),
    kimg: Optional[float] = typer.Option(None, "--kimg", help="Training length in thousands of real images."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Global batch size."),
    batch_gpu: Optional[int] = typer.Option(None, "--batch-gpu", help="Images per round (gradient accumulation)."),
    mixing_prob: Optional[float] = typer.Option(None, "--mixing-prob", help="Probability of the pseudo-text condition."),
    itc: Optional[float] = typer.Option(None, "--itc", help="Weight of the CLIP image-text contrastive term (G)."),
    itd: Optional[float] = typer.Option(None, "--itd", help="Weight of the discriminator contrastive term."),
    gamma: Optional[float] = typer.Option(None, "--gamma", help="R1 weight."),
    temp: Optional[float] = typer.Option(None, "--temp", help="Contrastive temperature."),
    lam: Optional[float] = typer.Option(None, "--lam", help="Contrastive direction mix (0: dim 0 only, official)."),
    contrastive: Optional[str] = typer.Option(None, "--contrastive", metavar="official|paper"),
    semantic_term: Optional[str] = typer.Option(None, "--semantic-term", metavar="official|paper"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    mirror: Optional[bool] = typer.Option(None, "--mirror/--no-mirror", help="x-flip augmentation."),
    gather: Optional[bool] = typer.Option(None, "--gather/--no-gather", help="Contrastive negatives from all ranks."),
    snap: Optional[float] = typer.Option(None, "--snap", help="kimg between snapshots."),
    metrics: Optional[str] = typer.Option(None, "--metrics", metavar="fid|none", help="Snapshot FID or none."),
    fid_num: Optional[int] = typer.Option(None, "--fid-num", help="Images for the snapshot FID."),
    init: Optional[str] = typer.Option(None, "--init", metavar="MODEL", help="Fine-tune from a zoo id, native file or official .pkl."),
    mapper: Optional[Path] = typer.Option(None, "--mapper", metavar="FILE", help="Lafite-NN perturbation network (implicit.*.pth)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest training state in --out with its options."),
    seed: int = typer.Option(D.seed, "--seed", min=0),
    device: str = typer.Option(D.device, "--device"),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", metavar="NAME"),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", metavar="TAG"),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", metavar="PATH"),
) -> None:
    from ..jobs.train import run_train
    from ..runtime import distributed

    cfg = TrainConfig(variant=variant, data=data, out=str(out), preset=preset, resolution=resolution, kimg=kimg,
                      batch=batch, batch_gpu=batch_gpu, mixing_prob=mixing_prob, itc=itc, itd=itd, gamma=gamma,
                      temp=temp, lam=lam, contrastive=contrastive, semantic_term=semantic_term, lr=lr, mirror=mirror,
                      gather=gather, snap=snap, metrics=metrics, fid_num=fid_num, init=init,
                      mapper=str(mapper) if mapper else None, resume=resume, seed=seed, device=device,
                      clip_model=clip_model, clip_pretrained=clip_pretrained,
                      clip_weights=str(clip_weights) if clip_weights else None)
    job = run_train(cfg)
    if distributed.is_main():
        last = job.snapshots[-1] if job.snapshots else None
        out_console.print(f"trained to {job.kimg:.3f} kimg in {job.seconds:.1f} s"
                          + (f" (resumed from {job.resumed_from.name})" if job.resumed_from else ""))
        for rec in job.fid:
            out_console.print(f"  FID {rec['fid']:.2f} at {rec['kimg']:.3f} kimg ({rec['n']} images)")
        if last:
            err_console.print(f"latest snapshot: {last}")
    distributed.shutdown()


MAPPER_HELP = """Train the Lafite-NN perturbation network (μ and log σ branches) on the paired CLIP
image/text features of a feature store or official zip, with a contrastive objective; writes the
official implicit.*.pth state-dict format (`train --variant nn --mapper FILE` reads it).

Examples:

\b
  lafitebench train-mapper --data stores/coco --out mapper.pth
"""


@boundary
def train_mapper_cmd(
    data: str = typer.Option(..., "--data", metavar="STORE|ZIP"),
    out: Path = typer.Option(..., "--out", metavar="FILE"),
    steps: int = typer.Option(2000, "--steps", min=1),
    batch: int = typer.Option(256, "--batch", min=2),
    lr: float = typer.Option(1e-4, "--lr"),
    temp: float = typer.Option(0.1, "--temp"),
    seed: int = typer.Option(0, "--seed", min=0),
    device: str = typer.Option("auto", "--device"),
) -> None:
    from ..jobs.train import run_train_mapper

    job = run_train_mapper(data, str(out), steps=steps, batch=batch, lr=lr, temp=temp, seed=seed, device=device)
    out_console.print(f"trained on {job.pairs} image-caption pairs: contrastive loss {job.loss_start:.4f} → "
                      f"{job.loss_end:.4f}; wrote {job.path}")
