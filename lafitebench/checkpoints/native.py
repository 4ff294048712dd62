"""The native lafitebench checkpoint: one ``.safetensors`` file with a JSON config in its header.

Layout of a native file:

- tensors: the state dict of every stored network, keys prefixed by the network name
  (``G_ema.``, and ``G.``, ``D.``, ``P.`` when present; ``P`` is the Lafite-NN perturbation
  network). Loading reads raw tensors only: nothing is unpickled and no code from the file runs.
- metadata ``lafitebench_config``: a JSON document::

      {
        "format": "lafitebench-native", "format_version": 1,
        "variant": "g" | "nn" | "supervised" | "zero-shot" | "unknown",
        "resolution": 256,
        "clip": {"name": "ViT-B/32", "open_clip_model": "ViT-B-32",
                 "open_clip_pretrained": "openai", "f_dim": 512},
        "networks": {"G_ema": {"class": "Generator", "init_kwargs": {...}}, ...},
        "provenance": {"converter": "...", "source_file": "...", "source_sha256": "...",
                       "training_set_kwargs": {...}, "model_id": "..."}
      }

  ``init_kwargs`` are the constructor arguments of our module classes, complete (defaults of
  the constructor are written out), so a file rebuilds the same architecture even if a default
  changes later. ``clip.name`` may be ``"unknown (...)"`` when the source did not record it.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..assets.zoo import UNKNOWN_VARIANT, VARIANTS
from ..errors import CheckpointError, InputError
from ..io.files import atomic_path
from ..io.jsonable import to_jsonable
from ..io.state_dict import check_state_dict
from ..models import NETWORKS as NETWORK_CLASSES
from ..models.capture import complete_init_kwargs

FORMAT_NAME = "lafitebench-native"
FORMAT_VERSION = 1
METADATA_KEY = "lafitebench_config"
CONVERTER_VERSION = "lafitebench-native-converter/1"

#: Network names a native file may hold, in the order they are written.
NETWORK_NAMES = ("G_ema", "G", "D", "P")

#: LAFITE variants (reference section 8; "unknown" only for files converted without one).

# ----------------------------------------------------------------------------------------------
# config validation

def _get_path(config: Mapping, dotted: str) -> Any:
    cur: Any = config
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


_REQUIRED_FIELDS = (
    "format", "format_version", "variant", "resolution", "clip.name", "networks", "networks.G_ema",
    "provenance", "provenance.converter",
)
_REQUIRED_GENERATOR_KWARGS = ("z_dim", "w_dim", "img_resolution", "img_channels")


def validate_config(config: Mapping, *, where: str = "config") -> None:
    """Check a native config; raise CheckpointError naming ``where`` and the first bad field."""
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{where}: the lafitebench config is not a JSON object")
    for field in _REQUIRED_FIELDS:
        try:
            _get_path(config, field)
        except KeyError:
            raise CheckpointError(f"{where}: missing config field {field!r}") from None
    if config["format"] != FORMAT_NAME:
        raise CheckpointError(f"{where}: config field 'format' is {config['format']!r}, expected {FORMAT_NAME!r}")
    if config["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: native format version {config['format_version']!r} is not supported "
            f"(this lafitebench reads version {FORMAT_VERSION}); upgrade lafitebench or re-convert the source file"
        )
    if config["variant"] not in (*VARIANTS, UNKNOWN_VARIANT):
        raise CheckpointError(
            f"{where}: config field 'variant' is {config['variant']!r}; expected one of {[*VARIANTS, UNKNOWN_VARIANT]}"
        )
    networks = config["networks"]
    if not isinstance(networks, Mapping):
        raise CheckpointError(f"{where}: config field 'networks' must be an object")
    for name, spec in networks.items():
        if name not in NETWORK_NAMES:
            raise CheckpointError(f"{where}: unknown network 'networks.{name}' (allowed: {list(NETWORK_NAMES)})")
        for sub in ("class", "init_kwargs"):
            if not isinstance(spec, Mapping) or sub not in spec:
                raise CheckpointError(f"{where}: missing config field 'networks.{name}.{sub}'")
        if not isinstance(spec["class"], str) or not isinstance(spec["init_kwargs"], Mapping):
            raise CheckpointError(f"{where}: 'networks.{name}' needs a string 'class' and an object 'init_kwargs'")
        if spec["class"] not in NETWORK_CLASSES:
            raise CheckpointError(
                f"{where}: 'networks.{name}.class' is {spec['class']!r}; known: {NETWORK_CLASSES.names()}"
            )
    for key in _REQUIRED_GENERATOR_KWARGS:
        if key not in networks["G_ema"]["init_kwargs"]:
            raise CheckpointError(f"{where}: missing config field 'networks.G_ema.init_kwargs.{key}'")
    if not isinstance(config["clip"], Mapping) or not isinstance(config["provenance"], Mapping):
        raise CheckpointError(f"{where}: config fields 'clip' and 'provenance' must be objects")
    res = networks["G_ema"]["init_kwargs"]["img_resolution"]
    if config["resolution"] != res:
        raise CheckpointError(
            f"{where}: config field 'resolution' ({config['resolution']}) disagrees with "
            f"'networks.G_ema.init_kwargs.img_resolution' ({res})"
        )


def _class_for(name: str, where: str) -> type:
    try:
        return NETWORK_CLASSES.get(name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"{where}: network class {name!r} cannot be imported ({e})") from e


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (tuples → lists, numpy scalars → Python numbers); anything else is an InputError."""
    try:
        return to_jsonable(obj)
    except TypeError as e:
        raise InputError(f"config {e}") from None


