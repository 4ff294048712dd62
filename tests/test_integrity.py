"""Integrity and resource safety, and never losing finished work.

A flipped byte in a native checkpoint is caught by load_model and zoo verify; an oversized
architecture in a small file is refused before anything is allocated; a weights file with an
official name but another hash is refused unless explicitly allowed; results survive an
unwritable output folder; a cache that cannot be written is a warning; files get the umask's
permissions.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import struct
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from helpers.tiny_extractor import TinyExtractor
from lafitebench.assets.backbones import clip_config
from lafitebench.checkpoints import native
from lafitebench.cli import app
from lafitebench.errors import CheckpointError, WeightsError
from lafitebench.models import Generator

runner = CliRunner()


@pytest.fixture
def native_file(tmp_path):
    G = Generator(z_dim=8, w_dim=8, img_resolution=8, f_dim=16, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=16))
    cfg = {"variant": "g", "resolution": 8, "clip": clip_config(None), "provenance": {"model_id": "t"}}
    return native.save_native(tmp_path / "m.safetensors", {"G_ema": G}, cfg)


def _flip_last_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))


def test_flipped_byte_is_caught_by_load_model(native_file):
    from lafitebench.checkpoints.load import load_model

    assert native.read_config(native_file)["tensors_sha256"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the test model's CLIP backbone is unknown
        load_model(native_file)  # intact: loads
    _flip_last_data_byte(native_file)
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_model(native_file)


def test_flipped_byte_is_caught_by_zoo_verify(tmp_path, monkeypatch, native_file):
    from lafitebench.assets import zoo
    from lafitebench.checkpoints import convert as convert_mod

    info = zoo.get_model_info("lafite-coco-g")
    target = zoo.native_path(info)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(native_file.read_bytes())
    rows = convert_mod.verify("lafite-coco-g")
    assert "checksum" not in rows[0]["native"]
    _flip_last_data_byte(target)
    rows = convert_mod.verify("lafite-coco-g")
    assert not rows[0]["ok"] and "does not match the checksum" in rows[0]["native"]


def test_oversized_architecture_refused_before_allocation(native_file, monkeypatch):
    """A small file whose config asks for a huge generator: refused from the sizes, nothing built."""
    from lafitebench.checkpoints.load import load_model

    raw = native_file.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    cfg = json.loads(header["__metadata__"]["lafitebench_config"])
    built = []
    monkeypatch.setattr(Generator, "__init__", lambda self, *a, **k: built.append(1) or (_ for _ in ()).throw(
        AssertionError("a module was built")))
    for key, value in (("channel_max", 10 ** 6), ("img_resolution", 1 << 20)):
        big = json.loads(json.dumps(cfg))
        target = big["networks"]["G_ema"]["init_kwargs"]
        (target["synthesis_kwargs"] if key == "channel_max" else target)[key] = value
        if key == "img_resolution":
            big["resolution"] = value
        header["__metadata__"]["lafitebench_config"] = json.dumps(big)
        new = json.dumps(header).encode()
        path = native_file.with_name(f"big-{key}.safetensors")
        path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])
        with pytest.raises(CheckpointError, match=key):
            load_model(path)
    assert not built


def test_official_name_with_another_hash_is_refused(tmp_path, monkeypatch):
    from lafitebench.assets import weights

    fake = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save({"fc.weight": torch.zeros(2)}, fake)
    with pytest.raises(WeightsError, match="has the name of the official"):
        weights.resolve(str(fake))
    monkeypatch.setenv("LAFITEBENCH_ALLOW_MODIFIED_WEIGHTS", "1")
    r = weights.resolve(str(fake))
    assert not r.verified and "modified copy" in r.verification and "modified copy" in json.dumps(r.provenance())


def _sets(tmp_path):
    from PIL import Image
    import numpy as np

    from lafitebench.data.sources.folder import folder_set

    out = []
    for name, seed in (("a", 0), ("b", 1)):
        d = tmp_path / name
        d.mkdir()
        rng = np.random.default_rng(seed)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
        out.append(folder_set(d, resolution=32))
    return out


def test_unwritable_cache_is_a_warning(tmp_path, monkeypatch):
    from lafitebench.metrics.engine import EvalConfig, evaluate

    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("x")
    monkeypatch.setenv("LAFITEBENCH_CACHE", str(blocker))
    a, b = _sets(tmp_path)
    cfg = EvalConfig(metrics=["fid"], resolution=32, device="cpu", progress=False, use_cache=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = evaluate(a, b, cfg, extractor=TinyExtractor())
    assert r.table.value.notna().all()
    assert any("could not be cached" in str(w.message) for w in caught)


def test_stale_temporary_files_are_removed(tmp_path, monkeypatch):
    from lafitebench.metrics.cache import RefStatsCache

    root = tmp_path / "refstats"
    root.mkdir()
    stale, fresh = root / ".abc.npz.x1.tmp", root / ".abd.npz.x2.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"writing")
    os.utime(stale, (1, 1))
    RefStatsCache(root)
    assert not stale.exists() and fresh.exists()


def test_results_survive_an_unwritable_out(tmp_path, monkeypatch):
    """Writing --out fails after the work (disk full): numbers printed, saved to a named fallback."""
    from lafitebench.encoders.inception import save_random_inception_weights
    from lafitebench.reports import results as reports

    weights_file = save_random_inception_weights(tmp_path / "w.pth")
    a, b = (tmp_path / "a", tmp_path / "b")
    _sets(tmp_path)
    real = reports.write_file_set

    def full_disk(out_dir, files, overwrite=False):
        if Path(out_dir).name == "run":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(out_dir, files, overwrite=overwrite)

    monkeypatch.setattr(reports, "write_file_set", full_disk)
    r = runner.invoke(app, ["eval", "--samples", str(a), "--reference", str(b), "--resolution", "32",
                            "--metrics", "fid", "--inception-weights", str(weights_file), "--out", str(tmp_path / "run")],
                      catch_exceptions=False)
    flat = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "FID-0" in flat and "No space left on device" in flat and "saved them to" in flat
    fallback = Path(flat.split("saved them to ")[1].split(" instead")[0])
    assert (fallback / "results.json").is_file() and (fallback / "results.csv").is_file()
    assert not (tmp_path / "run").exists()


def test_written_files_follow_the_umask(tmp_path):
    from lafitebench.io.files import atomic_write, write_file_set

    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "x.json", "w") as f:
            f.write("{}")
        files = write_file_set(tmp_path / "set", {"a.csv": b"1"})
    finally:
        os.umask(old)
    for p in (tmp_path / "x.json", files["a.csv"]):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, oct(p.stat().st_mode)
