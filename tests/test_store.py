"""Feature stores: ``lafitebench data prepare``, resume, conversions, long captions, the official
zip export, and the CLIP-backbone refusal."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from helpers.tiny_clip import CLIP_NAME, tiny_clip
from lafitebench.cli import app
from lafitebench.data.sources.official_zip import read_official_zip
from lafitebench.data.splits import get_split
from lafitebench.data.store import (FeatureStore, PrepareConfig, check_clip_match, export_official,
                                    official_clip_view, prepare_store, split_long_caption)
from lafitebench.errors import InputError

runner = CliRunner()
LONG = ("a very long caption about a kitchen, with a table, chairs, a stove and a window. " * 6).strip()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))[1]


def _cfg(clip: Path, out: Path, **kw) -> PrepareConfig:
    base = dict(source="coco-mini", out=str(out), resolution=32, clip_model=CLIP_NAME, clip_weights=str(clip),
                shard_size=32, batch_size=16, device="cpu", progress=False)
    base.update(kw)
    return PrepareConfig(**base)


@pytest.fixture(scope="module")
def mini_store(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("stores") / "mini"
    return prepare_store(_cfg(clip, out)), out


def _folder(root: Path) -> Path:
    """A name.txt folder with an RGB, a grayscale, a CMYK and a 16-bit image, one long caption."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "a.png")
    Image.fromarray(rgb[..., 0]).save(root / "b.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "c.jpg")
    Image.fromarray((rng.integers(0, 65536, (40, 40))).astype(np.uint16)).save(root / "d.png")
    for name, text in (("a", "a red square\nanother caption"), ("b", "a gray square"), ("c", LONG), ("d", "deep gray")):
        (root / f"{name}.txt").write_text(text + "\n")
    return root


def test_prepare_coco_mini(mini_store):
    done, out = mini_store
    assert (done.n_images, done.n_captions, done.shards_written) == (100, 500, 4)
    store = FeatureStore(out)
    data = store.load()
    assert data["images"].shape == (100, 3, 32, 32) and data["images"].dtype == torch.uint8
    assert data["img_features"].shape == (100, 64) and data["txt_features"].shape == (500, 64)
    assert int(data["txt_offsets"][-1]) == 500 and len(data["rows"]) == 100
    assert store.clip["model"] == CLIP_NAME and len(store.clip["weights_sha256"]) == 64
    head = json.loads((out / "store.json").read_text())
    assert head["status"] == "complete" and head["identity"]["dtype"] == "float16"
    index = (out / "index.csv").read_text().splitlines()
    assert index[0].startswith("idx,shard,row,source,mode,n_captions,captions") and len(index) == 101


def _same_store(a: Path, b: Path) -> None:
    """Same tensors and rows (safetensors orders its metadata keys arbitrarily, so not bytes)."""
    da, db = FeatureStore(a).load(), FeatureStore(b).load()
    assert da["rows"] == db["rows"]
    for k in ("images", "img_features", "txt_features", "txt_offsets"):
        assert torch.equal(da[k], db[k]), k


def test_prepare_is_deterministic_and_resumes(clip, mini_store, tmp_path):
    _, ref = mini_store
    out = tmp_path / "again"
    prepare_store(_cfg(clip, out))
    shards = sorted((out / "shards").glob("*.safetensors"))
    _same_store(out, ref)
    # a kill after two shards: the rest missing, a half-written temp file, the header in progress
    shards[3].unlink()
    shards[2].rename(shards[2].with_name(".shard-00002.safetensors.x.tmp"))
    head = json.loads((out / "store.json").read_text())
    (out / "store.json").write_text(json.dumps({**head, "status": "in-progress"}))
    with pytest.raises(InputError, match="unfinished"):
        FeatureStore(out)
    done = prepare_store(_cfg(clip, out))
    assert (done.shards_reused, done.shards_written) == (2, 2)
    _same_store(out, ref)


def test_other_settings_are_refused_without_overwrite(clip, mini_store, tmp_path):
    _, ref = mini_store
    out = tmp_path / "s"
    prepare_store(_cfg(clip, out))
    with pytest.raises(InputError, match="other settings"):
        prepare_store(_cfg(clip, out, dtype="float32"))
    done = prepare_store(_cfg(clip, out, dtype="float32", overwrite=True))
    assert done.shards_written == 4 and FeatureStore(out).load()["txt_features"].dtype == torch.float32
    with pytest.raises(InputError, match="dtype"):
        prepare_store(_cfg(clip, tmp_path / "t", dtype="bfloat8"))


def test_modes_converted_and_counted_long_captions(clip, tmp_path):
    folder = _folder(tmp_path / "imgs")
    done = prepare_store(_cfg(clip, tmp_path / "split", source=str(folder)))
    assert done.counts["modes"] == {"rgb": 1, "grayscale": 1, "cmyk": 1, "16-bit": 1}
    assert done.counts["long_captions_split"] == 1 and done.n_captions == 5
    trunc = prepare_store(_cfg(clip, tmp_path / "trunc", source=str(folder), long_captions="truncate"))
    assert trunc.counts["long_captions_truncated"] == 1

    # the split feature is the mean of the pieces' features (the official dataset tool's rule)
    import open_clip

    from lafitebench.encoders.clip import load_clip

    model, _, tok, _ = load_clip(CLIP_NAME, None, clip, "cpu")
    pieces = split_long_caption(LONG)
    assert len(pieces) > 1 and all(p.strip() for p in pieces)
    with torch.no_grad():
        expect = model.encode_text(tok(pieces)).float().mean(0)
        truncated = model.encode_text(tok([LONG])).float()[0]
    rows = {Path(r["source"]).name: i for i, r in enumerate(FeatureStore(tmp_path / "split").load()["rows"])}
    data_s, data_t = FeatureStore(tmp_path / "split").load(), FeatureStore(tmp_path / "trunc").load()
    k = int(data_s["txt_offsets"][rows["c.jpg"]])
    assert torch.allclose(data_s["txt_features"][k], expect, atol=2e-3)  # float16 storage
    assert torch.allclose(data_t["txt_features"][k], truncated, atol=2e-3)
    assert open_clip is not None


def test_official_clip_view_matches_the_official_rule():
    img = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    a = official_clip_view(img, torch.Generator().manual_seed(1), size=224)
    b = official_clip_view(img, torch.Generator().manual_seed(1), size=224)
    assert a.shape == (3, 224, 224) and torch.equal(a, b)
    # below the CLIP input size the image is padded with white (1.0 before normalisation)
    white = (1.0 - 0.48145466) / 0.26862954
    assert torch.isclose(a[0], torch.tensor(white)).float().mean() > 0.9
    big = official_clip_view(torch.randint(0, 256, (3, 256, 256), dtype=torch.uint8), torch.Generator().manual_seed(2))
    assert big.shape == (3, 224, 224)


def test_export_official_zip_round_trips(mini_store, tmp_path):
    _, out = mini_store
    z = export_official(FeatureStore(out), tmp_path / "mini.zip")
    meta = read_official_zip(z)
    assert len(meta["images"]) == 100 and meta["images"][0] == "00000/img00000000.png" and meta["dim"] == 64
    data = FeatureStore(out).load()
    assert np.allclose(meta["txt_features"]["00000/img00000000.png"], data["txt_features"][:5].numpy())
    assert np.allclose(meta["img_features"]["00000/img00000000.png"], data["img_features"][0].numpy())
    import zipfile

    with zipfile.ZipFile(z) as zf:
        img = np.array(Image.open(zf.open("00000/img00000000.png")))
    assert np.array_equal(img, data["images"][0].permute(1, 2, 0).numpy())


def test_store_split_generates_without_clip_and_checks_the_backbone(mini_store, shared_dir, tmp_path):
    from lafitebench.assets import zoo
    from lafitebench.checkpoints import convert as convert_mod

    _, out = mini_store
    split = get_split(str(out))
    assert len(split) == 100 and split.features.shape == (100, 64) and split.info["clip_model"] == CLIP_NAME
    with pytest.raises(InputError, match=f"{CLIP_NAME} features but model m was trained with CLIP ViT-B/16"):
        FeatureStore(out).check_backbone({"open_clip_model": "ViT-B-16", "name": "ViT-B/16"}, "model m")
    with pytest.raises(InputError, match="ViT-B-32 features but model m was trained with CLIP ViT-B/16"):
        check_clip_match("ViT-B-32", {"open_clip_model": "ViT-B-16", "name": "ViT-B/16"}, "feature store s", "model m")
    check_clip_match("ViT-B/32", {"open_clip_model": "ViT-B-32", "name": "ViT-B/32"}, "s", "m")  # same backbone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_mod.convert(shared_dir / "fixtures/lafite_official/lafite_tiny64.pkl", tmp_path / "tiny.safetensors",
                            variant="g")
    r = runner.invoke(app, ["generate", "--model", str(model), "--split", str(out), "--num", "3", "--out",
                            str(tmp_path / "gen"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "gen").glob("*.png"))) == 3


