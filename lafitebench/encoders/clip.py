"""CLIP backbones through open_clip: loading with verified weights, text and image encoders.

Used by the CLIP score and by LAFITE generation (text features). Weights always come from a
file: an explicit ``weights=`` path, or ``lafitebench.assets.weights.resolve("clip:<model>/<tag>")``
(env folder → cache → download with sha256). open_clip would fall back to random weights with
only a log line; here that is an error unless a caller passes ``allow_random=True`` (tests).

The official OpenAI files (``ViT-B-32.pt``) are TorchScript archives. ``torch.load`` with
``weights_only=True`` refuses them and ``torch.jit.load`` would compile code from the file, so
:func:`read_torchscript_state_dict` reads their tensors with a restricted unpickler instead and
they are loaded strictly into the open_clip model built from the model name.
"""
from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from lafitebench.assets import weights as weights_mod

from ..errors import InputError, WeightsError
from ..io.unpickle import restricted_load
from ..runtime.device import resolve_device

DEFAULT_MODEL = "ViT-B-32"
#: OpenAI CLIP's input normalisation (every open_clip "openai" model, the official LAFITE code and dataset tool).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_PRETRAINED = "openai"



# Keys OpenAI's TorchScript models carry that are not weights (open_clip drops them too).
_OPENAI_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")

# --------------------------------------------------------------------------------------------
# Safe reading of TorchScript archives (no code from the file is compiled or run)
# --------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Inert stand-in for a ``__torch__.*`` class found in a TorchScript archive."""

    qualname = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _identity_list(data: Any, *_: Any) -> Any:
    return data


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_TS_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    **{("torch", n): _StorageType(dt) for n, dt in _STORAGE_DTYPES.items()},
    **{("torch.jit._pickle", n): _identity_list for n in (
        "build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "restore_type_tag")},
}
_TS_WHAT = "TorchScript archives are read for tensors and module attributes only; use a plain state-dict or safetensors file"


def _unpickle_torchscript(data: bytes, archive: zipfile.ZipFile, prefix: str, source: Path) -> Any:
    """Unpickle ``data.pkl`` of a TorchScript archive into inert objects (restricted allow-list):
    ``__torch__.*`` classes become :class:`_ScriptObject` placeholders, storages are read from
    the archive's ``data/`` entries; every other global is refused."""
    classes: dict[str, type] = {}

    def resolve(module: str, name: str) -> Any:
        if not module.startswith("__torch__"):
            return None
        qual = f"{module}.{name}"
        if qual not in classes:
            classes[qual] = type(name, (_ScriptObject,), {"qualname": qual})
        return classes[qual]

    def persistent(pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise WeightsError(f"{source}: unexpected persistent id {pid!r} in TorchScript archive")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"{source}: unexpected storage type {storage_type!r}")
        raw = archive.read(f"{prefix}/data/{key}")
        itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
        if len(raw) != numel * itemsize:
            raise WeightsError(f"{source}: storage {key} has {len(raw)} bytes, expected {numel * itemsize}")
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=storage_type.dtype, _internal=True)

    return restricted_load(data, allowed=_TS_ALLOWED, source=source, error=WeightsError, what=_TS_WHAT,
                           resolve=resolve, persistent=persistent)


_CLASS_DECL = re.compile(
    r"^class (\w+)\([^)]*\):\n(?:  [^\n]*\n)*?  __parameters__ = \[([^\]]*)\]\n  __buffers__ = \[([^\]]*)\]",
    re.MULTILINE,
)


def _declared_state_names(archive: zipfile.ZipFile, prefix: str, qualname: str, source: Path) -> set[str]:
    """Parameter and buffer names of a TorchScript class, read (as text) from its ``code/`` file."""
    module, _, name = qualname.rpartition(".")
    path = f"{prefix}/code/{module.replace('.', '/')}.py"
    try:
        text = archive.read(path).decode("utf-8")
    except KeyError:
        raise WeightsError(f"{source}: TorchScript archive lacks {path} (declaration of {qualname})") from None
    for m in _CLASS_DECL.finditer(text):
        if m.group(1) == name:
            return set(re.findall(r'"([^"]+)"', m.group(2))) | set(re.findall(r'"([^"]+)"', m.group(3)))
    raise WeightsError(f"{source}: no __parameters__/__buffers__ declaration of {qualname} in {path}")


