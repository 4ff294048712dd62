"""Paper tables as data, saving results, and putting them beside the paper."""
from __future__ import annotations

import json

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
