"""File helpers: sha256 of files, atomic writes (temporary file + ``os.replace``), path-like names."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file name beside ``path`` for a writer that takes a file name (safetensors);
    on success the file is synced, given umask permissions and ``os.replace``-d onto ``path``;
    on any failure it is removed, so ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        chmod_default(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and ``os.replace`` it into place on success."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def looks_like_path(s: str) -> bool:
    """True when a name is spelled like a path (has a separator, or starts with ``.`` or ``~``),
    so that a missing file is reported as a missing file rather than an unknown registered name."""
    return os.sep in s or "/" in s or s.startswith(".") or s.startswith("~")


def read_text(path: str | os.PathLike, what: str, *, max_bytes: int = 1 << 30) -> str:
    """The UTF-8 text of ``path`` (a leading BOM dropped), for every text input lafitebench reads.

    Raises:
        InputError: the file is missing, unreadable, larger than ``max_bytes``, not UTF-8 (names
            the byte offset and suggests re-saving as UTF-8) or contains NUL characters; the
            message names ``what`` and the file.
    """

    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise InputError(f"{what} {p} is {size} bytes, more than the {max_bytes} a {what} may have")
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {p} is a folder, not a file") from None
    except OSError as e:
        raise InputError(f"{what} {p} cannot be read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} {p} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                         "save it as UTF-8") from None
    if "\x00" in text:
        raise InputError(f"{what} {p} contains NUL characters (offset {text.index(chr(0))}); it is not a text file")
    return text


COMPLETE_MARKER = ".complete"


def chmod_default(path: Path) -> None:
    """Give a file made by ``mkstemp`` (0600) the permissions of a normal ``open`` under the umask."""
    os.chmod(path, 0o666 & ~_umask())


def write_file_set(out_dir: str | os.PathLike, files: dict[str, bytes], *, overwrite: bool = False) -> dict[str, Path]:
    """Write several files into ``out_dir`` as one set: a reader never sees half of a set.

    A new (or empty) ``out_dir`` is written as a temporary sibling folder renamed into place. In
    an existing folder each file is replaced atomically, the ``.complete`` marker being removed
    first and written last. Files with the same names from an earlier set are replaced only with
    ``overwrite``.

    Raises:
        InputError: ``out_dir`` is a file, or holds files of the same names and ``overwrite`` is False.
        OSError: the files could not be written (read-only, disk full, ...); nothing half-written
            is left under the final names.
    """

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file; choose another folder", param="out")
    existing = [n for n in files if (out / n).exists()] if out.is_dir() else []
    if existing and not overwrite:
        raise InputError(f"output folder {out} already holds {', '.join(existing[:3])} from another run; pass "
                         "overwrite (or choose another folder) to replace them", param="overwrite")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
                chmod_default(tmp / name)
            (tmp / COMPLETE_MARKER).write_bytes(b"")
            os.chmod(tmp, 0o777 & ~_umask())
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    else:
        (out / COMPLETE_MARKER).unlink(missing_ok=True)
        for name, data in files.items():
            with atomic_write(out / name, "wb") as f:
                f.write(data)
        (out / COMPLETE_MARKER).write_bytes(b"")
    return {name: out / name for name in files}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def clean_stale_temps(folder: str | os.PathLike, max_age_s: float = 3600.0) -> list[Path]:
    """Remove temporary files and folders our atomic writers leave when killed (``.<name>.*.tmp``,
    ``.<name>.*.part``) older than ``max_age_s`` in ``folder``; returns what was removed. A folder
    that cannot be listed or entries that cannot be removed are left alone (reported by the caller's
    next write, if at all)."""

    removed: list[Path] = []
    root = Path(folder)
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        if not (p.name.startswith(".") and p.name.endswith((".tmp", ".part"))):
            continue
        try:
            if now - p.stat().st_mtime < max_age_s:
                continue
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append(p)
        except OSError:
            continue
    return removed
