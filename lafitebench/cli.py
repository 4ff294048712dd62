"""The ``lafitebench`` command line: a thin layer over the Python API.

Every command parses its options, calls one API function, prints a Rich table on stdout
(or JSON with ``--json``) and keeps progress on stderr.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import __version__
from .errors import LafitebenchError

app = typer.Typer(
    name="lafitebench",
    help="LAFITE models and the paper's metrics (IS, FID, FID-k, KID, CLIP score, SOA-C/SOA-I), reproducibly.\n\n"
         "**Examples**\n\n* `lafitebench eval` (the bundled coco-mini default)\n"
         "* `lafitebench eval --samples out/ --reference coco --data-root /data/coco --fid-blur 0,1,2,4,8`\n"
         "* `lafitebench zoo list`\n* `lafitebench report reports/runs/<run> --table lang_free`",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)
zoo_app = typer.Typer(help="The model zoo: released LAFITE checkpoints.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")

out_console = Console()
err_console = Console(stderr=True)


def _fail(e: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {e}")
    raise typer.Exit(code=2)


def _csv_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise typer.BadParameter(f"{option} needs a comma-separated list, got {value!r}")
    return items


def _int_list(value: str, option: str) -> list[int]:
    try:
        return [int(v) for v in _csv_list(value, option)]
    except ValueError:
        raise typer.BadParameter(f"{option} takes integers such as 0,1,2,4,8; got {value!r}") from None


def _version(value: bool) -> None:
    if value:
        out_console.print(f"lafitebench {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")) -> None:
    pass


EVAL_EXAMPLES = """
**Examples**

* `lafitebench eval` — the bundled default: half of coco-mini (50 real COCO images) as "samples"
  against the other half as reference; every metric that can be computed.
