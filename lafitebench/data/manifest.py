"""Samples manifests: which image files a set holds, with their captions and SOA classes.

Two formats with the same columns, chosen by the file suffix:

- JSONL (``.jsonl``): one JSON object per line, ``{"file": "00000.png", "caption": "...",
  "soa_class": "label_15_cat"}``; an optional ``"captions"`` list of all reference captions.
- CSV (``.csv``): a header row naming the columns; ``file`` is required.

``file`` is required; ``caption`` and ``soa_class`` are optional (empty → none). Other columns
are kept as ``extra`` (e.g. ``seed``). Relative ``file`` paths are relative to ``base_dir``
(default: the manifest's folder). The generation feature writes this format with
:func:`write_manifest`.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from lafitebench.errors import InputError
from lafitebench.io.files import atomic_write, read_text

__all__ = ["ManifestRow", "read_manifest", "write_manifest", "MANIFEST_NAMES", "KNOWN_COLUMNS"]

MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")
KNOWN_COLUMNS = ("file", "caption", "soa_class")
_MAX_NAMED = 10


@dataclass(frozen=True)
class ManifestRow:
    """One manifest entry; ``line`` is the 1-based line of the manifest it came from."""

    file: str
    path: Path
    caption: str | None = None
    soa_class: str | None = None
    captions: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


def _opt_str(value: Any, where: str, column: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}: column {column!r} must be a string, got {type(value).__name__}")
    value = value.strip()
    return value or None


def _row(raw: Mapping[str, Any], where: str, line: int, base: Path, allow_outside: bool) -> ManifestRow:
    if "file" not in raw:
        raise InputError(f"{where}: missing column 'file' (columns: {', '.join(map(str, raw)) or 'none'})")
    f = raw["file"]
    if not isinstance(f, str) or not f.strip():
        raise InputError(f"{where}: column 'file' is empty or not a string")
    f = f.strip()
    if "\x00" in f:
        raise InputError(f"{where}: column 'file' contains a NUL character")
    p = Path(f).expanduser()
    if not allow_outside and (p.is_absolute() or not _inside(base / p, base)):
        raise InputError(f"{where}: file {f!r} is outside the manifest's folder {base}; a manifest may only list "
                         "files inside its folder unless outside paths are allowed explicitly "
                         "(allow_outside_paths)", param="allow_outside_paths")
    caps = raw.get("captions")
    if caps is None:
        captions: tuple[str, ...] = ()
    elif isinstance(caps, list) and all(isinstance(c, str) for c in caps):
        captions = tuple(caps)
    else:
        raise InputError(f"{where}: column 'captions' must be a list of strings")
    caption = _opt_str(raw.get("caption"), where, "caption")
    return ManifestRow(
        file=f,
        path=p if p.is_absolute() else base / p,
        caption=caption,
        soa_class=_opt_str(raw.get("soa_class"), where, "soa_class"),
        captions=captions or ((caption,) if caption else ()),
        extra={k: v for k, v in raw.items() if k not in (*KNOWN_COLUMNS, "captions")},
        line=line,
    )


def _inside(p: Path, base: Path) -> bool:
    """True when ``p`` (links resolved) lies inside ``base``."""
    try:
        return p.resolve().is_relative_to(base.resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def _read_jsonl(path: Path, base: Path, allow_outside: bool) -> list[ManifestRow]:
    rows = []
    for n, text in enumerate(read_text(path, "manifest").splitlines(), start=1):
        if not text.strip():
            continue
        where = f"manifest {path} line {n}"
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            detail = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise InputError(f"{where}: invalid JSON ({detail})") from None
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        rows.append(_row(raw, where, n, base, allow_outside))
    return rows


def _read_csv(path: Path, base: Path, allow_outside: bool) -> list[ManifestRow]:
    rows = []
    with io.StringIO(read_text(path, "manifest"), newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        if not header:
            raise InputError(f"manifest {path}: empty file (expected a header row with a 'file' column)")
        header = [h.strip() if h else h for h in header]
        reader.fieldnames = header
        if "file" not in header:
            raise InputError(f"manifest {path}: missing column 'file' in the header (columns: {', '.join(header)})")
        for i, raw in enumerate(reader, start=1):
            where = f"manifest {path} row {i} (line {reader.line_num})"
            if None in raw:  # more cells than header columns
                raise InputError(f"{where}: more cells than header columns")
            if all((v or "").strip() == "" for v in raw.values()):
                continue
            rows.append(_row({k: v for k, v in raw.items() if v is not None}, where, reader.line_num, base,
                             allow_outside))
    return rows


def read_manifest(path: str | os.PathLike, *, base_dir: str | os.PathLike | None = None,
                  check_files: bool = True, allow_outside: bool = False) -> list[ManifestRow]:
    """Read a JSONL or CSV samples manifest.

    Args:
        path: ``.jsonl`` or ``.csv`` file.
        base_dir: folder that relative ``file`` entries are relative to (default: the manifest's).
        check_files: every listed file must exist.
        allow_outside: accept absolute paths and paths that leave ``base_dir`` (``..``, links);
            off by default, so a manifest from elsewhere cannot make us read arbitrary files.

    Raises:
        InputError: unreadable manifest, unknown suffix, bad JSON, a missing or empty ``file``
            column, a duplicate file, no rows, or listed files not on disk — naming the manifest
            and the line/row.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    base = Path(base_dir) if base_dir is not None else path.parent
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _read_jsonl(path, base, allow_outside)
    elif suffix == ".csv":
        rows = _read_csv(path, base, allow_outside)
    else:
        raise InputError(f"manifest {path}: unknown format {suffix!r}; use .jsonl or .csv")
    if not rows:
        raise InputError(f"manifest {path} lists no files")
    seen: dict[Path, int] = {}
    for r in rows:
        key = r.path.resolve()
        if key in seen:
            raise InputError(f"manifest {path} line {r.line}: file {r.file!r} is listed twice (first at line {seen[key]})")
        seen[key] = r.line
    if check_files:
        missing = [r for r in rows if not r.path.is_file()]
        if missing:
            named = "; ".join(f"line {r.line}: {r.path}" for r in missing[:_MAX_NAMED])
            more = f" and {len(missing) - _MAX_NAMED} more" if len(missing) > _MAX_NAMED else ""
            raise InputError(f"manifest {path}: {len(missing)} listed file(s) not on disk: {named}{more}")
    return rows


def write_manifest(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows (mappings with at least ``file``) as JSONL or CSV by ``path``'s suffix, atomically.

    CSV columns are ``file, caption, soa_class`` then the other keys in first-seen order; a
    ``captions`` list is kept only in JSONL.

    Raises:
        InputError: a row without ``file``, or an unknown suffix.
    """
    path = Path(path)
    rows = [dict(r) for r in rows]
    for i, r in enumerate(rows, start=1):
        if not r.get("file"):
            raise InputError(f"write_manifest {path}: row {i} has no 'file'")
        if isinstance(r["file"], os.PathLike):
            r["file"] = os.fspath(r["file"])
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif suffix == ".csv":
        cols = list(KNOWN_COLUMNS)
        for r in rows:
            cols += [k for k in r if k not in cols and k != "captions"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
        text = buf.getvalue()
    else:
        raise InputError(f"write_manifest {path}: unknown format {suffix!r}; use .jsonl or .csv")
    with atomic_write(path, "wb") as fh:
        fh.write(text.encode("utf-8"))
    return path
