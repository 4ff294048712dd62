"""Native checkpoint format: exact round trip, safe loading, and errors that name what is wrong."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lafitebench.assets.backbones import clip_config
from lafitebench.checkpoints import native
from lafitebench.errors import CheckpointError, InputError
from lafitebench.models.discriminator import Discriminator
from lafitebench.models.generator import Generator

G_KW = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, f_dim=8,
            mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 128, "channel_max": 16})
D_KW = dict(img_resolution=16, img_channels=3, f_dim=8, channel_base=128, channel_max=16)


def _perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every parameter/buffer off its init so zero-initialised tensors are checked too."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=gen) * 0.1)
    return module.eval()


@pytest.fixture
def nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"G_ema": _perturbed(Generator(**G_KW), 1), "G": _perturbed(Generator(**G_KW), 2),
            "D": _perturbed(Discriminator(**D_KW), 3)}


def _config(**over) -> dict:
    cfg = {"variant": "g", "resolution": 16, "clip": clip_config("ViT-B/32"),
           "provenance": {"model_id": "test", "source_file": "x.pkl", "source_sha256": "0" * 64}}
    cfg.update(over)
    return cfg


def _rewrite(path, tensors=None, config=None, out=None):
    """Write a modified copy of a native file (tensors and/or config)."""
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    t = load_file(str(path)) if tensors is None else tensors
    if config is not None:
        meta[native.METADATA_KEY] = json.dumps(config)
    save_file(t, str(out or path), metadata=meta)
    return out or path


def test_round_trip_is_exact(tmp_path, nets):
    path = native.save_native(tmp_path / "m.safetensors", nets, _config())
    loaded, cfg = native.load_native(path)
    assert set(loaded) == {"G_ema", "G", "D"}
    for name, module in nets.items():
        a, b = module.state_dict(), loaded[name].state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), f"{name}.{k}"
        assert not loaded[name].training
    z = torch.randn(3, 16)
    h = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    assert torch.equal(nets["G_ema"](z, h), loaded["G_ema"](z, h))
    # the config records the complete architecture (defaults written out) and provenance
    g_kw = cfg["networks"]["G_ema"]["init_kwargs"]
    assert cfg["networks"]["G_ema"]["class"] == "Generator"
    assert cfg["networks"]["D"]["class"] == "Discriminator"
    assert g_kw["synthesis_kwargs"]["conv_clamp"] == 256 and g_kw["synthesis_kwargs"]["change"] == 256
    assert g_kw["synthesis_kwargs"]["num_fp16_res"] == 0 and g_kw["mapping_kwargs"]["num_layers"] == 2
    assert cfg["clip"]["open_clip_model"] == "ViT-B-32" and cfg["clip"]["open_clip_pretrained"] == "openai"
    assert cfg["format"] == native.FORMAT_NAME and cfg["provenance"]["converter"] == native.CONVERTER_VERSION
    assert native.read_config(path) == cfg
    assert native.is_native(path)
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temporary file"


def test_load_subset_of_networks(tmp_path, nets):
    path = native.save_native(tmp_path / "m.safetensors", nets, _config())
    loaded, _ = native.load_native(path, networks=["G_ema"])
    assert set(loaded) == {"G_ema"}
    only_g = native.save_native(tmp_path / "g.safetensors", {"G_ema": nets["G_ema"]}, _config())
    with pytest.raises(CheckpointError, match=r"\['D'\] not stored"):
        native.load_native(only_g, networks=["D"])


def test_loading_never_unpickles(tmp_path, nets, monkeypatch):
    path = native.save_native(tmp_path / "m.safetensors", nets, _config())

    def refuse(*a, **k):
        raise AssertionError("load_native must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded, _ = native.load_native(path)
    assert "G_ema" in loaded


def test_truncated_file_names_file_and_sizes(tmp_path, nets):
    path = native.save_native(tmp_path / "m.safetensors", {"G_ema": nets["G_ema"]}, _config())
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=rf"cut\.safetensors.*truncated.*expected {len(data)} bytes, file has {len(data) - 100}"):
        native.load_native(cut)
    cut.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        native.load_native(cut)
    cut.write_bytes(data[:200])  # inside the JSON header
    with pytest.raises(CheckpointError, match="truncated"):
        native.read_config(cut)


def test_missing_tensor_key_is_named(tmp_path, nets):
    path = native.save_native(tmp_path / "m.safetensors", {"G_ema": nets["G_ema"]}, _config())
    tensors = load_file(str(path))
    key = "G_ema.synthesis.b8.conv1.affine_0.weight"
    del tensors[key]
    _rewrite(path, tensors=tensors)
    with pytest.raises(CheckpointError, match=rf"key '{key}' is missing"):
        native.load_native(path)


def test_shape_mismatch_names_key_and_shapes(tmp_path, nets):
    path = native.save_native(tmp_path / "m.safetensors", {"G_ema": nets["G_ema"]}, _config())
    tensors = load_file(str(path))
    key = "G_ema.mapping.fc0.weight"
    tensors[key] = torch.zeros(16, 17)
    _rewrite(path, tensors=tensors)
    with pytest.raises(CheckpointError, match=r"shape mismatch for key 'G_ema\.mapping\.fc0\.weight': checkpoint \[16, 17\] "
                                              r"vs model \[16, 16\]"):
        native.load_native(path)


def test_unexpected_and_stray_keys(tmp_path, nets):
    path = native.save_native(tmp_path / "m.safetensors", {"G_ema": nets["G_ema"]}, _config())
    tensors = load_file(str(path))
    _rewrite(path, tensors={**tensors, "G_ema.extra.weight": torch.zeros(2)}, out=tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected key 'G_ema\.extra\.weight'"):
        native.load_native(tmp_path / "a.safetensors")
    _rewrite(path, tensors={**tensors, "X.weight": torch.zeros(2)}, out=tmp_path / "b.safetensors")
    with pytest.raises(CheckpointError, match=r"'X\.weight' belongs to no network"):
        native.load_native(tmp_path / "b.safetensors")


@pytest.mark.parametrize("field", ["variant", "clip.name", "provenance.converter", "networks.G_ema.init_kwargs",
                                   "networks.G_ema.init_kwargs.z_dim", "resolution"])
def test_missing_config_field_is_named(tmp_path, nets, field):
    path = native.save_native(tmp_path / "m.safetensors", {"G_ema": nets["G_ema"]}, _config())
    cfg = native.read_config(path)
    *parents, last = field.split(".")
    d = cfg
    for p in parents:
        d = d[p]
    del d[last]
    _rewrite(path, config=cfg)
    with pytest.raises(CheckpointError, match=rf"m\.safetensors: missing config field '{field}'"):
        native.load_native(path)


def test_bad_config_values(tmp_path, nets):
    path = native.save_native(tmp_path / "m.safetensors", {"G_ema": nets["G_ema"]}, _config())
    cfg = native.read_config(path)
    _rewrite(path, config={**cfg, "variant": "fancy"}, out=tmp_path / "v.safetensors")
    with pytest.raises(CheckpointError, match="'variant' is 'fancy'"):
        native.read_config(tmp_path / "v.safetensors")
    _rewrite(path, config={**cfg, "format_version": 99}, out=tmp_path / "f.safetensors")
    with pytest.raises(CheckpointError, match="format version 99"):
        native.read_config(tmp_path / "f.safetensors")
    _rewrite(path, config={**cfg, "resolution": 32}, out=tmp_path / "r.safetensors")
    with pytest.raises(CheckpointError, match="disagrees"):
        native.read_config(tmp_path / "r.safetensors")


def test_plain_safetensors_is_not_native(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(p))
    assert not native.is_native(p)
    with pytest.raises(CheckpointError, match="without a lafitebench config"):
        native.load_native(p)
    with pytest.raises(CheckpointError, match="does not exist"):
        native.load_native(tmp_path / "nope.safetensors")


def test_save_checks_inputs(tmp_path, nets):
    with pytest.raises(InputError, match="must include 'G_ema'"):
        native.save_native(tmp_path / "x.safetensors", {"G": nets["G"]}, _config())
    with pytest.raises(InputError, match="unknown network names"):
        native.save_native(tmp_path / "x.safetensors", {"G_ema": nets["G_ema"], "E": nets["G"]}, _config())
    with pytest.raises(CheckpointError, match="'variant'"):
        native.save_native(tmp_path / "x.safetensors", {"G_ema": nets["G_ema"]}, _config(variant="x"))
    # init_kwargs that do not rebuild the module are refused before anything is written
    bad = _config(networks={"G_ema": {"init_kwargs": {**G_KW, "w_dim": 8}}})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        native.save_native(tmp_path / "x.safetensors", {"G_ema": nets["G_ema"]}, bad)
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(InputError, match="clip_backbone"):
        clip_config("RN50x64")
