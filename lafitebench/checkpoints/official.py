"""Import official LAFITE snapshot pickles (``network-snapshot-*.pkl``) without executing them.

The official files are ``pickle.dump`` of a dict ``{G, D, G_ema, augment_pipe,
training_set_kwargs, ...}`` whose networks are "persistent objects": each one pickles as
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with the defining module's source
text in ``meta["module_src"]`` -- the official loader executes that text. This module never
does. A restricted unpickler turns each persistent object into a plain :class:`PersistentRecord`,
``dnnlib.util.EasyDict`` into ``dict``, storages into a weights-only ``torch.load`` of their
bytes, and refuses every other global (``CheckpointError`` naming ``module.name``). The
architecture is rebuilt from the recorded constructor arguments (``_init_kwargs``) with the
modules of :mod:`lafitebench.models`, whose state-dict keys equal the official ones.
"""
from __future__ import annotations

import collections
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InputError
from ..io.state_dict import check_state_dict, load_state_dict_strict, safe_torch_load
from ..io.unpickle import restricted_load
from ..models.discriminator import Discriminator
from ..models.generator import Generator
from .native import check_sizes

NETWORK_KEYS = ("G", "D", "G_ema")


@dataclass
class PersistentRecord:
    """Inert stand-in for an official persistent object (its code is never run)."""

    class_name: str
    version: Any
    state: dict
    module_src_sha256: str | None = None
    meta_keys: list = field(default_factory=list)

    def __setstate__(self, state: Any) -> None:  # BUILD on a record is never legitimate
        raise CheckpointError("unexpected BUILD instruction on a persistent object record")


# --------------------------------------------------------------------------------------------
# Safe replacements for the globals an official snapshot references.


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
        raise CheckpointError("malformed persistent object: expected meta dict with type 'class' and 'state'")
    state = meta["state"]
    if not isinstance(state, dict):
        raise CheckpointError(f"malformed persistent object {meta.get('class_name')!r}: state is not a dict")
    src = meta.get("module_src")
    digest = hashlib.sha256(src.encode("utf-8")).hexdigest() if isinstance(src, str) else None
    return PersistentRecord(class_name=str(meta.get("class_name")), version=meta.get("version"), state=state,
                            module_src_sha256=digest, meta_keys=sorted(map(str, meta)))


def _load_storage_from_bytes(b: Any) -> Any:
    if not isinstance(b, (bytes, bytearray)):
        raise CheckpointError("torch.storage._load_from_bytes called with non-bytes data")
    return safe_torch_load(io.BytesIO(bytes(b)), "a tensor storage in the snapshot")


def _is_storage(x: Any) -> bool:
    return isinstance(x, (torch.storage.TypedStorage, torch.storage.UntypedStorage))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not _is_storage(storage):
        raise CheckpointError(f"_rebuild_tensor_v2 called with a {type(storage).__name__} instead of a storage")
    if backward_hooks:
        raise CheckpointError("tensor with serialized backward hooks refused")
    return torch._utils._rebuild_tensor_v2(storage, int(storage_offset), tuple(size), tuple(stride),
                                           bool(requires_grad), collections.OrderedDict())


def _rebuild_tensor(storage, storage_offset, size, stride):
    if not _is_storage(storage):
        raise CheckpointError(f"_rebuild_tensor called with a {type(storage).__name__} instead of a storage")
    return torch._utils._rebuild_tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"_rebuild_parameter called with a {type(data).__name__} instead of a tensor")
    if backward_hooks:
        raise CheckpointError("parameter with serialized backward hooks refused")
    return nn.Parameter(data, bool(requires_grad))


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    if state:
        raise CheckpointError("parameter with extra serialized state refused")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles spell bytes objects as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding != "latin1":
        raise CheckpointError("_codecs.encode refused: only encode(str, 'latin1') (protocol-2 bytes) is allowed")
    return text.encode("latin1")


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("numpy scalar refused: only plain numeric dtypes with byte data are allowed")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str):
        raise CheckpointError(f"numpy dtype refused: spec {spec!r} is not a string")
    # Always a fresh copy: the following BUILD calls __setstate__ on it, which must never
    # touch numpy's shared builtin dtype instances.
    dt = np.dtype(spec, align=bool(align), copy=True)
    if dt.hasobject:
        raise CheckpointError(f"numpy object dtype {spec!r} refused")
    return dt


