"""Weights resolver: good / corrupted / cached / corrupted-cache downloads with a mocked transport,
offline messages, explicit and environment files, pass-through paths, real shared Inception file."""
from __future__ import annotations

import hashlib
import io
import re
import urllib.error
from pathlib import Path

import pytest

from lafitebench.assets import download, weights
from lafitebench.errors import WeightsError
from lafitebench.registry import Registry

GOOD = b"these are not weights, just bytes with a known hash\n" * 50
BAD = b"corrupted bytes\n" * 50
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
URL = "https://example.invalid/releases/fake-weights.pth"
MIRROR = "https://mirror.invalid/fake-weights.pth"


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


class Transport:
    """Replaces lafitebench.assets.download.open_url: serves bytes per URL and counts calls."""

    def __init__(self, payloads: dict[str, bytes | Exception]) -> None:
        self.payloads = payloads
        self.calls: list[str] = []

    def __call__(self, url: str, timeout: float = 60.0, start: int = 0) -> FakeResponse:
        self.calls.append(url)
        p = self.payloads[url]
        if isinstance(p, Exception):
            raise p
        return FakeResponse(p)


def _spec(**kw) -> weights.WeightsSpec:
    base = dict(
        name="fake-net", filename="fake-weights.pth", urls=(URL,), sha256=GOOD_SHA, size=len(GOOD),
        license="test", how_to_get="it is made by the test",
    )
    base.update(kw)
    return weights.WeightsSpec(**base)


@pytest.fixture
def registry(monkeypatch):
    """A private WEIGHTS registry holding only the fake spec (the real one stays untouched)."""
    reg: Registry = Registry("weights")
    reg.register("fake-net", _spec())
    monkeypatch.setattr(weights, "WEIGHTS", reg)
    return reg


def _cache_files() -> list[Path]:
    d = weights.settings.cache_dir() / "weights"
    return sorted(d.iterdir()) if d.exists() else []


def _install(monkeypatch, payloads) -> Transport:
    t = Transport(payloads)
    monkeypatch.setattr(download, "open_url", t)
    return t


def test_good_download(registry, monkeypatch):
    t = _install(monkeypatch, {URL: GOOD})
    r = weights.resolve("fake-net", offline=False, progress=False)
    assert r.source == "download" and r.verified and r.verification == "sha256"
    assert r.sha256 == GOOD_SHA and r.path.read_bytes() == GOOD and r.url == URL
    assert r.path == weights.settings.cache_dir() / "weights" / "fake-weights.pth"
    assert [p.name for p in _cache_files()] == ["fake-weights.pth"]  # no temporary file left
    assert t.calls == [URL]


def test_corrupted_download_refused_and_deleted(registry, monkeypatch):
    _install(monkeypatch, {URL: BAD})
    with pytest.raises(WeightsError, match="does not match|expected") as e:
        weights.resolve("fake-net", offline=False, progress=False)
    assert GOOD_SHA in str(e.value)
    assert _cache_files() == []


def test_size_mismatch_refused(registry, monkeypatch):
    _install(monkeypatch, {URL: GOOD + b"x"})
    with pytest.raises(WeightsError, match="bytes, expected"):
        weights.resolve("fake-net", offline=False, progress=False)
    assert _cache_files() == []


def test_mirror_used_after_corrupt_primary(monkeypatch):
    reg: Registry = Registry("weights")
    reg.register("fake-net", _spec(urls=(URL, MIRROR)))
    monkeypatch.setattr(weights, "WEIGHTS", reg)
    t = _install(monkeypatch, {URL: BAD, MIRROR: GOOD})
    r = weights.resolve("fake-net", offline=False, progress=False)
    assert r.verified and r.url == MIRROR and t.calls == [URL, MIRROR]


