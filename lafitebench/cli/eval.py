"""``lafitebench eval``: options (defaults from :class:`~lafitebench.metrics.config.EvalConfig`) → :func:`run_eval`."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..data.registry import get_protocol
from ..errors import InputError, LafitebenchError
from ..io.jsonable import table_records
from ..jobs import dataset as ds
from ..jobs.dataset import table_notes, wide
from ..jobs.eval import run_eval
from ..jobs.generate import GenerateConfig
from ..metrics.config import OPTION_GROUPS, EvalConfig, apply_protocol
from ..reports import beside_paper, rich_table
from ..runtime import distributed
from .common import csv_list, err_console, out_console
from .errors import boundary, message
from .options import config_values, with_options

D = EvalConfig()  # the one source of defaults
DEFAULT_SAMPLES, DEFAULT_REFERENCE = "coco-mini:a", "coco-mini:b"

EVAL_HELP = """Compute IS, FID, FID-k, KID, CLIP score and SOA for a folder of generated images,
a model, or (--dataset) a data set's protocol as the paper ran it; and, in the
same pass, FD-DINOv2, CLIP-FD, KD, CMMD and precision/recall/density/coverage
on feature backbones, with --bootstrap intervals and toolkit --preset s.

Under torchrun each process takes a shard of both sets; the result equals a
single-process run (FID to 1e-9 relative, the others exactly).

Examples:

\b
  lafitebench eval        # bundled default: 50 coco-mini images vs 50 others
  lafitebench eval --dataset coco --data-root /data/coco --fid-blur 0,1,2,4,8
  lafitebench eval --dataset coco-mini --model lafite-coco-g
  lafitebench eval --samples out/samples --reference coco \\
      --data-root /data/coco --fid-blur 0,1,2,4,8
  lafitebench eval --samples out/soa --metrics soa --detector yolov8m.pt
  lafitebench eval --samples out/samples --captions prompts.jsonl \\
      --metrics clip --clip-model ViT-B-16
  lafitebench eval --samples out/ --reference real/ --metrics fid,kid \\
      --json > result.json
  lafitebench eval --samples out/ --reference real/ --bootstrap 200 \\
      --metrics fid,fd-dinov2,clip-fd,cmmd,prdc
  torchrun --standalone --nproc_per_node 4 -m lafitebench eval \\
      --samples out/samples --reference coco --data-root /data/coco
