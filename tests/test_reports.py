"""Paper tables as data, saving results, and putting them beside the paper."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from lafitebench.errors import InputError
from lafitebench.reports import beside_paper, load_result, paper_table, paper_wide, save_result, to_markdown


def test_paper_tables_hold_the_published_numbers():
    lf = paper_wide("lang_free")
    assert lf.loc["Lafite-G", "FID-0"] == 18.04 and lf.loc["Lafite-NN", "IS"] == 22.23
    zs = paper_wide("zero_shot")
    assert zs.loc["Lafite", "SOA-C"] == 37.37 and zs.loc["DALL-E", "FID-8"] == 85.00
    sup = paper_wide("supervised")
    assert sup.loc["Lafite", "FID-0"] == 8.12 and sup.loc["XMC-GAN", "SOA-I"] == 71.33
    other = paper_table("supervised_other")
    assert set(other["verified"]) == {"no"}  # commonly cited, not checked against the paper
    with pytest.raises(InputError, match="unknown paper table"):
        paper_table("imagenet")


def test_beside_paper_matches_only_the_lafite_blur_preset():
    ours = pd.DataFrame({"metric": ["FID-0", "FID-2 (pil)", "IS", "KID"], "value": [20.0, 19.0, 25.0, 0.01]})
    row = beside_paper(ours, "lang_free", label="mine").loc["mine"]
    assert row["FID-0"] == 20.0 and row["IS"] == 25.0
    assert pd.isna(row["FID-2"])  # a pil-preset FID-2 is not the paper's FID-2
    with pytest.raises(InputError, match="share no metric"):
        beside_paper(pd.DataFrame({"metric": ["KID"], "value": [0.1]}), "lang_free")


def test_save_and_load_result_round_trip(tmp_path):
    table = pd.DataFrame([{"metric_id": "fid1k_blur0", "metric": "FID-0", "value": 12.5, "std": float("nan"),
                           "n": 1000, "higher_is_better": False, "notes": "a | b"}])
    per_class = pd.DataFrame([{"class_index": 15, "name": "cat", "acc": 80.0}])
    paths = save_result(tmp_path, table, {"seed": 1}, {"soa_per_class": per_class})
    assert {"csv", "json", "md", "csv:soa_per_class"} <= set(paths)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic: no temp files left
    loaded, prov = load_result(tmp_path)
    assert loaded.loc[0, "value"] == 12.5 and prov == {"seed": 1}
    assert json.loads(paths["json"].read_text())["soa_per_class"][0]["name"] == "cat"
    assert "a \\| b" in paths["md"].read_text()
    with pytest.raises(InputError, match="no result file"):
        load_result(tmp_path / "missing")


def test_markdown_table_shape():
    md = to_markdown(pd.DataFrame({"a": [1.23456, None], "b": ["x", "y"]}))
    assert md.splitlines()[:2] == ["| a | b |", "| --- | --- |"]
    assert "1.235" in md


# ------------------------------------------------------------------------------ merged reports

import math
import shutil
import subprocess

import numpy as np

from lafitebench.jobs.report import run_report
from lafitebench.reports.merge import aggregate, load_measured, merge
from lafitebench.reports.render import table_files

LAFITE_G_PAPER = {"model": "lafite-coco-g", "table": "language-free (MS-COCO 256²)", "row": "Lafite-G",
                  "metrics": {"FID-0": 18.04}, "verified": True, "source": "paper"}


def _result(folder, values: dict, n: int = 30000, reference=("coco:val2014", "coco"), blur="lafite",
            paper=LAFITE_G_PAPER, model="lafite-coco-g", per_class=None):
    rows = [{"metric_id": m, "metric": m, "value": v, "std": None, "n": n, "higher_is_better": not m.startswith("FID"),
             "notes": ""} for m, v in values.items()]
    prov = {"config": {"blur_preset": blur, "detector": "yolov8n.pt", "detector_conf": 0.5},
            "inputs": {"samples": {"name": "samples", "n": n}, "reference": {"name": reference[0], "kind": reference[1]}},
            "generation": {"model": {"id": model, "sha256": "ab" * 32}, "split": {"id": "coco-val-30k", "hash": "cd" * 32}},
            "paper": paper, "date": "2026-11-30T00:00:00+00:00", "lafitebench_version": "0.1.0",
            "libraries": {"torch": "2.14.1"}}
    save_result(folder, pd.DataFrame(rows), prov, {"soa_per_class": per_class} if per_class is not None else None)
    return folder


def test_paper_table_round_trips_through_csv_markdown_latex(tmp_path):
    merged = merge("lang_free", [])
    files = table_files(merged, "lang_free", "Language-free", {})
    back = pd.read_csv(pd.io.common.BytesIO(files["lang_free.csv"]))
    paper = paper_table("lang_free")
    for _, r in paper.iterrows():
        assert back.loc[back["model"] == r["model"], r["metric"]].item() == r["value"]
    md, tex = files["lang_free.md"].decode(), files["lang_free.tex"].decode()
    assert "| Lafite-G |  | 27.20 | 18.04 | 17.80 | 17.68 | 16.16 | 14.52 |" in md
    assert r"Lafite-NN &  & 22.23 & 26.56 & 26.48 & 25.82 & 23.90 & 19.27 \\" in tex and r"\toprule" in tex
    assert json.loads(files["lang_free.json"])["rows"][0]["model"] == "Cap-Base"
    unverified = table_files(merge("supervised_other", []), "x", "x", {})["x.md"].decode()
    assert "5.97*" in unverified and "not verified" in unverified


def test_merge_adds_a_row_with_deltas_and_no_mark_for_the_paper_protocol(tmp_path):
    _result(tmp_path / "r", {"FID-0": 19.0, "IS": 26.5})
    merged = merge("lang_free", load_measured([tmp_path / "r"]))
    row = merged[merged["source"] == "measured"].iloc[0]
    assert row["model"] == "lafite-coco-g (measured)" and row["paper_row"] == "Lafite-G"
    assert math.isclose(row["FID-0 Δ"], 19.0 - 18.04) and math.isclose(row["IS Δ"], 26.5 - 27.20)
    assert row["protocol"] == "" and row["runs"] == 1
    md = table_files(merged, "lang_free", "t", {})["lang_free.md"].decode()
    assert "| lafite-coco-g (measured) | 1 | 26.50 (−0.70) | 19.00 (+0.96) |" in md and "†" not in md


def test_a_different_protocol_is_marked(tmp_path):
    _result(tmp_path / "r", {"FID-0": 30.0, "FID-2": 28.0}, n=1000, reference=("coco-mini:b", "coco-mini"), blur="pil")
    merged = merge("lang_free", load_measured([tmp_path / "r"]))
    proto = merged[merged["source"] == "measured"]["protocol"].item()
    assert "N = 1,000 samples (paper: 30,000)" in proto and "reference coco-mini:b" in proto
    assert "blur preset pil (paper: lafite)" in proto
    md = table_files(merged, "lang_free", "t", {})["lang_free.md"].decode()
    assert "lafite-coco-g (measured)†" in md and "† lafite-coco-g (measured): measured with another protocol" in md


def test_mean_and_std_over_three_seeds(tmp_path):
    for k, v in enumerate((10.0, 11.0, 13.0)):
        _result(tmp_path / f"seed{k}", {"FID-0": v})
    runs = load_measured([tmp_path])
    agg = aggregate(runs)
    assert len(agg) == 1 and agg["runs"].item() == 3
    assert math.isclose(agg["FID-0"].item(), 34 / 3) and math.isclose(agg["FID-0 std"].item(), np.std([10, 11, 13], ddof=1))
    merged = merge("lang_free", runs)
    assert "11.33 ± 1.53 (−6.71)" in table_files(merged, "lang_free", "t", {})["lang_free.md"].decode()


def test_report_folder_accumulates_tables_and_leaderboard(tmp_path):
    per_class = pd.DataFrame({"class_index": [0, 1], "class_key": ["a", "b"], "name": ["person", "bicycle"],
                              "present": [True, True], "n_images": [3, 3], "n_detected": [2, 1], "acc": [66.7, 33.3]})
    rep = tmp_path / "rep"
    _result(rep / "runs" / "g", {"FID-0": 19.0, "FID-1": 18.5, "FID-2": 18.0, "FID-4": 17.0, "FID-8": 15.0, "IS": 26.0})
    _result(rep / "runs" / "zs", {"FID-0": 27.0, "SOA-C": 35.0, "SOA-I": 50.0}, model="lafite-cc3m-zeroshot",
            paper={"table": "zero-shot (pre-trained on CC3M, evaluated on MS-COCO 256²)", "row": "Lafite"},
            per_class=per_class)
    job = run_report([rep])
    assert set(job.tables) == {"lang_free", "zero_shot"}
    assert {"tables/lang_free.tex", "tables/zero_shot.csv", "index.html", "leaderboard.csv"} <= set(job.files)
    board = pd.read_csv(rep / "leaderboard.csv")
    assert list(board["model"]) == ["lafite-coco-g", "lafite-cc3m-zeroshot"]  # sorted by FID-0
    page = (rep / "index.html").read_text()
    assert page.count("<svg") >= 2 and "SOA per class" in page and "<details>" in page
    assert "https://" not in page.split("</style>")[1].split("xmlns")[0]  # nothing fetched to view it
    r = runner_invoke("report", str(rep), "--sort-by", "SOA-C")
    assert r.exit_code == 0 and "lafite-cc3m-zeroshot" in r.stdout
    r = runner_invoke("report", str(rep), "--sort-by", "CLIP")
    assert r.exit_code == 2 and "--sort-by" in r.output


def test_runs_on_different_references_are_separate_rows_that_say_why(tmp_path):
    """Three runs of one model, two against coco-mini:b and one against coco val2017: two rows
    (the two coco-mini runs averaged), each naming the reference it differs in."""
    _result(tmp_path / "a", {"FID-0": 100.0, "KID": 0.05}, n=50, reference=("coco-mini:b", "coco-mini"))
    _result(tmp_path / "b", {"FID-0": 102.0, "KID": 0.07}, n=50, reference=("coco-mini:b", "coco-mini"))
    _result(tmp_path / "c", {"FID-0": 20.0, "KID": 0.01}, n=50, reference=("coco:val2017", "coco"))
    board = aggregate(load_measured([tmp_path]))
    assert sorted(board["runs"]) == [1, 2]
    two = board[board["runs"] == 2].iloc[0]
    assert two["FID-0"] == 101.0 and "reference coco-mini:b" in two["differs"]
    assert "reference coco:val2017" in board[board["runs"] == 1]["differs"].item()
    merged = merge("lang_free", load_measured([tmp_path]))
    measured = merged[merged["source"] == "measured"]
    assert len(measured) == 2 and all("a row of its own" in p for p in measured["protocol"])
    assert str(merged["runs"].dtype) == "Int64"


def test_leaderboard_fits_80_columns_with_integer_runs_and_kid_std(tmp_path):
    from rich.console import Console

    from lafitebench.reports.render import board_table

    for k, (fid, kid) in enumerate(((100.0, 0.05), (102.0, 0.07))):
        _result(tmp_path / f"r{k}", {"FID-0": fid, "KID": kid, "IS": 20.0, "CLIP": 25.0}, n=50,
                reference=("coco-mini:b", "coco-mini"), model="lafite-coco-supervised-vitb32")
    board = aggregate(load_measured([tmp_path]))
    console = Console(width=80, record=True, force_terminal=False)
    console.print(board_table(board, "leaderboard"))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text and "lafite-coco-supervi" in text  # folded, never cut
    assert "± 0.014" in text  # KID's std over the two runs (0.05, 0.07)
    assert "│    2 │" in text and "2.0" not in text  # runs as an integer
    assert "[1] reference coco-mini:b" in text


def runner_invoke(*args: str):
    from typer.testing import CliRunner

    from lafitebench.cli import app

    return CliRunner().invoke(app, list(args))


def _dom_tables(dom: str) -> list[list[list[str]]]:
    """Every <table> of a page as rows of cell texts (header row first)."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr" and self.tables:
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.tables[-1][-1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    p = P()
    p.feed(dom)
    return p.tables


def _series(dom: str, name: str) -> list[tuple[float, float]]:
    """The (x, y) points of the plotted series ``name`` (its <g id="series:name"> path)."""
    import re

    m = re.search(r'<g id="series:' + re.escape(name) + r'">\s*<path d="([^"]+)"', dom)
    assert m, f"no plotted series {name!r}"
    return [(float(x), float(y)) for x, y in re.findall(r"[ML] ([-\d.]+) ([-\d.]+)", m.group(1))]


@pytest.mark.slow
@pytest.mark.browser
def test_html_report_renders_in_headless_chromium(tmp_path):
    """The standalone page in a real browser: the tables' cells equal the CSV files, and the FID
    plot's axes and series are drawn from the same numbers (points at k = 0..8, y linear in FID)."""
    from PIL import Image

    from conftest import in_ci

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        if in_ci():
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium not installed (bash .ci/run installs it)")
    rep = tmp_path / "rep"
    fids = [{"FID-0": 19.0, "FID-1": 18.5, "FID-2": 18.0, "FID-4": 17.0, "FID-8": 15.0},
            {"FID-0": 19.4, "FID-1": 18.9, "FID-2": 17.8, "FID-4": 16.6, "FID-8": 15.2}]
    for k, v in enumerate(fids):
        _result(rep / "runs" / f"g{k}", v)
    run_report([rep])
    url = (rep / "index.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'p'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1400", url], check=True,
                   capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert img.shape[0] > 500 and img.std() > 10 and (img < 128).mean() > 0.005  # text and lines drawn, not blank
    dom = subprocess.run([browser, *flags, "--dump-dom", url], check=True, capture_output=True, text=True,
                         timeout=120).stdout

    # the paper table: every cell of the measured row and of the paper's Lafite-G row equals the CSV
    csv = pd.read_csv(rep / "tables" / "lang_free.csv").set_index("model")
    table = next(t for t in _dom_tables(dom) if t and t[0][:1] == ["model"] and any(r[:1] == ["Lafite-G"] for r in t))
    head = table[0]
    rows = {r[0].rstrip("†*"): dict(zip(head, r)) for r in table[1:]}
    for model in ("Lafite-G", "lafite-coco-g (measured)"):
        for k in ("FID-0", "FID-1", "FID-2", "FID-4", "FID-8"):
            shown = float(rows[model][k].split()[0].rstrip("*"))
            assert shown == pytest.approx(round(float(csv.loc[model, k]), 2), abs=1e-9), (model, k)
    measured = rows["lafite-coco-g (measured)"]
    assert measured["runs"] == "2" and "±" in measured["FID-0"]
    # the leaderboard table equals leaderboard.csv
    board = pd.read_csv(rep / "leaderboard.csv")
    lb = next(t for t in _dom_tables(dom) if t and "runs" in t[0] and t[0][0] == "model" and
              any(r[:1] == ["lafite-coco-g"] for r in t))
    lrow = dict(zip(lb[0], next(r for r in lb if r[0] == "lafite-coco-g")))
    assert float(lrow["FID-0"]) == pytest.approx(float(board.loc[0, "FID-0"]), rel=1e-3)

    # the plot: axes titled, one point per blur level, positions linear in k and in the FID values
    assert "blur level k (FID-k)" in dom and ">FID<" in dom
    for name, values in (("lafite-coco-g (measured)", {k: (fids[0][k] + fids[1][k]) / 2 for k in fids[0]}),
                         ("Lafite-G (paper)", {k: float(csv.loc["Lafite-G", k]) for k in fids[0]})):
        pts = _series(dom, name)
        v = [values[f"FID-{k}"] for k in (0, 1, 2, 4, 8)]
        assert len(pts) == 5, name
        (x0, y0), (x8, y8) = pts[0], pts[-1]
        for (x, y), k, val in zip(pts, (0, 1, 2, 4, 8), v):
            assert (x - x0) / (x8 - x0) == pytest.approx(k / 8, abs=1e-4)
            assert (y - y0) / (y8 - y0) == pytest.approx((val - v[0]) / (v[-1] - v[0]), abs=1e-4)
        assert y8 > y0  # SVG y grows downwards: the lower FID-8 is drawn below FID-0 (axis not inverted)


def test_eval_report_adds_runs_and_rebuilds_the_folder(tmp_path):
    from lafitebench.encoders.inception import save_random_inception_weights

    from PIL import Image

    weights = save_random_inception_weights(tmp_path / "w.pth")
    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / name).mkdir()
        rng = np.random.default_rng(seed)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    rep = tmp_path / "rep"
    args = ["eval", "--samples", str(tmp_path / "a"), "--reference", str(tmp_path / "b"), "--resolution", "32",
            "--metrics", "fid",
            "--inception-weights", str(weights), "--no-cache", "--report", str(rep)]
    for _ in range(2):
        r = runner_invoke(*args)
        assert r.exit_code == 0, r.output
    assert len(list((rep / "runs").glob("*/results.json"))) == 2
    board = pd.read_csv(rep / "leaderboard.csv")
    assert board["runs"].tolist() == [2] and board["FID-0 std"].item() == 0.0  # same inputs, same number
    assert (rep / "index.html").is_file()
    r = runner_invoke(*args[:-2], "--report", str(rep), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "--out" in r.output


def test_bootstrap_intervals_reach_the_leaderboard_and_the_html_error_bars(tmp_path):
    """A run's 95 % interval (ci_low/ci_high in results.csv) is in leaderboard.csv, in the 80-column
    leaderboard as [lo, hi], and drawn as an error bar whose ends and dot sit at lo, hi and the value."""
    import re

    from rich.console import Console

    from lafitebench.reports.render import board_table

    rep = tmp_path / "rep"
    runs = {"lafite-coco-g": (0.61, 0.55, 0.70), "lafite-coco-nn": (0.92, 0.80, 1.10)}
    for model, (v, lo, hi) in runs.items():
        folder = rep / "runs" / model
        _result(folder, {"CMMD[clip-vitl14-336]": v, "FID-0": 20.0}, n=1000, model=model)
        t = pd.read_csv(folder / "results.csv")
        t["ci_low"] = [lo, float("nan")]
        t["ci_high"] = [hi, float("nan")]
        t.to_csv(folder / "results.csv", index=False)
        data = json.loads((folder / "results.json").read_text())
        data["results"] = json.loads(t.to_json(orient="records"))
        (folder / "results.json").write_text(json.dumps(data))
    run_report([rep])
    board = pd.read_csv(rep / "leaderboard.csv").set_index("model")
    for model, (v, lo, hi) in runs.items():
        assert board.loc[model, "CMMD[clip-vitl14-336] ci_low"] == lo and board.loc[model, "CMMD[clip-vitl14-336] ci_high"] == hi
    assert "FID-0 ci_low" not in board.columns  # no interval, no column
    console = Console(width=80, record=True, force_terminal=False)
    console.print(board_table(aggregate(load_measured([rep])), "leaderboard"))
    text = console.export_text()
    assert "CMMD[clip-vitl14-336]" in text and "0.61 [0.55, 0.7]" in text and "0.92 [0.8, 1.1]" in text
    page = (rep / "index.html").read_text()
    xs = {}
    for model in runs:
        groups = re.findall(r'<g id="interval:' + re.escape(model) + r'">(.*?)</g>\s*(?=<g|</g)', page, re.S)
        bar = re.search(r'd="M ([-\d.]+) [-\d.]+ \s*L ([-\d.]+) ', groups[0])
        dot = re.findall(r'<use [^>]*x="([-\d.]+)"', page.split(f'id="interval:{model}"')[-1])[0]
        xs[model] = (float(bar.group(1)), float(bar.group(2)), float(dot))
    (a_lo, a_hi, a_v), (b_lo, b_hi, b_v) = xs["lafite-coco-g"], xs["lafite-coco-nn"]
    scale = (b_hi - a_lo) / (1.10 - 0.55)  # pixels per unit, from two ends
    for (x_lo, x_hi, x_v), (v, lo, hi) in zip(xs.values(), runs.values()):
        assert x_lo - a_lo == pytest.approx((lo - 0.55) * scale, abs=0.05)
        assert x_hi - a_lo == pytest.approx((hi - 0.55) * scale, abs=0.05)
        assert x_v - a_lo == pytest.approx((v - 0.55) * scale, abs=0.05)


def test_backbone_metric_runs_with_other_k_are_separate_rows(tmp_path):
    """Precision with k=3 and with k=5 share the column name; their ids differ, so they are never averaged."""
    for k, (kk, v) in enumerate(((3, 0.70), (5, 0.80), (3, 0.72))):
        folder = tmp_path / f"r{k}"
        _result(folder, {"Precision[inception]": v}, n=1000)
        t = pd.read_csv(folder / "results.csv")
        t["metric_id"] = [f"precision1k[inception:torch-fidelity,k={kk},<=]"]
        t.to_csv(folder / "results.csv", index=False)
        data = json.loads((folder / "results.json").read_text())
        data["results"] = json.loads(t.to_json(orient="records"))
        (folder / "results.json").write_text(json.dumps(data))
    board = aggregate(load_measured([tmp_path])).sort_values("Precision[inception]")
    assert list(board["runs"]) == [2, 1] and board["Precision[inception]"].tolist() == pytest.approx([0.71, 0.80])
    assert "k=5" in board["differs"].iloc[1]  # the row says why it is its own
