"""Streaming downloads shared by the weights resolver and the model zoo.

One place opens URLs (:func:`open_url`); :func:`download_to_temp` streams into a temporary file
beside the target with a Rich progress bar and always removes it unless the caller has moved it
into place (after checking size and hash), so an interrupted or refused download never leaves a
file that looks complete.
"""
from __future__ import annotations

import os
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from ..runtime.progress import progress
from .files import chmod_default

ProgressFn = Callable[[int, "int | None"], None]


def open_url(url: str, timeout: float = 60.0) -> Any:
    """Open ``url`` for streaming (raises urllib / OS errors as they come)."""
    req = urllib.request.Request(url, headers={"User-Agent": "lafitebench"})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (https URLs from registries/manifests)


def content_length(src: Any) -> int | None:
    """The ``Content-Length`` of a response, or None when absent or malformed."""
    headers = getattr(src, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value is not None and str(value).isdigit() else None


def copy_stream(src: BinaryIO, out: BinaryIO, on_progress: ProgressFn, chunk: int = 1 << 20) -> int:
    """Copy ``src`` into ``out`` in chunks, reporting ``(bytes_done, total_or_None)``; returns bytes copied."""
    total = content_length(src)
    done = 0
    while block := src.read(chunk):
        out.write(block)
        done += len(block)
        on_progress(done, total)
    return done


@contextmanager
def download_to_temp(target: Path, fill: Callable[[BinaryIO, ProgressFn], None], *, label: str,
                     total: int | None = None, show_progress: bool = True) -> Iterator[Path]:
    """Run ``fill(out, on_progress)`` into a temporary file beside ``target`` and yield its path.

    The caller checks the file and ``os.replace``-s it onto ``target``; whatever is left at the
    temporary path when the block exits (a refused or failed download) is deleted.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(name)
    try:
        bar: Any = None
        task: Any = None

        def on_progress(done: int, size: int | None) -> None:
            nonlocal bar, task
            if not show_progress:
                return
            if bar is None:  # the bar appears with the first bytes: a failed connection draws nothing
                bar = progress(transient=True)
                bar.start()
                task = bar.add_task(label, total=size or total)
            bar.update(task, completed=done, total=size or total)

        with os.fdopen(fd, "wb") as out:
            try:
                fill(out, on_progress)
            finally:
                if bar is not None:
                    bar.stop()
            out.flush()
            os.fsync(out.fileno())
        chmod_default(tmp)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
