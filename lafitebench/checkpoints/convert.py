"""Released LAFITE files → native checkpoints: download and convert a zoo model (:func:`fetch`),
convert any official snapshot (:func:`convert`), and check the cached files (:func:`verify`).

The manifests and the download path are in :mod:`lafitebench.assets`; official snapshots are read
with the restricted unpickler of :mod:`.official` (nothing from the file is executed) and written
in the native format of :mod:`.native`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from .. import __version__, settings
from ..assets.backbones import clip_config
from ..assets.zoo import (UNKNOWN_VARIANT, VARIANTS, ModelInfo, _manifest_files, download_release, get_model_info,
                          load_manifest, manual_instructions, native_path, official_path, zoo_dir)
from ..errors import CheckpointError, InputError, WeightsError
from ..io.files import sha256_file
from ..io.jsonable import to_jsonable
from ..models.pseudo_text import load_perturbation_network
from . import native, official


def _check_local_official(info: ModelInfo, path: Path) -> str:
    digest = sha256_file(path)
    if info.source.sha256 and digest != info.source.sha256:
        raise WeightsError(
            f"{path}: sha256 {digest} does not match the manifest of {info.id!r} ({info.source.sha256}); "
            "delete the file and fetch again, or check that it is the right model"
        )
    return digest


def fetch(
    model_id: str,
    dest: str | os.PathLike | None = None,
    offline: bool | None = None,
    *,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Make the native checkpoint of zoo model ``model_id`` available; return its path.

    Steps: reuse an existing native file (``dest`` or ``cache_dir()/zoo/<id>.safetensors``)
    converted from this model unless ``force``; else find the released file in
    ``$LAFITEBENCH_WEIGHTS/<filename>`` or ``cache_dir()/zoo/<filename>`` (sha256 checked when
    known), or download it (Google Drive via gdown, progress bar, sha256 checked, atomic);
    then convert it (:func:`convert`). ``dest`` may be a file or a folder.

    ``offline`` (default: ``LAFITEBENCH_OFFLINE``) forbids downloading: a missing file raises
    WeightsError giving the exact cache path and file name to save it under, the URL, and the
    ``lafitebench zoo convert`` alternative. Also raises WeightsError for a hash mismatch,
    CheckpointError when the file is not a valid snapshot of this model (e.g. wrong resolution).
    """
    info = get_model_info(model_id)
    offline = settings.offline() if offline is None else offline
    out = native_path(info) if dest is None else Path(dest)
    if out.is_dir():
        out = out / f"{info.id}.safetensors"

    if out.is_file() and not force:
        cfg = native.read_config(out)
        prov = cfg["provenance"]
        if prov.get("model_id") != info.id:
            raise CheckpointError(
                f"{out} exists but holds model {prov.get('model_id')!r}, not {info.id!r}; "
                "choose another destination or pass force=True (--force) to overwrite it"
            )
        if info.source.sha256 and prov.get("source_sha256") != info.source.sha256:
            raise CheckpointError(
                f"{out} was converted from a file with sha256 {prov.get('source_sha256')}, the manifest of "
                f"{info.id!r} expects {info.source.sha256}; re-fetch with force=True (--force)"
            )
        return out

    candidates = []
    env = settings.weights_dir()
    if env is not None:
        candidates.append(env / info.source.filename)
    candidates.append(official_path(info))
    source = next((p for p in candidates if p.is_file()), None)
    if source is not None:
        digest = _check_local_official(info, source)
    else:
        if offline:
            raise WeightsError(
                f"model {info.id!r} is not in the cache and downloads are off "
                f"({settings.ENV_OFFLINE}=1 or offline=True).\n{manual_instructions(info)}"
            )
        source = official_path(info)
        digest = download_release(info, source, progress)
    return convert(
        source, out, variant=info.variant, clip_backbone=dict(info.clip), model_id=info.id,
        expected_resolution=info.resolution, source_url=info.source.url, source_sha256=digest, overwrite=True,
    )



# ----------------------------------------------------------------------------------------------
# conversion


