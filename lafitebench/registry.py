"""One registry pattern for everything selectable by name: metrics, datasets, weights, blur presets, models.

Entries are registered with a decorator or a call; an entry may be a lazy ``"module:attr"``
string so that the CLI starts without importing heavy libraries. Unknown names raise a
``KeyError`` that lists what exists and suggests the closest match.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import LafitebenchError

T = TypeVar("T")


class UnknownNameError(LafitebenchError, KeyError):
    """Raised for a name that is not in a registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of objects (or lazy ``"module:attr"`` references to them)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, obj: Any = None, *, aliases: tuple[str, ...] = ()) -> Any:
        """Register ``obj`` under ``name``; without ``obj`` return a decorator."""
        if obj is None:
            def deco(o: Callable) -> Callable:
                self.register(name, o, aliases=aliases)
                return o
            return deco
        key = name.lower()
        if key in self._entries or key in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = obj
        for a in aliases:
            self._aliases[a.lower()] = key
        return obj

    def _canonical(self, name: str) -> str:
        key = name.lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            known = sorted(self._entries)
            close = difflib.get_close_matches(key, known + sorted(self._aliases), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(known)}")
        return key

    def get(self, name: str) -> T:
        """Return the entry for ``name`` (resolving a lazy reference on first use)."""
        key = self._canonical(name)
        obj = self._entries[key]
        if isinstance(obj, str) and ":" in obj:
            module, attr = obj.split(":", 1)
            obj = getattr(importlib.import_module(module), attr)
            self._entries[key] = obj
        return obj

    def canonical_name(self, name: str) -> str:
        """Return the registered spelling of ``name`` (after aliases)."""
        return self._canonical(name)

    def __contains__(self, name: str) -> bool:
        key = name.lower()
        return key in self._entries or key in self._aliases

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
