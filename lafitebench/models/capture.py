"""Networks record their own constructor arguments, so a checkpoint can rebuild them.

:func:`persistent_network` (a class decorator, the idea of StyleGAN2-ADA's ``persistent_class``
without its pickling of source code) registers the class in :data:`NETWORKS` under its name
and gives every instance ``init_kwargs``: the constructor arguments as called, bound to the
signature with the defaults written out. A class may list nested argument dicts that are passed
on to sub-networks in ``nested_init_kwargs = {arg: (SubClass, arguments the parent passes itself)}``;
:func:`complete_init_kwargs` writes their defaults out too, so a saved config rebuilds the same
architecture even if a default changes later.
"""
from __future__ import annotations

import copy
import functools
import inspect
from typing import Any, Mapping, TypeVar

from ..errors import InputError
from ..registry import Registry

T = TypeVar("T", bound=type)

#: Network classes a native checkpoint may name (filled by :func:`persistent_network`).
NETWORKS: Registry[type] = Registry("network class")


def _params(cls: type) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}


def _defaults(cls: type, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {n: p.default for n, p in _params(cls).items()
            if n not in exclude and p.default is not inspect.Parameter.empty
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def complete_init_kwargs(cls: type, init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``init_kwargs`` plus the constructor's defaults for every argument not given, and the
    sub-networks' defaults inside the nested dicts the class lists in ``nested_init_kwargs``.

    Raises:
        InputError: an argument the constructor does not accept (a config never records
            something the class would ignore).
    """
    params = _params(cls)
    accepts_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    out: dict[str, Any] = {}
    for n, p in params.items():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if n in init_kwargs:
            out[n] = copy.deepcopy(init_kwargs[n])
        elif p.default is not inspect.Parameter.empty:
            out[n] = copy.deepcopy(p.default)
    extra = [k for k in init_kwargs if k not in out]
    if extra and not accepts_var_kw:
        raise InputError(f"{cls.__name__} does not accept init_kwargs {extra}")
    out.update({k: copy.deepcopy(init_kwargs[k]) for k in extra})
    for key, (sub_cls, exclude) in getattr(cls, "nested_init_kwargs", {}).items():
        sub = dict(out.get(key) or {})
        for n, v in _defaults(sub_cls, frozenset(exclude)).items():
            sub.setdefault(n, copy.deepcopy(v))
        out[key] = sub
    return out


def persistent_network(cls: T) -> T:
    """Class decorator: register ``cls`` in :data:`NETWORKS` and record ``self.init_kwargs``
    (complete, see :func:`complete_init_kwargs`) on every instance after ``__init__``."""
    sig = inspect.signature(cls.__init__)
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = sig.bind(self, *args, **kwargs)
        given: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            if sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                given.update(value)
            else:
                given[name] = copy.deepcopy(value)
        original(self, *args, **kwargs)
        self.init_kwargs = complete_init_kwargs(cls, given)

    cls.__init__ = __init__  # type: ignore[method-assign]
    NETWORKS.register(cls.__name__, cls)
    return cls
