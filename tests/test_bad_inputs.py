"""Bad and hostile inputs, organised by class: every one ends in exit code 2, one message that
names the culprit, no Python traceback, and no partial files left behind.

Each case builds its broken input in a temporary folder and runs the CLI as a user would.
"""
from __future__ import annotations

import io
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lafitebench.cli import app
from lafitebench.errors import CheckpointError, InputError, LafitebenchError

runner = CliRunner()


# ------------------------------------------------------------------------------------------ helpers

def _png(path: Path, seed: int = 0, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    out = {}
    for name in ("samples", "reference"):
        d = root / name
        d.mkdir()
        for i in range(4):
            _png(d / f"{i}.png", seed=i + (10 if name == "reference" else 0))
        out[name] = d
    return out


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    from lafitebench.encoders.inception import save_random_inception_weights

    return save_random_inception_weights(tmp_path_factory.mktemp("w") / "random-inception.pth")


def _eval_args(folders, inception, *extra: str) -> list[str]:
    return ["eval", "--samples", str(folders["samples"]), "--reference", str(folders["reference"]),
            "--resolution", "64", "--inception-weights", str(inception), "--metrics", "fid", *extra]


def _fails(args: list[str], culprit: str, *, no_files_in: Path | None = None, forbidden: tuple[str, ...] = ()) -> str:
    """Run the CLI; assert exit 2, no traceback, the culprit named, nothing written in ``no_files_in``."""
    r = runner.invoke(app, args, catch_exceptions=False)
    out = r.output
    assert r.exit_code == 2, f"exit {r.exit_code}: {out}"
    assert "Traceback" not in out, out
    flat = " ".join(out.split())
    assert culprit in flat, f"{culprit!r} not named in: {out}"
    for word in ("weights_only=False", *forbidden):
        assert word not in flat, out
    if no_files_in is not None and no_files_in.exists():
        left = [p.name for p in no_files_in.rglob("*")]
        assert not left, f"left behind: {left}"
    _no_partial_files(Path(os.environ["LAFITEBENCH_CACHE"]), *([no_files_in] if no_files_in else []))
    return flat


def _no_partial_files(*folders: Path) -> None:
    """No temporary or half-written file of our atomic writers anywhere under ``folders``, and every
    reference-statistics cache entry there is complete (it loads)."""
    for folder in folders:
        if not folder.exists():
            continue
        partial = [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".part"))]
        assert not partial, f"partial files left: {partial}"
        for entry in folder.rglob("*.npz"):
            with np.load(entry) as z:
                assert len(z.files) > 0, entry


# ------------------------------------------------------------------------- 1. text that is not UTF-8

LATIN1 = "café".encode("latin-1")


def _manifest_jsonl(d: Path) -> None:
    (d / "manifest.jsonl").write_bytes(b'{"file": "0.png", "caption": "' + LATIN1 + b'"}\n')


def _manifest_csv(d: Path) -> None:
    (d / "manifest.csv").write_bytes(b"file,caption\n0.png," + LATIN1 + b"\n")


@pytest.mark.parametrize("write, name", [(_manifest_jsonl, "manifest.jsonl"), (_manifest_csv, "manifest.csv")])
def test_manifest_not_utf8(tmp_path, folders, inception, write, name):
    d = tmp_path / "s"
    d.mkdir()
    _png(d / "0.png")
    write(d)
    flat = _fails(["eval", "--samples", str(d), "--reference", "none", "--metrics", "is", "--inception-weights",
                   str(inception), "--out", str(tmp_path / "o")], name, no_files_in=tmp_path / "o")
    assert "not UTF-8" in flat and "offset" in flat


def test_captions_txt_not_utf8(tmp_path, folders, inception):
    cap = tmp_path / "captions.txt"
    cap.write_bytes(b"\n".join([LATIN1] * 4))
    _fails(_eval_args(folders, inception, "--captions", str(cap), "--out", str(tmp_path / "o")), "captions.txt",
           no_files_in=tmp_path / "o")


def test_coco_json_not_utf8(tmp_path, folders, inception):
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    _png(root / "val2017" / "000000000001.jpg")
    (root / "annotations" / "captions_val2017.json").write_bytes(b'{"images": [], "x": "' + LATIN1 + b'"}')
    _fails(["eval", "--samples", str(folders["samples"]), "--reference", "coco", "--data-root", str(root),
            "--inception-weights", str(inception), "--out", str(tmp_path / "o")], "captions_val2017.json",
           no_files_in=tmp_path / "o")