# ----------------------------------------------------------------------------------------------
# save

def save_native(path: str | os.PathLike, networks: Mapping[str, nn.Module], config: Mapping[str, Any]) -> Path:
    """Write ``networks`` and ``config`` as one native ``.safetensors`` file, atomically.

    ``networks`` maps names from NETWORK_NAMES (``G_ema`` required) to modules.
    ``config`` follows the module docstring; ``format``/``format_version`` are filled in, each
    network's ``class`` defaults to the module's class name, and ``init_kwargs`` (required for
    every network, in ``config["networks"][name]["init_kwargs"]`` or as a module attribute
    ``init_kwargs``) is completed with the constructor defaults. Before writing, every network
    is rebuilt from its config and its state-dict keys and shapes compared with the module's,
    so a file that would not load is never written.

    Raises InputError (bad network names, missing init_kwargs, non-JSON config values) and
    CheckpointError (config invalid; the rebuilt module does not match: names the key).
    """
    path = Path(path)
    if "G_ema" not in networks:
        raise InputError("save_native: networks must include 'G_ema'")
    unknown = [n for n in networks if n not in NETWORK_NAMES]
    if unknown:
        raise InputError(f"save_native: unknown network names {unknown}; allowed: {list(NETWORK_NAMES)}")

    cfg = _jsonable(dict(config))
    cfg["format"] = FORMAT_NAME
    cfg["format_version"] = FORMAT_VERSION
    cfg.setdefault("provenance", {}).setdefault("converter", CONVERTER_VERSION)
    net_cfg = cfg.setdefault("networks", {})
    extra_cfg = [n for n in net_cfg if n not in networks]
    if extra_cfg:
        raise InputError(f"save_native: config describes networks {extra_cfg} that were not given")

    tensors: dict[str, torch.Tensor] = {}
    for name in NETWORK_NAMES:
        if name not in networks:
            continue
        module = networks[name]
        spec = dict(net_cfg.get(name, {}))
        spec.setdefault("class", type(module).__name__)
        kwargs = spec.get("init_kwargs", getattr(module, "init_kwargs", None))
        if kwargs is None:
            raise InputError(
                f"save_native: no init_kwargs for network {name!r}: give config['networks'][{name!r}]"
                "['init_kwargs'] (the constructor arguments that rebuild it)"
            )
        cls = _class_for(spec["class"], f"save_native({path})")
        if not isinstance(module, cls):
            raise InputError(
                f"save_native: network {name!r} is a {type(module).__name__}, config names class {spec['class']!r}"
            )
        spec["init_kwargs"] = _jsonable(complete_init_kwargs(cls, kwargs))
        net_cfg[name] = spec
        for key, t in module.state_dict().items():
            tensors[f"{name}.{key}"] = t.detach().to("cpu").contiguous().clone()
    validate_config(cfg, where=f"save_native({path})")

    for name in networks:
        rebuilt = _build(cfg, name, where=f"save_native({path})", meta=True)
        _check_state_dict(rebuilt, {k: v for k, v in networks[name].state_dict().items()}, name, f"save_native({path})")
        del rebuilt

    cfg["tensors_sha256"] = tensor_digest(tensors)
    metadata = {METADATA_KEY: json.dumps(cfg, sort_keys=True)}
    _atomic_save_file(tensors, path, metadata)
    return path


