"""``lafitebench zoo``: list, show, fetch, verify and convert the released LAFITE models."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..assets import zoo
from ..checkpoints import convert as convert_mod
from .common import out_console
from .errors import boundary

zoo_app = typer.Typer(help="The model zoo: released LAFITE checkpoints.", no_args_is_help=True)


@zoo_app.command("list", help="List the released models (Rich table).\n\nExample:\n\n\b\n  lafitebench zoo list")
@boundary
def zoo_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    if as_json:
        sys.stdout.write(json.dumps(zoo.list_models(), indent=2) + "\n")
    else:
        out_console.print(zoo.render_models_table())


@zoo_app.command("show", help="Show one model's manifest.\n\nExample:\n\n\b\n  lafitebench zoo show lafite-coco-g")
@boundary
def zoo_show(model_id: str = typer.Argument(..., metavar="ID")) -> None:
    info = zoo.get_model_info(model_id)
    d = info.to_dict()
    d["cache"] = {"official": str(zoo.official_path(info)), "native": str(zoo.native_path(info))}
    out_console.print_json(json.dumps(d, default=str))


@zoo_app.command("fetch", help="Download a released model (hash-checked when a hash is known) and convert it to the "
                               "native safe format.\n\nExample:\n\n\b\n  lafitebench zoo fetch lafite-coco-g\n\n"
                               "Offline: put the released .pkl where the error message says, then run it again "
                               "(or use `zoo convert`).")
@boundary
def zoo_fetch(model_id: str = typer.Argument(..., metavar="ID"),
              dest: Optional[Path] = typer.Option(None, "--dest", metavar="PATH", help="Native checkpoint path or folder (default: the cache)."),
              force: bool = typer.Option(False, "--force", help="Download / convert again even if present.")) -> None:
    out_console.print(f"native checkpoint: {convert_mod.fetch(model_id, dest, force=force)}")


@zoo_app.command("verify", help="Validate every manifest and the hashes of cached files.\n\nExample:\n\n\b\n  lafitebench zoo verify")
@boundary
def zoo_verify(model_id: Optional[str] = typer.Argument(None, metavar="[ID]")) -> None:
    from rich.table import Table


    rows = convert_mod.verify(model_id)
    t = Table(title="zoo verify")
    for c in ("id", "manifest", "official", "native", "ok"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["id"], r["manifest"], r["official"], r["native"], "[green]yes" if r["ok"] else "[red]NO")
    out_console.print(t)
    if not all(r["ok"] for r in rows):
        raise typer.Exit(code=1)


@zoo_app.command("convert", help="Convert an official LAFITE snapshot .pkl into the native safe format "
                                 "(nothing in the pickle is executed).\n\n"
                                 "Example:\n\n\b\n  lafitebench zoo convert network-snapshot.pkl lafite.safetensors \\\n"
                                 "      --variant g --clip-backbone ViT-B/32")
@boundary
def zoo_convert(official_pkl: Path = typer.Argument(..., metavar="OFFICIAL.pkl", exists=True, dir_okay=False),
                out: Path = typer.Argument(..., metavar="OUT"),
                variant: str = typer.Option("unknown", "--variant", help="g, nn, supervised or zero-shot."),
                clip: Optional[str] = typer.Option(None, "--clip-backbone", metavar="BACKBONE",
                                                   help="CLIP backbone the model was trained with (ViT-B/32 or ViT-B/16); snapshots do not record it."),
                perturbation: Optional[Path] = typer.Option(None, "--perturbation", metavar="implicit.pth",
                                                            help="Lafite-NN perturbation network state dict to bundle."),
                overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists.")) -> None:
    path = convert_mod.convert(official_pkl, out, variant=variant, clip_backbone=clip, perturbation=perturbation,
                       overwrite=overwrite)
    out_console.print(f"native checkpoint: {path}")