_WHAT = ("official LAFITE snapshots only reference tensor, OrderedDict, numpy scalar and persistence globals")

# (module, name) -> safe callable. Nothing else may be named by a snapshot.
SAFE_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): dict,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("_codecs", "encode"): _codecs_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
}


def safe_unpickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; nothing from the file is executed.

    Raises ``CheckpointError`` naming the file when it is missing, not a pickle (e.g. a
    ``torch.save`` zip), truncated or corrupt, or references a global outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
        if head.startswith(b"PK\x03\x04"):
            raise CheckpointError(
                f"{path}: this is a torch.save zip archive, not an official LAFITE snapshot pickle"
            )
        f.seek(0)
        return restricted_load(f, allowed=SAFE_GLOBALS, source=path, error=CheckpointError, what=_WHAT,
                               persistent=_refuse_persistent(path),
                               hint="the file is truncated or corrupt -- download it again and check its sha256")


def _refuse_persistent(path: Path) -> Callable[[Any], Any]:
    def refuse(pid: Any) -> Any:
        raise CheckpointError(
            f"{path}: the pickle uses persistent ids ({str(pid)[:60]}), i.e. it was written by torch.save, "
            "not by the official training code; load it as a native checkpoint instead")
    return refuse


def record_state_dict(record: PersistentRecord, prefix: str = "") -> "collections.OrderedDict[str, torch.Tensor]":
    """Walk ``_parameters``, persistent ``_buffers`` and ``_modules`` of a record recursively.

    Yields exactly what the official module's ``state_dict()`` would contain (plain tensors,
    detached). Raises ``CheckpointError`` for a malformed record.
    """
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    _walk(record, prefix, out)
    return out


def _walk(record: Any, prefix: str, out: dict) -> None:
    if not isinstance(record, PersistentRecord):
        raise CheckpointError(f"module {prefix.rstrip('.') or '<root>'} is a {type(record).__name__}, "
                              "not a persistent network object")
    st = record.state
    try:
        params, buffers, modules = st["_parameters"], st["_buffers"], st["_modules"]
    except KeyError as e:
        raise CheckpointError(f"module {prefix.rstrip('.') or '<root>'} ({record.class_name}) lacks {e.args[0]}") from None
    non_persistent = set(st.get("_non_persistent_buffers_set") or ())
    for name, p in params.items():
        if p is not None:
            out[prefix + name] = _as_tensor(p, prefix + name)
    for name, b in buffers.items():
        if b is not None and name not in non_persistent:
            out[prefix + name] = _as_tensor(b, prefix + name)
    for name, child in modules.items():
        if child is not None:
            _walk(child, f"{prefix}{name}.", out)


def _as_tensor(t: Any, key: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"state entry {key} is a {type(t).__name__}, not a tensor")
    return t.detach()


MAX_KWARGS_DEPTH = 64  # official kwargs nest 3-4 levels (EasyDict of dicts); far below Python's recursion limit


class _TooDeep(Exception):
    pass


def _plain(obj: Any, depth: int = 0) -> Any:
    """Deep-convert dict subclasses / tuples / numpy scalars in init kwargs to plain Python.

    Raises ``_TooDeep`` past :data:`MAX_KWARGS_DEPTH` levels (a hostile file, not a snapshot)."""
    if depth > MAX_KWARGS_DEPTH:
        raise _TooDeep
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _plain_field(obj: Any, path: Path, what: str) -> Any:
    """:func:`_plain` of one field of the file; a structure nested too deeply is a CheckpointError."""
    try:
        return _plain(obj)
    except _TooDeep:
        raise CheckpointError(f"{path}: {what} nests more than {MAX_KWARGS_DEPTH} levels deep; an official LAFITE "
                              "snapshot nests a few. Refusing the file (it is not a real snapshot)") from None


