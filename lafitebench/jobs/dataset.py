"""``eval --dataset NAME``: a data set's evaluation protocol, for one model, one samples folder, or
every zoo model listed for the data set (a resumable sweep that prints the paper's table).

The protocol facts live in :mod:`lafitebench.data.registry`; evaluation itself is
:func:`lafitebench.jobs.eval.run_eval`. A sweep keeps each model's samples and results under
``out/<model>/`` and its settings in ``out/sweep.json``: run again with the same settings and
it reuses every finished result and resumes an interrupted generation.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .. import settings
from ..assets import zoo
from ..data.registry import SOA_LISTS, EvalProtocol
from ..data.splits import get_split
from ..encoders.clip import resolve_clip_weights
from ..errors import InputError, WeightsError
from ..io.files import atomic_write
from ..metrics.config import EvalConfig, apply_protocol
from ..reports.results import load_result, to_markdown
from ..runtime import distributed
from .eval import EvalJob, load_reference, run_eval
from .generate import GenerateConfig

SWEEP_FILE = "sweep.json"
PAPER_ORDER = ("IS", "FID-0", "FID-1", "FID-2", "FID-4", "FID-8", "SOA-C", "SOA-I")


@dataclass
class DatasetInputs:
    """Where a protocol's data were found, and the run options derived from the protocol."""

    protocol: EvalProtocol
    data_root: Path | None
    captions: Path | None
    reference_split: str | None
    num: int | None
    capped: bool
    soa_lists: Path | None

    def reference_kwargs(self) -> dict[str, Any]:
        """The ``run_eval`` arguments that select the reference images."""
        return {"reference": self.protocol.reference, "data_root": self.data_root,
                "reference_captions": self.captions, "reference_split": self.reference_split}

    def generation(self, base: GenerateConfig, soa: bool = False) -> GenerateConfig:
        """``base`` on this protocol's caption split (or the SOA split)."""
        if soa:
            return dataclasses.replace(base, split="soa", data_root=str(self.soa_lists), captions_file=None,
                                       num=self.num if self.capped else None)
        return dataclasses.replace(base, split=self.protocol.split, num=self.num,
                                   data_root=str(self.data_root) if self.data_root else None,
                                   captions_file=str(self.captions) if self.captions else None)

    def check(self, generation: GenerateConfig, soa: bool) -> None:
        """Read the reference set's file list and captions and each caption split the run will
        generate from (cheap next to generating): a missing folder or caption file is an error
        before any model runs.

        Raises:
            InputError: naming the folder or file.
        """
        load_reference(self.protocol.reference, self.data_root, self.captions, self.protocol.resolution,
                       self.reference_split)
        for gen in [self.generation(generation)] + ([self.generation(generation, soa=True)] if soa else []):
            get_split(gen.split, data_root=gen.data_root, captions_file=gen.captions_file, seed=gen.seed)

    def provenance(self) -> dict[str, Any]:
        """The protocol as run (recorded in every result of it)."""
        return {**self.protocol.to_dict(), "reference_split": self.reference_split, "num": self.num,
                "capped_by_num": self.capped}


def locate(protocol: EvalProtocol, *, data_root: Any = None, captions: Any = None, reference_split: str | None = None,
           num: int | None = None, soa_lists: Any = None, want_soa: bool = False) -> DatasetInputs:
    """Find a protocol's files (options, then environment variables) before any work.

    Raises:
        InputError: a folder or file is missing (named with the option and variable), or SOA asked
            of a protocol without it.
    """
    root, cap = protocol.locate(data_root, captions)
    if want_soa and not protocol.soa:
        raise InputError(f"SOA is not part of the {protocol.name!r} protocol (it uses the COCO SOA caption lists): "
                         "drop soa from --metrics, or use --dataset coco", param="metrics")
    lists = SOA_LISTS.find(soa_lists) if want_soa else None
    capped = num is not None and (protocol.num is None or num < protocol.num)
    return DatasetInputs(protocol, root, cap, reference_split or protocol.reference_split,
                         num if capped else protocol.num, capped, lists)


def protocol_config(config: EvalConfig, protocol: EvalProtocol, metrics_protocol: str | None) -> EvalConfig:
    """``config`` at the protocol's resolution and metrics protocol (``metrics_protocol`` overrides)."""
    return apply_protocol(dataclasses.replace(config, resolution=protocol.resolution),
                          metrics_protocol or protocol.metrics_protocol)


def split_metrics(metrics: Sequence[str] | str) -> tuple[Sequence[str] | str, bool]:
    """The metrics of the main pass, and whether SOA (its own caption split) was asked for."""
    if isinstance(metrics, str):
        return metrics, False
    rest = [m for m in metrics if m != "soa"]
    return (rest or []), "soa" in metrics


def sweep_models(protocol: EvalProtocol) -> list[str]:
    """The zoo models whose manifest lists this protocol's tag (ids, in order)."""
    return [n for n in zoo.MODELS.names() if protocol.zoo_tag and protocol.zoo_tag in zoo.get_model_info(n).datasets]


