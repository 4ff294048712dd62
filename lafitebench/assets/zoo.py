"""The LAFITE model zoo: manifests of the released models, download, conversion, verification.

One TOML manifest per released model lives in the repository's ``zoo/`` folder (override with
``LAFITEBENCH_ZOO``); the schema is documented in ``zoo/README.md`` and checked on load. The
manifests are registered in :data:`MODELS` (a :class:`~lafitebench.registry.Registry` keyed by
model id, with aliases).

Cache layout (``cache_dir()/zoo/``)::

    <source.filename>          the released file as downloaded (an official snapshot .pkl)
    <id>.safetensors           the native checkpoint converted from it (what load_model reads)

``fetch`` downloads (Google Drive through gdown's confirm-token flow, other URLs with urllib),
checks the sha256 when the manifest knows it, writes atomically, then converts with
:func:`convert` (restricted unpickler, nothing from the file is executed). ``$LAFITEBENCH_WEIGHTS/
<source.filename>`` is used instead of downloading when present.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import settings
from ..errors import InputError, WeightsError
from ..io.files import read_text
from ..registry import Registry
from .backbones import CLIP_BACKBONES, clip_config
from .download import Source, fetch_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ENV_ZOO", "SCHEMA_VERSION", "ModelInfo", "SourceInfo", "PaperResult", "MODELS", "zoo_dir",
    "zoo_cache_dir", "load_manifest", "list_models", "get_model_info", "render_models_table",
    "official_path", "native_path", "download_release", "manual_instructions", "VARIANTS", "UNKNOWN_VARIANT",
]

ENV_ZOO = settings.ENV_ZOO
SCHEMA_VERSION = 1
SOURCE_KINDS = ("gdrive", "http")

#: The kinds of LAFITE model (a manifest's and a native checkpoint's ``variant``).
VARIANTS = {
    "g": "language-free, Gaussian pseudo-text features (Lafite-G)",
    "nn": "language-free, pseudo-text from a trained perturbation network (Lafite-NN)",
    "supervised": "trained on ground-truth image-text pairs",
    "zero-shot": "pre-trained on Google CC3M, evaluated zero-shot on another set",
}
UNKNOWN_VARIANT = "unknown"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def zoo_dir() -> Path:
    """Folder of the manifests: ``$LAFITEBENCH_ZOO``, else the bundled ``zoo/`` (see :func:`settings.data_dir`)."""
    return settings.data_dir("zoo")


def zoo_cache_dir() -> Path:
    """``cache_dir()/zoo``: downloaded official files and converted native checkpoints."""
    return settings.cache_dir() / "zoo"


# ----------------------------------------------------------------------------------------------
# manifest data

@dataclass(frozen=True)
class SourceInfo:
    """Where the released file comes from. ``sha256``/``size_bytes`` are None when unknown."""

    kind: str
    url: str
    filename: str
    listed_at: str
    gdrive_id: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    hash_status: str | None = None


@dataclass(frozen=True)
class PaperResult:
    """One row of a paper table for this model; ``verified`` says it was checked against the paper."""

    table: str
    row: str
    metrics: Mapping[str, float]
    verified: bool
    verified_against: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """A validated manifest. ``clip`` is the native ``clip`` block (name, open_clip names, f_dim)."""

    id: str
    title: str
    variant: str
    training_data: str
    resolution: int
    license: str
    clip: Mapping[str, Any]
    source: SourceInfo
    paper: tuple[PaperResult, ...] = ()
    notes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    manifest_path: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON output and ``zoo show``)."""
        return {
            "id": self.id, "title": self.title, "variant": self.variant,
            "variant_description": VARIANTS[self.variant], "training_data": self.training_data,
            "resolution": self.resolution, "license": self.license, "clip": dict(self.clip),
            "source": {k: v for k, v in vars(self.source).items()},
            "paper": [{"table": p.table, "row": p.row, "metrics": dict(p.metrics), "verified": p.verified,
                       "verified_against": p.verified_against} for p in self.paper],
            "notes": list(self.notes), "aliases": list(self.aliases), "datasets": list(self.datasets),
            "manifest": str(self.manifest_path) if self.manifest_path else None,
        }


# ----------------------------------------------------------------------------------------------
# manifest parsing and validation