def _atomic_save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors ``save_file`` into a temporary file beside ``path``, fsync, then ``os.replace``.

    (safetensors writes by file name; going through bytes in memory would double the peak memory
    of a 256² checkpoint.)
    """
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


# ----------------------------------------------------------------------------------------------
# load

def read_header(path: str | os.PathLike) -> tuple[dict, dict]:
    """Parse a native file's safetensors header without reading tensors.

    Returns ``(tensor_index, config)`` where ``tensor_index`` maps key → ``{"dtype", "shape",
    "data_offsets"}``. Raises CheckpointError naming the file when it is missing, truncated
    (with expected vs actual size), not safetensors, or has no valid lafitebench config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"native checkpoint {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated native checkpoint ({size} bytes; not even a safetensors header)")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise CheckpointError(
                f"{path}: truncated or not a safetensors file (header claims {n} bytes, file has {size - 8} after "
                "the length field); re-download or re-convert it"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: not a safetensors file (header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path}: corrupt safetensors header ('__metadata__' is not an object of strings)")
    data_end = _check_entries(header, path)
    expected = 8 + n + data_end
    if size < expected:
        raise CheckpointError(
            f"{path}: truncated native checkpoint: expected {expected} bytes, file has {size}; "
            "re-download or re-convert it"
        )
    if size > expected:
        raise CheckpointError(f"{path}: {size - expected} unexpected bytes after the tensor data (corrupt file)")
    if METADATA_KEY not in meta:
        raise CheckpointError(
            f"{path}: a safetensors file without a lafitebench config (metadata key {METADATA_KEY!r}); "
            "it is not a native lafitebench checkpoint (convert official snapshots with `lafitebench zoo convert`)"
        )
    try:
        config = json.loads(meta[METADATA_KEY])
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: metadata {METADATA_KEY!r} is not valid JSON ({e})") from None
    validate_config(config, where=str(path))
    return header, config


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _check_entries(header: Mapping[str, Any], path: Path) -> int:
    """Every tensor entry of a safetensors header is well formed; returns the end of the data.

    Raises CheckpointError naming the key: not an object, unknown dtype, a shape that is not a
    list of non-negative integers, ``data_offsets`` that are not two integers in order, or a
    byte length that disagrees with dtype × shape.
    """
    end = 0
    for key, v in header.items():
        where = f"{path}: corrupt safetensors header entry {key!r}"
        if not isinstance(v, dict):
            raise CheckpointError(f"{where} (not an object)")
        dtype, shape, offsets = v.get("dtype"), v.get("shape"), v.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise CheckpointError(f"{where} (dtype {dtype!r} is not one lafitebench writes)")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape):
            raise CheckpointError(f"{where} ('shape' is not a list of non-negative integers)")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(f"{where} ('data_offsets' is not two increasing integers)")
        numel = 1
        for d in shape:
            numel *= d
        if offsets[1] - offsets[0] != numel * _DTYPE_BYTES[dtype]:
            raise CheckpointError(f"{where} ({offsets[1] - offsets[0]} bytes for {dtype} {shape})")
        end = max(end, offsets[1])
    return end


def read_config(path: str | os.PathLike) -> dict:
    """The validated config of a native file (no tensors are read). Errors as :func:`read_header`."""
    return read_header(path)[1]