"""

def _default_out() -> Path:
    return Path("reports") / "runs" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


SAMPLES, REFERENCE, METRICS, OUTPUT = "Samples", "Reference", "Metrics", "Output"


@boundary
@with_options(OPTION_GROUPS, D, panels=(SAMPLES, REFERENCE, METRICS, "FID / KID", "IS", "CLIP score", "SOA",
                                       "Backbones", OUTPUT, "Performance"))
def eval_cmd(
    dataset: Optional[str] = typer.Option(None, "--dataset", metavar="NAME", rich_help_panel=SAMPLES,
                                          help="A data set's evaluation protocol as the paper ran it (reference, caption "
                                               "split, sample count, resolution): coco, coco-mini, cub, ln-coco, mm-celeba, "
                                               "cc3m. With --model: that model; with --samples: that folder; with neither: "
                                               "every zoo model listed for it, as the paper's table (resumable in --out)."),
    samples: Optional[str] = typer.Option(None, "--samples", metavar="DIR|NAME", rich_help_panel=SAMPLES,
                                          help="Folder of generated images (png/jpg/webp) with an optional "
                                               "manifest.jsonl/.csv (file, caption, soa_class), or a data set name. "
                                               f"Default: {DEFAULT_SAMPLES}; with --model, where the samples are "
                                               "generated (default: a folder in the cache, reused next time)."),
    model: Optional[str] = typer.Option(None, "--model", metavar="ID|PATH", rich_help_panel=SAMPLES,
                                        help="Generate the samples with this model (zoo id, .safetensors or official "
                                             ".pkl) from --split, then evaluate; a zoo model's paper row is shown beside."),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME|FILE", rich_help_panel=SAMPLES,
                                        help="Caption split for --model (see `lafitebench generate --help`); "
                                             "default coco-mini."),
    num: Optional[int] = typer.Option(None, "--num", min=1, rich_help_panel=SAMPLES,
                                      help="Samples to generate with --model (default: the split)."),
    gen_seed: int = typer.Option(0, "--gen-seed", min=0, rich_help_panel=SAMPLES,
                                 help="Seed of the generated samples (--model)."),
    stream: bool = typer.Option(False, "--stream", rich_help_panel=SAMPLES,
                                help="With --model: evaluate generated batches without writing images."),
    text_clip_model: Optional[str] = typer.Option(None, "--text-clip-model", metavar="NAME", rich_help_panel=SAMPLES,
                                                  help="CLIP text encoder for --model (default: the model's backbone)."),
    text_clip_weights: Optional[Path] = typer.Option(None, "--text-clip-weights", metavar="PATH", rich_help_panel=SAMPLES,
                                                     help="Local weights of --text-clip-model."),
    captions: Optional[Path] = typer.Option(None, "--captions", metavar="FILE", rich_help_panel=SAMPLES,
                                            help="Manifest (JSONL/CSV) or one-caption-per-line .txt when it is not in "
                                                 "the samples folder."),
    reference: Optional[str] = typer.Option(None, "--reference", metavar="NAME|DIR", rich_help_panel=REFERENCE,
                                            help="Reference images: coco-mini, coco-mini:a|b, coco (with --data-root) or a "
                                                 "folder; 'none' for IS / CLIP / SOA only. Default: coco-mini:b, or "
                                                 "coco-mini with --model on the coco-mini split."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", metavar="DIR", rich_help_panel=REFERENCE,
                                             help="Data set folder: the COCO root for --reference coco (images in "
                                                  "val2017/ or train2017/, annotations/captions_*.json), or the "
                                                  "--dataset's folder."),
    reference_captions: Optional[Path] = typer.Option(None, "--reference-captions", metavar="FILE",
                                                      rich_help_panel=REFERENCE,
                                                      help="Caption file of the reference when it is not under "
                                                           "--data-root/annotations (LN-COCO JSONL, CC3M TSV)."),
    reference_split: Optional[str] = typer.Option(None, "--reference-split", metavar="SPLIT", rich_help_panel=REFERENCE,
                                                  help="Split of the reference images (val2017, train2014, ...)."),
    soa_lists: Optional[Path] = typer.Option(None, "--soa-lists", metavar="DIR", rich_help_panel=REFERENCE,
                                             help="With --dataset coco and soa in --metrics: the SOA caption lists "
                                                  "(label_XX_name.pkl); or set LAFITEBENCH_SOA_LISTS."),
    metrics: str = typer.Option("auto", "--metrics", metavar="LIST", rich_help_panel=METRICS,
                                help="Comma-separated: fid,kid,is,clip,soa, and on feature backbones fd-dinov2, "
                                     "clip-fd, kd, cmmd, prdc (precision/recall/density/coverage). 'auto' computes "
                                     "the first five whose inputs exist and says why the others were left out."),
    protocol: Optional[str] = typer.Option(None, "--protocol", metavar="NAME", rich_help_panel=METRICS,
                                           help=f"Named protocol: {D.protocol} (default; --dataset: the data set's) or "
                                                "lafite-official (covariance / N, IS splits in generation order; use "
                                                "the training set as --reference and --split coco-val-30k, as the "
                                                "official evaluation does). Overrides --isc-order."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", rich_help_panel=OUTPUT,
                                       help="Where results.csv/.json/.md go (default reports/runs/<time>)."),
    overwrite: bool = typer.Option(False, "--overwrite", rich_help_panel=OUTPUT,
                                   help="Replace the results of an earlier run in --out."),
    allow_outside_paths: bool = typer.Option(False, "--allow-outside-paths", rich_help_panel=SAMPLES,
                                             help="Let a manifest list files outside its folder (absolute paths, ..)."),
    compare: Optional[str] = typer.Option(None, "--compare", metavar="TABLE", rich_help_panel=OUTPUT,
                                          help="Print the results beside a paper table: lang_free, zero_shot, supervised."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=OUTPUT,
                                 help="Print the result as JSON on stdout (progress stays on stderr)."),
    report: Optional[Path] = typer.Option(None, "--report", metavar="DIR", rich_help_panel=OUTPUT,
                                          help="Add the result to a report folder (DIR/runs/<run>/) and rebuild its "
                                               "tables, leaderboard and index.html."),
    **options: Any,
) -> None:

    config = EvalConfig(**config_values(OPTION_GROUPS, options), progress=True)
    device, batch_size = config.device, config.batch_size


    metric_list = "auto" if metrics.strip() == "auto" else csv_list(metrics, "--metrics")
    if dataset is not None:
        return _dataset_cmd(dataset, config, protocol, metric_list, samples=samples, model=model, split=split,
                            reference=reference, num=num, data_root=data_root, reference_captions=reference_captions,
                            reference_split=reference_split, soa_lists=soa_lists, out=out, overwrite=overwrite,
                            as_json=as_json, report=report, allow_outside_paths=allow_outside_paths,
                            generation=GenerateConfig(seed=gen_seed, device=device, batch_size=batch_size,
                                                      clip_model=text_clip_model, clip_weights=str(text_clip_weights)
                                                      if text_clip_weights else None))
    if soa_lists is not None:
        raise InputError("--soa-lists goes with --dataset coco; for a samples folder, put soa_class in its manifest",
                         param="soa_lists")
    config = apply_protocol(config, protocol or D.protocol)
    split = split or "coco-mini"
    if reference is None:
        if model is None:
            reference = DEFAULT_REFERENCE
        elif split == "coco-mini":
            reference = "coco-mini"
        else:
            raise InputError("with --model, pass --reference (the real images to compare with)", param="reference")
    ref = None if reference in ("", "none") else reference
    generation = GenerateConfig(split=split, num=num, seed=gen_seed, device=device, batch_size=batch_size,
                                clip_model=text_clip_model, clip_weights=str(text_clip_weights) if text_clip_weights else None,
                                data_root=str(data_root) if data_root else None)
    if report is not None and out is not None:
        raise InputError("--report puts the result under DIR/runs/; do not also pass --out", param="out")
    if report is not None and report.exists() and not report.is_dir():
        raise InputError(f"report folder {report} is a file; choose a folder", param="report")
    job = run_eval(samples if (samples or model) else DEFAULT_SAMPLES, ref, metrics=metric_list, captions=captions,
                   data_root=data_root, reference_captions=reference_captions, reference_split=reference_split,
                   out=out or (None if report is not None else _default_out()), overwrite=overwrite,
                   allow_outside_paths=allow_outside_paths, config=config, model=model, generation=generation,
                   stream=stream, report=report)
    if distributed.is_main():
        _show(job, as_json, compare)
        if job.report_files:
            err_console.print(f"report updated: {job.report_files.get('index.html')}")
        for name, why in job.result.failed.items():
            err_console.print(f"[bold red]error:[/] {name} could not be computed: {why}")
        for w in job.warnings + job.notices:
            err_console.print(f"[bold yellow]warning:[/] {w}")
    distributed.shutdown()
    if job.warnings or job.result.failed:
        raise typer.Exit(code=2)


def _dataset_cmd(dataset: str, config: EvalConfig, protocol: str | None, metrics, *, samples, model, split, reference,
                 num, data_root, reference_captions, reference_split, soa_lists, out, overwrite, as_json, report,
                 allow_outside_paths, generation) -> None:
    """``eval --dataset NAME``: a folder or one model or the zoo sweep on a data set's protocol."""

    proto = get_protocol(dataset)
    for given, opt in ((reference, "--reference"), (split, "--split")):
        if given is not None:
            raise InputError(f"--dataset {proto.name} sets the reference images and the caption split; drop {opt} "
                             "(or drop --dataset and give both yourself)", param=opt.lstrip("-"))
    if samples is not None and model is not None:
        raise InputError("--dataset takes --model (generate and evaluate) or --samples (a folder), not both",
                         param="samples")
    if report is not None and samples is None:
        raise InputError("--report goes with --dataset and --samples; a sweep writes its table into --out",
                         param="report")
    _, want_soa = ds.split_metrics(metrics)
    inputs = ds.locate(proto, data_root=data_root, captions=reference_captions, reference_split=reference_split,
                       num=num, soa_lists=soa_lists, want_soa=want_soa and samples is None)
    config = ds.protocol_config(config, proto, protocol)
    if samples is not None:
        if num is not None:
            raise InputError("--num goes with --model or the sweep; a samples folder is scored as it is", param="num")
        job = run_eval(samples, **inputs.reference_kwargs(), metrics=metrics,
                       out=out or (None if report is not None else _default_out()),
                       overwrite=overwrite, allow_outside_paths=allow_outside_paths, config=config, report=report,
                       extra_provenance={"dataset_protocol": inputs.provenance()})
        if distributed.is_main():
            _show(job, as_json, None)
            for w in job.warnings + job.notices:
                err_console.print(f"[bold yellow]warning:[/] {w}")
        distributed.shutdown()
        if job.warnings or job.result.failed:
            raise typer.Exit(code=2)
        return
    models = [model] if model is not None else ds.sweep_models(proto)
    name = proto.name + (f"-{ds.model_label(model)}" if model is not None else "") + (f"-n{inputs.num}" if inputs.capped else "")
    target = out or Path("reports") / "runs" / name
    job = ds.run_sweep(inputs, target, metrics=metrics, config=config, generation=generation, overwrite=overwrite,
                       models=models)
    if distributed.is_main():
        _show_sweep(job, as_json)
    distributed.shutdown()