def model_label(model: str) -> str:
    """The folder and row name of a model: its zoo id, or a checkpoint file's stem."""
    return zoo.get_model_info(model).id if model in zoo.MODELS else Path(model).stem


def check_weights(models: Sequence[str], generation: GenerateConfig) -> None:
    """Every model's checkpoint (and, offline, the zoo models' CLIP text weights) is local; else one
    error naming all that are missing and how to provide each. Nothing is loaded."""

    missing, infos = [], []
    for model in models:
        if model not in zoo.MODELS:
            if not Path(model).is_file():
                missing.append(f"{model}: neither a checkpoint file nor a zoo model id")
            continue
        info = zoo.get_model_info(model)
        infos.append(info)
        if not zoo.native_path(info).is_file():
            missing.append(f"{info.id}: run `lafitebench zoo fetch {info.id}` (offline: save {info.source.url} "
                           f"as {zoo.official_path(info)} first)")
    if settings.offline() and not generation.clip_model:
        for name, tag in sorted({(i.clip["open_clip_model"], i.clip["open_clip_pretrained"]) for i in infos}):
            try:
                resolve_clip_weights(name, tag, None, offline=True)
            except (WeightsError, InputError):
                missing.append(f"CLIP text encoder {name} ({tag}): its weights are neither in the cache nor in "
                               "LAFITEBENCH_WEIGHTS; add them there, or pass --text-clip-model and --text-clip-weights")
    if missing:
        raise WeightsError("missing weights (nothing was run):\n  - " + "\n  - ".join(missing)
                           + "\nProvide them, or evaluate one model with --model ID|PATH")


@dataclass
class SweepJob:
    """What :func:`run_sweep` returns: per-model results, the paper's table beside ours, files."""

    inputs: DatasetInputs
    table: pd.DataFrame
    runs: dict[str, list[EvalJob]] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _identity(inputs: DatasetInputs, metrics: Any, config: EvalConfig, generation: GenerateConfig,
              models: Sequence[str]) -> dict[str, Any]:
    cfg = dataclasses.asdict(config)
    keep = ("fid_blur", "blur_preset", "resolution", "protocol", "inception_weights", "seed", "kid_subset_size",
            "kid_subsets", "isc_splits", "isc_shuffle", "fid_trace", "clip_model", "detector", "detector_conf")
    return {"kind": "lafitebench-sweep", "version": 1, "protocol": inputs.provenance(),
            "metrics": metrics if isinstance(metrics, str) else list(metrics),
            "config": {k: cfg[k] for k in keep}, "gen_seed": generation.seed, "models": list(models),
            "text_clip": [generation.clip_model, generation.clip_weights]}


def _claim(out: Path, identity: dict[str, Any], overwrite: bool) -> None:
    path = out / SWEEP_FILE
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path} is unreadable ({e}); pass --overwrite or choose another --out", param="out") from None
        if old != identity:
            diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            raise InputError(f"{out} holds a sweep with other settings ({', '.join(diff)} differ); choose another "
                             "--out, or pass --overwrite to recompute it", param="out")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        f.write(json.dumps(identity, indent=2, default=str))


def _one(model: str, folder: Path, inputs: DatasetInputs, metrics: Any, config: EvalConfig, generation: GenerateConfig,
         soa: bool, overwrite: bool) -> tuple[pd.DataFrame, dict[str, Any], list[EvalJob], bool]:
    """One model on the protocol (its main split, then the SOA split when asked), each part
    reused when its ``results.json`` is already there."""
    parts = [("samples", "result", metrics, False)] + ([("soa-samples", "soa-result", ["soa"], True)] if soa else [])
    tables, provs, jobs, reused = [], [], [], True
    for samples, result, ms, is_soa in parts:
        res = folder / result
        if (res / "results.json").is_file() and not overwrite:
            t, p = load_result(res)
        else:
            reused = False
            ref = {} if is_soa else inputs.reference_kwargs()
            job = run_eval(folder / samples, ref.pop("reference", None), **ref, metrics=ms, out=res, overwrite=overwrite, config=config, model=model,
                           generation=dataclasses.replace(inputs.generation(generation, soa=is_soa), overwrite=overwrite),
                           extra_provenance={"dataset_protocol": inputs.provenance()})
            jobs.append(job)
            t, p = job.result.table, job.result.provenance
        tables.append(t)
        provs.append(p)
    return pd.concat(tables, ignore_index=True), provs[0], jobs, reused