def is_native(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file that starts like a safetensors file carrying a lafitebench config."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return False
            n = int.from_bytes(head, "little")
            if n <= 1 or n > path.stat().st_size - 8:
                return False
            raw = f.read(n)
        return raw[:1] == b"{" and METADATA_KEY.encode() in raw
    except OSError:
        return False


def _build(config: Mapping, name: str, where: str, *, meta: bool = False) -> nn.Module:
    """Construct network ``name`` from the config (on the meta device when only shapes matter)."""
    spec = config["networks"][name]
    cls = _class_for(spec["class"], where)
    kwargs = dict(spec["init_kwargs"])
    try:
        sig = inspect.signature(cls.__init__)
        sig.bind(None, **kwargs)
    except TypeError as e:
        missing = [p.name for p in sig.parameters.values()
                   if p.name != "self" and p.default is inspect.Parameter.empty
                   and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in kwargs]
        if missing:
            raise CheckpointError(f"{where}: missing config field 'networks.{name}.init_kwargs.{missing[0]}'") from None
        raise CheckpointError(f"{where}: networks.{name}.init_kwargs do not fit {spec['class']}: {e}") from None
    try:
        if meta:
            with torch.device("meta"):
                return cls(**kwargs)
        return cls(**kwargs)
    except Exception as e:  # a constructor rejecting a value: report which network and why
        raise CheckpointError(f"{where}: cannot build networks.{name} ({spec['class']}) from its init_kwargs: {e}") from e


#: Upper bounds of architecture sizes a config may ask for (far above any LAFITE model), checked
#: before a module is built so that a small file cannot make the process allocate gigabytes.
SIZE_BOUNDS = {"img_resolution": 4096, "z_dim": 8192, "w_dim": 8192, "f_dim": 8192, "c_dim": 0,
               "channel_base": 1 << 20, "channel_max": 8192, "num_layers": 64, "feature_dim": 8192,
               "hidden_dim": 65536, "img_channels": 4, "layer_features": 8192, "mbstd_group_size": 1024,
               "mbstd_num_channels": 64, "num_fp16_res": 16}


def check_sizes(init_kwargs: Mapping[str, Any], where: str) -> None:
    """Every integer size in ``init_kwargs`` (nested dicts too) within :data:`SIZE_BOUNDS`.

    Raises CheckpointError naming the field, its value and the bound.
    """
    for key, value in init_kwargs.items():
        if isinstance(value, Mapping):
            check_sizes(value, f"{where}.{key}")
        elif key in SIZE_BOUNDS and value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= max(SIZE_BOUNDS[key], 0):
                raise CheckpointError(f"{where}.{key} is {value!r}; expected an integer in [0, {SIZE_BOUNDS[key]}]")


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order (the native config's
    ``tensors_sha256``): a flipped byte anywhere in the tensor data changes it."""

    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        h.update(f"{key}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_digest(config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """Compare the tensors with the config's ``tensors_sha256`` (files written before it existed have none).

    Raises CheckpointError: the tensor data changed since the file was written.
    """
    expected = config.get("tensors_sha256")
    if expected is None:
        return
    got = tensor_digest(tensors)
    if got != expected:
        raise CheckpointError(f"{path}: the tensor data does not match the checksum in its config (sha256 {got[:16]}… "
                              f"vs {str(expected)[:16]}…): the file is corrupt; re-download or re-convert it")


def verify_file(path: str | os.PathLike) -> dict:
    """Check a native file completely without building networks: header, config, sizes and the
    tensor checksum. Returns the config.

    Raises CheckpointError naming the file and the problem.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    header, config = read_header(path)
    for name, spec in config["networks"].items():
        check_sizes(spec["init_kwargs"], f"{path}: networks.{name}.init_kwargs")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            check_digest(config, {k: f.get_tensor(k) for k in header}, path)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: corrupt safetensors data ({e}); re-download or re-convert it") from e
    return config


def _check_state_dict(module: nn.Module, tensors: Mapping[str, Any], name: str, where: str) -> None:
    """Compare keys and shapes; ``tensors`` values are tensors or safetensors header entries."""
    check_state_dict(module.state_dict(), tensors, where, prefix=f"{name}.")


def load_native(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, networks: Iterable[str] | None = None
) -> tuple[dict[str, nn.Module], dict]:
    """Load a native checkpoint: ``(networks, config)``; modules in eval mode on ``device``.

    ``networks`` restricts which stored networks are built (e.g. ``["G_ema"]`` for generation
    only); default: all stored. Nothing is unpickled (safetensors only).

    Raises CheckpointError naming the file and: truncation (expected vs actual size), a missing
    config field, a missing or unexpected tensor key, a shape mismatch (key and both shapes),
    or a requested network the file does not hold.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    header, config = read_header(path)
    stored = [n for n in NETWORK_NAMES if n in config["networks"]]
    wanted = stored if networks is None else list(networks)
    absent = [n for n in wanted if n not in stored]
    if absent:
        raise CheckpointError(f"{path}: network(s) {absent} not stored in this checkpoint (it holds {stored})")
    prefixes = tuple(f"{n}." for n in config["networks"])
    stray = [k for k in header if not k.startswith(prefixes)]
    if stray:
        raise CheckpointError(f"{path}: tensor {stray[0]!r} belongs to no network described in the config")

    for name in wanted:  # sizes against bounds and the file's shapes before anything is allocated
        check_sizes(config["networks"][name]["init_kwargs"], f"{path}: networks.{name}.init_kwargs")
        pre = f"{name}."
        _check_state_dict(_build(config, name, where=str(path), meta=True),
                          {k[len(pre):]: v for k, v in header.items() if k.startswith(pre)}, name, str(path))
    out: dict[str, nn.Module] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            check_digest(config, {k: f.get_tensor(k) for k in header}, path)
            for name in wanted:
                module = _build(config, name, where=str(path))
                pre = f"{name}."
                module.load_state_dict({k[len(pre):]: f.get_tensor(k) for k in header if k.startswith(pre)}, strict=True)
                out[name] = module.eval().to(device)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: corrupt safetensors data ({e}); re-download or re-convert it") from e
    return out, config