class _Manifest:
    """Typed access to a parsed TOML table with errors that name the file and the key."""

    def __init__(self, path: Path, data: Mapping[str, Any], prefix: str = "") -> None:
        self.path, self.data, self.prefix = path, data, prefix

    def error(self, key: str, what: str) -> InputError:
        return InputError(f"zoo manifest {self.path}: key '{self.prefix}{key}' {what}")

    def positive(self, key: str, *, required: bool = True) -> int | None:
        """An integer key that must be > 0 (sizes, widths)."""
        value = self.get(key, int, required=required)
        if value is not None and value <= 0:
            raise self.error(key, f"is {value}; expected a positive integer")
        return value

    def get(self, key: str, typ: type | tuple[type, ...], *, required: bool = True, default: Any = None) -> Any:
        if key not in self.data:
            if required:
                raise self.error(key, "is missing")
            return default
        value = self.data[key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise self.error(key, f"must be a {name}, got {type(value).__name__} {value!r}")
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, required=False, default=[])
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise self.error(f"{key}[{i}]", f"must be a string, got {type(v).__name__}")
        return tuple(values)

    def table(self, key: str, *, required: bool = True) -> "_Manifest | None":
        value = self.get(key, dict, required=required)
        return None if value is None else _Manifest(self.path, value, f"{self.prefix}{key}.")

    def check_keys(self, allowed: set[str]) -> None:
        extra = sorted(set(self.data) - allowed)
        if extra:
            raise self.error(extra[0], f"is not a known manifest key (allowed here: {sorted(allowed)})")


_TOP_KEYS = {"schema_version", "id", "aliases", "title", "variant", "training_data", "resolution",
             "license", "notes", "clip", "source", "paper", "datasets"}
_CLIP_KEYS = {"backbone", "open_clip_model", "open_clip_pretrained", "f_dim"}
_SOURCE_KEYS = {"kind", "url", "gdrive_id", "filename", "listed_at", "sha256", "size_bytes", "hash_status"}
_PAPER_KEYS = {"table", "row", "verified", "verified_against", "metrics"}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


def load_manifest(path: str | os.PathLike) -> ModelInfo:
    """Parse and validate one manifest file.

    Raises InputError naming the file and the offending key (missing, wrong type, unknown key,
    bad variant / CLIP backbone / source kind / sha256, id different from the file name).
    """
    path = Path(path)
    try:
        data = tomllib.loads(read_text(path, "zoo manifest"))
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise InputError(f"zoo manifest {path} is not valid TOML: {e or 'nested too deeply'}") from None
    m = _Manifest(path, data)
    m.check_keys(_TOP_KEYS)
    version = m.get("schema_version", int)
    if version != SCHEMA_VERSION:
        raise m.error("schema_version", f"is {version}; this lafitebench reads version {SCHEMA_VERSION}")
    model_id = m.get("id", str)
    if not _ID_RE.match(model_id):
        raise m.error("id", f"{model_id!r} must be lower-case letters, digits, '.' and '-'")
    if model_id != path.stem:
        raise m.error("id", f"is {model_id!r} but the file is named {path.name!r}; they must agree")
    variant = m.get("variant", str)
    if variant not in VARIANTS:
        raise m.error("variant", f"is {variant!r}; expected one of {list(VARIANTS)}")
    resolution = m.get("resolution", int)
    if resolution < 4 or resolution > 4096 or resolution & (resolution - 1):
        raise m.error("resolution", f"is {resolution}; expected a power of two in [4, 4096]")

    c = m.table("clip")
    c.check_keys(_CLIP_KEYS)
    backbone = c.get("backbone", str)
    if backbone in CLIP_BACKBONES:
        clip = clip_config(backbone)
        for k in ("open_clip_model", "open_clip_pretrained", "f_dim"):
            if k in c.data and c.data[k] != clip[k]:
                raise c.error(k, f"is {c.data[k]!r} but {clip['name']} means {clip[k]!r}")
    else:  # a backbone LAFITE was not released with: every field must be given
        clip = {"name": backbone, "open_clip_model": c.get("open_clip_model", str),
                "open_clip_pretrained": c.get("open_clip_pretrained", str), "f_dim": c.positive("f_dim")}

    s = m.table("source")
    s.check_keys(_SOURCE_KEYS)
    kind = s.get("kind", str)
    if kind not in SOURCE_KINDS:
        raise s.error("kind", f"is {kind!r}; expected one of {list(SOURCE_KINDS)}")
    url = s.get("url", str)
    if not url.startswith(("https://", "http://")):
        raise s.error("url", f"{url!r} is not an http(s) URL")
    gdrive_id = s.get("gdrive_id", str, required=(kind == "gdrive"))
    filename = s.get("filename", str)
    if "/" in filename or "\\" in filename or filename.startswith("."):
        raise s.error("filename", f"{filename!r} must be a plain file name")
    sha = s.get("sha256", str, required=False)
    if sha is not None and not _SHA256_RE.match(sha):
        raise s.error("sha256", f"{sha!r} is not 64 lower-case hex digits")
    hash_status = s.get("hash_status", str, required=sha is None)
    source = SourceInfo(kind=kind, url=url, filename=filename, listed_at=s.get("listed_at", str),
                        gdrive_id=gdrive_id, sha256=sha, size_bytes=s.positive("size_bytes", required=False),
                        hash_status=hash_status)

    paper = []
    rows = m.get("paper", list, required=False, default=[])
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise m.error(f"paper[{i}]", "must be a table")
        p = _Manifest(path, row, f"paper[{i}].")
        p.check_keys(_PAPER_KEYS)
        metrics_t = p.table("metrics")
        metrics = {k: metrics_t.get(k, float) for k in metrics_t.data}
        bad = next((k for k, v in metrics.items() if v != v or v in (float("inf"), float("-inf"))), None)
        if bad is not None:
            raise metrics_t.error(bad, "is not a finite number")
        paper.append(PaperResult(table=p.get("table", str), row=p.get("row", str), metrics=metrics,
                                 verified=p.get("verified", bool),
                                 verified_against=p.get("verified_against", str, required=False)))

    return ModelInfo(
        id=model_id, title=m.get("title", str), variant=variant, training_data=m.get("training_data", str),
        resolution=resolution, license=m.get("license", str), clip=clip, source=source, paper=tuple(paper),
        notes=m.str_list("notes"), aliases=m.str_list("aliases"), datasets=m.str_list("datasets"),
        manifest_path=path,
    )