def test_zoo_manifest_not_utf8(tmp_path, monkeypatch):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "m.toml").write_bytes(b'id = "m"\ntitle = "' + LATIN1 + b'"\n')
    monkeypatch.setenv("LAFITEBENCH_ZOO", str(zoo))
    from lafitebench.assets import zoo as zoo_mod

    monkeypatch.setattr(zoo_mod, "MODELS", zoo_mod.ModelRegistry())
    _fails(["zoo", "list"], "m.toml")


def test_results_json_not_utf8(tmp_path):
    f = tmp_path / "results.json"
    f.write_bytes(b'{"results": [], "x": "' + LATIN1 + b'"}')
    _fails(["report", str(f)], "results.json")


# ----------------------------------------------------------- 2. malformed safetensors headers (native)

def _safetensors(path: Path, header: dict, data: bytes = b"") -> Path:
    header = {"__metadata__": {"lafitebench_config": "{}"}, **header}  # looks native: the header is read
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize("header, why", [
    ({"w": [1, 2]}, "not an object"),
    ({"w": {"dtype": "F32", "shape": [1]}}, "data_offsets"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}}, "data_offsets"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, "data_offsets"),
    ({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}}, "shape"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": {"lafitebench_config": 1}},
     "__metadata__"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "4 bytes for F32 [2]"),
])
def test_malformed_safetensors_header(tmp_path, header, why):
    path = _safetensors(tmp_path / "m.safetensors", header, b"\0" * 4)
    flat = _fails(_generate_args(tmp_path, path), "m.safetensors", no_files_in=tmp_path / "o")
    assert why in flat


def _generate_args(tmp_path: Path, model: Path | str, *extra: str) -> list[str]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\n")
    return ["generate", "--model", str(model), "--split", str(prompts), "--out", str(tmp_path / "o"), "--device", "cpu",
            *extra]


# --------------------------------------------------------------- 3. pickles nested too deeply

def _deep_pickle(depth: int = 200_000) -> bytes:
    # PROTO 2, then `depth` EMPTY_LIST + APPENDS-free nesting via MARK/LIST would need memo;
    # the simplest deep structure: nested tuples built with MARK ... TUPLE opcodes.
    return b"\x80\x02" + b"(" * depth + b"t" * depth + b"."


def test_deep_pickle_official_snapshot(tmp_path):
    f = tmp_path / "deep.pkl"
    f.write_bytes(_deep_pickle())
    _fails(["zoo", "convert", str(f), str(tmp_path / "out.safetensors")], "deep.pkl",
           no_files_in=tmp_path / "none")
    assert not (tmp_path / "out.safetensors").exists()


def test_deep_pickle_inception_weights(tmp_path, folders):
    f = tmp_path / "deep.pth"
    f.write_bytes(_deep_pickle())
    _fails(_eval_args(folders, f, "--out", str(tmp_path / "o")), "deep.pth", no_files_in=tmp_path / "o")


def test_deep_pickle_soa_captions(tmp_path):
    lists = tmp_path / "soa"
    lists.mkdir()
    (lists / "label_15_cat.pkl").write_bytes(_deep_pickle())
    _fails(["generate", "--model", "lafite-coco-g", "--split", "soa", "--data-root", str(lists), "--out",
            str(tmp_path / "o")], "label_15_cat.pkl", no_files_in=tmp_path / "o")


def test_unsafe_weights_never_suggest_weights_only_false(tmp_path, folders):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    f = tmp_path / "evil.pth"
    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf)
    f.write_bytes(buf.getvalue())
    _fails(_eval_args(folders, f, "--out", str(tmp_path / "o")), "evil.pth", no_files_in=tmp_path / "o")


# ------------------------------------------------------------------------------ 4. devices

@pytest.mark.parametrize("device", ["banana", "mps", "meta", "cuda:abc", *(["cuda"] if not torch.cuda.is_available() else [])])
def test_device_not_here(tmp_path, folders, inception, device, monkeypatch):
    from lafitebench.encoders import inception as inc

    def boom(*a, **k):
        raise AssertionError("a network was loaded before --device was checked")

    monkeypatch.setattr(inc, "load_inception", boom)
    _fails(_eval_args(folders, inception, "--device", device, "--out", str(tmp_path / "o")), "--device",
           no_files_in=tmp_path / "o")


# ------------------------------------------------------------------------------ 5. detector files

