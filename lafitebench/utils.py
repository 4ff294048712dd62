"""Small shared helpers: hashing, atomic writes, progress bars on stderr."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr_console = Console(stderr=True)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and ``os.replace`` it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def progress(disable: bool = False) -> Progress:
    """A Rich progress bar on stderr (so ``--json`` output on stdout stays clean)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        disable=disable,
        transient=False,
    )


def to_jsonable(obj: Any, *, other: str = "error") -> Any:
    """A copy of ``obj`` in plain JSON types: mappings → dicts with str keys, tuples → lists,
    numpy / torch scalars → Python numbers, arrays / tensors → nested lists.

    ``other`` says what to do with anything else: ``"error"`` raises TypeError naming the type,
    ``"repr"`` records its ``repr``, ``"keep"`` leaves it as is (for ``json.dump(default=str)``).
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, other=other) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, other=other) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch scalars and arrays
        return to_jsonable(obj.tolist(), other=other)
    if other == "repr":
        return repr(obj)
    if other == "keep":
        return obj
    raise TypeError(f"value {obj!r} of type {type(obj).__name__} cannot be stored as JSON")
