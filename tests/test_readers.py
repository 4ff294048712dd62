"""Data set readers (CUB, MM-CelebA-HQ, LN-COCO, CC3M, captioned folders, COCO 2014 names) on tiny
data sets built here in each format, and the caption splits over them."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lafitebench.data.datasets import get_dataset
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


def test_unknown_data_set_names_suggest():
    with pytest.raises(InputError, match="Did you mean 'cub'"):
        get_dataset("cubb")
