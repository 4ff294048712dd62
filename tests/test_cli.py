"""End-to-end tests of the ``lafitebench`` CLI as a user runs it (Typer's CliRunner, offline)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lafitebench.cli import app
from lafitebench.data.sources.coco import coco_mini

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Two folders of 6 real coco-mini images each (as 'samples' and 'reference'), with captions."""
    root = tmp_path_factory.mktemp("sets")
    mini = coco_mini()
    out = {}
    for name, sl in (("samples", slice(0, 6)), ("reference", slice(6, 12))):
        d = root / name
        d.mkdir()
        rows = []
        for it in mini.items[sl]:
            shutil.copy(it.path, d / Path(it.path).name)
            rows.append(json.dumps({"file": Path(it.path).name, "caption": it.caption}))
        (d / "manifest.jsonl").write_text("\n".join(rows) + "\n")
        out[name] = d
    return out


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    from lafitebench.encoders.inception import save_random_inception_weights

    return save_random_inception_weights(tmp_path_factory.mktemp("w") / "random-inception.pth")


def test_help_shows_examples():
    for cmd in (["eval", "--help"], ["zoo", "fetch", "--help"], ["report", "--help"], ["zoo", "convert", "--help"]):
        r = _invoke(*cmd)
        assert r.exit_code == 0
        assert "Example" in r.output


@pytest.mark.slow
def test_eval_json_and_files(sets, random_inception, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["eval", "--samples", str(sets["samples"]), "--reference", str(sets["reference"]),
                            "--metrics", "fid,kid,is", "--isc-splits", "2", "--inception-weights", str(random_inception),
                            "--batch-size", "4", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    metrics = {row["metric"]: row for row in payload["results"]}
    assert {"FID-0", "KID", "IS"} <= set(metrics)
    assert metrics["FID-0"]["n"] == 6 and metrics["FID-0"]["value"] > 0
    prov = payload["provenance"]
    assert prov["config"]["kid_subset_size"] == 6  # min(1000, N) for the default size
    for f in ("results.csv", "results.json", "results.md"):
        assert (out / f).is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"] == payload["results"]


def test_eval_clip_without_captions_fails_before_work(tmp_path, random_inception):
    d = tmp_path / "nocap"
    d.mkdir()
    for it in coco_mini().items[:3]:
        shutil.copy(it.path, d)
    r = _invoke("eval", "--samples", str(d), "--reference", "none", "--metrics", "clip",
                "--inception-weights", str(random_inception))
    assert r.exit_code == 2
    assert "caption" in r.output


def test_eval_bad_options():
    r = runner.invoke(app, ["eval", "--fid-blur", "one,two"])
    assert r.exit_code != 0 and "--fid-blur" in r.output
    r = runner.invoke(app, ["eval", "--metrics", "fidd", "--reference", "none"])
    assert r.exit_code == 2 and "did you mean" in r.output.lower()


def test_eval_corrupt_image_named(sets, tmp_path, random_inception):
    d = tmp_path / "bad"
    shutil.copytree(sets["samples"], d)
    (d / "manifest.jsonl").unlink()
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    r = _invoke("eval", "--samples", str(d), "--reference", str(sets["reference"]), "--metrics", "fid",
                "--inception-weights", str(random_inception), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2
    assert "broken.png" in r.output


@pytest.mark.real_assets
@pytest.mark.slow
def test_eval_auto_with_real_pool3_weights(sets, shared_dir, tmp_path):
    """Auto mode with the real pool3-only Inception file: FID/KID computed, IS/CLIP/SOA left out with reasons."""
    w = shared_dir / "assets/inception/inception-2015-12-05-pool3-fidelity-layout.pth"
    r = runner.invoke(app, ["eval", "--samples", str(sets["samples"]), "--reference", str(sets["reference"]),
                            "--inception-weights", str(w), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "FID-0" in r.stdout and "KID" in r.stdout
    flat = " ".join(r.stdout.split())
    assert "samples:" in flat and "(6 images) vs reference:" in flat  # what was compared, above the table
    assert "small-sample bias" in flat and "all the same set" in flat  # N = 6: FID bias, degenerate KID flagged
    assert "left out is" in r.stdout and "classifier" in r.stdout
    assert "left out clip" in r.stdout and "ViT-B-32.pt" in r.stdout
    assert "left out soa" in r.stdout
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert saved["provenance"]["metrics_skipped"].keys() == {"is", "clip", "soa"}


def test_eval_offline_missing_inception_names_file(sets):
    r = _invoke("eval", "--samples", str(sets["samples"]), "--reference", str(sets["reference"]), "--metrics", "fid")
    assert r.exit_code == 2
    assert "weights-inception-2015-12-05-6726825d.pth" in r.output
    assert "6726825d" in r.output


def test_report_paper_table_and_beside(tmp_path):
    r = _invoke("report", "--table", "supervised", "--out", str(tmp_path))
    assert r.exit_code == 0 and "XMC-GAN" in r.stdout
    assert "| model | runs | IS | FID-0 | SOA-C | SOA-I |" in (tmp_path / "tables" / "supervised.md").read_text()
    from lafitebench.reports import save_result
    import pandas as pd

    table = pd.DataFrame([{"metric_id": "fid30k_blur0", "metric": "FID-0", "value": 9.5, "std": None, "n": 30000,
                           "higher_is_better": False, "notes": ""}])
    save_result(tmp_path / "run", table, {"model": "mine"})
    r = _invoke("report", str(tmp_path / "run"), "--table", "supervised", "--label", "mine")
    assert r.exit_code == 0 and "mine" in r.stdout and "9.5" in r.stdout


def test_zoo_commands():
    r = _invoke("zoo", "list", "--json")
    assert r.exit_code == 0
    ids = {m["id"] for m in json.loads(r.stdout)}
    assert {"lafite-coco-g", "lafite-coco-nn", "lafite-cc3m-zeroshot"} <= ids
    r = _invoke("zoo", "show", "lafite-coco-gg")
    assert r.exit_code == 2 and "did you mean" in r.output.lower()
    r = _invoke("zoo", "fetch", "lafite-coco-g")
    assert r.exit_code == 2 and "lafite-coco-g.pkl" in r.output
    r = _invoke("zoo", "verify")
    assert r.exit_code == 0


@pytest.mark.parametrize("command", [[], ["eval"], ["generate"], ["train"], ["train-mapper"], ["report"], ["zoo"],
                                     ["zoo", "fetch"], ["zoo", "convert"], ["data"], ["data", "prepare"]])
def test_help_fits_80_columns(command):
    """Every help page, examples included, fits an 80-column terminal."""
    r = CliRunner().invoke(app, [*command, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    long = [line for line in r.output.splitlines() if len(line) > 80]
    assert not long, long
    assert r.output.lstrip().startswith("Usage:")