def _soa_samples(root: Path) -> Path:
    d = root / "soa"
    d.mkdir()
    for i in range(2):
        _png(d / f"{i}.png", seed=i)
    (d / "manifest.jsonl").write_text("".join(json.dumps({"file": f"{i}.png", "soa_class": "label_15_cat"}) + "\n"
                                              for i in range(2)))
    return d


@pytest.mark.parametrize("name, content, culprit", [
    ("det.pth", b"PK\x03\x04junk", "unsupported format"),
    ("detector", b"\x00\x01", "unsupported format"),
    ("det.pt", b"not a checkpoint at all", "refusing detector file"),
    *([("det.onnx", b"onnx", "onnxruntime")] if __import__("importlib").util.find_spec("onnxruntime") is None else []),
])
def test_detector_files(tmp_path, name, content, culprit):
    f = tmp_path / name
    f.write_bytes(content)
    d = _soa_samples(tmp_path)
    flat = _fails(["eval", "--samples", str(d), "--reference", "none", "--metrics", "soa", "--detector", str(f),
                   "--out", str(tmp_path / "o")], culprit, no_files_in=tmp_path / "o")
    assert name in flat


# ------------------------------------------------------------------------- 6. output folders

def test_out_is_a_file(tmp_path, folders, inception):
    f = tmp_path / "taken"
    f.write_text("x")
    _fails(_eval_args(folders, inception, "--out", str(f)), "taken")
    _fails(_eval_args(folders, inception, "--out", str(f / "sub")), "is a file")


def test_out_holds_another_run(tmp_path, folders, inception):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    _fails(_eval_args(folders, inception, "--out", str(out)), "--overwrite")
    assert (out / "results.json").read_text() == "{}"


# ------------------------------------------------------------------------- 7. report inputs

@pytest.mark.parametrize("payload, culprit", [
    ([1, 2], "no 'results' list"),
    ({"provenance": {}}, "no 'results' list"),
    ({"results": [1]}, "results[0]"),
    ({"results": [{"metric": "FID-0", "value": "x"}]}, "results[0].value"),
    ({"results": [{"metric": "FID-0", "value": 1.0}], "provenance": []}, "provenance"),
])
def test_report_on_wrong_shape(tmp_path, payload, culprit):
    f = tmp_path / "results.json"
    f.write_text(json.dumps(payload))
    _fails(["report", str(f), "--out", str(tmp_path / "o")], culprit, no_files_in=tmp_path / "o")


def test_report_tables():
    for table in ("lang_free", "zero_shot", "supervised", "supervised_other"):
        r = runner.invoke(app, ["report", "--table", table], catch_exceptions=False)
        assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    _fails(["report", "--table", "nope"], "nope")


# ---------------------------------------------------------------- 8. errors inside DataLoader workers

def test_worker_error_has_no_remote_traceback(tmp_path, inception, monkeypatch):
    """An image that passes the header check but fails to decode inside a DataLoader worker."""
    from lafitebench.data import images

    d = tmp_path / "s"
    d.mkdir()
    for i in range(4):
        _png(d / f"{i}.png", seed=i)
    real = images.load_image_with_mode

    def load(path, *a, **k):  # inherited by the forked worker
        if Path(path).name == "3.png":
            raise InputError(f"cannot decode image {path}: broken scan data")
        return real(path, *a, **k)

    monkeypatch.setattr(images, "load_image_with_mode", load)
    flat = _fails(["eval", "--samples", str(d), "--reference", str(d), "--resolution", "64", "--metrics", "fid",
                   "--inception-weights", str(inception), "--num-workers", "1", "--no-cache",
                   "--out", str(tmp_path / "o")],
                  "3.png", no_files_in=tmp_path / "o", forbidden=("Original Traceback", "worker process"))
    assert "broken scan data" in flat


# ------------------------------------------------------------------------------ 9. manifests

@pytest.mark.parametrize("entry, culprit", [
    ("0\u0000.png", "NUL"),
    ("/etc/hostname", "outside the manifest's folder"),
    ("../outside.png", "outside the manifest's folder"),
])
def test_manifest_paths(tmp_path, inception, entry, culprit):
    d = tmp_path / "s"
    d.mkdir()
    _png(d / "0.png")
    _png(tmp_path / "outside.png")
    (d / "manifest.jsonl").write_text(json.dumps({"file": entry}) + "\n")
    _fails(["eval", "--samples", str(d), "--reference", "none", "--metrics", "is", "--inception-weights",
            str(inception), "--out", str(tmp_path / "o")], culprit, no_files_in=tmp_path / "o")


