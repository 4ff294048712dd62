"""Official snapshot import: parity with the official networks' outputs, and loading safety.

The fixture ``fixtures/lafite_official/lafite_tiny64.pkl`` is written exactly like an official
training snapshot; ``lafite_tiny64.reference.pt`` holds what the official networks compute.
"""
from __future__ import annotations

import pickle
import sys
import types

import pytest
import torch

from lafitebench.checkpoints import official
from lafitebench.checkpoints.official import (
    PersistentRecord,
    build_from_official,
    load_official_snapshot,
    load_state_dict_strict,
    safe_unpickle,
)
from lafitebench.errors import CheckpointError
from lafitebench.models.discriminator import Discriminator
from lafitebench.models.generator import Generator

TOL = 1e-4  # acceptance bound; measured max abs diffs are ~1e-5 (images) and <1e-6 (D)


@pytest.fixture(scope="module")
def fixture_dir(shared_dir):
    return shared_dir / "fixtures" / "lafite_official"


@pytest.fixture(scope="module")
def snapshot_path(fixture_dir):
    return fixture_dir / "lafite_tiny64.pkl"


@pytest.fixture(scope="module")
def reference(fixture_dir):
    return torch.load(fixture_dir / "lafite_tiny64.reference.pt", weights_only=True)


@pytest.fixture(scope="module")
def nets(snapshot_path):
    return build_from_official(snapshot_path)


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------- parity

@pytest.mark.real_assets
def test_snapshot_contents(snapshot_path):
    snap = load_official_snapshot(snapshot_path)
    assert {snap[k]["class_name"] for k in ("G", "G_ema")} == {"Generator"}
    assert snap["D"]["class_name"] == "Discriminator"
    g = snap["G_ema"]["init_kwargs"]
    assert (g["z_dim"], g["w_dim"], g["img_resolution"], g["synthesis_kwargs"]["f_dim"]) == (128, 128, 64, 64)
    assert g["mapping_kwargs"] == {"num_layers": 2}
    assert snap["training_set_kwargs"]["resolution"] == 64
    assert all(isinstance(v, torch.Tensor) for v in snap["G_ema"]["state_dict"].values())


@pytest.mark.real_assets
def test_state_dict_keys_equal_official(snapshot_path, nets):
    snap = load_official_snapshot(snapshot_path)
    for name in ("G", "G_ema", "D"):
        ours = nets[name].state_dict()
        theirs = snap[name]["state_dict"]
        assert list(ours) == list(theirs), name  # identical keys, identical order
        for k, v in theirs.items():
            assert torch.equal(ours[k], v), k


@pytest.mark.real_assets
def test_generator_reproduces_official_outputs(nets, reference):
    G = nets["G_ema"]
    z, fts = reference["z"], reference["fts"]
    with torch.no_grad():
        img, ws, styles = G(z, fts, noise_mode="const", return_ws=True, return_styles=True)
        img_none = G(z, fts, noise_mode="none")
        img_psi = G(z, fts, noise_mode="const", truncation_psi=0.7)
        ws_mapping = G.mapping(z)
        img_from_styles = G(None, None, styles=reference["styles"], noise_mode="const")
    assert _maxdiff(ws, reference["ws"]) <= TOL
    assert _maxdiff(ws_mapping, reference["ws"]) <= TOL
    assert len(styles) == len(reference["styles"]) == 14
    for i, (ours, ref) in enumerate(zip(styles, reference["styles"])):
        assert _maxdiff(ours, ref) <= TOL, f"style {i}"
    assert _maxdiff(img, reference["img_const"]) <= TOL
    assert _maxdiff(img_none, reference["img_none"]) <= TOL
    assert _maxdiff(img_psi, reference["img_const_psi07"]) <= TOL
    assert _maxdiff(img_from_styles, reference["img_const"]) <= TOL


@pytest.mark.real_assets
def test_discriminator_reproduces_official_outputs(nets, reference):
    D = nets["D"]
    with torch.no_grad():
        logits, fts = D(reference["d_input"], reference["fts"], semantic_term="official")
        paper, _ = D(reference["d_input"], reference["fts"], semantic_term="paper")
    assert _maxdiff(logits, reference["d_logits"]) <= TOL
    assert _maxdiff(fts, reference["d_fts"]) <= TOL
    assert not torch.allclose(paper, logits)  # the two semantic terms really differ