* `lafitebench eval --samples out/samples --reference coco --data-root /data/coco --fid-blur 0,1,2,4,8`
* `lafitebench eval --samples out/soa --metrics soa --detector yolov8m.pt --detector-conf 0.5`
* `lafitebench eval --samples out/samples --captions prompts.jsonl --metrics clip --clip-model ViT-B-16`
* `lafitebench eval --samples out/samples --reference real_images/ --metrics fid,kid --json > result.json`
"""


@app.command("eval", help="Compute IS, FID, FID-k, KID, CLIP score and SOA for a folder of generated images.\n\n" + EVAL_EXAMPLES)
def eval_cmd(
    samples: str = typer.Option("coco-mini:a", "--samples", metavar="DIR|NAME",
                                help="Folder of generated images (png/jpg/webp) with an optional manifest.jsonl/.csv "
                                     "(file, caption, soa_class), or a data set name."),
    captions: Optional[Path] = typer.Option(None, "--captions", metavar="FILE",
                                            help="Manifest (JSONL/CSV) or one-caption-per-line .txt when it is not in the samples folder."),
    reference: Optional[str] = typer.Option("coco-mini:b", "--reference", "--dataset", metavar="NAME|DIR",
                                            help="Reference images: coco-mini, coco-mini:a|b, coco (with --data-root) or a folder. "
                                                 "'none' for IS / CLIP / SOA only."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", metavar="DIR",
                                             help="COCO root for --reference coco (images in val2017/ or train2017/, annotations/captions_*.json)."),
    reference_captions: Optional[Path] = typer.Option(None, "--reference-captions", metavar="FILE",
                                                      help="Caption JSON for the COCO reference when it is not under --data-root/annotations."),
    split: Optional[str] = typer.Option(None, "--split", metavar="SPLIT", help="COCO split of the reference (val2017 or train2017)."),
    metrics: str = typer.Option("auto", "--metrics", metavar="LIST",
                                help="Comma-separated: fid,kid,is,clip,soa. 'auto' computes all whose inputs exist and says why the others were left out."),
    fid_blur: str = typer.Option("0", "--fid-blur", metavar="LEVELS", help="FID-k blur levels, e.g. 0,1,2,4,8 (the paper's)."),
    blur_preset: str = typer.Option("lafite", "--blur-preset", metavar="lafite|pil",
                                    help="Blur definition (part of the metric id); LAFITE's tables use 'lafite'."),
    resolution: int = typer.Option(256, "--resolution", min=8, help="Evaluation resolution (images of other sizes are resized, bicubic)."),
    inception_weights: Optional[str] = typer.Option(None, "--inception-weights", metavar="PATH|NAME",
                                                    help="Inception file (torch-fidelity layout); default: the 2015-12-05 network, downloaded once."),
    fid_trace: str = typer.Option("eigh", "--fid-trace", metavar="eigh|eigvals",
                                  help="FID trace term: eigh (exact symmetric form, fast) or eigvals (torch-fidelity's formula, bit-for-bit)."),
    channels_last: bool = typer.Option(False, "--channels-last",
                                       help="Run Inception channels-last: ~2x faster on CPU, differs from torch-fidelity by float32 rounding (FID ~1e-8 relative)."),
    clip_model: str = typer.Option("ViT-B-32", "--clip-model", metavar="NAME", help="open_clip model name of the CLIP scorer."),
    clip_pretrained: str = typer.Option("openai", "--clip-pretrained", metavar="TAG", help="open_clip pretrained tag."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", metavar="PATH", help="Local CLIP weights file for --clip-model."),
    detector: str = typer.Option("yolov8n.pt", "--detector", metavar="NAME|PATH",
                                 help="Ultralytics COCO detector for SOA: a name (yolov8m.pt), a .pt file or an exported model folder."),
    detector_conf: float = typer.Option(0.5, "--detector-conf", min=0.0, max=1.0, help="SOA detection confidence threshold."),
    kid_subset_size: int = typer.Option(1000, "--kid-subset-size", min=2, help="KID subset size (auto mode lowers it to the set size)."),
    kid_subsets: int = typer.Option(100, "--kid-subsets", min=1, help="Number of KID subsets."),
    isc_splits: int = typer.Option(10, "--isc-splits", min=1, help="Inception Score splits."),
    isc_order: str = typer.Option("shuffled", "--isc-order", metavar="shuffled|ordered",
                                  help="IS split convention: torch-fidelity's seeded shuffle, or generation order (StyleGAN2/LAFITE)."),
    seed: int = typer.Option(2020, "--seed", help="Seed of the IS shuffle and KID subsets."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    num_workers: int = typer.Option(0, "--num-workers", min=0, help="Image-decoding worker processes."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (counted in the report) instead of failing."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write cached reference statistics."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Where results.csv/.json/.md go (default reports/runs/<time>)."),
    compare: Optional[str] = typer.Option(None, "--compare", metavar="TABLE",
                                          help="Print the results beside a paper table: lang_free, zero_shot, supervised."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (progress stays on stderr)."),
) -> None:
    from .jobs.eval import run_eval
    from .metrics.engine import EvalConfig
    from .reports import beside_paper, rich_table

    if isc_order not in ("shuffled", "ordered"):
        raise typer.BadParameter("--isc-order must be 'shuffled' or 'ordered'")
    if out is None:
        import datetime as dt
        out = Path("reports") / "runs" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    config = EvalConfig(
        fid_blur=_int_list(fid_blur, "--fid-blur"), blur_preset=blur_preset, resolution=resolution,
        batch_size=batch_size, num_workers=num_workers, device=device, inception_weights=inception_weights,
        inception_channels_last=channels_last, fid_trace=fid_trace,
        clip_model=clip_model, clip_pretrained=clip_pretrained, clip_weights=str(clip_weights) if clip_weights else None,
        detector=detector, detector_conf=detector_conf, kid_subset_size=kid_subset_size, kid_subsets=kid_subsets,
        isc_splits=isc_splits, isc_shuffle=isc_order == "shuffled", seed=seed, skip_bad=skip_bad,
        use_cache=not no_cache, progress=True,
    )
    metric_list = "auto" if metrics.strip() == "auto" else _csv_list(metrics, "--metrics")
    ref = None if reference in (None, "", "none") else reference
    try:
        job = run_eval(samples, ref, metrics=metric_list, captions=captions, data_root=data_root,
                       reference_captions=reference_captions, reference_split=split, out=out, config=config)
    except LafitebenchError as e:
        _fail(e)
        return
    from .runtime import distributed

    if not distributed.is_main():
        return
    res = job.result
    if as_json:
        payload = {"results": json.loads(res.table.to_json(orient="records")), "provenance": res.provenance,
                   "files": {k: str(v) for k, v in job.files.items()}}
        if res.per_class is not None:
            payload["soa_per_class"] = json.loads(res.per_class.to_json(orient="records"))
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        return
    out_console.print(rich_table(res.table[["metric_id", "metric", "value", "std", "n"]], title="lafitebench eval"))
    for name, why in job.skipped.items():
        out_console.print(f"[yellow]left out[/] {name}: {why}")
    if res.per_class is not None:
        present = res.per_class[res.per_class["present"]] if "present" in res.per_class else res.per_class
        out_console.print(rich_table(present, title="SOA per class"))
    if compare:
        try:
            out_console.print(rich_table(beside_paper(res.table, compare), title=f"beside the paper ({compare})", index=True))
        except LafitebenchError as e:
            err_console.print(f"[yellow]--compare:[/] {e}")
    for kind, path in job.files.items():
        err_console.print(f"wrote {kind}: {path}")


# ---------------------------------------------------------------------------------------------
# zoo

@zoo_app.command("list", help="List the released models (Rich table).\n\n**Example**: `lafitebench zoo list`")
def zoo_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    from . import zoo

    try:
        if as_json:
            sys.stdout.write(json.dumps(zoo.list_models(), indent=2) + "\n")
        else:
            out_console.print(zoo.render_models_table())
    except LafitebenchError as e:
        _fail(e)


@zoo_app.command("show", help="Show one model's manifest.\n\n**Example**: `lafitebench zoo show lafite-coco-g`")
def zoo_show(model_id: str = typer.Argument(..., metavar="ID")) -> None:
    from . import zoo
    from .registry import UnknownNameError

    try:
        info = zoo.get_model_info(model_id)
    except (UnknownNameError, LafitebenchError) as e:
        _fail(e)
        return
    d = info.to_dict()
    d["cache"] = {"official": str(zoo.official_path(info)), "native": str(zoo.native_path(info))}
    out_console.print_json(json.dumps(d, default=str))


@zoo_app.command("fetch", help="Download a released model (hash-checked when a hash is known) and convert it to the "
                               "native safe format.\n\n**Example**: `lafitebench zoo fetch lafite-coco-g`\n\n"
                               "Offline: put the released .pkl where the error message says, then run it again "
                               "(or use `zoo convert`).")
def zoo_fetch(model_id: str = typer.Argument(..., metavar="ID"),
              dest: Optional[Path] = typer.Option(None, "--dest", metavar="PATH", help="Native checkpoint path or folder (default: the cache)."),
              force: bool = typer.Option(False, "--force", help="Download / convert again even if present.")) -> None:
    from . import zoo
    from .registry import UnknownNameError

    try:
        path = zoo.fetch(model_id, dest, force=force)
    except (UnknownNameError, LafitebenchError) as e:
        _fail(e)
        return
    out_console.print(f"native checkpoint: {path}")


@zoo_app.command("verify", help="Validate every manifest and the hashes of cached files.\n\n**Example**: `lafitebench zoo verify`")
def zoo_verify(model_id: Optional[str] = typer.Argument(None, metavar="[ID]")) -> None:
    from rich.table import Table

    from . import zoo
    from .registry import UnknownNameError

    try:
        rows = zoo.verify(model_id)
    except (UnknownNameError, LafitebenchError) as e:
        _fail(e)
        return
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
                                 "**Example**: `lafitebench zoo convert network-snapshot.pkl lafite.safetensors --variant g --clip-backbone ViT-B/32`")
def zoo_convert(official_pkl: Path = typer.Argument(..., metavar="OFFICIAL.pkl", exists=True, dir_okay=False),
                out: Path = typer.Argument(..., metavar="OUT"),
                variant: str = typer.Option("unknown", "--variant", help="g, nn, supervised or zero-shot."),
                clip: Optional[str] = typer.Option(None, "--clip-backbone", metavar="BACKBONE",
                                                   help="CLIP backbone the model was trained with (ViT-B/32 or ViT-B/16); snapshots do not record it."),
                perturbation: Optional[Path] = typer.Option(None, "--perturbation", metavar="implicit.pth",
                                                            help="Lafite-NN perturbation network state dict to bundle.")) -> None:
    from . import zoo

    try:
        path = zoo.convert(official_pkl, out, variant=variant, clip_backbone=clip, perturbation=perturbation)
    except LafitebenchError as e:
        _fail(e)
        return
    out_console.print(f"native checkpoint: {path}")


# ---------------------------------------------------------------------------------------------
# report

@app.command("report", help="Print saved results beside the paper's table and write CSV/Markdown.\n\n"
                            "**Examples**\n\n* `lafitebench report reports/runs/20261122-101500 --table lang_free`\n"
                            "* `lafitebench report --table supervised` (the paper's table alone)")
def report_cmd(result: Optional[Path] = typer.Argument(None, metavar="[RESULT]", help="results.json or the folder holding it."),
               table: str = typer.Option("lang_free", "--table", help="lang_free, zero_shot, supervised or supervised_other."),
               label: str = typer.Option("this run", "--label", help="Row label of your result."),
               out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Write report.csv and report.md here.")) -> None:
    from .reports import beside_paper, load_result, paper_wide, rich_table, to_markdown
    from .io.files import atomic_write

    try:
        if result is None:
            df = paper_wide(table)
        else:
            res, _ = load_result(result)
            df = beside_paper(res, table, label=label)
    except LafitebenchError as e:
        _fail(e)
        return
    out_console.print(rich_table(df, title=f"LAFITE paper, {table}", index=True))
    if out is not None:
        with atomic_write(out / "report.csv", "w") as f:
            df.to_csv(f, index_label="model")
        with atomic_write(out / "report.md", "w") as f:
            f.write(to_markdown(df, index=True))
        err_console.print(f"wrote {out / 'report.csv'} and {out / 'report.md'}")
