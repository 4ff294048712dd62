"""``lafitebench eval --dataset NAME``: protocols, the zoo sweep with the paper's table beside ours,
resume of an interrupted sweep, and the errors before work (missing data, missing weights).

A test zoo (``LAFITEBENCH_ZOO``) lists the official-format fixture, converted, as a COCO model; the
text encoder is the small random open_clip; Inception is replaced by the small random extractor
(its numbers are not the point here: the table, files and resume are)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.tiny_clip import CLIP_NAME, tiny_clip
from helpers.tiny_extractor import TinyExtractor
from lafitebench.cli import app

pytestmark = pytest.mark.real_assets
runner = CliRunner()
PAPER = {"IS": 27.2, "FID-0": 18.04, "FID-1": 17.8}


def _manifest(mid: str, datasets: str) -> str:
    metrics = "\n".join(f'"{k}" = {v}' for k, v in PAPER.items())
    return f'''schema_version = 1
id = "{mid}"
title = "test model"
variant = "g"
training_data = "none"
resolution = 64
license = "test"
datasets = {datasets}
[clip]
backbone = "tiny"
open_clip_model = "{CLIP_NAME}"
open_clip_pretrained = "none"
f_dim = 64
[source]
kind = "http"
url = "https://example.org/{mid}.pkl"
filename = "{mid}.pkl"
listed_at = "https://example.org"
hash_status = "test"
[[paper]]
table = "language-free"
row = "Lafite-G"
verified = true
[paper.metrics]
{metrics}
'''


@pytest.fixture
def zoo_env(tmp_path, shared_dir, monkeypatch):
    """Two COCO models in a test zoo, one of them converted into the cache; random Inception stand-in."""
    from lafitebench.assets import zoo
    from lafitebench.checkpoints import convert as convert_mod
    from lafitebench.metrics import engine

    zdir = tmp_path / "zoo"
    zdir.mkdir()
    for mid in ("tiny-a", "tiny-b"):
        (zdir / f"{mid}.toml").write_text(_manifest(mid, '["coco"]'))
    (zdir / "tiny-cub.toml").write_text(_manifest("tiny-cub", '["cub"]'))
    monkeypatch.setenv("LAFITEBENCH_ZOO", str(zdir))
    monkeypatch.setenv("LAFITEBENCH_WEIGHTS", str(shared_dir / "assets/inception"))
    zoo.MODELS.reload()
    _, clip_weights = tiny_clip(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mid in ("tiny-a", "tiny-b"):
            info = zoo.get_model_info(mid)
            zoo.native_path(info).parent.mkdir(parents=True, exist_ok=True)
            convert_mod.convert(shared_dir / "fixtures/lafite_official/lafite_tiny64.pkl", zoo.native_path(info), variant="g",
                        model_id=mid, clip_backbone=dict(info.clip))
    real = engine._load_extractor
    monkeypatch.setattr(engine, "_load_extractor",
                        lambda plan, config, extractor=None: real(plan, config, extractor or TinyExtractor(logits=False)))
    yield {"clip": ["--text-clip-model", CLIP_NAME, "--text-clip-weights", str(clip_weights)], "tmp": tmp_path}
    monkeypatch.delenv("LAFITEBENCH_ZOO")
    zoo.MODELS.reload()


def _sweep(env, out: Path, *extra: str):
    return runner.invoke(app, ["eval", "--dataset", "coco-mini", "--fid-blur", "0,1", "--num", "6", "--out", str(out),
                               "--metrics", "fid", *env["clip"], *extra])


def test_sweep_prints_the_papers_table_and_resumes(zoo_env, monkeypatch):
    """Every model listed for the data set gets a row: ours, the paper's, the difference; files
    hold the same numbers; an interrupted sweep reuses the finished model and completes the other."""
    from lafitebench.jobs import dataset as ds

    out = zoo_env["tmp"] / "sweep"
    calls = []
    real_one = ds._one

    def interrupted(model, *a, **k):
        calls.append(model)
        if model == "tiny-b":
            raise KeyboardInterrupt
        return real_one(model, *a, **k)

    monkeypatch.setattr(ds, "_one", interrupted)
    r = _sweep(zoo_env, out)
    assert r.exit_code != 0 and "interrupted" in r.output.lower()
    assert (out / "tiny-a" / "result" / "results.json").is_file() and not (out / "table.csv").exists()

    monkeypatch.setattr(ds, "_one", real_one)
    evaluated = []
    real_eval = ds.run_eval
    monkeypatch.setattr(ds, "run_eval", lambda samples, *a, **k: evaluated.append(Path(samples).parent.name)
                        or real_eval(samples, *a, **k))
    r = _sweep(zoo_env, out)
    assert r.exit_code == 0, r.output
    assert evaluated == ["tiny-b"], "the finished model must be reused, the interrupted one evaluated"
    assert "tiny-a" in r.output and "tiny-b" in r.output and "tiny-cub" not in r.output
    assert "--num 6" in r.output and "paper" in r.output
    table = pd.read_csv(out / "table.csv")
    assert set(table.model) == {"tiny-a", "tiny-b"}
    for _, row in table.iterrows():
        assert row.paper == PAPER[row.metric]
        if row.metric.startswith("FID"):
            res = json.loads((out / row.model / "result" / "results.json").read_text())
            ours = {m["metric"]: m["value"] for m in res["results"]}[row.metric]
            assert row.ours == pytest.approx(ours, abs=1e-9) and row["diff"] == pytest.approx(ours - row.paper, abs=1e-9)
            assert res["provenance"]["dataset_protocol"]["dataset"] == "coco-mini"
            assert res["provenance"]["dataset_protocol"]["num"] == 6
    assert len(list((out / "tiny-b" / "samples").glob("*.png"))) == 6

    r = _sweep(zoo_env, out, "--fid-blur", "0")  # other settings: refused, nothing recomputed
    assert r.exit_code == 2 and "other settings" in r.output


def test_sweep_names_every_missing_model_before_work(zoo_env):
    from lafitebench.assets import zoo
    from lafitebench.checkpoints import convert as convert_mod

    for mid in ("tiny-a", "tiny-b"):
        zoo.native_path(zoo.get_model_info(mid)).unlink()
    out = zoo_env["tmp"] / "sweep"
    r = _sweep(zoo_env, out)
    assert r.exit_code == 2
    assert "tiny-a" in r.output and "tiny-b" in r.output and "zoo fetch" in r.output
    assert "Traceback" not in r.output and not out.exists()


def test_one_model_and_a_samples_folder_on_the_protocol(zoo_env):
    out = zoo_env["tmp"] / "one"
    r = runner.invoke(app, ["eval", "--dataset", "coco-mini", "--model", "tiny-a", "--num", "4", "--metrics", "fid",
                            "--fid-blur", "0", "--out", str(out), *zoo_env["clip"], "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert [(x["model"], x["metric"]) for x in rows] == [("tiny-a", "IS"), ("tiny-a", "FID-0")]
    r = runner.invoke(app, ["eval", "--dataset", "coco-mini", "--samples", str(out / "tiny-a" / "samples"),
                            "--metrics", "fid", "--fid-blur", "0", "--out", str(zoo_env["tmp"] / "s"), "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["provenance"]["inputs"]["reference"]["name"] == "coco-mini"
    assert payload["provenance"]["dataset_protocol"]["split"] == "coco-mini"
    assert payload["results"][0]["value"] == pytest.approx(rows[1]["ours"], abs=1e-9)


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "coco"], ["--data-root", "LAFITEBENCH_COCO"]),
    (["--dataset", "coco", "--data-root", "/nonexistent/coco"], ["/nonexistent/coco", "LAFITEBENCH_COCO"]),
    (["--dataset", "cc3m"], ["--reference-captions", "LAFITEBENCH_CC3M"]),
    (["--dataset", "cub", "--data-root", "/nonexistent/cub"], ["/nonexistent/cub", "LAFITEBENCH_CUB"]),
    (["--dataset", "coco-mini", "--reference", "coco"], ["--reference"]),
    (["--dataset", "coco-mini", "--metrics", "soa"], ["SOA is not part"]),
    (["--dataset", "imagenet"], ["unknown data set protocol", "coco"]),
])
def test_dataset_bad_input_is_named_before_work(args, needle, tmp_path, monkeypatch):
    monkeypatch.delenv("LAFITEBENCH_COCO", raising=False)
    r = runner.invoke(app, ["eval", *args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert all(n in r.output for n in needle), r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()


@pytest.fixture
def tiny_inception(monkeypatch, shared_dir):
    from lafitebench.metrics import engine

    monkeypatch.setenv("LAFITEBENCH_WEIGHTS", str(shared_dir / "assets/inception"))
    real = engine._load_extractor
    monkeypatch.setattr(engine, "_load_extractor",
                        lambda plan, config, extractor=None: real(plan, config, extractor or TinyExtractor(logits=False)))


def test_samples_inside_the_reference_are_warned_about(tiny_inception, shared_dir, tmp_path):
    """coco-mini (bundled 256² crops) against the COCO val2017 originals: the same COCO images;
    a folder of copied reference files: the same bytes; the two coco-mini halves: disjoint."""
    import shutil

    from lafitebench.data.sources.coco import coco_mini

    coco = ["--reference", "coco", "--data-root", str(shared_dir / "assets/coco/coco_mini"), "--reference-split",
            "val2017"]
    r = runner.invoke(app, ["eval", "--samples", "coco-mini:a", *coco, "--metrics", "fid", "--out", str(tmp_path / "1"),
                            "--json"])
    assert r.exit_code == 0, r.output
    from lafitebench.data.registry import get_dataset

    ids = {it.meta.get("image_id") for it in get_dataset("coco", shared_dir / "assets/coco/coco_mini", split="val2017").items}
    expected = sum(it.meta["image_id"] in ids for it in get_dataset("coco-mini:a").items)
    assert expected > 0
    assert f"{expected} of 50 sample images are also in the reference" in " ".join(r.stderr.split())
    assert json.loads(r.stdout)["provenance"]["inputs"]["shared_images"] == expected
    copies = tmp_path / "copies"
    copies.mkdir()
    for it in coco_mini().items[:3]:
        shutil.copy(it.path, copies / it.path.name)
    r = runner.invoke(app, ["eval", "--samples", str(copies), "--reference", "coco-mini", "--metrics", "fid",
                            "--kid-subset-size", "2", "--out", str(tmp_path / "2")])
    assert r.exit_code == 0, r.output
    assert "3 of 3 sample images are also in the reference" in " ".join(r.stderr.split())
    r = runner.invoke(app, ["eval", "--metrics", "fid", "--out", str(tmp_path / "3")])
    assert r.exit_code == 0, r.output
    assert "also in the reference" not in " ".join(r.output.split())


def test_coco_protocol_with_soa_on_real_images(zoo_env, shared_dir):
    """``--dataset coco`` as written, on real COCO images laid out as COCO 2014 (the shared val2017
    files and captions under the 2014 names), with SOA from the SOA caption lists and the real
    detector: the table has FID-k, SOA-C and SOA-I; each part's samples and results are kept."""
    coco = zoo_env["tmp"] / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "train2014").symlink_to(shared_dir / "assets/coco/coco_mini/val2017")
    for name in ("captions_train2014.json", "captions_val2014.json"):
        (coco / "annotations" / name).symlink_to(shared_dir / "assets/coco/captions_val2017.json")
    out = zoo_env["tmp"] / "coco-sweep"
    r = runner.invoke(app, ["eval", "--dataset", "coco", "--data-root", str(coco), "--model", "tiny-a", "--num", "4",
                            "--fid-blur", "0,1", "--metrics", "fid,soa", "--soa-lists", str(shared_dir / "assets/soa_captions"),
                            "--detector", str(shared_dir / "assets/yolo/yolov8n_int8_openvino_model"),
                            "--out", str(out), *zoo_env["clip"]])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out / "table.csv")
    assert list(table.metric) == ["IS", "FID-0", "FID-1", "SOA-C", "SOA-I"]
    assert table.set_index("metric").loc[["FID-0", "FID-1", "SOA-C", "SOA-I"], "ours"].notna().all()
    main = json.loads((out / "tiny-a" / "result" / "results.json").read_text())["provenance"]
    assert main["inputs"]["reference"]["name"] == "coco:train2014" and main["inputs"]["reference"]["n_used"] == 159
    assert main["config"]["protocol"] == "lafite-official"
    soa = json.loads((out / "tiny-a" / "soa-result" / "results.json").read_text())["provenance"]
    assert soa["generation"]["split"]["id"].startswith("soa")
    assert len(list((out / "tiny-a" / "soa-samples").glob("*.png"))) == 4


def test_missing_reference_images_are_named_before_any_model_runs(zoo_env, shared_dir):
    """A COCO root without the reference split's images: the error names it before a single sample
    is generated (the sweep checks the reference and the caption split first)."""
    coco = zoo_env["tmp"] / "coco-no-train"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "captions_val2014.json").symlink_to(shared_dir / "assets/coco/captions_val2017.json")
    out = zoo_env["tmp"] / "never"
    r = runner.invoke(app, ["eval", "--dataset", "coco", "--data-root", str(coco), "--model", "tiny-a", "--num", "2",
                            "--out", str(out), *zoo_env["clip"]])
    assert r.exit_code == 2 and "train2014" in r.output and "Traceback" not in r.output, r.output
    assert not out.exists()