def test_cached_file_used_without_network(registry, monkeypatch):
    t = _install(monkeypatch, {})
    cached = weights.cache_path(registry.get("fake-net"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(GOOD)
    r = weights.resolve("fake-net", offline=False, progress=False)
    assert r.source == "cache" and r.verified and t.calls == []


def test_corrupted_cache_redownloaded(registry, monkeypatch):
    t = _install(monkeypatch, {URL: GOOD})
    cached = weights.cache_path(registry.get("fake-net"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(BAD)
    r = weights.resolve("fake-net", offline=False, progress=False)
    assert r.source == "download" and r.verified and cached.read_bytes() == GOOD and t.calls == [URL]


def test_corrupted_cache_refused_offline(registry, monkeypatch):
    t = _install(monkeypatch, {URL: GOOD})
    cached = weights.cache_path(registry.get("fake-net"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(BAD)
    with pytest.raises(WeightsError, match="refusing") as e:
        weights.resolve("fake-net", progress=False)  # LAFITEBENCH_OFFLINE=1 from conftest
    assert str(cached) in str(e.value) and GOOD_SHA in str(e.value)
    assert t.calls == []


def test_offline_missing_file_message(registry, monkeypatch, tmp_path):
    t = _install(monkeypatch, {URL: GOOD})
    monkeypatch.setenv("LAFITEBENCH_WEIGHTS", str(tmp_path / "wdir"))
    with pytest.raises(WeightsError, match=r"LAFITEBENCH_WEIGHTS=.*wdir is not a folder"):
        weights.resolve("fake-net", offline=True)  # a folder that does not exist is reported
    (tmp_path / "wdir").mkdir()
    with pytest.raises(WeightsError) as e:
        weights.resolve("fake-net", offline=True)
    msg = str(e.value)
    for needle in ("fake-weights.pth", GOOD_SHA, URL, "weights=PATH", str(tmp_path / "wdir" / "fake-weights.pth"),
                   str(weights.cache_path(registry.get("fake-net"))), "offline"):
        assert needle in msg, needle
    assert t.calls == []


def test_network_error_is_weights_error(registry, monkeypatch):
    _install(monkeypatch, {URL: urllib.error.URLError("no route to host")})
    with pytest.raises(WeightsError, match="no route to host") as e:
        weights.resolve("fake-net", offline=False, progress=False)
    assert GOOD_SHA in str(e.value) and "LAFITEBENCH_WEIGHTS" in str(e.value)
    assert _cache_files() == []


def test_explicit_path_and_wrong_hash(registry, tmp_path):
    good = tmp_path / "mine.pth"
    good.write_bytes(GOOD)
    r = weights.resolve("fake-net", explicit=good)
    assert r.source == "explicit" and r.verified and r.path == good and r.name == "fake-net"
    bad = tmp_path / "other.pth"
    bad.write_bytes(BAD)
    with pytest.raises(WeightsError, match="refusing weights file") as e:
        weights.resolve("fake-net", explicit=bad)
    assert str(bad) in str(e.value) and GOOD_SHA in str(e.value)
    with pytest.raises(WeightsError, match="does not exist"):
        weights.resolve("fake-net", explicit=tmp_path / "missing.pth")


def test_env_folder_lookup(registry, monkeypatch, tmp_path):
    t = _install(monkeypatch, {})
    (tmp_path / "fake-weights.pth").write_bytes(GOOD)
    monkeypatch.setenv("LAFITEBENCH_WEIGHTS", str(tmp_path))
    r = weights.resolve("fake-net")
    assert r.source == "env" and r.verified and r.path == tmp_path / "fake-weights.pth" and t.calls == []
    (tmp_path / "fake-weights.pth").write_bytes(BAD)
    with pytest.raises(WeightsError, match="refusing"):
        weights.resolve("fake-net")


def test_alternative_accepted_and_flagged(monkeypatch, tmp_path):
    reg: Registry = Registry("weights")
    reg.register("fake-net", _spec(has_classifier=True, alternatives=("fake-net-lite",)))
    reg.register("fake-net-lite", _spec(name="fake-net-lite", filename="lite.pth", urls=(),
                                        sha256=hashlib.sha256(BAD).hexdigest(), size=None, has_classifier=False))
    monkeypatch.setattr(weights, "WEIGHTS", reg)
    lite = tmp_path / "lite.pth"
    lite.write_bytes(BAD)
    r = weights.resolve("fake-net", explicit=lite)
    assert r.name == "fake-net-lite" and r.requested == "fake-net" and r.verified and r.has_classifier is False
    monkeypatch.setenv("LAFITEBENCH_WEIGHTS", str(tmp_path))
    r = weights.resolve("fake-net")
    assert r.source == "env" and r.name == "fake-net-lite" and r.has_classifier is False


def test_prefix_only_hash(monkeypatch):
    reg: Registry = Registry("weights")
    reg.register("fake-net", _spec(sha256=None, sha256_prefix=GOOD_SHA[:8], size=None))
    monkeypatch.setattr(weights, "WEIGHTS", reg)
    _install(monkeypatch, {URL: GOOD})
    r = weights.resolve("fake-net", offline=False, progress=False)
    assert r.verified and r.verification == "sha256-prefix"
    assert r.provenance()["verification"] == "sha256-prefix"


def test_unknown_hash_recorded_unverified(monkeypatch):
    reg: Registry = Registry("weights")
    reg.register("fake-net", _spec(sha256=None, size=None))
    monkeypatch.setattr(weights, "WEIGHTS", reg)
    _install(monkeypatch, {URL: BAD})
    r = weights.resolve("fake-net", offline=False, progress=False)
    assert r.source == "download" and not r.verified and r.sha256 == hashlib.sha256(BAD).hexdigest()
    r2 = weights.resolve("fake-net")  # now cached; offline is fine
    assert r2.source == "cache" and r2.sha256 == r.sha256 and not r2.verified


def test_local_path_passes_through(registry, tmp_path):
    f = tmp_path / "some_clip.pt"
    f.write_bytes(BAD)
    r = weights.resolve(str(f))
    assert r.source == "path" and not r.verified and r.sha256 == hashlib.sha256(BAD).hexdigest()
    g = tmp_path / "renamed.bin"
    g.write_bytes(GOOD)
    r = weights.resolve(g)
    assert r.source == "path" and r.verified and r.name == "fake-net"  # recognised by hash
    with pytest.raises(WeightsError, match="does not exist"):
        weights.resolve(str(tmp_path / "nope.pt"))


def test_registered_name_present_in_working_dir(monkeypatch, tmp_path):
    reg: Registry = Registry("weights")
    reg.register("yolo-fake.pt", _spec(name="yolo-fake.pt", filename="yolo-fake.pt", sha256=None, size=None))
    monkeypatch.setattr(weights, "WEIGHTS", reg)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolo-fake.pt").write_bytes(BAD)
    r = weights.resolve("yolo-fake.pt")
    assert r.source == "path" and r.name == "yolo-fake.pt" and not r.verified


def test_folder_hash(tmp_path):
    d = tmp_path / "exported_model"
    (d / "sub").mkdir(parents=True)
    (d / "model.xml").write_bytes(b"<xml/>")
    (d / "sub" / "model.bin").write_bytes(b"\x00\x01")
    h1 = weights.sha256_tree(d)
    expected = hashlib.sha256(
        b"model.xml\0" + hashlib.sha256(b"<xml/>").hexdigest().encode() + b"\n"
        + b"sub/model.bin\0" + hashlib.sha256(b"\x00\x01").hexdigest().encode() + b"\n"
    ).hexdigest()
    assert h1 == expected
    r = weights.resolve(d)
    assert r.source == "path" and r.sha256 == h1 and not r.verified
    (d / "sub" / "model.bin").write_bytes(b"\x00\x02")
    assert weights.sha256_tree(d) != h1


def test_unknown_name_suggests(registry):
    with pytest.raises(WeightsError, match="Did you mean 'fake-net'"):
        weights.resolve("fake-nett")


def test_registered_names_and_offline_real_specs():
    assert "inception-2015-12-05" in weights.WEIGHTS and "yolov8n.pt" in weights.WEIGHTS
    inc = weights.WEIGHTS.get("inception-2015-12-05")
    assert inc.sha256.startswith(inc.sha256_prefix) and inc.filename.endswith(f"-{inc.sha256_prefix}.pth")
    assert inc.has_classifier is True
    assert weights.WEIGHTS.get("inception-2015-12-05-pool3").has_classifier is False
    with pytest.raises(WeightsError, match=inc.sha256):
        weights.resolve("inception-2015-12-05")  # offline, nothing local
    y = weights.WEIGHTS.get("yolov8m.pt")
    assert y.urls == (f"https://github.com/ultralytics/assets/releases/download/"
                      f"{weights.ULTRALYTICS_ASSETS_RELEASE}/yolov8m.pt",)
    with pytest.raises(WeightsError, match="yolov8m.pt"):
        weights.resolve("yolov8m.pt")


def test_ultralytics_release_tag_matches_installed_package():
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    src = (Path(spec.origin).parent / "utils" / "downloads.py").read_text()
    m = re.search(r"def attempt_download_asset\(.*?release: str = \"([^\"]+)\"", src, re.S)
    assert m and m.group(1) == weights.ULTRALYTICS_ASSETS_RELEASE


def test_clip_spec_from_open_clip():
    s = weights.get_spec("clip:ViT-B-32/openai")
    assert s.filename == "ViT-B-32.pt" and s.sha256 and s.sha256 in s.urls[0]
    assert s.meta["open_clip_model"] == "ViT-B-32" and s.meta["quick_gelu"] is True
    assert weights.get_spec("clip:vit-b-32/OPENAI").name == "clip:ViT-B-32/openai"
    hub = weights.get_spec("clip:ViT-B-32/laion2b_s34b_b79k")
    assert hub.sha256 is None and hub.urls[0].startswith("https://huggingface.co/laion/")
    assert "--" in hub.filename  # hub file names are made unique per model
    with pytest.raises(WeightsError, match="Did you mean"):
        weights.get_spec("clip:ViT-B-32/openia")
    with pytest.raises(WeightsError, match="not of the form"):
        weights.get_spec("clip:ViT-B-32")
    with pytest.raises(WeightsError, match="ViT-B-32.pt"):
        weights.resolve("clip:ViT-B-32/openai")  # offline: names the file, hash and URL


@pytest.mark.real_assets
def test_real_shared_inception_file(shared_dir, monkeypatch):
    f = shared_dir / "assets" / "inception" / "inception-2015-12-05-pool3-fidelity-layout.pth"
    r = weights.resolve("inception-2015-12-05", explicit=f)
    assert r.verified and r.source == "explicit" and r.has_classifier is False
    assert r.name == "inception-2015-12-05-pool3"
    assert r.sha256 == "e4b780a8d976151f554655c8964b8942c6873a8003f3799eb93719599463e427"
    monkeypatch.setenv("LAFITEBENCH_WEIGHTS", str(f.parent))
    r = weights.resolve("inception-2015-12-05")
    assert r.source == "env" and r.has_classifier is False


@pytest.mark.real_assets
def test_real_shared_yolo_folder_passes_through(shared_dir):
    d = shared_dir / "assets" / "yolo" / "yolov8n_int8_openvino_model"
    r = weights.resolve(d)
    assert r.source == "path" and r.path == d and len(r.sha256) == 64 and not r.verified