def test_manifest_outside_paths_allowed_explicitly(tmp_path):
    from lafitebench.data.sources.folder import sample_set

    d = tmp_path / "s"
    d.mkdir()
    _png(tmp_path / "outside.png")
    (d / "manifest.jsonl").write_text(json.dumps({"file": "../outside.png"}) + "\n")
    assert len(sample_set(d, allow_outside_paths=True).items) == 1


# --------------------------------------------------------------- 10. options checked before work

@pytest.mark.parametrize("extra, culprit", [
    (["--seed", "-1"], "--seed"),
    (["--blur-preset", "gauss"], "--blur-preset"),
    (["--fid-blur", "0,x"], "--fid-blur"),
    (["--kid-subset-size", "1"], "--kid-subset-size"),
    (["--metrics", "fdi"], "fid"),
    (["--isc-order", "random"], "--isc-order"),
    (["--detector-conf", "1"], "--detector-conf"),
    (["--protocol", "stylegan"], "--protocol"),
])
def test_options_before_work(tmp_path, folders, inception, monkeypatch, extra, culprit):
    from lafitebench.encoders.inception import InceptionExtractor

    def boom(self, images):
        raise AssertionError("Inception ran before the options were checked")

    monkeypatch.setattr(InceptionExtractor, "__call__", boom)
    _fails(_eval_args(folders, inception, *extra, "--out", str(tmp_path / "o")), culprit, no_files_in=tmp_path / "o")


def test_zoo_manifest_bad_values(tmp_path, monkeypatch):
    from lafitebench.assets import zoo as zoo_mod

    src = zoo_mod.zoo_dir() / "lafite-coco-g.toml"
    z = tmp_path / "zoo"
    z.mkdir()
    text = src.read_text(encoding="utf-8")
    (z / "lafite-coco-g.toml").write_text(text.replace("[source]", "[source]\nsize_bytes = -5", 1), encoding="utf-8")
    monkeypatch.setenv("LAFITEBENCH_ZOO", str(z))
    monkeypatch.setattr(zoo_mod, "MODELS", zoo_mod.ModelRegistry())
    _fails(["zoo", "show", "lafite-coco-g"], "size_bytes")


def test_zoo_convert_refuses_to_overwrite(tmp_path, shared_dir):
    src = shared_dir / "fixtures/lafite_official/lafite_tiny64.pkl"
    _fails(["zoo", "convert", str(src), str(src)], "input snapshot itself")  # never its own input
    existing = tmp_path / "m.safetensors"
    existing.write_bytes(b"keep me")
    _fails(["zoo", "convert", str(src), str(existing), "--variant", "g"], "--overwrite")
    assert existing.read_bytes() == b"keep me"


@pytest.mark.parametrize("error", ["InputError", "CheckpointError", "WeightsError", "LafitebenchError"])
def test_every_lafitebench_error_ends_in_one_message(error, monkeypatch):
    """The CLI boundary: any LafitebenchError raised inside a command is one message and exit 2
    (never a traceback); anything else is a bug: its traceback is shown and the exit code is 1."""
    import lafitebench.cli.report as report_cli
    import lafitebench.errors as errors

    cls = getattr(errors, error)

    def raise_it(*a, **k):
        raise cls("the culprit: results.json is broken")

    monkeypatch.setattr(report_cli, "run_report", raise_it)
    _fails(["report", "--table", "lang_free"], "the culprit: results.json is broken")
    monkeypatch.setattr(report_cli, "run_report", lambda *a, **k: 1 / 0)
    r = runner.invoke(app, ["report", "--table", "lang_free"], catch_exceptions=False)
    assert r.exit_code == 1 and "ZeroDivisionError" in r.output and "This is a bug in lafitebench" in r.output


# ------------------------------------------------------------------ 11. more of the same classes