def is_torchscript_archive(path: str | Path) -> bool:
    """True when ``path`` is a TorchScript zip archive (it has ``constants.pkl`` and ``code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def read_torchscript_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Parameters and buffers of a TorchScript archive, without compiling or running its code.

    The module tree in ``data.pkl`` is unpickled into inert objects (only tensors, OrderedDict
    and ``__torch__`` placeholders are allowed); the names that are parameters or buffers are
    read from each class's ``__parameters__``/``__buffers__`` declaration, so plain tensor
    attributes (e.g. attention masks) are left out exactly as ``ScriptModule.state_dict()`` would.

    Raises:
        WeightsError: not a TorchScript archive, a disallowed global, or a malformed archive.
    """
    path = Path(path)
    if not is_torchscript_archive(path):
        raise WeightsError(f"{path} is not a TorchScript archive")
    with zipfile.ZipFile(path) as z:
        data_pkls = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(data_pkls) != 1:
            raise WeightsError(f"{path}: expected one <archive>/data.pkl, found {data_pkls}")
        prefix = data_pkls[0].split("/")[0]
        byteorder = z.read(f"{prefix}/byteorder").decode().strip() if f"{prefix}/byteorder" in z.namelist() else "little"
        if byteorder != "little":
            raise WeightsError(f"{path}: big-endian TorchScript archives are not supported")
        root = _unpickle_torchscript(z.read(data_pkls[0]), z, prefix, path)
        if not isinstance(root, _ScriptObject):
            raise WeightsError(f"{path}: data.pkl does not hold a TorchScript module")
        out: dict[str, torch.Tensor] = {}
        declared: dict[str, set[str]] = {}

        def walk(obj: _ScriptObject, key_prefix: str) -> None:
            state = getattr(obj, "state", None)
            if not isinstance(state, dict):
                return
            if obj.qualname not in declared:
                declared[obj.qualname] = _declared_state_names(z, prefix, obj.qualname, path)
            names = declared[obj.qualname]
            for attr, value in state.items():
                if isinstance(value, _ScriptObject):
                    walk(value, f"{key_prefix}{attr}.")
                elif isinstance(value, torch.Tensor) and attr in names:
                    out[f"{key_prefix}{attr}"] = value.detach()

        walk(root, "")
    if not out:
        raise WeightsError(f"{path}: no parameters found in the TorchScript archive")
    return out


def _load_torchscript_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a TorchScript archive's tensors into an open_clip model (strict on every weight).

    Dropped before the strict load: OpenAI's non-weight entries (``input_resolution``,
    ``context_length``, ``vocab_size``, as open_clip does) and the target's non-persistent
    buffers (e.g. the causal ``attn_mask``), which TorchScript stores but ``state_dict()`` omits.
    """
    state = read_torchscript_state_dict(path)
    persistent = set(model.state_dict())
    non_persistent = {n for n, _ in model.named_buffers()} - persistent
    for k in (*_OPENAI_NON_WEIGHT_KEYS, *non_persistent):
        state.pop(k, None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: TorchScript weights do not match the model: {exc}") from exc


class _DropRandomInitWarning(logging.Filter):
    """open_clip logs 'initialized randomly' before we load a TorchScript file ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _tag_config(model_name: str, pretrained: str | None) -> dict[str, Any]:
    import open_clip

    if not pretrained:
        return {}
    return dict(open_clip.get_pretrained_cfg(model_name, pretrained) or {})


