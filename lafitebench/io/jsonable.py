"""Conversion of results, configs and provenance to plain JSON types (one place for every writer)."""
from __future__ import annotations

import math
from typing import Any, Mapping


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


def table_records(df: Any) -> list[dict[str, Any]]:
    """A DataFrame as JSON records at full float precision (``repr``), NaN and NA as ``null``."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        return v

    rows = to_jsonable(df.to_dict(orient="records"), other="repr")
    return [{k: clean(v) for k, v in r.items()} for r in rows]
