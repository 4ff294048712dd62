"""Data layer: decoding and mode conversion, resizing, corrupt files, manifests, image sets,
fingerprints, the bundled coco-mini and (real_assets) the COCO folder reader."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lafitebench.data.registry import get_dataset
from lafitebench.data.sources.coco import COCO_MINI_DIR
from lafitebench.data.sources.folder import sample_set
from lafitebench.data.images import center_crop_resize, check_image, load_image
from lafitebench.data.manifest import read_manifest, write_manifest
from lafitebench.errors import InputError
from lafitebench.data.batch import Batch


def _rgb(path: Path, w: int = 8, h: int = 8, seed: int = 0, fmt: str | None = None) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, fmt)
    return path


# --- decoding ---------------------------------------------------------------------------------

def test_grayscale_and_alpha_modes(tmp_path):
    Image.new("L", (4, 3), 100).save(tmp_path / "l.png")
    t = load_image(tmp_path / "l.png")
    assert t.dtype == torch.uint8 and t.shape == (3, 3, 4) and (t == 100).all()

    Image.new("LA", (4, 4), (60, 0)).save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png") == 60).all()  # alpha dropped, not composited

    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    t = load_image(tmp_path / "rgba.png")
    assert t[:, 0, 0].tolist() == [10, 20, 30]

    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    p.info["transparency"] = 1
    p.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png")[:, 2, 2].tolist() == [200, 100, 50]

    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    assert (load_image(tmp_path / "cmyk.jpg").int() >= 250).all()  # no ink = white


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    vals = np.array([[0, 256, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(vals).save(tmp_path / "g16.png")  # a 16-bit grayscale PNG
    t = load_image(tmp_path / "g16.png")
    assert t[0, 0].tolist() == [0, 1, 128, 255]  # round(v*255/65535); clipping would give 255 for 256
    assert (t[0] == t[1]).all() and (t[1] == t[2]).all()

    img = Image.fromarray(vals)
    assert img.mode.startswith("I;16")
    img.save(tmp_path / "g16.tif")
    assert load_image(tmp_path / "g16.tif")[0, 0].tolist() == [0, 1, 128, 255]

    Image.new("I", (2, 2), 65535).save(tmp_path / "i32.tif")
    assert (load_image(tmp_path / "i32.tif") == 255).all()


def test_webp_jpeg_png_decode(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "x.webp", lossless=True)
    Image.fromarray(a).save(tmp_path / "x.png")
    Image.fromarray(a).save(tmp_path / "x.jpg", quality=95)
    for f in ("x.webp", "x.png"):
        assert torch.equal(load_image(tmp_path / f), torch.from_numpy(a).permute(2, 0, 1))
    assert load_image(tmp_path / "x.jpg").shape == (3, 6, 5)


def test_exif_orientation_not_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW" — reference tools ignore it
    Image.new("RGB", (8, 4), (5, 5, 5)).save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").shape == (3, 4, 8)


def test_resize_only_when_size_differs(tmp_path):
    small = _rgb(tmp_path / "a.png", 8, 8, seed=2)
    other = _rgb(tmp_path / "b.png", 16, 12, seed=3)
    a = load_image(small, 8)
    assert torch.equal(a, load_image(small))  # same size: untouched
    b = load_image(other, 8)
    ref = np.array(Image.open(other).resize((8, 8), Image.Resampling.BICUBIC))
    assert torch.equal(b, torch.from_numpy(ref).permute(2, 0, 1))


def test_center_crop_resize_box():
    a = np.zeros((8, 12, 3), dtype=np.uint8)
    a[:, :, 0] = np.arange(12)[None, :] * 10
    out = center_crop_resize(Image.fromarray(a), 8)  # square crop, same side: no resampling
    assert np.array(out)[0, :, 0].tolist() == [20, 30, 40, 50, 60, 70, 80, 90]
    assert center_crop_resize(Image.fromarray(a), 4).size == (4, 4)
    with pytest.raises(InputError, match="crop"):
        load_image(Path("unused.png"), 4, crop="middle")


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(InputError, match="junk.png"):
        load_image(tmp_path / "junk.png")
    good = _rgb(tmp_path / "good.png", 32, 32).read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="trunc.png"):
        load_image(tmp_path / "trunc.png")
    with pytest.raises(InputError, match="nothere.png"):
        load_image(tmp_path / "nothere.png")
    assert check_image(tmp_path / "junk.png") is not None and check_image(tmp_path / "good.png") is None


# --- image sets ---------------------------------------------------------------------------------

def _folder(tmp_path: Path, n_good: int = 3, bad: tuple[str, ...] = ()) -> Path:
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for i in range(n_good):
        _rgb((d / "sub" if i % 2 else d) / f"img{i}.png", 8 + 4 * i, 8, seed=i)
    for b in bad:
        (d / b).write_bytes(b"broken")
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"ignored")
    return d


def test_folder_set_mixed_sizes_sorted(tmp_path):
    d = _folder(tmp_path)
    s = get_dataset(d, resolution=8)
    assert [p.path.relative_to(d).as_posix() for p in s.items] == ["img0.png", "img2.png", "sub/img1.png"]
    batches = list(s.loader(batch_size=2))
    assert all(isinstance(b, Batch) for b in batches)
    assert [b.images.shape for b in batches] == [(2, 3, 8, 8), (1, 3, 8, 8)]
    assert batches[0].images.dtype == torch.uint8 and batches[0].captions == [None, None]
    assert s.provenance()["resize"].startswith("PIL BICUBIC")


def test_skip_bad_counting_and_errors(tmp_path):
    d = _folder(tmp_path, bad=("bad1.png", "zbad2.jpg"))
    s = get_dataset(d, resolution=8)
    assert len(s) == 5
    with pytest.raises(InputError, match="bad1.png"):
        list(s.loader(batch_size=2))
    n = sum(b.images.shape[0] for b in s.loader(batch_size=2, skip_bad=True))
    assert n == 3 and sorted(Path(f).name for f in s.skipped) == ["bad1.png", "zbad2.jpg"]
    assert all("bad" in Path(f).name for f in s.skip_reasons)
    with pytest.raises(InputError, match=r"2 unreadable image\(s\).*bad1.png.*zbad2.jpg"):
        s.validate(quick=True)
    assert len(s.find_bad(quick=False)) == 2


def test_skip_bad_with_worker_process(tmp_path):
    d = _folder(tmp_path, bad=("bad1.png",))
    s = get_dataset(d, resolution=8)
    n = sum(b.images.shape[0] for b in s.loader(batch_size=4, num_workers=1, skip_bad=True))
    assert n == 3 and [Path(f).name for f in s.skipped] == ["bad1.png"]
    with pytest.raises(InputError, match="bad1.png"):
        list(s.loader(batch_size=4, num_workers=1))


def test_fingerprint_stable_and_sensitive(tmp_path):
    d = _folder(tmp_path)
    f1 = get_dataset(d, resolution=8).fingerprint()
    assert f1 == get_dataset(d, resolution=8).fingerprint()
    moved = shutil.copytree(d, tmp_path / "elsewhere")
    assert get_dataset(moved, resolution=8).fingerprint() == f1  # relative names only
    assert get_dataset(d, resolution=16).fingerprint() != f1
    assert get_dataset(d, resolution=8, crop="center").fingerprint() != f1
    _rgb(d / "img0.png", 8, 8, seed=99)
    assert get_dataset(d, resolution=8).fingerprint() != f1
    (moved / "img0.png").rename(moved / "img0b.png")
    assert get_dataset(moved, resolution=8).fingerprint() != f1


def test_subset_and_halves(tmp_path):
    s = get_dataset(_folder(tmp_path), resolution=8)
    a, b = s.split_halves()
    assert (len(a), len(b)) == (2, 1) and a.name.endswith(":a") and b.name.endswith(":b")
    assert a.fingerprint() != s.fingerprint()
    assert [it.path for it in s.subset([2, 0]).items] == [s.items[2].path, s.items[0].path]


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        get_dataset(tmp_path / "empty")
    (tmp_path / "textonly").mkdir()
    (tmp_path / "textonly" / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        sample_set(tmp_path / "textonly")
    with pytest.raises(InputError, match="Did you mean 'coco-mini'"):
        get_dataset("coco-mni")
    with pytest.raises(InputError, match="data_root"):
        get_dataset("coco")
    with pytest.raises(InputError, match="does not apply"):
        get_dataset("coco-mini", data_root=tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        sample_set(tmp_path / "missing")


# --- manifests ---------------------------------------------------------------------------------

def test_manifest_jsonl_and_sample_set(tmp_path):
    d = tmp_path / "samples"
    d.mkdir()
    for i in range(3):
        _rgb(d / f"{i:05d}.png", 8, 8, seed=i)
    rows = [{"file": f"{i:05d}.png", "caption": f"a cat number {i}", "soa_class": "label_15_cat" if i else "",
             "seed": i} for i in range(3)]
    write_manifest(d / "manifest.jsonl", rows)
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []  # no temp file left
    s = sample_set(d, resolution=8)
    assert s.kind == "samples" and s.info["manifest"].endswith("manifest.jsonl")
    assert [it.caption for it in s.items] == ["a cat number 0", "a cat number 1", "a cat number 2"]
    assert [it.soa_class for it in s.items] == [None, "label_15_cat", "label_15_cat"]
    assert s.items[2].meta == {"seed": 2}
    b = next(s.loader(batch_size=3))
    assert b.captions[1] == "a cat number 1" and b.soa_classes[1] == "label_15_cat"


def test_manifest_csv_roundtrip(tmp_path):
    _rgb(tmp_path / "a.png")
    _rgb(tmp_path / "b.png", seed=1)
    rows = [{"file": "a.png", "caption": 'commas, "quotes" and ünïcode', "soa_class": "cat", "seed": 7},
            {"file": "b.png", "caption": None}]
    write_manifest(tmp_path / "m.csv", rows)
    got = read_manifest(tmp_path / "m.csv")
    assert got[0].caption == 'commas, "quotes" and ünïcode' and got[0].soa_class == "cat"
    assert got[0].extra == {"seed": "7"} and got[1].caption is None and got[1].soa_class is None
    assert got[1].path == tmp_path / "b.png" and got[1].line == 3
    s = get_dataset(tmp_path / "m.csv", resolution=8)  # a manifest file names a set
    assert len(s) == 2


def test_manifest_errors_name_file_and_line(tmp_path):
    _rgb(tmp_path / "a.png")
    m = tmp_path / "m.jsonl"
    m.write_text('{"file": "a.png"}\n\n{"caption": "no file"}\n')
    with pytest.raises(InputError, match=r"m.jsonl line 3: missing column 'file'"):
        read_manifest(m)
    m.write_text('{"file": "a.png"}\n{not json\n')
    with pytest.raises(InputError, match=r"m.jsonl line 2: invalid JSON"):
        read_manifest(m)
    m.write_text('{"file": "a.png"}\n{"file": "gone.png"}\n')
    with pytest.raises(InputError, match=r"line 2: .*gone.png"):
        read_manifest(m)
    m.write_text('{"file": "a.png"}\n{"file": "a.png"}\n')
    with pytest.raises(InputError, match="listed twice"):
        read_manifest(m)
    m.write_text('{"file": "a.png", "caption": 3}\n')
    with pytest.raises(InputError, match="'caption' must be a string"):
        read_manifest(m)
    c = tmp_path / "m.csv"
    c.write_text("path,caption\na.png,hello\n")
    with pytest.raises(InputError, match=r"m.csv: missing column 'file'.*path, caption"):
        read_manifest(c)
    c.write_text("file,caption\na.png,hello\n,empty file cell\n")
    with pytest.raises(InputError, match=r"m.csv row 2 \(line 3\): column 'file' is empty"):
        read_manifest(c)
    with pytest.raises(InputError, match="unknown format"):
        write_manifest(tmp_path / "m.txt", [{"file": "a.png"}])
    d = tmp_path / "both"
    d.mkdir()
    _rgb(d / "a.png")
    write_manifest(d / "manifest.jsonl", [{"file": "a.png"}])
    write_manifest(d / "manifest.csv", [{"file": "a.png"}])
    with pytest.raises(InputError, match="keep one"):
        sample_set(d)


def test_txt_captions_file(tmp_path):
    for i in range(2):
        _rgb(tmp_path / f"{i}.png", seed=i)
    (tmp_path / "caps.txt").write_text("first\nsecond\n")
    s = sample_set(tmp_path, captions_file=tmp_path / "caps.txt", resolution=8)
    assert [it.caption for it in s.items] == ["first", "second"]
    (tmp_path / "caps.txt").write_text("only one\n")
    with pytest.raises(InputError, match="1 lines but"):
        sample_set(tmp_path, captions_file=tmp_path / "caps.txt")


# --- bundled coco-mini ----------------------------------------------------------------------------

def test_coco_mini_bundled():
    s = get_dataset("coco-mini")
    assert len(s) == 100 and s.kind == "coco-mini" and s.resolution == 256
    assert all(len(it.captions) == 5 and it.caption == it.captions[0] for it in s.items)
    ids = [it.meta["image_id"] for it in s.items]
    assert ids == sorted(ids)
    meta = json.loads((COCO_MINI_DIR / "captions.json").read_text())
    for rec in meta["images"]:
        assert hashlib.sha256((COCO_MINI_DIR / rec["file"]).read_bytes()).hexdigest() == rec["sha256"]
        assert "NoDerivs" not in rec["license"]["name"] and rec["license"]["url"].startswith("http")
    a, b = get_dataset("coco-mini:a"), get_dataset("coco-mini:b")
    assert (len(a), len(b)) == (50, 50) and a.name == "coco-mini:a"
    assert {it.path for it in a.items}.isdisjoint({it.path for it in b.items})
    batch = next(a.loader(batch_size=4))
    assert batch.images.shape == (4, 3, 256, 256) and batch.captions[0] == s.items[0].caption
    assert next(get_dataset("coco-mini", resolution=64).loader(2)).images.shape == (2, 3, 64, 64)


# --- real COCO folder -----------------------------------------------------------------------------

@pytest.mark.real_assets
def test_real_coco_folder(shared_dir):
    root = shared_dir / "assets" / "coco" / "coco_mini"
    s = get_dataset("coco", data_root=root)
    assert len(s) == 159 and s.crop == "center"
    assert s.info["n_uncaptioned"] == 80  # the subset caption file covers 79 val images
    full = get_dataset("coco", data_root=root, captions_file=shared_dir / "assets/coco/captions_val2017.json")
    assert full.info["n_uncaptioned"] == 0 and all(len(it.captions) >= 5 for it in full.items)
    same = get_dataset("coco", data_root=root / "val2017",
                          captions_file=shared_dir / "assets/coco/captions_val2017.json")
    assert [it.path for it in same.items] == [it.path for it in full.items]
    few = full.subset(range(3))
    b = next(few.loader(batch_size=3))
    assert b.images.shape == (3, 3, 256, 256) and b.images.dtype == torch.uint8
    first = few.items[0].path
    ref = center_crop_resize(Image.open(first).convert("RGB"), 256)
    assert torch.equal(b.images[0], torch.from_numpy(np.array(ref)).permute(2, 0, 1))
    # the bundled JPEG of the same image is close to the on-the-fly crop (q90 re-encode)
    mini = get_dataset("coco-mini")
    m0 = next(mini.subset([0]).loader(1)).images[0]
    assert mini.items[0].path.name == first.name
    assert (m0.float() - b.images[0].float()).abs().mean() < 3.0
    train = get_dataset("coco", data_root=root, split="train2017")
    assert len(train) == 80 and train.info["n_uncaptioned"] == 0
    with pytest.raises(InputError, match="captions_file"):
        get_dataset("coco", data_root=root, captions_file=root / "annotations" / "missing.json")
    with pytest.raises(InputError, match="unknown COCO split"):
        get_dataset("coco", data_root=root, split="test2017")
