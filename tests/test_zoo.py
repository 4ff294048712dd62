"""Model zoo: manifests, registry, fetch (mocked transport), verify, convert and load_model."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import torch

from lafitebench.assets import download, zoo
from lafitebench.checkpoints import convert as convert_mod
from lafitebench.checkpoints import native
from lafitebench.errors import CheckpointError, InputError, WeightsError
from lafitebench.checkpoints.load import load_model
from lafitebench.registry import UnknownNameError

REPO_ZOO = Path(__file__).resolve().parent.parent / "zoo"
EXPECTED_IDS = {
    "lafite-coco-g": ("g", "ViT-B/32"),
    "lafite-coco-nn": ("nn", "ViT-B/32"),
    "lafite-coco-supervised-vitb32": ("supervised", "ViT-B/32"),
    "lafite-coco-supervised-vitb16": ("supervised", "ViT-B/16"),
    "lafite-cc3m-zeroshot": ("zero-shot", "ViT-B/32"),
}
FIXTURE = "fixtures/lafite_official/lafite_tiny64.pkl"

TINY_MANIFEST = """\
schema_version = 1
id = "tiny-test"
title = "official-format 64x64 test snapshot"
variant = "g"
training_data = "none (random weights, perturbed)"
resolution = 64
license = "test fixture"

[clip]
backbone = "tiny-test-clip"
open_clip_model = "tiny-test-clip"
open_clip_pretrained = "none"
f_dim = 64

