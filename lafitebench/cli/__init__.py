"""The ``lafitebench`` command line: a thin layer over the Python API, one module per command group.

Every command parses its options (defaults from the API's config dataclasses), calls one API
function, prints a Rich table on stdout (or JSON with ``--json``) and keeps progress on stderr.
Expected failures end in one message naming the flag and exit code 2 (:mod:`.errors`).
"""
from __future__ import annotations

import typer

from .. import __version__
from .common import flow, out_console
from .data import data_app
from .eval import EVAL_HELP, eval_cmd
from .generate import GENERATE_HELP, generate_cmd
from .report import REPORT_HELP, report_cmd
from .train import MAPPER_HELP, TRAIN_HELP, train_cmd, train_mapper_cmd
from .zoo import zoo_app

app = typer.Typer(
    name="lafitebench",
    help="""LAFITE models and the paper's metrics (IS, FID, FID-k, KID, CLIP score,
SOA-C/SOA-I), reproducibly.

Examples:

\b
  lafitebench eval                 # the bundled coco-mini default
  lafitebench generate --model lafite-coco-g --split coco-mini --out out/mini
  lafitebench eval --samples out/ --reference coco --data-root /data/coco \\
      --fid-blur 0,1,2,4,8
  torchrun --standalone --nproc_per_node 2 -m lafitebench eval \\
      --samples out/ --reference real/
  lafitebench data prepare coco-mini --out stores/mini --resolution 64
  lafitebench train --variant g --data stores/mini --out runs/tiny \\
      --preset tiny
  lafitebench eval --dataset coco --data-root /data/coco --fid-blur 0,1,2,4,8
  lafitebench zoo list
  lafitebench report reports/runs/<run> --table lang_free""",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
app.add_typer(zoo_app, name="zoo")
app.add_typer(data_app, name="data")
app.command("eval", help=EVAL_HELP)(eval_cmd)
app.command("generate", help=GENERATE_HELP)(generate_cmd)
app.command("report", help=REPORT_HELP)(report_cmd)
app.command("train", help=TRAIN_HELP)(train_cmd)
app.command("train-mapper", help=MAPPER_HELP)(train_mapper_cmd)


def _flow_help(*apps: typer.Typer) -> None:
    """Every command's help text as paragraphs Rich can wrap (:func:`.common.flow`)."""
    for a in apps:
        a.info.help = flow(a.info.help) if isinstance(a.info.help, str) else a.info.help
        for info in a.registered_commands:
            info.help = flow(info.help)


_flow_help(app, zoo_app, data_app)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"lafitebench {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")) -> None:
    """LAFITE models and metrics."""


__all__ = ["app"]