def resolve_clip_weights(
    model_name: str,
    pretrained: str | None,
    weights: str | Path | None = None,
    *,
    allow_random: bool = False,
    offline: bool | None = None,
):
    """The weights file :func:`load_clip` would use (a ``ResolvedWeights``), or None for an allowed
    random init. Cheap once the file is local (hashing only); downloads when online and missing.

    Raises:
        InputError: unknown open_clip model name.
        WeightsError: unknown tag, missing/corrupt file, or neither tag nor file (without ``allow_random``).
    """
    import open_clip


    if model_name not in open_clip.list_models():
        raise InputError(
            f"unknown CLIP model {model_name!r} (clip_model option). Known open_clip models include: "
            f"{', '.join(m for m in open_clip.list_models() if m.startswith('ViT-B'))}, ..."
        )
    if weights is not None and str(weights) != "":
        return weights_mod.resolve(str(weights), offline=offline)
    if pretrained:
        if not _tag_config(model_name, pretrained):
            known = open_clip.list_pretrained_tags_by_model(model_name)
            raise WeightsError(
                f"unknown pretrained tag {pretrained!r} for CLIP model {model_name!r} (clip_pretrained option); "
                f"known tags: {', '.join(known) or 'none'}; or pass a local file with clip_weights"
            )
        return weights_mod.resolve(f"clip:{model_name}/{pretrained}", offline=offline)
    if allow_random:
        return None
    raise WeightsError(
        f"no weights for CLIP model {model_name!r}: pretrained tag is empty and no weights file was given. "
        "Pass clip_pretrained (e.g. 'openai') or clip_weights=<file>; random CLIP weights are never used "
        "for metrics."
    )