def _manifest_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise InputError(
            f"model zoo folder {directory} does not exist (set {ENV_ZOO} to a folder of *.toml manifests)"
        )
    return sorted(directory.glob("*.toml"))


class ModelRegistry(Registry[ModelInfo]):
    """The :class:`Registry` of zoo manifests, filled from :func:`zoo_dir` on first use.

    It reloads when ``LAFITEBENCH_ZOO`` points somewhere else. A broken manifest makes every
    lookup raise its InputError (file + key), so a typo is never silently skipped.
    """

    def __init__(self) -> None:
        super().__init__("model")
        self._loaded_from: Path | None = None

    def reload(self) -> None:
        """Re-read the manifests from :func:`zoo_dir`."""
        directory = zoo_dir()
        infos = [load_manifest(p) for p in _manifest_files(directory)]
        self._entries.clear()
        self._aliases.clear()
        for info in infos:
            for name in (info.id, *info.aliases):
                if name.lower() in self._entries or name.lower() in self._aliases:
                    raise InputError(f"zoo manifest {info.manifest_path}: id or alias {name!r} is already used by another manifest")
            super().register(info.id, info, aliases=info.aliases)
        self._loaded_from = directory

    def _ensure_loaded(self) -> None:
        if self._loaded_from != zoo_dir():
            self.reload()

    def _canonical(self, name: str) -> str:
        self._ensure_loaded()
        return super()._canonical(name)

    def names(self) -> list[str]:
        self._ensure_loaded()
        return super().names()

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return super().__contains__(name)


MODELS = ModelRegistry()


def get_model_info(model_id: str) -> ModelInfo:
    """The validated manifest of ``model_id`` (an id or alias).

    Raises UnknownNameError (a KeyError listing the known ids, with a did-you-mean) for an
    unknown id, InputError for a broken manifest.
    """
    return MODELS.get(model_id)


def official_path(info: ModelInfo) -> Path:
    """Cache path of the released (official) file of a model."""
    return zoo_cache_dir() / info.source.filename


def native_path(info: ModelInfo) -> Path:
    """Cache path of the converted native checkpoint of a model."""
    return zoo_cache_dir() / f"{info.id}.safetensors"