def paper_table(rows: list[tuple[str, dict[str, float], dict[str, Any] | None]], blur: Sequence[int]) -> pd.DataFrame:
    """Long table: one row per (model, metric) with ours, the paper's and ours − paper.

    Metrics: IS, FID-k at the requested blur levels, SOA-C/SOA-I, in the paper's order; those
    measured or in the paper's row."""
    wanted = [m for m in PAPER_ORDER if not m.startswith("FID-") or int(m[4:]) in blur]
    out = []
    for model, ours, paper in rows:
        pm = (paper or {}).get("metrics", {})
        for m in wanted:
            if m not in ours and m not in pm:
                continue
            o, p = ours.get(m, math.nan), pm.get(m, math.nan)
            out.append({"model": model, "metric": m, "ours": o, "paper": p, "diff": o - p,
                        "paper_row": f"{paper['table']}: {paper['row']}" if paper else ""})
    return pd.DataFrame(out, columns=["model", "metric", "ours", "paper", "diff", "paper_row"])


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """The console form: per model a row of ours, the paper's and the difference; metrics as columns."""
    if table.empty:
        return pd.DataFrame()
    cols = [m for m in PAPER_ORDER if m in set(table.metric)]
    rows, index = [], []
    for model, g in table.groupby("model", sort=False):
        g = g.set_index("metric")
        for what, label in (("ours", model), ("paper", "  paper"), ("diff", "  ours − paper")):
            rows.append({m: g[what].get(m, math.nan) for m in cols})
            index.append(label)
    return pd.DataFrame(rows, index=index, columns=cols)


def run_sweep(inputs: DatasetInputs, out: str | Path, *, metrics: Sequence[str] | str = "auto",
              config: EvalConfig | None = None, generation: GenerateConfig | None = None,
              overwrite: bool = False, models: Sequence[str] | None = None) -> SweepJob:
    """Evaluate ``models`` (zoo ids or checkpoint files; default: every zoo model listed for
    ``inputs.protocol``) on the protocol and build the paper's table.

    Each model's samples and results go to ``out/<model>/``; a finished model is reused and an
    interrupted one resumes (generation skips written images). Writes ``out/table.csv``,
    ``table.md`` and ``table.json`` (with the protocol and each model's provenance).

    Raises:
        InputError: no model listed, ``out`` holds a sweep with other settings.
        WeightsError: weights missing, all named at once, before any work.
    """

    config = config or EvalConfig()
    generation = generation or GenerateConfig()
    models = list(models) if models is not None else sweep_models(inputs.protocol)
    if not models:
        raise InputError(f"no zoo model is listed for data set {inputs.protocol.name!r} (manifest key `datasets`); "
                         "evaluate one with --model ID|PATH or a folder with --samples DIR", param="dataset")
    check_weights(models, generation)
    main_metrics, soa = split_metrics(metrics)
    inputs.check(generation, soa)
    out = Path(out)
    identity = _identity(inputs, metrics, config, generation, list(models))
    if distributed.is_main():
        _claim(out, identity, overwrite)
    distributed.barrier()
    job = SweepJob(inputs=inputs, table=pd.DataFrame())
    rows, provs = [], {}
    for model in models:
        label = model_label(model)
        t, prov, jobs, reused = _one(model, out / label, inputs, main_metrics, config, generation, soa, overwrite)
        job.runs[label] = jobs
        if reused:
            job.reused.append(label)
        for j in jobs:
            job.skipped.update(j.skipped)
        ours = {str(m): float(v) for m, v in zip(t["metric"], t["value"]) if v is not None and not pd.isna(v)}
        paper = prov.get("paper")
        rows.append((label, ours, paper))
        provs[label] = {"model": model, "n": int(t["n"].max()) if "n" in t and len(t) else None, "paper": paper,
                        "result": str(out / label / "result" / "results.json")}
    job.table = paper_table(rows, config.fid_blur)
    if distributed.is_main():
        files = {"csv": out / "table.csv", "md": out / "table.md", "json": out / "table.json"}
        with atomic_write(files["csv"], "w") as f:
            job.table.to_csv(f, index=False)
        with atomic_write(files["md"], "w") as f:
            f.write(f"# {inputs.protocol.title}\n\n" + to_markdown(wide(job.table), index=True) + "\n\n"
                    + "\n".join(f"- {n}" for n in table_notes(inputs)) + "\n")
        with atomic_write(files["json"], "w") as f:
            f.write(json.dumps({"protocol": inputs.provenance(), "notes": table_notes(inputs),
                                "rows": json.loads(job.table.to_json(orient="records")), "models": provs,
                                "settings": identity}, indent=2, default=str))
        job.files = files
    return job


def table_notes(inputs: DatasetInputs) -> list[str]:
    """What the table's reader must know: the protocol's facts and a --num cap."""
    notes = list(inputs.protocol.notes)
    if inputs.capped:
        notes.insert(0, f"--num {inputs.num}: {inputs.num} samples per model instead of the protocol's "
                        f"{inputs.protocol.num}; FID at this N is not comparable with the paper's")
    return notes


__all__ = ["DatasetInputs", "SweepJob", "locate", "protocol_config", "run_sweep", "sweep_models", "check_weights",
           "paper_table", "wide", "table_notes", "split_metrics", "model_label"]
