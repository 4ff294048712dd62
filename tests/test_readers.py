"""Data set readers (CUB, MM-CelebA-HQ, LN-COCO, CC3M, captioned folders, COCO 2014 names) on tiny
data sets built here in each format, and the caption splits over them."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lafitebench.data.registry import get_dataset
from lafitebench.data.splits import get_split
from lafitebench.errors import InputError


def _img(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(path)


def _split_folder(root: Path, images: str, text: str, names: list[str], pickled: bool) -> Path:
    for i, n in enumerate(names):
        _img(root / images / f"{n}.jpg", i)
        (root / text / f"{n}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / text / f"{n}.txt").write_text(f"caption one of {n}\ncaption two of {n}\n")
    (root / "test").mkdir()
    if pickled:
        (root / "test" / "filenames.pickle").write_bytes(pickle.dumps(names, protocol=2))
    else:
        (root / "test" / "filenames.txt").write_text("\n".join(names) + "\n")
    return root


def test_cub(tmp_path):
    names = ["001.Black_footed_Albatross/a_1", "002.Laysan_Albatross/b_2", "002.Laysan_Albatross/c_3"]
    root = _split_folder(tmp_path / "cub", "CUB_200_2011/images", "text_c10", names, pickled=True)
    s = get_dataset("cub", data_root=root, resolution=32, split="test")
    assert [it.captions for it in s.items][1] == [f"caption one of {names[1]}", f"caption two of {names[1]}"]
    assert s.crop == "center" and next(iter(s.loader(4))).images.shape == (3, 3, 32, 32)
    split = get_split("cub-test", data_root=root)
    assert len(split) == 30000 and split.rows[3].caption == split.rows[0].caption and split.info["cycled"]
    (root / "text_c10" / f"{names[2]}.txt").unlink()
    with pytest.raises(InputError, match="lack a file.*c_3"):
        get_dataset("cub", data_root=root, split="test")


def test_mm_celeba_hq(tmp_path):
    root = _split_folder(tmp_path / "celeba", "CelebA-HQ-img", "celeba-caption", ["0", "1"], pickled=False)
    s = get_dataset("mm-celeba-hq", data_root=root, split="test")
    assert len(s.items) == 2 and s.items[0].caption == "caption one of 0"
    assert len(get_split("mm-celeba-hq-test", data_root=root)) == 6000
    (root / "test" / "filenames.txt").write_text("")
    with pytest.raises(InputError, match="lists no images"):
        get_dataset("mm-celeba-hq", data_root=root, split="test")


def test_hostile_split_pickle_is_refused(tmp_path):
    root = _split_folder(tmp_path / "cub", "images", "text", ["a"], pickled=False)
    (root / "test" / "filenames.txt").unlink()
    (root / "test" / "filenames.pickle").write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")
    with pytest.raises(InputError, match="refusing to load global 'os.system'"):
        get_dataset("cub", data_root=root, split="test")


def test_ln_coco(tmp_path):
    root = tmp_path / "coco"
    for i in (42, 7):
        _img(root / "val2017" / f"{i:012d}.jpg", i)
    jl = tmp_path / "coco_val_captions.jsonl"
    jl.write_text("".join(json.dumps({"image_id": str(i), "caption": f"In this image {i}"}) + "\n" for i in (42, 7, 42)))
    s = get_dataset("ln-coco", data_root=root, split="val2017", captions_file=jl)
    assert [it.meta["image_id"] for it in s.items] == [7, 42] and len(s.items[1].captions) == 2
    assert len(get_split("ln-coco-test", data_root=root, captions_file=jl)) == 30000
    jl.write_text('{"image_id": 99, "caption": "x"}\n')
    with pytest.raises(InputError, match="not in"):
        get_dataset("ln-coco", data_root=root, split="val2017", captions_file=jl)


def test_cc3m(tmp_path):
    _img(tmp_path / "imgs" / "a.jpg")
    tsv = tmp_path / "cc3m.tsv"
    tsv.write_text("caption\tfilepath\na  red   car\timgs/a.jpg\n")
    s = get_dataset("cc3m", captions_file=tsv)
    assert s.items[0].caption == "a red car"
    tsv.write_text("a car\thttps://example.org/a.jpg\n")
    with pytest.raises(InputError, match="local images only"):
        get_dataset("cc3m", captions_file=tsv)


def test_captioned_folder(tmp_path):
    _img(tmp_path / "f" / "x.png")
    (tmp_path / "f" / "x.txt").write_text("a caption\nanother\n")
    s = get_dataset("captioned-folder", data_root=tmp_path / "f")
    assert s.items[0].captions == ["a caption", "another"]
    _img(tmp_path / "f" / "y.png", 1)
    with pytest.raises(InputError, match="without a .txt.*y.png"):
        get_dataset("captioned-folder", data_root=tmp_path / "f")


def test_sources_refuse_options_they_do_not_read(tmp_path):
    """A source given an option it does not use says so (it used to be ignored silently), also
    through the CLI, naming the flag."""
    from typer.testing import CliRunner

    from lafitebench.cli import app

    root = _split_folder(tmp_path / "cub", "images", "text", ["a", "b"], pickled=False)
    (tmp_path / "c.txt").write_text("x\n")
    with pytest.raises(InputError, match="captions_file does not apply"):
        get_dataset("cub", data_root=root, split="test", captions_file=tmp_path / "c.txt")
    tsv = tmp_path / "cc3m.tsv"
    _img(tmp_path / "i.jpg")
    tsv.write_text("a photo\ti.jpg\n")
    with pytest.raises(InputError, match="data_root does not apply"):
        get_dataset("cc3m", data_root=root, captions_file=tsv)
    with pytest.raises(InputError, match="split does not apply"):
        get_dataset("captioned-folder", data_root=root, split="test")
    r = CliRunner().invoke(app, ["eval", "--reference", "cc3m", "--reference-captions", str(tsv), "--data-root",
                                 str(root), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--data-root does not apply" in " ".join(r.output.split()), r.output


def test_unknown_data_set_names_suggest():
    with pytest.raises(InputError, match="Did you mean 'cub'"):
        get_dataset("cubb")


def _official_zip(path: Path, dim: int = 64, n: int = 4) -> Path:
    import io
    import zipfile

    rng = np.random.default_rng(0)
    img, txt = [], []
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            member = f"{i // 1000:05d}/img{i:08d}.png"
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
            z.writestr(member, buf.getvalue())
            img.append([member, rng.normal(size=dim).tolist()])
            txt.append([member, [rng.normal(size=dim).tolist() for _ in range(2)]])
        z.writestr("dataset.json", json.dumps({"labels": None, "clip_img_features": img, "clip_txt_features": txt}))
    return path


def test_official_zip_images_and_text_features(tmp_path):
    import torch

    z = _official_zip(tmp_path / "data.zip")
    s = get_dataset("official-zip", data_root=z, resolution=32)
    assert len(s.items) == 4 and next(iter(s.loader(4))).images.shape == (4, 3, 32, 32)
    assert len(s.fingerprint()) == 64 and s.find_bad() == []
    split = get_split(z)
    assert len(split) == 4 and split.features.shape == (4, 64)
    assert torch.allclose(split.features.norm(dim=1), torch.ones(4))
    assert split.hash == get_split(z).hash != get_split(z, seed=1).hash
    assert split.head(2).features.shape == (2, 64)
    (tmp_path / "bad.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    with pytest.raises(InputError, match="no dataset.json"):
        get_split(tmp_path / "bad.zip")


@pytest.mark.real_assets
def test_generate_from_an_official_zip_needs_no_clip(tmp_path, shared_dir):
    import warnings

    from typer.testing import CliRunner

    from lafitebench.assets import zoo
    from lafitebench.checkpoints import convert as convert_mod
    from lafitebench.cli import app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_mod.convert(shared_dir / "fixtures/lafite_official/lafite_tiny64.pkl", tmp_path / "m.safetensors",
                            variant="g")
    z = _official_zip(tmp_path / "data.zip", dim=64, n=3)
    r = CliRunner().invoke(app, ["generate", "--model", str(model), "--split", str(z), "--out", str(tmp_path / "o"),
                                 "--device", "cpu"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "o").glob("*.png"))) == 3
    wrong = _official_zip(tmp_path / "wrong.zip", dim=32, n=2)
    r = CliRunner().invoke(app, ["generate", "--model", str(model), "--split", str(wrong), "--out",
                                 str(tmp_path / "o2"), "--device", "cpu"], catch_exceptions=False)
    flat = " ".join(r.output.split())
    assert r.exit_code == 2 and "32-d" in flat and "64-d" in flat and "Traceback" not in r.output
    assert not (tmp_path / "o2").exists()  # refused before the output folder was touched
