"""Strict state-dict checks: every key on both sides, equal shapes, tensors only.

Used by the official-snapshot importer, the native checkpoint reader (against the shapes in a
safetensors header, before any tensor is read) and the Lafite-NN perturbation-network loader.
Messages name the network/file, the first offending key and both shapes.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import CheckpointError


def _shape(v: Any) -> tuple[int, ...] | None:
    if isinstance(v, torch.Tensor):
        return tuple(v.shape)
    if isinstance(v, Mapping) and isinstance(v.get("shape"), (list, tuple)):  # a safetensors header entry
        return tuple(int(x) for x in v["shape"])
    if hasattr(v, "shape") and not isinstance(v, Mapping):
        return tuple(v.shape)
    return None


def check_state_dict(expected: Mapping[str, Any], got: Mapping[str, Any], what: str, *, prefix: str = "") -> None:
    """Compare keys and shapes of ``got`` (tensors or safetensors header entries) with ``expected``.

    Raises:
        CheckpointError: naming ``what`` and ``prefix + key`` for the first missing key, the first
            unexpected key, a value that is not a tensor, or a shape mismatch (file vs model shape).
    """
    missing = [k for k in expected if k not in got]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{what}: key '{prefix}{missing[0]}' is missing from the checkpoint{more}")
    unexpected = [k for k in got if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{what}: unexpected key '{prefix}{unexpected[0]}' in the checkpoint{more}; "
                              "the architecture does not match (it has no such tensor)")
    for k, v in expected.items():
        have = _shape(got[k])
        if have is None:
            raise CheckpointError(f"{what}: key '{prefix}{k}' holds a {type(got[k]).__name__}, not a tensor")
        want = _shape(v)
        if have != want:
            raise CheckpointError(f"{what}: shape mismatch for key '{prefix}{k}': checkpoint {list(have)} vs "
                                  f"model {list(want or ())}")


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "network") -> None:
    """Check ``state_dict`` against ``module`` (:func:`check_state_dict`) and copy it in.

    Raises:
        CheckpointError: see :func:`check_state_dict`.
    """
    own = module.state_dict()
    check_state_dict(own, state_dict, what)
    module.load_state_dict({k: state_dict[k] for k in own}, strict=True)


def torch_load_reason(e: BaseException) -> str:
    """A short reason for a failed weights-only ``torch.load``, without torch's advice to re-run
    with ``weights_only=False``: lafitebench refuses such files on purpose."""
    text = " ".join(str(e).split())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
        text = text.split(". ")[0].split(" Check the documentation")[0]
        return f"it needs code outside the tensor allow-list ({text})"
    text = text.split(". ")[0]
    if "weights_only" in text:
        return "it is not a plain file of tensors"
    return f"{type(e).__name__}: {text}"[:300]


def safe_torch_load(source: Any, what: str, error: type = CheckpointError) -> Any:
    """``torch.load(source, weights_only=True, map_location="cpu")``; every failure (unsafe globals,
    corrupt or truncated data, nesting too deep) becomes ``error`` naming ``what``."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt / unsafe data; all are a bad file here
        raise error(f"{what}: cannot be read as a weights-only file: {torch_load_reason(e)}") from None