def _show_sweep(job, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(job.files["json"].read_text(encoding="utf-8") + "\n")
        return
    p = job.inputs.protocol
    out_console.print(f"{p.title}: {job.inputs.num} samples per model"
                      + (" (capped by --num)" if job.inputs.capped else ""))
    out_console.print(rich_table(wide(job.table), title=f"lafitebench eval --dataset {p.name}", index=True))
    for line in table_notes(job.inputs):
        out_console.print(f"[cyan]note[/] {line}")
    for name, why in job.skipped.items():
        out_console.print(f"[yellow]left out[/] {name}: {why}")
    for label, jobs in job.runs.items():
        for line in (n for j in jobs for n in j.notices):
            err_console.print(f"[bold yellow]warning:[/] {label}: {line}")
    if job.reused:
        err_console.print(f"reused the finished results of: {', '.join(job.reused)}")
    for kind, path in job.files.items():
        err_console.print(f"wrote {kind}: {path}")


def _show(job, as_json: bool, compare: str | None) -> None:
    res = job.result
    if as_json:
        payload = {"results": table_records(res.table),
                   "provenance": res.provenance, "files": {k: str(v) for k, v in job.files.items()}}
        if res.per_class is not None:
            payload["soa_per_class"] = table_records(res.per_class)
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        return
    out_console.print(_compared(res.provenance))
    cols = ["metric_id", "metric", "value", "std", "n"]
    if res.table[["ci_low", "ci_high"]].notna().any().any():
        cols += ["ci_low", "ci_high"]  # --bootstrap: the 95 % interval
    shown = res.table[cols].copy()
    degenerate = _degenerate_kid(res)
    shown.loc[shown.metric_id.isin(degenerate), "std"] = float("nan")  # every subset is the same set: no spread
    out_console.print(rich_table(shown, title="lafitebench eval"))
    for line in _caveats(res):
        out_console.print(f"[cyan]note[/] {line}")
    for name, why in job.skipped.items():
        out_console.print(f"[yellow]left out[/] {name}: {why}")
    if res.per_class is not None:
        present = res.per_class[res.per_class["present"]] if "present" in res.per_class else res.per_class
        out_console.print(rich_table(present, title="SOA per class"))
    paper = res.provenance.get("paper")
    if paper:
        out_console.print(rich_table(_beside_model_row(res.table, paper), title=f"beside the paper: {paper['table']}",
                                     index=True))
    if compare:
        try:
            out_console.print(rich_table(beside_paper(res.table, compare), title=f"beside the paper ({compare})", index=True))
        except LafitebenchError as e:
            err_console.print(f"[yellow]--compare:[/] {message(e)}")
    for kind, path in job.files.items():
        err_console.print(f"wrote {kind}: {path}")


def _compared(prov: dict) -> str:
    """One line above the table: what was compared with what, and how many images."""
    s = prov["inputs"]["samples"]
    text = f"samples: {s.get('name')} ({s.get('n_used', s.get('n'))} images)"
    r = prov["inputs"].get("reference")
    if r:
        text += f" vs reference: {r.get('name')} ({r.get('n_used', r.get('n'))} images)"
    return text + f", at {prov['config']['resolution']}²"


def _degenerate_kid(res) -> list[str]:
    """KID rows whose subsets are the whole sets (subset size >= N): their std is meaningless."""
    cfg = res.provenance["config"]
    n_ref = res.provenance["inputs"].get("reference", {}).get("n_used", 0)
    return [i for i, n in zip(res.table.metric_id, res.table.n)
            if str(i).startswith("kid") and cfg["kid_subset_size"] >= min(int(n), n_ref or int(n))]


def _caveats(res) -> list[str]:
    """What a reader of the table must know: small-N FID bias, degenerate KID subsets, cache reuse."""
    out = []
    t = res.table.set_index("metric_id")
    fid = [i for i in t.index if i.startswith("fid")]
    if fid and int(t.loc[fid[0], "n"]) < 10000:
        n = int(t.loc[fid[0], "n"])
        out.append(f"FID at N = {n} is dominated by its small-sample bias (it falls as N grows; the paper uses "
                   "30,000 samples): compare FIDs only at equal N")
    cfg = res.provenance["config"]
    for i in _degenerate_kid(res):
        out.append(f"KID subsets of {cfg['kid_subset_size']} from {int(t.loc[i, 'n'])} images are all the same set: "
                   "no std is shown, it would say nothing about precision (use more images)")
    outside = [str(i) for i, r in t.iterrows()
               if r.get("ci_low") == r.get("ci_low") and not (r["ci_low"] <= r["value"] <= r["ci_high"])]
    if outside:
        out.append(f"the bootstrap interval of {', '.join(outside)} does not contain the value: resampling with "
                   "replacement repeats images, which biases distances such as FID/FD upward at this N; read the "
                   "interval as the spread of the estimate, not as a bound around it")
    hits = res.provenance.get("cache", {}).get("hits", [])
    if hits:
        out.append(f"reference statistics for blur level(s) {', '.join(map(str, hits))} came from the cache "
                   f"({res.provenance['cache']['dir']}); --no-cache recomputes them")
    return out


def _beside_model_row(table, paper: dict):
    """The paper's row of a zoo model and this run's values for the metrics both have."""
    import pandas as pd

    ours = dict(zip(table["metric"], table["value"]))
    cols = [m for m in paper["metrics"] if m in ours] or list(paper["metrics"])
    label = f"paper: {paper['row']}" + ("" if paper.get("verified") else " (unverified)")
    return pd.DataFrame([{m: paper["metrics"][m] for m in cols}, {m: ours.get(m) for m in cols}],
                        index=[label, "this run"])
