"""``lafitebench generate``: options (defaults from :class:`~lafitebench.jobs.generate.GenerateConfig`) → :func:`run_generate`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..jobs.generate import GenerateConfig, run_generate
from ..runtime import distributed
from .common import err_console, out_console
from .errors import boundary

D = GenerateConfig()

GENERATE_HELP = """Generate the images of a caption split with a LAFITE model, resumably.

Sample i is made from the seeds (seed, i) only: the same image whatever the batch size or the
number of processes. A killed run continues where it stopped; a finished one does nothing.
Writes DIR/000000.png ... and DIR/manifest.jsonl, which `lafitebench eval --samples DIR` reads.

Examples:

\b
  lafitebench generate --model lafite-coco-g --split coco-mini --out out/mini
  lafitebench generate --model model.safetensors --split prompts.txt \\
      --out out/p
  lafitebench generate --model lafite-coco-g --split coco-val-30k \\
      --data-root /data/coco --out out/coco30k --batch-size 32
  torchrun --standalone --nproc_per_node 4 -m lafitebench generate \\
      --model lafite-coco-g --split coco-val-30k --data-root /data/coco \\
      --out out/c
"""

@boundary
def generate_cmd(
    model: str = typer.Option(..., "--model", metavar="ID|PATH", help="Zoo id, native .safetensors or official .pkl."),
    split: str = typer.Option(D.split, "--split", metavar="NAME|FILE",
                              help="coco-mini, coco-val-30k, coco-val-30k-captions, coco-val2017-5k, soa, cub-test, "
                                   "ln-coco-test, mm-celeba-hq-test, or a caption file (.txt one per line, .csv/.jsonl "
                                   "with a caption column)."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Output folder."),
    num: Optional[int] = typer.Option(D.num, "--num", min=1, help="Number of samples (default: the whole split)."),
    cycle: bool = typer.Option(D.cycle, "--cycle", help="Repeat the split to reach --num."),
    seed: int = typer.Option(D.seed, "--seed", min=0, help="Seed of the caption draws and of every sample."),
    batch_size: int = typer.Option(D.batch_size, "--batch-size", min=1),
    device: str = typer.Option(D.device, "--device", help="auto, cpu, cuda, cuda:1 ..."),
    truncation: float = typer.Option(D.truncation, "--truncation", help="Truncation psi (1 = none)."),
    noise_mode: Optional[str] = typer.Option(None, "--noise-mode", metavar="random|const|none",
                                             help="Layer noise: random (official FID/IS protocol, seeded per sample), "
                                                  "const (official SOA protocol), none. Default: const for --split soa, "
                                                  "else random."),
    fp16: bool = typer.Option(D.fp16, "--fp16", help="Half-precision synthesis layers on CUDA (the official default)."),
    image_format: str = typer.Option(D.image_format, "--format", metavar="png|jpg"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", metavar="DIR",
                                             help="COCO root (annotations/captions_*.json) or the SOA caption-list folder."),
    captions_file: Optional[Path] = typer.Option(None, "--captions", metavar="FILE", help="COCO caption JSON for the split."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", metavar="NAME",
                                             help="open_clip text encoder (default: the model's CLIP backbone)."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", metavar="TAG"),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", metavar="PATH", help="Local CLIP weights file."),
    overwrite: bool = typer.Option(D.overwrite, "--overwrite", help="Replace another run's samples in --out."),
) -> None:

    cfg = GenerateConfig(model=model, split=split, out=str(out), num=num, seed=seed, batch_size=batch_size,
                         device=device, truncation=truncation, noise_mode=noise_mode, fp16=fp16,
                         image_format=image_format, data_root=str(data_root) if data_root else None,
                         captions_file=str(captions_file) if captions_file else None, clip_model=clip_model,
                         clip_pretrained=clip_pretrained, clip_weights=str(clip_weights) if clip_weights else None,
                         cycle=cycle, overwrite=overwrite)
    job = run_generate(cfg)
    if distributed.is_main():
        n = job.generated + job.reused
        rate = f", {job.generated / job.seconds:.2f} images/s" if job.generated and job.seconds else ""
        out_console.print(f"{n} samples of {job.identity['split']['id']} in {job.out} "
                          f"({job.generated} generated, {job.reused} already there{rate})")
        err_console.print(f"wrote {job.manifest}")
    distributed.shutdown()