@pytest.mark.real_assets
def test_built_networks_are_eval_and_frozen(nets):
    assert set(nets) == {"G", "D", "G_ema"}
    for net in nets.values():
        assert not net.training
        assert not any(p.requires_grad for p in net.parameters())
    assert isinstance(nets["G_ema"], Generator) and isinstance(nets["D"], Discriminator)
    assert nets["G_ema"].init_kwargs["f_dim"] == 64


@pytest.mark.real_assets
def test_build_reuses_a_loaded_snapshot(snapshot_path, reference):
    snap = load_official_snapshot(snapshot_path)
    nets = build_from_official(snapshot_path, networks=("G_ema",), snapshot=snap)
    assert set(nets) == {"G_ema"}
    with torch.no_grad():
        img = nets["G_ema"](reference["z"], reference["fts"], noise_mode="none")
    assert _maxdiff(img, reference["img_none"]) <= TOL


# ---------------------------------------------------------------------------- safety

class _Payload:
    """Pickles as ``module.name(*args)``; unpickling it with a plain pickle.load would run it."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _raw_global_pickle(module: str, name: str, arg: str) -> bytes:
    # Protocol-0 GLOBAL opcode naming exactly ``module name``, called with one string argument.
    return f"c{module}\n{name}\n(V{arg}\ntR.".encode()


@pytest.mark.parametrize("module,name", [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                         ("subprocess", "Popen"), ("builtins", "exec"),
                                         ("torch", "load"), ("numpy", "load")])
def test_unsafe_global_is_refused_and_nothing_runs(tmp_path, module, name):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    cmd = f"touch {marker}"
    arg = {"eval": f"open({str(marker)!r}, 'w')", "exec": f"open({str(marker)!r}, 'w')"}.get(name, cmd)
    path.write_bytes(_raw_global_pickle(module, name, arg))
    with pytest.raises(CheckpointError, match=rf"'{module}\.{name}'") as exc:
        load_official_snapshot(path)
    assert str(path) in str(exc.value)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_payload_nested_inside_a_snapshot_is_refused(tmp_path, protocol):
    import subprocess

    marker = tmp_path / "marker"
    data = {
        "G_ema": {"weights": [torch.zeros(3)], "hook": _Payload(subprocess.Popen, ["touch", str(marker)])},
        "training_set_kwargs": {"resolution": 64},
    }
    path = tmp_path / "nested.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    with pytest.raises(CheckpointError, match=r"'subprocess\.Popen'"):
        load_official_snapshot(path)
    assert not marker.exists()


def test_allowed_callables_reject_misuse(tmp_path):
    # _rebuild_tensor_v2 is allowed, but only with a real storage as its first argument.
    bad = b"ctorch._utils\n_rebuild_tensor_v2\n(Vrm -rf\nI0\n(I1\nt(I1\ntI00\nNtR."
    path = tmp_path / "misuse.pkl"
    path.write_bytes(bad)
    with pytest.raises(CheckpointError, match="storage"):
        safe_unpickle(path)


def test_torch_save_files_are_not_official_snapshots(tmp_path):
    path = tmp_path / "native.pt"
    torch.save({"a": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="torch.save"):
        load_official_snapshot(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pkl"):
        load_official_snapshot(tmp_path / "nope.pkl")


@pytest.mark.real_assets
@pytest.mark.parametrize("fraction", [0.5, 0.001])
def test_truncated_snapshot_names_the_file(tmp_path, snapshot_path, fraction):
    data = snapshot_path.read_bytes()
    path = tmp_path / "truncated.pkl"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="truncated.pkl") as exc:
        build_from_official(path)
    assert "truncated or corrupt" in str(exc.value)


@pytest.mark.real_assets
def test_missing_key_and_shape_mismatch_are_named(snapshot_path):
    snap = load_official_snapshot(snapshot_path)
    G = Generator(**official.generator_kwargs_from_official(snap["G_ema"]["init_kwargs"]))

    sd = dict(snap["G_ema"]["state_dict"])
    del sd["synthesis.b16.conv0.affine_0.bias"]
    with pytest.raises(CheckpointError, match=r"'synthesis\.b16\.conv0\.affine_0\.bias' is missing"):
        load_state_dict_strict(G, sd)

    sd = dict(snap["G_ema"]["state_dict"])
    sd["synthesis.b8.torgb.weight"] = torch.zeros(3, 32, 1, 1)
    with pytest.raises(CheckpointError, match=r"'synthesis\.b8\.torgb\.weight'.*\[3, 32, 1, 1\].*\[3, 64, 1, 1\]"):
        load_state_dict_strict(G, sd)

    sd = dict(snap["G_ema"]["state_dict"])
    sd["synthesis.b8.torgb.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected key 'synthesis\.b8\.torgb\.extra'"):
        load_state_dict_strict(G, sd)


# ---------------------------------------------------------------------------- end to end with edited snapshots

def _fake_persistence_module(monkeypatch):
    """Register importable stand-ins for the official globals so pickle can write the official format."""
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only referenced by name
        raise AssertionError("never called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", mod)
    return _reconstruct_persistent_obj


def _write_official_like(path, data, monkeypatch):
    recon = _fake_persistence_module(monkeypatch)

    class _Persistent:
        def __init__(self, rec: PersistentRecord):
            self.rec = rec

        def __reduce__(self):
            state = dict(self.rec.state)
            state["_modules"] = {k: _Persistent(v) for k, v in state["_modules"].items()}
            meta = {"type": "class", "version": self.rec.version, "module_src": "# omitted\n",
                    "class_name": self.rec.class_name, "state": state}
            return recon, (meta,)

    out = {k: (_Persistent(v) if isinstance(v, PersistentRecord) else v) for k, v in data.items()}
    with open(path, "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)


@pytest.mark.real_assets
def test_edited_snapshot_end_to_end(tmp_path, snapshot_path, monkeypatch):
    data = safe_unpickle(snapshot_path)
    # 1. a faithful re-write loads; 2. dropping a parameter is reported with its key.
    b8 = data["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b8"]
    conv1 = b8.state["_modules"]["conv1"]
    good = tmp_path / "rewritten.pkl"
    _write_official_like(good, data, monkeypatch)
    assert set(build_from_official(good, networks=("G_ema",))) == {"G_ema"}

    del conv1.state["_parameters"]["noise_strength"]
    bad = tmp_path / "edited.pkl"
    _write_official_like(bad, data, monkeypatch)
    with pytest.raises(CheckpointError, match=r"edited\.pkl.*G_ema.*'synthesis\.b8\.conv1\.noise_strength' is missing"):
        build_from_official(bad)


@pytest.mark.real_assets
def test_unsupported_architecture_option_is_refused(snapshot_path):
    snap = load_official_snapshot(snapshot_path)
    kw = dict(snap["G_ema"]["init_kwargs"])
    kw["synthesis_kwargs"] = dict(kw["synthesis_kwargs"], architecture="resnet")
    with pytest.raises(CheckpointError, match="architecture"):
        official.generator_kwargs_from_official(kw)
    kw["synthesis_kwargs"] = dict(snap["G_ema"]["init_kwargs"]["synthesis_kwargs"], mystery=1)
    with pytest.raises(CheckpointError, match="mystery"):
        official.generator_kwargs_from_official(kw)


def test_no_global_outside_the_allow_list():
    allowed = {f"{m}.{n}" for m, n in official.SAFE_GLOBALS}
    assert "os.system" not in allowed and "builtins.eval" not in allowed
    assert all(not n.startswith(("builtins.", "os.", "posix.", "subprocess.")) for n in allowed)


@pytest.mark.real_assets
@pytest.mark.parametrize("where", ["init_kwargs", "training_set_kwargs"])
def test_kwargs_nested_thousands_deep_are_refused(tmp_path, snapshot_path, monkeypatch, where):
    """A snapshot whose kwargs nest 5,000 levels deep: a clear CheckpointError through ``load_model``
    and ``zoo convert``, never a RecursionError."""
    from typer.testing import CliRunner

    from lafitebench.cli import app
    from lafitebench.checkpoints.load import load_model

    deep: dict = {}
    for _ in range(5000):
        deep = {"k": deep}
    data = safe_unpickle(snapshot_path)
    if where == "init_kwargs":
        data["G_ema"].state["_init_kwargs"]["mapping_kwargs"] = deep
    else:
        data["training_set_kwargs"] = {"path": "x.zip", "extra": deep}
    bad = tmp_path / "deep-kwargs.pkl"
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # only to write the hostile file
    try:
        _write_official_like(bad, data, monkeypatch)
    finally:
        sys.setrecursionlimit(old)
    with pytest.raises(CheckpointError, match=r"deep-kwargs\.pkl.*nests more than"):
        load_model(bad)
    r = CliRunner().invoke(app, ["zoo", "convert", str(bad), str(tmp_path / "out.safetensors")])
    assert r.exit_code == 2 and "nests more than" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "out.safetensors").exists()