[source]
kind = "gdrive"
url = "https://drive.google.com/file/d/TESTID/view"
gdrive_id = "TESTID"
filename = "tiny-test.pkl"
listed_at = "tests/test_zoo.py"
{hash}
"""


@pytest.fixture
def fixture_pkl(shared_dir) -> Path:
    return shared_dir / FIXTURE


def _tiny_zoo(tmp_path, monkeypatch, hash_line: str) -> Path:
    d = tmp_path / "zoo"
    d.mkdir()
    (d / "tiny-test.toml").write_text(TINY_MANIFEST.format(hash=hash_line))
    monkeypatch.setenv(zoo.ENV_ZOO, str(d))
    return d


def _fake_gdrive(src: Path, calls: list):
    """Stands in for :func:`lafitebench.assets.download.stream_gdrive` (no network)."""
    def download(file_id, part, on_progress):
        calls.append(file_id)
        data = src.read_bytes()
        with open(part, "wb") as out:
            for i in range(0, len(data), 1 << 22):
                out.write(data[i:i + (1 << 22)])
                on_progress(min(i + (1 << 22), len(data)), len(data))
    return download


# ---------------------------------------------------------------------------------------------- manifests

def test_all_released_models_have_valid_manifests():
    assert set(zoo.MODELS.names()) == set(EXPECTED_IDS)
    for model_id, (variant, clip) in EXPECTED_IDS.items():
        info = zoo.get_model_info(model_id)
        assert (info.variant, info.clip["name"], info.resolution) == (variant, clip, 256)
        assert info.source.kind == "gdrive" and info.source.gdrive_id in info.source.url
        assert info.source.sha256 is None and "unknown" in info.source.hash_status
        assert info.manifest_path == REPO_ZOO / f"{model_id}.toml"
    assert len({zoo.get_model_info(i).source.gdrive_id for i in EXPECTED_IDS}) == 5
    assert zoo.get_model_info("lafite-coco-supervised-vitb16").clip["open_clip_model"] == "ViT-B-16"
    assert zoo.get_model_info("lafite-g").id == "lafite-coco-g"  # alias


def test_paper_numbers_match_the_reference_tables():
    g = zoo.get_model_info("lafite-coco-g").paper[0]
    assert g.row == "Lafite-G" and g.verified and g.metrics["IS"] == 27.20 and g.metrics["FID-8"] == 14.52
    nn_ = zoo.get_model_info("lafite-coco-nn").paper[0]
    assert nn_.metrics["FID-0"] == 26.56
    sup = zoo.get_model_info("lafite-coco-supervised-vitb32").paper[0]
    assert sup.metrics == {"IS": 32.34, "FID": 8.12, "SOA-C": 61.09, "SOA-I": 74.78}
    zs = zoo.get_model_info("lafite-cc3m-zeroshot").paper[0]
    assert zs.metrics["SOA-I"] == 54.25 and zs.metrics["FID-4"] == 15.72
    assert zoo.get_model_info("lafite-coco-supervised-vitb16").paper == ()


def test_list_models_and_table():
    rows = zoo.list_models()
    assert [r["id"] for r in rows] == sorted(EXPECTED_IDS)
    assert all(r["cached"] == "-" and r["sha256"] == "unknown" for r in rows)
    table = zoo.render_models_table()
    assert table.row_count == 5 and [c.header for c in table.columns][0] == "id"
    assert zoo.get_model_info("lafite-coco-nn").to_dict()["source"]["gdrive_id"]


def test_unknown_id_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'lafite-coco-g'"):
        zoo.get_model_info("lafite-coco-gg")
    with pytest.raises(InputError, match="Did you mean 'lafite-coco-nn'"):
        load_model("lafite-coco-n")


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace('variant = "g"\n', ""), "variant"),
    (lambda t: t.replace('variant = "g"', 'variant = "gaussian"'), "variant"),
    (lambda t: t.replace('filename = "lafite-coco-g.pkl"\n', ""), "source.filename"),
    (lambda t: t.replace("resolution = 256", 'resolution = "256"'), "resolution"),
    (lambda t: t.replace('backbone = "ViT-B/32"', 'backbone = "RN50"'), "clip.open_clip_model"),
    (lambda t: t.replace("IS = 27.20", 'IS = "27.2"'), "paper[0].metrics.IS"),
    (lambda t: t.replace("license =", "licence ="), "licence"),
    (lambda t: t.replace('id = "lafite-coco-g"', 'id = "lafite-other"'), "id"),
    (lambda t: t.replace("hash_status =", "sha256 = \"abc\"\nhash_status ="), "source.sha256"),
])
def test_broken_manifest_names_file_and_key(tmp_path, monkeypatch, edit, key):
    d = tmp_path / "zoo"
    d.mkdir()
    text = (REPO_ZOO / "lafite-coco-g.toml").read_text()
    (d / "lafite-coco-g.toml").write_text(edit(text))
    monkeypatch.setenv(zoo.ENV_ZOO, str(d))
    with pytest.raises(InputError) as e:
        zoo.list_models()
    msg = str(e.value)
    assert str(d / "lafite-coco-g.toml") in msg and f"'{key}'" in msg
    # verify reports it instead of raising
    [row] = convert_mod.verify()
    assert not row["ok"] and f"'{key}'" in row["manifest"]


def test_not_toml_and_missing_zoo_dir(tmp_path, monkeypatch):
    d = tmp_path / "zoo"
    d.mkdir()
    (d / "x.toml").write_text("id = [")
    monkeypatch.setenv(zoo.ENV_ZOO, str(d))
    with pytest.raises(InputError, match=r"x\.toml is not valid TOML"):
        zoo.MODELS.names()
    monkeypatch.setenv(zoo.ENV_ZOO, str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="LAFITEBENCH_ZOO"):
        zoo.list_models()


# ---------------------------------------------------------------------------------------------- fetch

def test_fetch_offline_says_where_to_put_the_file(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("offline fetch must not download")

    monkeypatch.setattr(download, "stream_gdrive", no_network)
    info = zoo.get_model_info("lafite-coco-nn")
    with pytest.raises(WeightsError) as e:
        convert_mod.fetch("lafite-coco-nn")  # LAFITEBENCH_OFFLINE=1 from conftest
    msg = str(e.value)
    assert str(zoo.zoo_cache_dir() / "lafite-coco-nn.pkl") in msg
    assert info.source.url in msg and "LAFITEBENCH_OFFLINE" in msg
    assert "lafitebench zoo convert" in msg and "lafitebench zoo fetch lafite-coco-nn" in msg
    assert "--variant nn --clip-backbone ViT-B/32" in msg
    with pytest.raises(WeightsError, match="lafitebench zoo fetch lafite-coco-g"):
        load_model("lafite-coco-g")


@pytest.mark.real_assets
@pytest.mark.slow
def test_fetch_download_convert_load(tmp_path, monkeypatch, fixture_pkl):
    from lafitebench.checkpoints.official import build_from_official
    from lafitebench.io.files import sha256_file

    digest = sha256_file(fixture_pkl)
    _tiny_zoo(tmp_path, monkeypatch, f'sha256 = "{digest}"\nsize_bytes = {fixture_pkl.stat().st_size}')
    calls: list = []
    monkeypatch.setattr(download, "stream_gdrive", _fake_gdrive(fixture_pkl, calls))
    out = convert_mod.fetch("tiny-test", offline=False, progress=False)
    assert calls == ["TESTID"]
    assert out == zoo.zoo_cache_dir() / "tiny-test.safetensors"
    assert (zoo.zoo_cache_dir() / "tiny-test.pkl").is_file()
    assert not [p for p in zoo.zoo_cache_dir().iterdir() if p.name.startswith(".")]  # no temp files left

    cfg = native.read_config(out)
    assert cfg["variant"] == "g" and cfg["resolution"] == 64 and cfg["clip"]["f_dim"] == 64
    assert cfg["provenance"]["source_sha256"] == digest and cfg["provenance"]["model_id"] == "tiny-test"
    assert cfg["provenance"]["training_set_kwargs"]["path"] == "COCO2014_train_CLIP_ViTB32.zip"
    assert set(cfg["networks"]) == {"G_ema", "G", "D"}

    model = load_model("tiny-test")
    assert model.metadata["model_id"] == "tiny-test" and model.metadata["source_sha256"] == digest
    assert model.metadata["clip_backbone"] == "tiny-test-clip" and model.D is not None
    direct = build_from_official(fixture_pkl)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 128, generator=g)
    h = torch.nn.functional.normalize(torch.randn(2, 64, generator=g), dim=1)
    assert torch.equal(model.generate(z, h), direct["G_ema"](z, h, noise_mode="const"))
    assert torch.equal(model.generate(z, h, truncation_psi=0.7), direct["G_ema"](z, h, truncation_psi=0.7))
    with pytest.raises(InputError, match="L2 norm"):
        model.generate(z, h * 3)

    # verify: both cached files accounted for
    [row] = convert_mod.verify()
    assert row["ok"] and row["official"] == "ok (sha256 matches)" and row["native"].startswith("ok")
    assert zoo.list_models()[0]["cached"] == "converted"

    # a second fetch reuses the native file; with force it re-converts from the cached pkl offline
    monkeypatch.setattr(download, "stream_gdrive", lambda *a, **k: pytest.fail("must not download again"))
    assert convert_mod.fetch("tiny-test") == out
    assert convert_mod.fetch("tiny-test", force=True) == out


@pytest.mark.real_assets
def test_fetch_refuses_wrong_hash(tmp_path, monkeypatch, fixture_pkl):
    _tiny_zoo(tmp_path, monkeypatch, f'sha256 = "{"0" * 64}"')
    monkeypatch.setattr(download, "stream_gdrive", _fake_gdrive(fixture_pkl, []))
    with pytest.raises(WeightsError, match="manifest expects sha256 0000"):
        convert_mod.fetch("tiny-test", offline=False, progress=False)
    assert not zoo.zoo_cache_dir().exists() or not list(zoo.zoo_cache_dir().iterdir())
    # a hand-placed file with the wrong hash is refused too
    zoo.zoo_cache_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(fixture_pkl, zoo.zoo_cache_dir() / "tiny-test.pkl")
    with pytest.raises(WeightsError, match="does not match the manifest"):
        convert_mod.fetch("tiny-test")
    [row] = convert_mod.verify()
    assert not row["ok"] and "MISMATCH" in row["official"]


@pytest.mark.real_assets
@pytest.mark.slow
def test_fetch_offline_uses_hand_placed_file_and_checks_resolution(tmp_path, monkeypatch, fixture_pkl):
    _tiny_zoo(tmp_path, monkeypatch, 'hash_status = "unknown: test"')
    weights = tmp_path / "w"
    weights.mkdir()
    shutil.copy(fixture_pkl, weights / "tiny-test.pkl")
    monkeypatch.setenv("LAFITEBENCH_WEIGHTS", str(weights))
    out = convert_mod.fetch("tiny-test", dest=tmp_path)  # offline; found in $LAFITEBENCH_WEIGHTS
    assert out == tmp_path / "tiny-test.safetensors" and native.is_native(out)
    [row] = convert_mod.verify()
    assert row["ok"] and row["native"] == "absent"  # converted to dest, not the cache

    # a snapshot of the wrong resolution for the manifest is rejected
    (tmp_path / "zoo" / "tiny-test.toml").write_text(
        TINY_MANIFEST.format(hash='hash_status = "unknown"').replace("resolution = 64", "resolution = 256"))
    zoo.MODELS.reload()
    with pytest.raises(CheckpointError, match="resolution is 64x64.*says 256"):
        convert_mod.fetch("tiny-test", dest=tmp_path / "other.safetensors")


@pytest.mark.real_assets
@pytest.mark.slow
def test_convert_and_load_official_snapshot(tmp_path, fixture_pkl):
    with pytest.warns(UserWarning, match="CLIP backbone"):
        model = load_model(fixture_pkl, networks=["G_ema"])
    assert model.metadata["format"] == "official-pkl" and model.G is None and model.D is None
    assert model.metadata["clip_backbone"].startswith("unknown")
    with pytest.raises(CheckpointError, match="64-d text features but CLIP ViT-B/32 gives 512-d"):
        convert_mod.convert(fixture_pkl, tmp_path / "x.safetensors", variant="g", clip_backbone="ViT-B/32")
    with pytest.raises(InputError, match="variant"):
        convert_mod.convert(fixture_pkl, tmp_path / "x.safetensors", variant="fancy", clip_backbone="ViT-B/32")
    clip = {"name": "tiny", "open_clip_model": "tiny", "open_clip_pretrained": "none", "f_dim": 64}
    out = convert_mod.convert(fixture_pkl, tmp_path / "x.safetensors", variant="supervised", clip_backbone=clip)
    loaded = load_model(out, networks=["G_ema"])
    assert loaded.metadata["variant"] == "supervised" and loaded.G is None
    z = torch.randn(1, 128)
    h = torch.nn.functional.normalize(torch.randn(1, 64), dim=1)
    assert torch.equal(loaded.generate(z, h), model.generate(z, h))
    with pytest.raises(InputError, match="disagrees"):
        load_model(out, clip_backbone="ViT-B/32")


def test_load_model_rejects_missing_and_odd_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="neither a native"):
        load_model(odd)
    with pytest.raises(InputError, match="folder"):
        load_model(tmp_path)


# ---------------------------------------------------------------------------------------------- transports

def test_gdrive_transport_uses_gdown_with_a_stream(monkeypatch, tmp_path):
    import gdown

    seen = {}

    def fake_download(*, id, output, quiet, progress):
        seen.update(id=id, quiet=quiet)
        output.write(b"abc")
        progress(3, 3)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    part, prog = tmp_path / "f.part", []
    download.stream_gdrive("FILEID", part, lambda d, t: prog.append((d, t)))
    assert seen == {"id": "FILEID", "quiet": True} and part.read_bytes() == b"abc" and prog == [(3, 3)]

    from gdown.exceptions import FileURLRetrievalError

    def failing(**k):
        raise FileURLRetrievalError("too many users")

    monkeypatch.setattr(gdown, "download", failing)
    with pytest.raises(WeightsError, match="FILEID.*too many users"):
        download.stream_gdrive("FILEID", tmp_path / "g.part", lambda d, t: None)


def test_http_transport_streams_with_progress(monkeypatch, tmp_path):
    import urllib.error
    import urllib.request

    class Resp(io.BytesIO):
        headers = {"Content-Length": "5"}

    monkeypatch.setattr(urllib.request, "urlopen", lambda req, timeout: Resp(b"hello"))
    part, prog = tmp_path / "m.part", []
    download.stream_http("https://example.org/m.pkl", part, lambda d, t: prog.append((d, t)))
    assert part.read_bytes() == b"hello" and prog[-1] == (5, 5)

    def refuse(req, timeout):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(WeightsError, match="example.org.*no route"):
        download.stream_http("https://example.org/m.pkl", tmp_path / "n.part", lambda d, t: None)


def test_an_interrupted_download_resumes_where_it_stopped(monkeypatch, tmp_path):
    """The connection drops after 4 bytes: the part stays; the next call asks for the rest
    (Range: bytes=4-), appends it, checks the hash and puts the file in place."""
    import hashlib
    import urllib.request

    data = b"0123456789"
    ranges = []

    class Resp(io.BytesIO):
        def __init__(self, body, status):
            super().__init__(body)
            self.status, self.headers = status, {"Content-Length": str(len(body))}

    class Dropping(Resp):
        def read(self, n=-1):
            if self.tell() >= 4:
                raise ConnectionResetError("connection reset")
            return super().read(4)

    def urlopen(req, timeout):
        r = req.get_header("Range")
        ranges.append(r)
        if r is None:
            return Dropping(data, 200)
        start = int(r.split("=")[1].rstrip("-"))
        return Resp(data[start:], 206)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    target = tmp_path / "w.bin"
    src = [download.Source("https://example.org/w.bin")]
    good = hashlib.sha256(data).hexdigest()
    with pytest.raises(WeightsError, match="connection reset"):
        download.fetch_file(target, src, label="w", accept=lambda d: d == good and "sha256", show_progress=False)
    assert not target.exists() and download.part_path(target).read_bytes() == b"0123"
    digest, how, _ = download.fetch_file(target, src, label="w", accept=lambda d: d == good and "sha256",
                                         show_progress=False)
    assert ranges == [None, "bytes=4-"] and target.read_bytes() == data and digest == good and how == "sha256"
    assert not download.part_path(target).exists()


@pytest.mark.real_assets
@pytest.mark.slow
def test_convert_stores_perturbation_network(tmp_path, fixture_pkl):
    from lafitebench.models.pseudo_text import PerturbationNetwork

    torch.manual_seed(0)
    p_net = PerturbationNetwork(feature_dim=64, hidden_dim=32)
    torch.save(p_net.state_dict(), tmp_path / "implicit.test.pth")
    clip = {"name": "tiny", "open_clip_model": "tiny", "open_clip_pretrained": "none", "f_dim": 64}
    out = convert_mod.convert(fixture_pkl, tmp_path / "nn.safetensors", variant="nn", clip_backbone=clip,
                      perturbation=tmp_path / "implicit.test.pth")
    model = load_model(out, networks=["G_ema", "P"])
    assert model.P is not None and model.G is None
    for k, v in p_net.state_dict().items():
        assert torch.equal(model.P.state_dict()[k], v)
    assert model.metadata["provenance"]["perturbation_file"]["file"] == "implicit.test.pth"
    with pytest.raises(CheckpointError, match="feature_dim"):
        torch.save(PerturbationNetwork(feature_dim=32, hidden_dim=8).state_dict(), tmp_path / "bad.pth")
        convert_mod.convert(fixture_pkl, tmp_path / "bad.safetensors", variant="nn", clip_backbone=clip,
                    perturbation=tmp_path / "bad.pth")