def test_report_out_is_a_file(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    _fails(["report", "--table", "lang_free", "--out", str(f)], "taken")
    assert f.read_text() == "x"


def test_eval_seed_beyond_numpy_range(tmp_path, folders, inception):
    _fails(_eval_args(folders, inception, "--seed", str(2**33), "--out", str(tmp_path / "o")), "--seed",
           no_files_in=tmp_path / "o")


def test_nul_in_a_command_line_path(tmp_path):
    _fails(["report", "res\x00ults.json"], "null byte")


def test_native_config_of_the_wrong_types(tmp_path):
    cfg = {"format": "lafitebench-native", "format_version": 1, "variant": "g", "resolution": 8,
           "clip": {"name": "x"}, "provenance": {"converter": "t"},
           "networks": {"G_ema": {"class": "Generator", "init_kwargs": "z_dim=8"}}}
    path = _safetensors(tmp_path / "m.safetensors", {"__metadata__": {"lafitebench_config": json.dumps(cfg)},
                                                      "G_ema.w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                        b"\0" * 4)
    _fails(_generate_args(tmp_path, path), "init_kwargs", no_files_in=tmp_path / "o")


def test_detector_that_is_a_plain_state_dict(tmp_path):
    f = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, f)
    d = _soa_samples(tmp_path)
    _fails(["eval", "--samples", str(d), "--reference", "none", "--metrics", "soa", "--detector", str(f),
            "--out", str(tmp_path / "o")], "weights.pt", no_files_in=tmp_path / "o")


# ------------------------------------------------- 12. interrupted or failing mid-run, through the CLI

def _cache() -> Path:
    return Path(os.environ["LAFITEBENCH_CACHE"])


def _entries() -> list[Path]:
    return sorted(_cache().rglob("*.npz"))


def test_eval_interrupted_while_writing_the_cache(tmp_path, folders, inception, monkeypatch):
    """Ctrl-C in the middle of writing a reference-statistics entry: no entry (not a half one),
    no temporary file, no result; the next run computes and stores it."""
    import lafitebench.metrics.cache as cache

    real = np.savez

    def half_then_interrupt(f, **arrays):
        f.write(b"PK\x03\x04" + b"\0" * 64)  # the start of a zip, as a killed writer leaves it
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "savez", half_then_interrupt)
    out = tmp_path / "o"
    r = runner.invoke(app, _eval_args(folders, inception, "--out", str(out)))
    assert r.exit_code == 130 and "interrupted" in r.output
    assert not out.exists() and _entries() == []
    _no_partial_files(_cache(), tmp_path)
    monkeypatch.setattr(cache.np, "savez", real)
    r = runner.invoke(app, _eval_args(folders, inception, "--out", str(out)))
    assert r.exit_code == 0, r.output
    assert len(_entries()) == 1 and (out / "results.json").is_file()
    _no_partial_files(_cache(), tmp_path)


def test_eval_interrupted_in_the_samples_pass_keeps_the_reference(tmp_path, folders, inception, monkeypatch):
    """Ctrl-C after the reference statistics were stored: they are kept (complete) and reused by the
    next run; nothing of the result is written."""
    from lafitebench.encoders.inception import InceptionExtractor

    real = InceptionExtractor.__call__
    calls = {"n": 0}

    def interrupt_on_samples(self, images, *a, **k):
        calls["n"] += 1
        if calls["n"] > 1:  # the reference's 4 images are one batch; the samples come next
            raise KeyboardInterrupt
        return real(self, images, *a, **k)

    monkeypatch.setattr(InceptionExtractor, "__call__", interrupt_on_samples)
    out = tmp_path / "o"
    r = runner.invoke(app, _eval_args(folders, inception, "--out", str(out)))
    assert r.exit_code == 130 and "interrupted" in r.output
    assert not out.exists() and len(_entries()) == 1
    _no_partial_files(_cache(), tmp_path)
    monkeypatch.setattr(InceptionExtractor, "__call__", real)
    r = runner.invoke(app, _eval_args(folders, inception, "--out", str(out), "--json"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["provenance"]["cache"]["hits"] == [0]


def test_eval_failing_to_write_one_result_file_leaves_no_partial_set(tmp_path, folders, inception, monkeypatch):
    """The result files are one set: when the third file cannot be written, none of the set is in
    --out (the numbers go to the fallback folder the warning names)."""
    import lafitebench.io.files as files

    real = files.chmod_default
    count = {"n": 0}

    def third_fails(path):  # called after each file of the set is written
        count["n"] += 1
        if count["n"] == 3:
            raise OSError(28, "No space left on device", str(path))
        return real(path)

    monkeypatch.setattr(files, "chmod_default", third_fails)
    out = tmp_path / "o"
    r = runner.invoke(app, _eval_args(folders, inception, "--out", str(out)))
    assert r.exit_code == 2 and "saved them to" in " ".join(r.output.split())
    assert not out.exists() or not any(out.iterdir())
    _no_partial_files(_cache(), tmp_path)