def load_clip(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    weights: str | Path | None = None,
    device: str | torch.device | None = "cpu",
    *,
    allow_random: bool = False,
    offline: bool | None = None,
) -> tuple[torch.nn.Module, Any, Any, dict[str, Any]]:
    """Build an open_clip model with real weights; return ``(model, preprocess, tokenizer, info)``.

    Weights: ``weights`` (a local file, hash computed) if given, else the file that
    ``lafitebench.assets.weights.resolve(f"clip:{model_name}/{pretrained}")`` finds or downloads. The
    tag's settings that change results (QuickGELU, mean/std, resize mode) come from open_clip's
    pretrained table even when the weights come from a file. ``preprocess`` is open_clip's PIL
    eval transform; ``info`` records model, tag, weights path/sha256/source and the preprocessing.
    ``device`` may be ``"auto"`` (CUDA when available).

    Raises:
        WeightsError: weights missing (offline: names the file and expected hash), wrong hash,
            unreadable, or not matching the architecture; or no tag and no file without
            ``allow_random=True``.
        InputError: unknown open_clip model name.
    """
    import open_clip

    resolved = resolve_clip_weights(model_name, pretrained, weights, allow_random=allow_random, offline=offline)
    tag_cfg = _tag_config(model_name, pretrained)
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    torchscript = resolved is not None and is_torchscript_archive(resolved.path)
    quiet = _DropRandomInitWarning()
    try:
        if torchscript:
            logging.getLogger().addFilter(quiet)
        model, _train, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=str(resolved.path) if resolved is not None and not torchscript else None,
            device="cpu",
            force_quick_gelu=quick_gelu,
            image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"),
        )
        if torchscript:
            _load_torchscript_weights(model, Path(resolved.path))
        model = model.to(resolve_device(device))
    except (RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        src = resolved.path if resolved is not None else "(random init)"
        raise WeightsError(
            f"could not load CLIP weights {src} into open_clip model {model_name!r}: {exc}. "
            "Check that the file matches the model name (clip_model) and tag (clip_pretrained)."
        ) from exc
    finally:
        logging.getLogger().removeFilter(quiet)
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(model_name)
    info = {
        "model": model_name,
        "pretrained": pretrained or None,
        "weights_path": str(resolved.path) if resolved is not None else None,
        "weights_sha256": resolved.sha256 if resolved is not None else None,
        "weights_source": resolved.source if resolved is not None else "random-init",
        "weights_verified": bool(resolved.verified) if resolved is not None else False,
        "random_init": resolved is None,
        "quick_gelu": quick_gelu,
        "preprocess": dict(model.visual.preprocess_cfg),
        "context_length": int(getattr(tokenizer, "context_length", 0) or 0),
        "open_clip_version": open_clip.__version__,
    }
    return model, preprocess, tokenizer, info


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def caption_token_lengths(tokenizer: Any, captions: Sequence[str]) -> list[int]:
    """Token count of each caption including start/end tokens, before truncation.

    Raises:
        InputError: the tokenizer is not open_clip's CLIP BPE ``SimpleTokenizer`` (other
            tokenizers cannot be counted exactly here).
    """
    from open_clip.tokenizer import SimpleTokenizer

    if not isinstance(tokenizer, SimpleTokenizer) or getattr(tokenizer, "reduction_fn", None) is not None:
        raise InputError(
            f"counting truncated captions needs open_clip's CLIP BPE tokenizer with plain truncation, "
            f"got {type(tokenizer).__name__}; choose a CLIP model that uses it (e.g. ViT-B-32, ViT-L-14)"
        )
    return [len(tokenizer.encode(c)) + 2 for c in captions]


def count_truncated(tokenizer: Any, captions: Sequence[str]) -> int:
    """How many captions exceed the tokenizer's context length (77 for CLIP) and get truncated."""
    limit = int(tokenizer.context_length)
    return sum(n > limit for n in caption_token_lengths(tokenizer, captions))


@torch.inference_mode()
def encode_text(
    model: torch.nn.Module, tokenizer: Any, captions: Sequence[str], batch_size: int = 256
) -> tuple[torch.Tensor, int]:
    """L2-normalised float32 text features [N, D] (on the model's device) and the number of
    captions longer than the context length (they are truncated, as CLIP always does).

    Raises:
        InputError: a caption is not a string, or the tokenizer cannot count truncation.
    """
    captions = list(captions)
    for i, c in enumerate(captions):
        if not isinstance(c, str):
            raise InputError(f"caption {i} is {type(c).__name__}, not a string")
    n_truncated = count_truncated(tokenizer, captions)
    device = _model_device(model)
    feats = []
    for s in range(0, len(captions), batch_size):
        tokens = tokenizer(captions[s : s + batch_size]).to(device)
        feats.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    if not feats:
        dim = int(model.text_projection.shape[-1]) if torch.is_tensor(getattr(model, "text_projection", None)) else 0
        return torch.empty(0, dim, device=device), 0
    return torch.cat(feats), n_truncated


def clip_preprocess_uint8(images_uint8: torch.Tensor, preprocess_cfg: dict[str, Any]) -> torch.Tensor:
    """open_clip's eval preprocessing as batched tensor ops on uint8 RGB NCHW images.

    Resize (shortest side to ``size``, or ``squash``) with antialiased bicubic/bilinear and
    uint8 rounding, centre crop, /255, mean/std normalisation. torchvision's antialiased bicubic
    uses PIL's kernel (a = -0.5) and the same output-size and crop arithmetic, so this matches
    open_clip's PIL path up to rounding of individual pixels (see tests/test_clip_score.py).

    Raises:
        InputError: wrong dtype/shape, or a resize mode other than 'shortest'/'squash'.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        raise InputError(f"CLIP image input must be uint8 [N,3,H,W] RGB, got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    size = preprocess_cfg.get("size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    mode = preprocess_cfg.get("resize_mode", "shortest")
    interp = InterpolationMode.BILINEAR if preprocess_cfg.get("interpolation") == "bilinear" else InterpolationMode.BICUBIC
    x = images_uint8
    if mode == "shortest" and size[0] == size[1]:
        x = TF.resize(x, [size[0]], interpolation=interp, antialias=True)
        x = TF.center_crop(x, list(size))
    elif mode == "squash":
        x = TF.resize(x, list(size), interpolation=interp, antialias=True)
    else:
        raise InputError(f"CLIP resize_mode {mode!r} with size {size} is not supported by the tensor preprocessing")
    mean = torch.tensor(preprocess_cfg["mean"], dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess_cfg["std"], dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


@torch.inference_mode()
def encode_images_uint8(
    model: torch.nn.Module, preprocess_cfg: dict[str, Any], images_uint8: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """L2-normalised float32 image features [N, D] of uint8 RGB NCHW images (CLIP preprocessing
    by :func:`clip_preprocess_uint8`, on the model's device)."""
    device = _model_device(model)
    feats = []
    for s in range(0, images_uint8.shape[0], batch_size):
        x = clip_preprocess_uint8(images_uint8[s : s + batch_size].to(device), preprocess_cfg)
        feats.append(F.normalize(model.encode_image(x).float(), dim=-1))
    return torch.cat(feats)


@torch.inference_mode()
def encode_images_preprocessed(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised float32 features of images already preprocessed for CLIP (float NCHW)."""
    return F.normalize(model.encode_image(images.to(_model_device(model))).float(), dim=-1)
