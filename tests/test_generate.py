"""``lafitebench generate`` and caption splits: deterministic splits, per-sample seeds (batch 1 vs 7
give identical files), atomic resumable writes (SIGKILL then resume), refusal of another run's
folder, torchrun with 2 gloo processes writing the files of one process, and a manifest that
``eval`` reads as it is. The model is the official-format fixture converted to the native format;
the text encoder is a small random open_clip model with the fixture's 64-d features."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers.tiny_clip import CLIP_NAME, tiny_clip
from lafitebench.cli import app
from lafitebench.data.splits import caption_file_split, get_split
from lafitebench.errors import InputError

runner = CliRunner()
DRIVER = Path(__file__).parent / "helpers" / "gen_driver.py"
CAPTIONS = [f"a photo of {w}" for w in ("a cat", "two dogs", "a red bus", "a bowl of fruit", "a snowy street",
                                         "a kite in the sky", "a plate of pasta", "a man on a horse", "a boat",
                                         "a giraffe", "a clock tower", "a pizza")]


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_dir):
    from lafitebench.assets import zoo
    from lafitebench.checkpoints import convert as convert_mod

    root = tmp_path_factory.mktemp("gen")
    cfg, clip_weights = tiny_clip(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixture's CLIP backbone is unknown
        model = convert_mod.convert(shared_dir / "fixtures/lafite_official/lafite_tiny64.pkl", root / "tiny.safetensors",
                            variant="g")
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(CAPTIONS) + "\n")
    return {"root": root, "clip_config": cfg, "clip_weights": clip_weights, "model": model, "prompts": prompts}


def _args(env, out: Path, *extra: str) -> list[str]:
    return ["generate", "--model", str(env["model"]), "--split", str(env["prompts"]), "--out", str(out),
            "--clip-model", CLIP_NAME, "--clip-weights", str(env["clip_weights"]), "--device", "cpu", *extra]


def _run(args: list[str]):
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}


# ------------------------------------------------------------------------------------------ splits

def test_splits_are_reproducible(shared_dir):
    a, b = get_split("coco-mini"), get_split("coco-mini")
    assert len(a) == 100 and a.hash == b.hash and a.rows == b.rows
    assert get_split("coco-mini", seed=1).hash != a.hash
    five = get_split("coco-val2017-5k", captions_file=shared_dir / "assets/coco/captions_val2017.json")
    assert len(five) == 5000 and five.hash == get_split(
        "coco-val2017-5k", captions_file=shared_dir / "assets/coco/captions_val2017.json").hash
    thirty = get_split("coco-val-30k", captions_file=shared_dir / "assets/coco/captions_val2017.json")
    assert len(thirty) == 30000 and thirty.rows[5000].caption == thirty.rows[0].caption  # cycles over the images
    assert thirty.info["cycled"]
    soa = get_split("soa", data_root=shared_dir / "assets/soa_captions")
    assert soa.rows[0].soa_class and "label_00_person" in soa.info["absent_classes"]
    with pytest.raises(InputError, match="Did you mean 'coco-mini'"):
        get_split("coco-mni")
    with pytest.raises(InputError, match="larger than split"):
        a.head(101)
    assert len(a.head(150, cycle=True)) == 150 and a.head(10).hash != a.hash


def test_caption_files(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"caption": "a cat", "seed": 5, "soa_class": "cat"}\n{"caption": "a dog"}\n')
    s = caption_file_split(tmp_path / "c.jsonl", seed=1)
    assert [(r.caption, r.seed, r.soa_class) for r in s.rows] == [("a cat", 5, "label_15_cat"), ("a dog", 1, None)]
    (tmp_path / "c.csv").write_text("caption,seed\na cat,\n,3\n")
    with pytest.raises(InputError, match="line 3: no caption"):
        caption_file_split(tmp_path / "c.csv")
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(InputError, match="holds no captions"):
        caption_file_split(tmp_path / "e.txt")


# ---------------------------------------------------------------------------------------- generate

@pytest.mark.real_assets
def test_batch_size_does_not_change_the_files(env, tmp_path):
    _run(_args(env, tmp_path / "b7", "--batch-size", "7", "--num", "7"))
    _run(_args(env, tmp_path / "b1", "--batch-size", "1", "--num", "7"))
    a, b = _files(tmp_path / "b7"), _files(tmp_path / "b1")
    assert len(a) == 7 and a == b
    rows = [json.loads(line) for line in (tmp_path / "b7" / "manifest.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == sorted(a) and rows[2]["caption"] == CAPTIONS[2]
    assert rows[0]["split_hash"] and rows[0]["checkpoint_sha256"] and rows[0]["seed"] == 0
    from lafitebench.data.sources.folder import sample_set

    s = sample_set(tmp_path / "b7", resolution=64)  # eval reads the manifest as it is
    assert [it.caption for it in s.items] == CAPTIONS[:7]


@pytest.mark.real_assets
def test_finished_run_does_nothing_and_other_runs_are_refused(env, tmp_path):
    out = tmp_path / "o"
    _run(_args(env, out, "--num", "4"))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    r = _run(_args(env, out, "--num", "4"))
    assert "0 generated, 4 already there" in " ".join(r.output.split())
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".png"} == {
        k: v for k, v in before.items() if k.endswith(".png")}
    r = runner.invoke(app, _args(env, out, "--num", "4", "--seed", "9"), catch_exceptions=False)
    assert r.exit_code == 2 and "another run" in r.output and "--overwrite" in " ".join(r.output.split())
    _run(_args(env, out, "--num", "4", "--seed", "9", "--overwrite"))
    assert json.loads((out / "generate.json").read_text())["settings"]["seed"] == 9


def test_generate_bad_input_before_work(env, tmp_path):
    for extra, culprit in ((["--num", "50"], "--cycle"), (["--noise-mode", "loud"], "--noise-mode"),
                           (["--format", "gif"], "--format"), (["--device", "banana"], "--device")):
        r = runner.invoke(app, _args(env, tmp_path / "x", *extra), catch_exceptions=False)
        assert r.exit_code == 2 and culprit in " ".join(r.output.split()) and "Traceback" not in r.output, r.output
        assert not (tmp_path / "x").exists()
    r = runner.invoke(app, ["generate", "--model", str(env["model"]), "--split", str(env["prompts"]), "--out",
                            str(tmp_path / "y"), "--device", "cpu"], catch_exceptions=False)
    assert r.exit_code == 2 and "--clip-model" in " ".join(r.output.split())  # unknown backbone: say which flag


def test_generate_refuses_another_clip_backbone(env, tmp_path, monkeypatch):
    """A model recorded as ViT-B/16 with ViT-B/32 text features: refused naming both, before any work."""
    import lafitebench.jobs.generate as generate_job

    orig = generate_job.load_model

    def as_vitb16(*a, **k):
        m = orig(*a, **k)
        m.metadata["clip"] = {"name": "ViT-B/16", "open_clip_model": "ViT-B-16", "open_clip_pretrained": "openai",
                              "f_dim": 512}
        return m

    monkeypatch.setattr(generate_job, "load_model", as_vitb16)
    r = runner.invoke(app, ["generate", "--model", str(env["model"]), "--split", str(env["prompts"]), "--out",
                            str(tmp_path / "z"), "--clip-model", "ViT-B-32", "--device", "cpu"], catch_exceptions=False)
    flat = " ".join(r.output.split())
    assert r.exit_code == 2 and "ViT-B/16" in flat and "ViT-B-32" in flat, r.output
    assert not (tmp_path / "z").exists()


def _driver(env, tmp_path: Path, name: str, args: list[str], threads: int = 1, torchrun: int = 0):
    """Run generate in a fresh process (or ``torchrun`` processes) with ``threads`` intra-op threads each."""
    (tmp_path / f"{name}.json").write_text(json.dumps(args))
    cmd = [sys.executable, str(DRIVER)]
    if torchrun:
        cmd = [shutil.which("torchrun") or pytest.fail("torchrun not found"), "--standalone", "--nproc_per_node",
               str(torchrun), str(DRIVER)]
    return subprocess.run(cmd + [str(env["clip_config"]), str(tmp_path / f"{name}.json")], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def _pixels(out: Path):
    import numpy as np
    from PIL import Image

    return {p.name: np.asarray(Image.open(p), dtype=np.int16) for p in sorted(out.glob("*.png"))}


@pytest.mark.slow
@pytest.mark.real_assets
def test_resumes_after_sigkill(env, tmp_path):
    """Killed, then run again: the files of an uninterrupted run, bit for bit (every run with the
    same number of threads per process: what the README guarantees)."""
    out, full = tmp_path / "killed", tmp_path / "full"
    args = _args(env, out, "--batch-size", "1", "--num", "12")
    (tmp_path / "args.json").write_text(json.dumps(args))
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(env["clip_config"]), str(tmp_path / "args.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while len(list(out.glob("*.png"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("*.png")))
    assert 0 < done < 12, done
    r = _driver(env, tmp_path, "again", args)
    assert r.returncode == 0, r.stderr[-2000:]
    flat = " ".join((r.stdout + r.stderr).split())
    assert "already there" in flat and not flat.startswith("0 samples")
    assert _driver(env, tmp_path, "full", _args(env, full, "--num", "12")).returncode == 0
    assert _files(out) == _files(full) and len(_files(out)) == 12


@pytest.mark.slow
@pytest.mark.real_assets
def test_torchrun_two_processes_write_the_files_of_one(env, tmp_path):
    """What is guaranteed across process counts: with the same number of threads per process, the
    files of 2 torchrun processes are those of 1 process, bit for bit. A different thread count
    changes float32 summation order, which can move a pixel that sits at a rounding edge of the
    official quantisation by one level (and nothing more): checked against a 2-thread run."""
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    r = _driver(env, tmp_path, "one", _args(env, one, "--num", "6", "--batch-size", "2"))
    assert r.returncode == 0, r.stderr[-2000:]
    r = _driver(env, tmp_path, "two", _args(env, two, "--num", "6", "--batch-size", "2"), torchrun=2)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert _files(one) == _files(two) and len(_files(two)) == 6
    assert (one / "manifest.jsonl").read_text() == (two / "manifest.jsonl").read_text()
    r = _driver(env, tmp_path, "other", _args(env, other, "--num", "6", "--batch-size", "2"), threads=2)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _pixels(one), _pixels(other)
    assert a.keys() == b.keys()
    diff = [abs(a[k] - b[k]) for k in a]
    assert max(int(d.max()) for d in diff) <= 1
    assert sum(int((d > 0).sum()) for d in diff) <= 1e-3 * sum(d.size for d in diff)


@pytest.mark.slow
@pytest.mark.real_assets
def test_eval_model_stream_equals_the_written_folder(env, tmp_path):
    """``eval --model --stream`` (no files) gives the numbers of evaluating the written PNGs."""
    from lafitebench.encoders.inception import save_random_inception_weights

    from lafitebench.data.sources.coco import coco_mini

    inception = save_random_inception_weights(tmp_path / "inception.pth")
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, it in enumerate(coco_mini().items[:6]):
        shutil.copy(it.path, ref / f"{i}.jpg")
    base = ["eval", "--model", str(env["model"]), "--split", str(env["prompts"]), "--num", "8",
            "--text-clip-model", CLIP_NAME, "--text-clip-weights", str(env["clip_weights"]), "--reference",
            str(ref), "--resolution", "64", "--metrics", "is,fid,kid", "--isc-splits", "2",
            "--kid-subset-size", "4", "--inception-weights", str(inception), "--device", "cpu", "--json"]
    written = runner.invoke(app, base + ["--samples", str(tmp_path / "gen"), "--out", str(tmp_path / "o1")],
                            catch_exceptions=False)
    assert written.exit_code == 0, written.output
    assert len(list((tmp_path / "gen").glob("*.png"))) == 8 and (tmp_path / "gen" / "manifest.jsonl").is_file()
    streamed = runner.invoke(app, base + ["--stream", "--out", str(tmp_path / "o2")], catch_exceptions=False)
    assert streamed.exit_code == 0, streamed.output
    a = json.loads(written.stdout)["results"]
    b = json.loads(streamed.stdout)["results"]
    assert [r["metric_id"] for r in a] == [r["metric_id"] for r in b] == ["is8_2splits_shuffled", "fid8_blur0",
                                                                          "kid8_s4x100"]
    assert [r["value"] for r in a] == [r["value"] for r in b]
    assert json.loads(streamed.stdout)["provenance"]["inputs"]["samples"]["kind"] == "generated"
