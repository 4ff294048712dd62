"""The ``eval`` job: build the sample and reference sets, pick the metrics, run the engine, save.

``run_eval`` is what ``lafitebench eval`` calls. With ``metrics="auto"`` (the default) it computes
every metric whose inputs are available and lists each one it left out with the reason (no
captions, no classifier in the Inception file, CLIP weights not available offline, ...).
Metrics named explicitly are required: anything missing is an error, raised before any work.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .. import settings
from ..assets import zoo
from ..data.registry import get_dataset
from ..data.sources.folder import sample_set
from ..errors import InputError
from ..metrics.config import EvalConfig
from ..metrics.engine import EvalResult, evaluate
from ..metrics.plan import AUTO
from ..reports import save_result
from ..runtime import distributed
from .generate import GenerateConfig, default_samples_dir, prepare_stream, run_generate
from .report import RUNS_DIR, run_dir_name, run_report

DEFAULT_KID_SUBSET = 1000


@dataclass
class EvalJob:
    """What ``run_eval`` returns: the engine result, metrics left out (with reasons), output files."""

    result: EvalResult
    skipped: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    report_files: dict[str, Path] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def shared_images(samples: Any, reference: Any) -> int:
    """How many sample images are also in the reference (same file bytes, or the same COCO image).
    0 for sets that cannot say (streamed samples)."""
    if reference is None or not hasattr(samples, "identities") or not hasattr(reference, "identities"):
        return 0
    ref = set().union(*reference.identities())
    return sum(1 for ident in samples.identities() if ident & ref)


def overlap_notice(n_shared: int, samples: Any, reference: Any) -> str | None:
    """The warning printed when samples and reference share images (FID then measures memorisation)."""
    if not n_shared:
        return None
    return (f"{n_shared} of {len(samples.items)} sample images are also in the reference {reference.name!r} (same "
            "file or COCO image id): FID/KID against a set that contains the samples are lower than for unseen "
            "images. Use a reference without them (e.g. coco-mini:a against coco-mini:b)")


def load_samples(samples: str | os.PathLike, captions: str | os.PathLike | None, resolution: int,
                 allow_outside_paths: bool = False):
    """A samples folder (with its manifest) or a registered data set name such as ``coco-mini:a``."""
    p = Path(samples)
    if p.is_dir():
        return sample_set(p, captions_file=captions, resolution=resolution, allow_outside_paths=allow_outside_paths)
    if p.exists():
        raise InputError(f"samples {samples}: expected a folder of images or a data set name, got a file", param="samples")
    return get_dataset(str(samples), resolution=resolution, captions_file=captions,
                       allow_outside_paths=allow_outside_paths)


def load_reference(reference: str | os.PathLike | None, data_root: str | os.PathLike | None,
                   reference_captions: str | os.PathLike | None, resolution: int, split: str | None = None,
                   allow_outside_paths: bool = False):
    """A reference data set name (``coco-mini``, ``coco`` with ``data_root``) or an image folder."""
    if reference is None:
        return None
    return get_dataset(str(reference), data_root=data_root, resolution=resolution, split=split,
                       captions_file=reference_captions, allow_outside_paths=allow_outside_paths)


def check_out(out: str | os.PathLike | None, overwrite: bool) -> None:
    """Before any work: ``out`` can take a new result (not a file, no earlier result unless
    ``overwrite``, writable where it exists). Raises InputError naming ``out``."""
    if out is None:
        return
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise InputError(f"output folder {p} is a file; choose another folder", param="out")
    if (p / "results.json").exists() and not overwrite:
        raise InputError(f"output folder {p} already holds a result (results.json); pass overwrite or choose "
                         "another folder", param="overwrite")
    probe = next((q for q in (p, *p.parents) if q.exists()), None)
    if probe is not None and not probe.is_dir():
        raise InputError(f"output folder {p} cannot be made: {probe} is a file", param="out")
    if probe is not None and not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"output folder {p} cannot be written ({probe} is read-only); choose another folder",
                         param="out")


def save_with_fallback(out: str | os.PathLike, result: EvalResult, overwrite: bool) -> tuple[dict[str, Path], str | None]:
    """Save ``result`` into ``out``; if that fails (disk full, permissions changed, ...), into a
    fresh folder under the cache (or the system temp folder). Returns the files and, after a
    fallback, a warning that names both places."""

    extra = {"soa_per_class": result.per_class} if isinstance(result.per_class, pd.DataFrame) else None
    try:
        return save_result(out, result.table, result.provenance, extra, overwrite=overwrite), None
    except (OSError, InputError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for base in (settings.cache_dir() / "unsaved", Path(tempfile.gettempdir()) / "lafitebench-unsaved"):
        try:
            target = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=_mkdirs(base)))
            files = save_result(target, result.table, result.provenance, extra, overwrite=True)
            return files, f"could not write the results to {out} ({reason}); saved them to {target} instead"
        except OSError:
            continue
    return {}, f"could not write the results to {out} ({reason}) nor to a fallback folder; they are printed only"


def _mkdirs(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _model_samples(model: str, samples: Any, generation: Any, stream: bool, config: EvalConfig) -> tuple[Any, Any]:
    """The samples of ``model`` on the generation config's split: streamed, or generated into
    ``samples`` (default: a folder under the cache, reused by the next run), plus the paper's row
    for a zoo model."""

    gen = dataclasses.replace(generation or GenerateConfig(), model=str(model), progress=config.progress)
    paper = paper_row(str(model))
    if stream:
        return prepare_stream(gen, config.resolution), paper
    folder = Path(samples) if samples is not None else default_samples_dir(gen)
    run_generate(dataclasses.replace(gen, out=str(folder)))
    return sample_set(folder, resolution=config.resolution), paper


def paper_row(model: str) -> dict[str, Any] | None:
    """The paper's numbers for a zoo model id (its manifest's first paper row), else None."""

    if model not in zoo.MODELS:
        return None
    info = zoo.get_model_info(model)
    if not info.paper:
        return None
    p = info.paper[0]
    return {"model": info.id, "table": p.table, "row": p.row, "metrics": dict(p.metrics), "verified": p.verified,
            "source": p.verified_against}


def _readable(image_set: Any, skip_bad: bool) -> int:
    """How many images a pass will use: all, or (``skip_bad``) those whose headers read (cheap)."""
    return len(image_set.items) - (len(image_set.find_bad(quick=True)) if skip_bad else 0)


def _kid_subset(config: EvalConfig, n: int, n_ref: int) -> EvalConfig:
    """KID's subset size is min(1000, N) (the metrics reference); only the default 1000 is lowered.

    An explicit other size larger than a set stays as given, so the engine reports the error.
    """
    if config.kid_subset_size == DEFAULT_KID_SUBSET and n_ref and min(n, n_ref) < DEFAULT_KID_SUBSET:
        return dataclasses.replace(config, kid_subset_size=max(2, min(n, n_ref)))
    return config


def run_eval(samples: str | os.PathLike | None, reference: str | os.PathLike | None = None, *,
             metrics: Sequence[str] | str = AUTO, captions: str | os.PathLike | None = None,
             data_root: str | os.PathLike | None = None, reference_captions: str | os.PathLike | None = None,
             reference_split: str | None = None, out: str | os.PathLike | None = None,
             overwrite: bool = False, allow_outside_paths: bool = False,
             config: EvalConfig | None = None, model: str | None = None,
             generation: "GenerateConfig | None" = None, stream: bool = False,
             report: str | os.PathLike | None = None, extra_provenance: dict[str, Any] | None = None) -> EvalJob:
    """Evaluate a samples folder (or data set) against a reference and save CSV/JSON/Markdown to ``out``.

    ``metrics="auto"`` computes every metric whose inputs exist and lists each one left out with
    the reason; named metrics are required (anything missing is an error). KID's subset size
    becomes ``min(1000, N_samples, N_reference)`` when left at its default (the metric id records
    it). Under torchrun only rank 0 writes ``out``. ``out`` is checked before any work (a file in the
    way, an earlier result without ``overwrite``, read-only); the files are written as one set, and
    if writing still fails the result is saved to a fallback folder named in ``job.warnings``.
    ``report``: a report folder; the result goes to ``report/runs/<run>/`` and the folder's tables,
    leaderboard and HTML page are rebuilt (:func:`lafitebench.jobs.report.run_report`).
    ``extra_provenance``: entries added to the result's provenance (e.g. the data set protocol).

    Raises:
        InputError / WeightsError: bad input, before any network runs.
    """
    config = config or EvalConfig()
    if distributed.is_main():
        check_out(out, overwrite)
    if model is not None:
        s, paper = _model_samples(model, samples, generation, stream, config)
    else:
        if samples is None:
            raise InputError("give samples (a folder or data set name) or a model to generate them", param="samples")
        s, paper = load_samples(samples, captions, config.resolution, allow_outside_paths), None
    r = load_reference(reference, data_root, reference_captions, config.resolution, reference_split,
                       allow_outside_paths)
    n, n_ref = _readable(s, config.skip_bad), (_readable(r, config.skip_bad) if r is not None else 0)
    config = _kid_subset(dataclasses.replace(config, metrics=metrics), n, n_ref)
    result = evaluate(s, r, config)
    n_shared = shared_images(s, r)
    notice = overlap_notice(n_shared, s, r)
    if r is not None:
        result.provenance["inputs"]["shared_images"] = n_shared
    result.provenance["metrics_requested"] = metrics if isinstance(metrics, str) else list(metrics)
    identity = generation_identity(s)
    if identity:
        result.provenance["generation"] = identity
        paper = paper or paper_row(str((identity.get("model") or {}).get("id")))
    if paper is not None:
        result.provenance["paper"] = paper
    result.provenance["metrics_skipped"] = result.skipped
    result.provenance.update(extra_provenance or {})
    files: dict[str, Path] = {}
    warnings: list[str] = []
    report_files: dict[str, Path] = {}
    if report is not None and out is None:
        base = Path(report) / RUNS_DIR / run_dir_name(result.provenance)
        out = next(p for p in (base if k == 0 else base.with_name(f"{base.name}-{k + 1}") for k in range(10_000))
                   if not p.exists())
    if out is not None and distributed.is_main():
        files, warning = save_with_fallback(out, result, overwrite)
        warnings += [warning] if warning else []
    if report is not None and distributed.is_main() and files:
        report_files = run_report([report]).files
    return EvalJob(result=result, skipped=result.skipped, files=files, warnings=warnings, report_files=report_files,
                   notices=[notice] if notice else [])


def generation_identity(samples: Any) -> dict[str, Any] | None:
    """The generation run behind a sample set: a streamed set's identity, or the ``generate.json``
    of a folder written by ``lafitebench generate`` (model, checkpoint sha256, split and hash, settings)."""

    ident = getattr(samples, "identity", None)
    if isinstance(ident, dict):
        return ident
    root = getattr(samples, "root", None)
    path = Path(root) / "generate.json" if root else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # not ours to judge here: the samples themselves were read fine
    return data if isinstance(data, dict) and data.get("kind") == "lafitebench-samples" else None