def _cache_state(info: ModelInfo) -> str:
    if native_path(info).is_file():
        return "converted"
    if official_path(info).is_file():
        return "downloaded (not converted)"
    return "-"


def _paper_summary(info: ModelInfo) -> str:
    parts = []
    for p in info.paper:
        nums = ", ".join(f"{k} {v:.2f}" for k, v in p.metrics.items())
        parts.append(f"{nums}{'' if p.verified else ' (unverified)'}")
    return "; ".join(parts) if parts else "-"


def list_models() -> list[dict[str, Any]]:
    """One dict per manifest (sorted by id), flat values ready for a table or JSON.

    Keys: id, variant, title, training_data, resolution, clip, paper (summary string),
    paper_table, sha256 (or "unknown"), cached ("converted" / "downloaded (not converted)" / "-").
    """
    rows = []
    for name in MODELS.names():
        info = MODELS.get(name)
        rows.append({
            "id": info.id, "variant": info.variant, "title": info.title, "training_data": info.training_data,
            "resolution": info.resolution, "clip": info.clip["name"], "paper": _paper_summary(info),
            "paper_table": "; ".join(p.table for p in info.paper) or "-",
            "sha256": info.source.sha256 or "unknown", "cached": _cache_state(info),
        })
    return rows


def _paper_short(info: ModelInfo) -> str:
    """``FID-0 18.04 · IS 27.20`` from the first paper row (``*`` when unverified), or ``-``."""
    if not info.paper:
        return "-"
    p = info.paper[0]
    fid = p.metrics.get("FID-0", p.metrics.get("FID"))
    parts = ([f"FID {fid:.2f}"] if fid is not None else []) + (
        [f"IS {p.metrics['IS']:.2f}"] if "IS" in p.metrics else [])
    return " · ".join(parts) + ("" if p.verified else " *")


def render_models_table() -> "Any":
    """A ``rich.table.Table`` of :func:`list_models` that fits 80 columns (ids never cut; every
    paper number is in ``lafitebench zoo show ID``)."""
    from rich.table import Table

    table = Table(title="LAFITE model zoo", caption="all paper numbers: lafitebench zoo show ID", caption_justify="left")
    table.add_column("id", style="bold", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    table.add_column("CLIP", no_wrap=True)
    table.add_column("paper, COCO")
    table.add_column("cache")
    for name in MODELS.names():
        info = MODELS.get(name)
        table.add_row(info.id, info.variant, info.clip["name"], _paper_short(info), _cache_state(info))
    return table


# ----------------------------------------------------------------------------------------------
# download

def manual_instructions(info: ModelInfo) -> str:
    lines = [
        f"Download it by hand from {info.source.url} (listed at {info.source.listed_at}) and save it as",
        f"  {official_path(info)}",
    ]
    env = settings.weights_dir()
    if env is not None:
        lines.append(f"  (or as {env / info.source.filename}, the ${settings.ENV_WEIGHTS} folder)")
    lines.append(
        f"then run `lafitebench zoo fetch {info.id}` again: it converts the file without downloading. "
        f"A snapshot saved anywhere else can be converted with `lafitebench zoo convert FILE.pkl OUT.safetensors "
        f"--variant {info.variant} --clip-backbone {info.clip['name']}`."
    )
    return "\n".join(lines)


def download_release(info: ModelInfo, target: Path, show_progress: bool) -> str:
    """Download the released file of ``info`` to ``target`` (:func:`~.download.fetch_file`:
    resumable, size and sha256 checked against the manifest, atomic); return its sha256.

    Raises:
        WeightsError: the download failed or the file is not the manifest's (deleted), with the
            instructions for a manual download.
    """
    src = Source(info.source.url, info.source.gdrive_id if info.source.kind == "gdrive" else None)
    try:
        digest, _, _ = fetch_file(target, [src], label=f"download {info.source.filename}", size=info.source.size_bytes,
                                  accept=lambda d: (not info.source.sha256 or d == info.source.sha256) and "sha256",
                                  show_progress=show_progress)
    except WeightsError as e:
        raise WeightsError(f"model {info.id!r}: {e}; the manifest expects sha256 {info.source.sha256 or '(unknown)'}."
                           f"\n{manual_instructions(info)}") from None
    return digest