def load_official_snapshot(path: str | Path) -> dict:
    """Read an official LAFITE snapshot pickle safely.

    Returns ``{"G": net, "D": net, "G_ema": net, "training_set_kwargs": dict|None,
    "augment_pipe_present": bool, "extra_keys": [...]}`` where each ``net`` is
    ``{"class_name": str, "init_kwargs": dict, "init_args": list, "state_dict": {key: Tensor},
    "module_src_sha256": str|None}``. Networks absent from the file are omitted.
    Raises ``CheckpointError`` (naming the file) for an unsafe, truncated or malformed file.
    """
    path = Path(path)
    data = safe_unpickle(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict with G, D, G_ema, got {type(data).__name__}")
    result: dict[str, Any] = {}
    for key in NETWORK_KEYS:
        rec = data.get(key)
        if rec is None:
            continue
        if not isinstance(rec, PersistentRecord):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(rec).__name__}, not an official network object")
        try:
            state_dict = record_state_dict(rec)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: network {key}: {e}") from None
        result[key] = {
            "class_name": rec.class_name,
            "init_kwargs": _plain_field(rec.state.get("_init_kwargs") or {}, path, f"{key}._init_kwargs"),
            "init_args": _plain_field(list(rec.state.get("_init_args") or ()), path, f"{key}._init_args"),
            "state_dict": dict(state_dict),
            "module_src_sha256": rec.module_src_sha256,
        }
    if "G_ema" not in result and "G" not in result:
        raise CheckpointError(f"{path}: no G or G_ema network in the snapshot (keys: {sorted(map(str, data))})")
    tsk = data.get("training_set_kwargs")
    result["training_set_kwargs"] = _plain_field(tsk, path, "training_set_kwargs") if isinstance(tsk, Mapping) else None
    result["augment_pipe_present"] = data.get("augment_pipe") is not None
    result["extra_keys"] = sorted(str(k) for k in data if k not in (*NETWORK_KEYS, "training_set_kwargs", "augment_pipe"))
    return result


# --------------------------------------------------------------------------------------------
# Architecture from the recorded constructor arguments.

# Options that only change memory layout / speed, never the numbers.
_LAYOUT_ONLY = {"channels_last", "fp16_channels_last"}


def _take(kwargs: dict, allowed: dict[str, Any], where: str) -> dict:
    unknown = sorted(set(kwargs) - set(allowed) - _LAYOUT_ONLY)
    if unknown:
        raise CheckpointError(f"unsupported {where} option(s) {unknown} in the snapshot; lafitebench cannot "
                              "rebuild this architecture faithfully")
    return {k: kwargs[k] for k in kwargs if k in allowed}


def generator_kwargs_from_official(init_kwargs: dict) -> dict:
    """Translate an official ``Generator._init_kwargs`` into :class:`~lafitebench.models.generator.Generator` kwargs.

    Raises ``CheckpointError`` for options that change the architecture but are not supported.
    """
    kw = dict(init_kwargs)
    top = _take(kw, {"z_dim": 0, "c_dim": 0, "w_dim": 0, "img_resolution": 0, "img_channels": 0,
                     "mapping_kwargs": 0, "synthesis_kwargs": 0, "m_layer_features": 0, "m_num_layers": 0},
                "generator")
    for key in ("z_dim", "w_dim", "img_resolution", "img_channels"):
        if key not in top:
            raise CheckpointError(f"generator init kwargs lack {key!r}")
    if top.get("c_dim", 0) != 0:
        raise CheckpointError(f"generator c_dim={top['c_dim']}: class-conditional snapshots are not LAFITE models")
    mapping = _take(dict(top.get("mapping_kwargs") or {}),
                    {"num_layers": 0, "layer_features": 0, "lr_multiplier": 0, "w_avg_beta": 0, "embed_features": 0,
                     "activation": 0}, "mapping_kwargs")
    mapping.pop("embed_features", None)  # only used with c_dim > 0
    synthesis = _take(dict(top.get("synthesis_kwargs") or {}),
                      {"channel_base": 0, "channel_max": 0, "num_fp16_res": 0, "conv_clamp": 0, "change": 0,
                       "f_dim": 0, "architecture": 0, "resample_filter": 0}, "synthesis_kwargs")
    arch = synthesis.pop("architecture", "skip")
    if arch != "skip":
        raise CheckpointError(f"generator architecture {arch!r} is not supported (LAFITE uses 'skip')")
    f_dim = synthesis.pop("f_dim", 512)
    return dict(z_dim=top["z_dim"], w_dim=top["w_dim"], img_resolution=top["img_resolution"],
                img_channels=top["img_channels"], f_dim=f_dim, c_dim=0, mapping_kwargs=mapping,
                synthesis_kwargs=synthesis)