def convert(
    official_pkl: str | os.PathLike,
    out: str | os.PathLike,
    *,
    variant: str = UNKNOWN_VARIANT,
    clip_backbone: str | Mapping[str, Any] | None = None,
    model_id: str | None = None,
    perturbation: str | os.PathLike | None = None,
    expected_resolution: int | None = None,
    source_url: str | None = None,
    source_sha256: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert an official LAFITE snapshot ``.pkl`` into a native checkpoint at ``out``.

    ``out`` is never the input file, and an existing ``out`` is replaced only with ``overwrite``
    (the new file is written beside it and renamed into place, so an interrupted conversion
    leaves the old file intact).

    The snapshot is read with the restricted unpickler of
    :mod:`lafitebench.checkpoints.official` (nothing from the file executes). ``clip_backbone``
    is a known name (``"ViT-B/32"``, ``"ViT-B/16"``) or a full ``clip`` block; official snapshots
    do not record it, so ``None`` stores "unknown" and warns. ``perturbation`` is the Lafite-NN
    perturbation network's state-dict file (``implicit.*.pth``), stored under ``P.``; it is read
    with ``torch.load(weights_only=True)``.

    Raises InputError (bad variant / backbone), CheckpointError (unsafe or broken snapshot, the
    resolution differs from ``expected_resolution``, the generator's f_dim differs from the CLIP
    backbone's feature width, perturbation file does not fit).
    """
    src, out = Path(official_pkl), Path(out)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise InputError(f"the output {out} is the input snapshot itself; choose another output file", param="out")
    if out.is_dir():
        raise InputError(f"the output {out} is a folder; give a file name such as {out / 'model.safetensors'}",
                         param="out")
    if out.exists() and not overwrite:
        raise InputError(f"the output {out} already exists; pass overwrite (or choose another file) to replace it",
                         param="overwrite")
    if variant not in (*VARIANTS, UNKNOWN_VARIANT):
        raise InputError(f"variant {variant!r}: expected one of {[*VARIANTS, UNKNOWN_VARIANT]}",
                         param="variant")
    clip = _clip_block(clip_backbone, src)
    if not src.is_file():
        raise InputError(f"official snapshot {src} does not exist")
    snapshot = official.load_official_snapshot(src)
    if "G_ema" not in snapshot:
        raise CheckpointError(f"{src}: snapshot has no 'G_ema' network")
    resolution, f_dim = _check_architecture(src, snapshot["G_ema"]["init_kwargs"], expected_resolution, clip)
    provenance = {
        "converter": native.CONVERTER_VERSION, "lafitebench_version": _version(), "model_id": model_id,
        "source_format": "official LAFITE / StyleGAN2-ADA snapshot pickle", "source_file": src.name,
        "source_sha256": source_sha256 or sha256_file(src), "source_url": source_url,
        "official_init_kwargs": {n: to_jsonable(snapshot[n]["init_kwargs"], other="repr")
                                 for n in ("G_ema", "G", "D") if n in snapshot},
        "training_set_kwargs": to_jsonable(snapshot.get("training_set_kwargs"), other="repr"),
        "perturbation_file": None if perturbation is None else {
            "file": Path(perturbation).name, "sha256": sha256_file(perturbation)},
    }
    networks = dict(official.build_from_official(src, snapshot=snapshot))
    del snapshot  # the raw tensors: the modules hold copies
    if perturbation is not None:
        # Lafite-NN: the perturbation network works on the same CLIP feature width as G
        networks["P"] = load_perturbation_network(perturbation, feature_dim=f_dim)
    config = {"variant": variant, "resolution": resolution, "clip": clip, "provenance": provenance,
              "networks": {name: {"init_kwargs": _init_kwargs_of(name, module)} for name, module in networks.items()}}
    return native.save_native(out, networks, config)


def _clip_block(clip_backbone: str | Mapping[str, Any] | None, src: Path) -> dict[str, Any]:
    """The native config's ``clip`` block; warns when the backbone is unknown."""
    if clip_backbone is not None and not isinstance(clip_backbone, str):
        return dict(clip_backbone)
    if clip_backbone is None:
        warnings.warn(
            f"converting {src} without a CLIP backbone: official snapshots do not record it, so the native "
            "file says 'unknown'; pass clip_backbone (e.g. 'ViT-B/32') to record it",
            stacklevel=3,
        )
    return clip_config(clip_backbone)


def _check_architecture(src: Path, g_official: Mapping[str, Any], expected_resolution: int | None,
                        clip: Mapping[str, Any]) -> tuple[int, int]:
    """Resolution and f_dim of the snapshot's generator, checked before the (slow) rebuild."""
    try:
        g_kwargs = official.generator_kwargs_from_official(dict(g_official))
    except CheckpointError as e:
        raise CheckpointError(f"{src}: G_ema: {e}") from None
    resolution, f_dim = int(g_kwargs["img_resolution"]), int(g_kwargs["f_dim"])
    if expected_resolution is not None and resolution != expected_resolution:
        raise CheckpointError(
            f"{src}: snapshot resolution is {resolution}x{resolution}, the model zoo manifest says "
            f"{expected_resolution}; is this the right file?"
        )
    if clip.get("f_dim") is not None and f_dim != clip["f_dim"]:
        raise CheckpointError(
            f"{src}: the generator takes {f_dim}-d text features but CLIP {clip['name']} gives {clip['f_dim']}-d; "
            "wrong clip_backbone for this file"
        )
    return resolution, f_dim


def _init_kwargs_of(name: str, module: Any) -> dict:
    """Constructor arguments of our module class for ``module`` (native config ``init_kwargs``)."""
    kwargs = getattr(module, "init_kwargs", None)
    if kwargs is None:
        raise CheckpointError(
            f"network {name!r} ({type(module).__name__}) does not expose its init_kwargs; cannot record its architecture"
        )
    return dict(kwargs)


def _version() -> str:
    return __version__


# ----------------------------------------------------------------------------------------------
# verification

def verify(model_id: str | None = None) -> list[dict[str, Any]]:
    """Check manifests and cached files; one result dict per manifest (or only ``model_id``).

    Each dict: ``id`` (or the file name when the manifest is broken), ``manifest`` ("ok" or the
    error), ``official`` and ``native`` (state of the cached files: "absent", "ok (sha256
    matches)", "present, sha256 <h> (no published hash to compare)", or the problem), and
    ``ok`` (False when anything is wrong; absent files are not wrong). A broken manifest or
    file is reported, not raised (an unknown ``model_id`` raises UnknownNameError).
    """
    if model_id is not None:
        direct = zoo_dir() / f"{model_id}.toml"
        files = [direct if direct.is_file() else get_model_info(model_id).manifest_path]
    else:
        files = _manifest_files(zoo_dir())
    results = []
    for path in files:
        row: dict[str, Any] = {"id": path.stem, "manifest": "ok", "official": "-", "native": "-", "ok": True}
        try:
            info = load_manifest(path)
        except InputError as e:
            row.update(manifest=str(e), ok=False)
            results.append(row)
            continue
        row["id"] = info.id
        off = official_path(info)
        digest = None
        if not off.is_file():
            row["official"] = "absent"
        else:
            digest = sha256_file(off)
            if info.source.sha256 is None:
                row["official"] = f"present, sha256 {digest} (no published hash to compare)"
            elif digest == info.source.sha256:
                row["official"] = "ok (sha256 matches)"
            else:
                row.update(official=f"sha256 MISMATCH: {digest}, expected {info.source.sha256}", ok=False)
        nat = native_path(info)
        if not nat.is_file():
            row["native"] = "absent"
        else:
            try:
                cfg = native.verify_file(nat)
            except CheckpointError as e:
                row.update(native=str(e), ok=False)
            else:
                prov = cfg["provenance"]
                if prov.get("model_id") != info.id:
                    row.update(native=f"holds model {prov.get('model_id')!r}, not {info.id!r}", ok=False)
                elif (info.source.sha256 or digest) and prov.get("source_sha256") != (info.source.sha256 or digest):
                    row.update(native=f"converted from sha256 {prov.get('source_sha256')}, but the "
                               f"{'manifest' if info.source.sha256 else 'cached official file'} has "
                               f"{info.source.sha256 or digest}", ok=False)
                else:
                    row["native"] = f"ok (converted from sha256 {prov.get('source_sha256')})"
        results.append(row)
    return results


__all__ = ["fetch", "convert", "verify"]
