"""The one download path, shared by the weights resolver and the model zoo.

:func:`fetch_file` tries each source in turn and streams into ``.<name>.part`` beside the target
with a Rich progress bar. An interrupted download keeps its part: the next call resumes it with an
HTTP ``Range`` request (a server that ignores ranges restarts it). A complete part is checked (size,
then sha256 through the caller's ``accept``) and renamed onto the target; a refused one is deleted.
So the target is either absent or complete and checked, never a file that only looks complete.
:func:`open_url` is the only function that opens a URL; Google Drive files go through gdown's
confirm-token flow (:func:`stream_gdrive`).
"""
from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..errors import WeightsError
from ..io.files import chmod_default, sha256_file
from ..runtime.progress import progress

ProgressFn = Callable[[int, "int | None"], None]
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError, ValueError)


@dataclass(frozen=True)
class Source:
    """Where a file can be downloaded from: a URL, or a Google Drive file id (``url`` for messages)."""

    url: str
    gdrive_id: str | None = None


def open_url(url: str, timeout: float = 60.0, start: int = 0) -> Any:
    """Open ``url`` for streaming from byte ``start`` (a ``Range`` request when > 0)."""
    headers = {"User-Agent": "lafitebench"}
    if start:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (https URLs from registries/manifests)


def content_length(src: Any) -> int | None:
    """The ``Content-Length`` of a response, or None when absent or malformed."""
    headers = getattr(src, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value is not None and str(value).isdigit() else None


def copy_stream(src: BinaryIO, out: BinaryIO, on_progress: ProgressFn, start: int = 0, chunk: int = 1 << 20) -> int:
    """Copy ``src`` into ``out`` in chunks, reporting ``(bytes_done, total_or_None)`` counted from
    ``start`` (bytes already there); returns the bytes copied."""
    total = content_length(src)
    total = total + start if total is not None else None
    done = 0
    while block := src.read(chunk):
        out.write(block)
        done += len(block)
        on_progress(start + done, total)
    return done


def stream_http(url: str, part: Path, on_progress: ProgressFn) -> None:
    """Append ``url`` to ``part``, resuming after its bytes when the server honours ``Range``.

    Raises:
        WeightsError: the download failed (the bytes received so far stay in ``part``).
    """
    start = part.stat().st_size if part.exists() else 0
    try:
        with open_url(url, start=start) as src:
            if start and getattr(src, "status", 206) != 206:  # ranges ignored: start over
                start = 0
            with open(part, "ab" if start else "wb") as out:
                copy_stream(src, out, on_progress, start)
    except NETWORK_ERRORS as e:
        raise WeightsError(f"download of {url} failed: {e}") from e


def stream_gdrive(file_id: str, part: Path, on_progress: ProgressFn) -> None:
    """Write Google Drive file ``file_id`` to ``part`` (from the start: Drive's confirm-token flow
    cannot resume).

    Raises:
        WeightsError: gdown could not get the file.
    """
    import gdown
    from gdown.exceptions import DownloadError, FileURLRetrievalError

    try:
        with open(part, "wb") as out:
            gdown.download(id=file_id, output=out, quiet=True, progress=on_progress)
    except (FileURLRetrievalError, DownloadError, OSError, ValueError) as e:
        raise WeightsError(f"Google Drive download of file id {file_id} failed: {e}") from e


def part_path(target: Path) -> Path:
    """Where the download of ``target`` accumulates until it is checked."""
    return target.with_name(f".{target.name}.part")


def fetch_file(target: Path, sources: list[Source], *, label: str, size: int | None = None,
               accept: Callable[[str], Any], show_progress: bool = True) -> tuple[str, Any, Source]:
    """Download ``target`` from the first source that gives an accepted file.

    ``accept(sha256)`` returns the verification to record (truthy), or None to refuse the file.
    Returns ``(sha256, verification, source)``.

    Raises:
        WeightsError: every source failed or was refused; the message lists each one's reason.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    failures: list[str] = []
    for src in sources:
        with progress(disable=not show_progress) as bar:
            task = bar.add_task(label, total=size)

            def on_progress(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total or size)

            try:
                if src.gdrive_id:
                    stream_gdrive(src.gdrive_id, part, on_progress)
                else:
                    stream_http(src.url, part, on_progress)
            except WeightsError as e:
                failures.append(str(e))
                continue
        got = part.stat().st_size
        if got == 0 or (size is not None and got != size):
            part.unlink()
            failures.append(f"{src.url}: got {got} bytes, expected {size if size is not None else 'some'} (deleted)")
            continue
        digest = sha256_file(part)
        how = accept(digest)
        if not how:
            part.unlink()
            failures.append(f"{src.url}: sha256 {digest} is not the expected file's (deleted)")
            continue
        chmod_default(part)
        os.replace(part, target)
        return digest, how, src
    raise WeightsError("; ".join(failures) or "no download location")


__all__ = ["Source", "open_url", "content_length", "copy_stream", "stream_http", "stream_gdrive", "fetch_file",
           "part_path", "NETWORK_ERRORS"]