def discriminator_kwargs_from_official(init_kwargs: dict) -> dict:
    """Translate an official ``Discriminator._init_kwargs`` into
    :class:`~lafitebench.models.discriminator.Discriminator` kwargs (``CheckpointError`` if unsupported)."""
    kw = _take(dict(init_kwargs), {"c_dim": 0, "img_resolution": 0, "img_channels": 0, "architecture": 0,
                                   "channel_base": 0, "channel_max": 0, "num_fp16_res": 0, "conv_clamp": 0,
                                   "cmap_dim": 0, "block_kwargs": 0, "mapping_kwargs": 0, "epilogue_kwargs": 0,
                                   "use_norm": 0, "use_fts": 0}, "discriminator")
    for key in ("img_resolution", "img_channels"):
        if key not in kw:
            raise CheckpointError(f"discriminator init kwargs lack {key!r}")
    if kw.get("c_dim", 0) != 0:
        raise CheckpointError(f"discriminator c_dim={kw['c_dim']}: class-conditional snapshots are not LAFITE models")
    if kw.get("architecture", "resnet") != "resnet":
        raise CheckpointError(f"discriminator architecture {kw['architecture']!r} is not supported (LAFITE uses 'resnet')")
    block = _take(dict(kw.get("block_kwargs") or {}), {"architecture": 0, "resample_filter": 0}, "D block_kwargs")
    if block.get("architecture", "resnet") != "resnet":
        raise CheckpointError(f"discriminator block architecture {block['architecture']!r} is not supported")
    epi = _take(dict(kw.get("epilogue_kwargs") or {}),
                {"mbstd_group_size": 0, "mbstd_num_channels": 0, "f_dim": 0, "architecture": 0}, "D epilogue_kwargs")
    out = dict(img_resolution=kw["img_resolution"], img_channels=kw["img_channels"], c_dim=0,
               f_dim=epi.get("f_dim", 512), use_norm=bool(kw.get("use_norm", False)),
               use_fts=bool(kw.get("use_fts", True)))
    for key in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp"):
        if key in kw:
            out[key] = kw[key]
    for key in ("mbstd_group_size", "mbstd_num_channels"):
        if key in epi:
            out[key] = epi[key]
    if "resample_filter" in block:
        out["resample_filter"] = block["resample_filter"]
    return out


def build_from_official(path: str | Path, device: str | torch.device = "cpu",
                        networks: tuple[str, ...] = NETWORK_KEYS, snapshot: dict | None = None) -> dict[str, nn.Module]:
    """Rebuild ``G``, ``D`` and ``G_ema`` of an official snapshot as lafitebench modules (eval
    mode, ``requires_grad`` off, on ``device``).

    Each network is constructed from its own ``_init_kwargs`` and loaded strictly. Networks not
    in the file are omitted (``G_ema`` is required when asked for). ``snapshot`` may pass the
    result of :func:`load_official_snapshot` for ``path`` to avoid reading the file twice.
    Raises ``CheckpointError`` naming the file and the key (with both shapes) on any mismatch,
    and for unsafe or truncated files.
    """

    path = Path(path)
    snap = load_official_snapshot(path) if snapshot is None else snapshot
    nets: dict[str, nn.Module] = {}
    for key in networks:
        if key not in NETWORK_KEYS:
            raise CheckpointError(f"unknown network {key!r}; choose from {NETWORK_KEYS}")
        entry = snap.get(key)
        if entry is None:
            if key == "G_ema":
                raise CheckpointError(f"{path}: the snapshot has no G_ema network")
            continue
        cls = Discriminator if key == "D" else Generator
        try:
            kwargs = (discriminator_kwargs_from_official if key == "D" else generator_kwargs_from_official)(
                entry["init_kwargs"])
            check_sizes(kwargs, f"{path}: network {key}")
            with torch.device("meta"):  # shapes first: nothing is allocated for a file that does not fit
                check_state_dict(cls(**kwargs).state_dict(), entry["state_dict"], f"{path}: network {key}")
            module: nn.Module = cls(**kwargs)
        except (CheckpointError, InputError) as e:
            msg = str(e)
            raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: network {key}: {msg}") from None
        load_state_dict_strict(module, entry["state_dict"], what=f"{path}: network {key}")
        nets[key] = module.to(device).eval().requires_grad_(False)
    return nets