def test_cli_prepare_and_bad_options(clip, tmp_path):
    folder = _folder(tmp_path / "imgs")
    r = runner.invoke(app, ["data", "prepare", str(folder), "--out", str(tmp_path / "st"), "--resolution", "32",
                            "--clip-model", CLIP_NAME, "--clip-weights", str(clip), "--device", "cpu",
                            "--export-official", str(tmp_path / "o.zip")])
    assert r.exit_code == 0, r.output
    flat = " ".join(r.output.split())
    assert "images │ 4" in flat and "converted from cmyk │ 1" in flat and (tmp_path / "o.zip").is_file()
    r = runner.invoke(app, ["data", "prepare", str(folder), "--out", str(tmp_path / "x"), "--long-captions", "drop",
                            "--clip-model", CLIP_NAME, "--clip-weights", str(clip)])
    assert r.exit_code == 2 and "--long-captions" in r.output
    r = runner.invoke(app, ["data", "prepare", "cocco", "--out", str(tmp_path / "y")])
    assert r.exit_code == 2 and "did you mean" in r.output.lower()
    r = runner.invoke(app, ["data", "prepare", str(folder), "--out", str(tmp_path / "z"), "--export-official", "o.tar"])
    assert r.exit_code == 2 and "--export-official" in r.output
