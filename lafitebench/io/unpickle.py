"""The one restricted unpickler: a pickle may name only the globals of an allow-list.

Every pickle lafitebench reads (official LAFITE snapshots, OpenAI's TorchScript CLIP archives,
the SOA caption lists) goes through :class:`RestrictedUnpickler` with an allow-list for that use.
A global outside the list is refused by name before anything is called, so no code from the
file runs; persistent ids are refused unless the use defines them (TorchScript storages).
:func:`restricted_load` turns every way a corrupt file can fail (truncation, bad opcodes,
nesting deep enough to overflow the recursion limit) into the use's error class, naming the file.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
import struct
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import LafitebenchError

Allowed = Mapping[tuple[str, str], Any]

#: Failures of ``pickle.load`` on a corrupt or hostile (but refused) file.
UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                   KeyError, RuntimeError, MemoryError, OverflowError, UnicodeDecodeError, RecursionError,
                   ImportError, struct.error)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves globals only through ``allowed`` (or ``resolve``).

    Args:
        file: a binary file object.
        allowed: ``{(module, name): object}``; Python-2 spellings (protocol < 3) are mapped to
            their Python-3 names first.
        source: the file name used in messages.
        error: the exception class raised for a refused global or persistent id.
        what: what kind of file this is, for the refusal message ("official LAFITE snapshots").
        resolve: optional ``(module, name) -> object | None`` consulted after ``allowed`` (for
            families of names such as TorchScript's ``__torch__.*`` classes).
        persistent: optional ``persistent_load`` implementation; without it persistent ids are refused.
    """

    def __init__(self, file: Any, *, allowed: Allowed, source: str, error: type[LafitebenchError],
                 what: str, resolve: Callable[[str, str], Any] | None = None,
                 persistent: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file)
        self._allowed, self.source, self._error, self._what = allowed, source, error, what
        self._resolve, self._persistent = resolve, persistent

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        obj = self._allowed.get((module, name))
        if obj is None and self._resolve is not None:
            obj = self._resolve(module, name)
        if obj is None:
            raise self._error(f"{self.source}: refusing to load global '{module}.{name}' -- {self._what}; "
                              "this file may be unsafe")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise self._error(f"{self.source}: the pickle uses persistent ids ({str(pid)[:60]}), which this "
                              "kind of file never contains")
        return self._persistent(pid)


def restricted_load(data: bytes | Any, *, allowed: Allowed, source: str | Path, error: type[LafitebenchError],
                    what: str, resolve: Callable[[str, str], Any] | None = None,
                    persistent: Callable[[Any], Any] | None = None, hint: str = "the file is truncated or corrupt") -> Any:
    """Unpickle ``data`` (bytes or a binary file object) with :class:`RestrictedUnpickler`.

    Raises:
        ``error``: a refused global or persistent id (naming it), or any failure of a corrupt
            file (its type and message, plus ``hint``), always naming ``source``.
    """
    src = str(source)
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        return RestrictedUnpickler(f, allowed=allowed, source=src, error=error, what=what, resolve=resolve,
                                   persistent=persistent).load()
    except LafitebenchError as e:
        msg = str(e)
        raise type(e)(msg if src in msg else f"{src}: {msg}") from None
    except RecursionError:
        raise error(f"{src}: the pickle is nested too deeply to be a genuine file of this kind; {hint}") from None
    except UNPICKLE_ERRORS as e:
        raise error(f"{src}: cannot unpickle ({type(e).__name__}: {e}); {hint}") from None
