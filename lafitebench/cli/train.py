"""``lafitebench train`` and ``train-mapper`` (defaults from :class:`~lafitebench.training.config.TrainConfig`
and its presets)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..jobs.train import run_train, run_train_mapper
from ..runtime import distributed
from ..training.config import TrainConfig, per_preset, preset_help
from .common import err_console, out_console
from .errors import boundary

D = TrainConfig()

TRAIN_HELP = f"""Train a LAFITE generator (Lafite-G, Lafite-NN or fully supervised).

DATA is a feature store (`lafitebench data prepare`), an official LAFITE dataset .zip, or a
data set name / folder (prepared into OUT/data with the CLIP model first). Options left unset come
from --preset (each option's help lists its value in every preset), then the variant. The first
lines of a run say which preset and settings it uses.

\b
Presets (--preset):
{preset_help()}

Snapshots (native .safetensors: G, G_ema, D, [P]; `lafitebench generate --model` reads them),
training states (running the same command again, or --resume, continues exactly), a JSONL log,
TensorBoard files (when tensorboard is installed), sample grids and snapshot FID (--metrics none
turns it off) go to OUT. Multi-GPU: torchrun --nproc_per_node N -m lafitebench train ...; without
--batch each process takes the preset's batch (the official rule).

Examples:

\b
  lafitebench data prepare coco-mini --out stores/mini --resolution 32
  lafitebench train --variant g --data stores/mini --out runs/tiny \\
      --preset tiny
  lafitebench train --variant nn --data coco.zip --out runs/nn
  lafitebench train --variant supervised --data stores/coco \\
      --out runs/sup --preset coco-supervised
  lafitebench train --variant g --data stores/mini --out runs/tiny \\
      --resume --kimg 1
  torchrun --standalone --nproc_per_node 4 -m lafitebench train \\
      --variant g --data stores/coco --out runs/g
"""

_P = "[preset: {}]"


def _preset(key: str, text: str) -> str:
    return f"{text} {_P.format(per_preset(key))}"


@boundary(interrupted="interrupted: the snapshots and training states already in --out are kept (nothing is "
                      "half-written); run the same command again to continue from the latest state")
def train_cmd(
    variant: str = typer.Option(D.variant, "--variant", metavar="g|nn|supervised",
                                help="g: Gaussian pseudo-text (language-free); nn: pseudo-text from the perturbation "
                                     "network (language-free); supervised: the images' captions."),
    data: str = typer.Option(..., "--data", metavar="NAME|STORE|ZIP", help="Feature store, official .zip or data set."),
    out: Path = typer.Option(..., "--out", metavar="RUN_DIR", help="The run folder."),
    preset: str = typer.Option(D.preset, "--preset", metavar="NAME",
                               help="coco-language-free, coco-supervised, finetune, tiny (costs above)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Must match the data [default: the data's]."),
    kimg: Optional[float] = typer.Option(None, "--kimg", help=_preset("kimg", "Length in thousands of real images.")),
    batch: Optional[int] = typer.Option(None, "--batch", help=_preset("batch", "Global batch size (per process under "
                                                                               "torchrun when not given).")),
    batch_gpu: Optional[int] = typer.Option(None, "--batch-gpu", help="Images per round (gradient accumulation, "
                                            "averaged) [default: the batch per process]."),
    mixing_prob: Optional[float] = typer.Option(None, "--mixing-prob", help="Probability of the pseudo-text condition "
                                                "[default: 1 for g/nn, 0 for supervised]."),
    itc: Optional[float] = typer.Option(None, "--itc", help=_preset("itc", "Weight of the CLIP image-text contrastive "
                                                                           "term (G; needs the CLIP weights).")),
    itd: Optional[float] = typer.Option(None, "--itd", help=_preset("itd", "Weight of the discriminator contrastive term.")),
    gamma: Optional[float] = typer.Option(None, "--gamma", help=_preset("gamma", "R1 weight.")),
    temp: Optional[float] = typer.Option(None, "--temp", help=_preset("temp", "Contrastive temperature.")),
    lam: Optional[float] = typer.Option(None, "--lam", help=_preset("lam", "Contrastive direction mix (0: over images "
                                                                           "only, the official default).")),
    contrastive: Optional[str] = typer.Option(None, "--contrastive", metavar="official|paper",
                                              help=_preset("contrastive", "official: the released exp(S/τ) logits; "
                                                                          "paper: InfoNCE.")),
    semantic_term: Optional[str] = typer.Option(None, "--semantic-term", metavar="official|paper",
                                                help=_preset("semantic_term", "D's semantic term: official (summed "
                                                                              "over the batch) or paper (per image).")),
    lr: Optional[float] = typer.Option(None, "--lr", help=_preset("lr", "Adam learning rate (G and D).")),
    style_mixing: Optional[float] = typer.Option(None, "--style-mixing", help=_preset("style_mixing",
                                                                                      "Style-mixing probability.")),
    pl_weight: Optional[float] = typer.Option(None, "--pl-weight", help=_preset("pl_weight", "Path-length weight.")),
    r1_interval: Optional[int] = typer.Option(None, "--r1-interval", help=_preset("r1_interval",
                                              "Steps between R1 passes; 0: every step in D's main pass.")),
    pl_interval: Optional[int] = typer.Option(None, "--pl-interval", help=_preset("pl_interval",
                                              "Steps between path-length passes; 0: every step in G's main pass.")),
    ema_kimg: Optional[float] = typer.Option(None, "--ema-kimg", help="G_ema half-life in kimg [default: the official "
                                             "16·processes·10/32; tiny 0.01]."),
    mirror: Optional[bool] = typer.Option(None, "--mirror/--no-mirror", help="x-flip augmentation [every preset: on]."),
    gather: Optional[bool] = typer.Option(None, "--gather/--no-gather", help="Contrastive negatives from all ranks "
                                          "[every preset: off]."),
    snap: Optional[float] = typer.Option(None, "--snap", help=_preset("snap", "kimg between snapshots.")),
    metrics: Optional[str] = typer.Option(None, "--metrics", metavar="fid|none",
                                          help=_preset("metrics", "Snapshot FID or none.")),
    fid_num: Optional[int] = typer.Option(None, "--fid-num", help=_preset("fid_num", "Images for the snapshot FID.")),
    init: Optional[str] = typer.Option(None, "--init", metavar="MODEL", help="Fine-tune from a zoo id, native file or official .pkl."),
    mapper: Optional[Path] = typer.Option(None, "--mapper", metavar="FILE", help="Lafite-NN perturbation network "
                                          "(implicit.*.pth) [default: trained on the data first]."),
    nn_features: str = typer.Option(D.nn_features, "--nn-features", metavar="stored|clip-view",
                                    help="Lafite-NN mapper input: the stored image feature, or CLIP of a 0.99 crop of "
                                         "the (flipped) real image as the official NN branch (needs CLIP weights)."),
    nonfinite: str = typer.Option(D.nonfinite, "--nonfinite", metavar="stop|zero",
                                  help="On a NaN/Inf loss: stop naming the step, or zero the bad gradients and go on "
                                       "(the official loop)."),
    allow_tf32: bool = typer.Option(D.allow_tf32, "--allow-tf32/--no-tf32", help="TF32 matmul and cuDNN on CUDA "
                                    "(off, as the official loop)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest training state in --out with its options."),
    seed: int = typer.Option(D.seed, "--seed", min=0, help="Seeds the networks, the data order and every random draw."),
    device: str = typer.Option(D.device, "--device", help="auto, cpu, cuda or cuda:N."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", metavar="NAME",
                                             help="CLIP backbone of the data's features [default: the data's]."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", metavar="TAG",
                                                  help="open_clip pretrained tag [default: the data's]."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", metavar="PATH",
                                                help="Local CLIP weights file (--itc, --nn-features clip-view, "
                                                     "preparing a data set)."),
    tensorboard: bool = typer.Option(D.tensorboard, "--tensorboard/--no-tensorboard",
                                     help="TensorBoard event files under OUT/tb when tensorboard is installed."),
) -> None:

    cfg = TrainConfig(variant=variant, data=data, out=str(out), preset=preset, resolution=resolution, kimg=kimg,
                      batch=batch, batch_gpu=batch_gpu, mixing_prob=mixing_prob, itc=itc, itd=itd, gamma=gamma,
                      temp=temp, lam=lam, contrastive=contrastive, semantic_term=semantic_term, lr=lr,
                      style_mixing=style_mixing, pl_weight=pl_weight, r1_interval=r1_interval, pl_interval=pl_interval,
                      ema_kimg=ema_kimg, mirror=mirror, gather=gather, snap=snap, metrics=metrics, fid_num=fid_num,
                      init=init, mapper=str(mapper) if mapper else None, nn_features=nn_features, nonfinite=nonfinite,
                      allow_tf32=allow_tf32, resume=resume, seed=seed, device=device, clip_model=clip_model,
                      clip_pretrained=clip_pretrained, clip_weights=str(clip_weights) if clip_weights else None,
                      tensorboard=tensorboard)
    job = run_train(cfg)
    if distributed.is_main():
        last = job.snapshots[-1] if job.snapshots else None
        out_console.print(f"trained to {job.kimg:.3f} kimg in {job.seconds:.1f} s"
                          + (f" (resumed from {job.resumed_from.name})" if job.resumed_from else ""))
        if job.nonfinite_steps:
            err_console.print(f"warning: {job.nonfinite_steps} phase(s) had a non-finite loss; their gradients were "
                              "zeroed (--nonfinite zero)")
        for rec in job.fid:
            out_console.print(f"  FID {rec['fid']:.2f} at {rec['kimg']:.3f} kimg ({rec['n']} images)")
        if last:
            err_console.print(f"latest snapshot: {last}")
    distributed.shutdown()


MAPPER_HELP = """Train the Lafite-NN perturbation network (μ and log σ branches) on the paired CLIP
image/text features of a feature store or official zip, with a contrastive objective; writes the
official implicit.*.pth state-dict format (`train --variant nn --mapper FILE` reads it). Progress
is saved beside OUT every 100 steps; the same command continues an interrupted run.

Examples:

\b
  lafitebench train-mapper --data stores/coco --out mapper.pth
"""

@boundary(interrupted="interrupted: the mapper's progress is saved beside --out; run the same command again to "
                      "continue")
def train_mapper_cmd(
    data: str = typer.Option(..., "--data", metavar="STORE|ZIP", help="Feature store or official .zip with captions."),
    out: Path = typer.Option(..., "--out", metavar="FILE", help="The mapper file to write (implicit.*.pth format)."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Optimiser steps."),
    batch: int = typer.Option(256, "--batch", min=2, help="Image-caption pairs per step."),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate."),
    temp: float = typer.Option(0.1, "--temp", help="Contrastive temperature."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seeds the initialisation and the batches."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:

    job = run_train_mapper(data, str(out), steps=steps, batch=batch, lr=lr, temp=temp, seed=seed, device=device)
    out_console.print(f"trained on {job.pairs} image-caption pairs: contrastive loss {job.loss_start:.4f} → "
                      f"{job.loss_end:.4f}; wrote {job.path}")
