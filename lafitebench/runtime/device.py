"""Device choice: ``auto`` → CUDA when available (the rank's local GPU under torchrun), else CPU."""
from __future__ import annotations

import os

import torch

from ..errors import InputError

DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None → CUDA when available (``cuda:$LOCAL_RANK`` under torchrun), else CPU;
    otherwise the named device, which must exist here.

    Raises:
        InputError (``param="device"``): a name that is not a device (``banana``, ``cuda:abc``),
            a device type this build cannot run (``mps``, ``meta``), or CUDA / a GPU index that
            is not available.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(str(device).strip())
        except (RuntimeError, ValueError):
            raise InputError(f"device {device!r} is not a device name; use {DEVICE_HELP}", param="device") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise InputError(f"device {device!r}: lafitebench runs on cpu or cuda, not {dev.type}; use {DEVICE_HELP}",
                         param="device")
    if not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here; use device=cpu",
                         param="device")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)", param="device")
    return dev
