"""Distributed evaluation: 2 gloo processes on CPU (torchrun) give the single-process result.

FID within 1e-9 relative (float64 sums added in another order); KID, IS, CLIP score and SOA
identical (rows gathered in sample order; each process runs the same batches as one process).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lafitebench.data.sources.coco import coco_mini
from lafitebench.data.manifest import write_manifest

DRIVER = Path(__file__).parent / "helpers" / "dist_eval.py"
SOA_KEYS = ["label_15_cat", "label_16_dog", "label_02_car", "label_17_horse"]


def _folder(root: Path, name: str, items, resolution: int) -> Path:
    d = root / name
    d.mkdir()
    rows = []
    for i, it in enumerate(items):
        Image.open(it.path).convert("RGB").resize((resolution, resolution)).save(d / f"{i:03d}.png")
        rows.append({"file": f"{i:03d}.png", "caption": it.caption, "soa_class": SOA_KEYS[i % len(SOA_KEYS)]})
    write_manifest(d / "manifest.jsonl", rows)
    return d


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """10 samples (batches of 4 split unevenly between 2 ranks: 4+2 and 4) and 8 reference images."""
    root = tmp_path_factory.mktemp("dist")
    mini = coco_mini()
    return _folder(root, "samples", mini.items[:10], 64), _folder(root, "reference", mini.items[10:18], 64)


def _run(tmp_path: Path, spec: dict, world: int) -> dict:
    spec_file, out = tmp_path / f"spec{world}.json", tmp_path / f"out{world}.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "LAFITEBENCH_CACHE": str(tmp_path / f"cache{world}"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(DRIVER), str(spec_file), str(out)]
    if world > 1:
        torchrun = shutil.which("torchrun") or pytest.fail("torchrun not found")
        cmd = [torchrun, "--standalone", "--nproc_per_node", str(world), *cmd[1:]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def _compare(one: dict, two: dict, exact: set[str]) -> None:
    assert two["distributed"]["world_size"] == 2 and two["distributed"]["backend"] == "gloo"
    assert one["distributed"]["world_size"] == 1
    assert [r["metric_id"] for r in one["rows"]] == [r["metric_id"] for r in two["rows"]]
    for a, b in zip(one["rows"], two["rows"]):
        if a["metric"] in exact:
            assert a["value"] == b["value"] and (a["std"] == b["std"] or a["std"] != a["std"]), a["metric"]
        else:
            assert abs(a["value"] - b["value"]) <= 1e-9 * abs(a["value"]), (a, b)
        for k in ("ci_low", "ci_high"):  # --bootstrap intervals: resampled rows gathered in sample order
            assert (a[k] != a[k] and b[k] != b[k]) or abs(a[k] - b[k]) <= 1e-9 * abs(a[k]), (a["metric_id"], k)


@pytest.mark.slow
@pytest.mark.real_assets
def test_two_processes_equal_one_real_inception(folders, shared_dir, tmp_path):
    """The paper's metrics and every backbone metric (small random DINOv2 and CLIP towers), with
    bootstrap intervals: values and intervals of 2 processes equal 1 process to 1e-9."""
    from helpers.tiny_backbones import CLIP, DINO, register_test_backbones
    from helpers.tiny_clip import CLIP_NAME

    weights = register_test_backbones(tmp_path)
    config = dict(metrics=["fid", "kid", "soa", "fd", "clip-fd", "kd", "cmmd", "prdc"], fid_blur=[0, 1],
                  resolution=64, batch_size=4, device="cpu",
                  inception_weights=str(shared_dir / "assets/inception/inception-2015-12-05-pool3-fidelity-layout.pth"),
                  detector=str(shared_dir / "assets/yolo/yolov8n_int8_openvino_model"), kid_subset_size=5,
                  kid_subsets=20, progress=False, use_cache=True, bootstrap=20, fd_backbone=DINO, kd_backbone=DINO,
                  clip_fd_backbone=CLIP, cmmd_backbone=CLIP, prdc_backbone="inception", backbone_weights=weights)
    spec = {"samples": str(folders[0]), "reference": str(folders[1]), "config": config,
            "clip_config": str(tmp_path / f"{CLIP_NAME}.json"), "test_backbones": True}
    one, two = _run(tmp_path, spec, 1), _run(tmp_path, spec, 2)
    assert len(one["rows"]) == 2 + 1 + 2 + 3 + 1 + 4 and all(r["ci_low"] == r["ci_low"] for r in one["rows"])
    _compare(one, two, exact={"KID", "SOA-C", "SOA-I"})
    assert two["forwards"]["sample_forwards"] == one["forwards"]["sample_forwards"] == 2 * 10
    assert two["forwards"]["reference_forwards"] == 2 * 8


@pytest.mark.slow
def test_two_processes_equal_one_is_and_clip(folders, tmp_path):
    import open_clip
    import torch

    from lafitebench.encoders.inception import save_random_inception_weights

    inception = save_random_inception_weights(tmp_path / "random-inception.pth")
    clip_cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16,
                                                "head_width": 32},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    cfg_file = tmp_path / "lafitebench-dist-test-clip.json"
    cfg_file.write_text(json.dumps(clip_cfg))
    open_clip.add_model_config(cfg_file)
    torch.manual_seed(0)
    clip_weights = tmp_path / "clip.pt"
    torch.save(open_clip.create_model("lafitebench-dist-test-clip").state_dict(), clip_weights)
    config = dict(metrics=["is", "clip"], resolution=64, batch_size=4, device="cpu", isc_splits=2,
                  inception_weights=str(inception), clip_model="lafitebench-dist-test-clip", clip_pretrained=None,
                  clip_weights=str(clip_weights), progress=False, use_cache=False)
    spec = {"samples": str(folders[0]), "config": config, "clip_config": str(cfg_file)}
    one, two = _run(tmp_path, spec, 1), _run(tmp_path, spec, 2)
    _compare(one, two, exact={"IS", "CLIP score"})
