"""CLIP loading, encoders and the CLIP score.

No CLIP weights exist here: a tiny randomly initialised open_clip model (custom config,
``allow_random=True``) stands in, and the real loading path is exercised with files this test
writes itself (a state dict and a TorchScript archive like OpenAI's ``ViT-B-32.pt``).
"""
from __future__ import annotations

import glob
import json
import warnings
import pickle
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from lafitebench.errors import InputError, WeightsError
from lafitebench.encoders import clip as clip_models
from lafitebench.data.batch import Batch
from lafitebench.encoders.clip import (
    caption_token_lengths,
    clip_preprocess_uint8,
    count_truncated,
    encode_images_preprocessed,
    encode_text,
    load_clip,
    read_torchscript_state_dict,
)
from lafitebench.metrics.clip_score import ClipScoreMetric, clip_score_from_features
from lafitebench.io.files import sha256_file

# ------------------------------------------------------------------ tiny CLIP test fixture helper

TINY_CLIP_NAME = "lafitebench-tiny-test-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_tiny_clip(folder: Path) -> str:
    """Register the tiny open_clip config (test-only; never in the product path); return its name."""
    if TINY_CLIP_NAME not in open_clip.list_models():
        path = Path(folder) / f"{TINY_CLIP_NAME}.json"
        path.write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(path)
    return TINY_CLIP_NAME


@pytest.fixture(scope="session")
def tiny_name(tmp_path_factory) -> str:
    return register_tiny_clip(tmp_path_factory.mktemp("clipcfg"))


@pytest.fixture(scope="session")
def tiny_weights(tiny_name, tmp_path_factory) -> Path:
    """A state-dict file of a seeded random tiny model (the 'real' loading path reads it)."""
    torch.manual_seed(0)
    model = open_clip.create_model(tiny_name)
    path = tmp_path_factory.mktemp("clipw") / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny(tiny_name, tiny_weights):
    return load_clip(tiny_name, None, weights=tiny_weights)


def _config(name, weights=None, pretrained=None, batch_size=4):
    return SimpleNamespace(
        clip_model=name, clip_pretrained=pretrained, clip_weights=weights, device="cpu",
        batch_size=batch_size, resolution=256,
    )


def _images(n: int, size: int = 256, seed: int = 0) -> torch.Tensor:
    """Smooth random colour fields plus noise: uint8 [n,3,size,size] with image-like statistics."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.08 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


CAPTIONS = [
    "a cat sitting on a sofa", "two dogs run across a field", "a plate of pizza with olives",
    "a red bus parked at the station", "a giraffe eating leaves from a tall tree",
    "a man riding a wave on a surfboard", "a bowl of fruit on a wooden table",
]


def _direct_pil_scores(model, preprocess, tokenizer, images_uint8, captions) -> torch.Tensor:
    """Reference: open_clip's own PIL preprocessing, encode_image/encode_text, cosine, clamp."""
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images_uint8]
    x = torch.stack([preprocess(p) for p in pil])
    with torch.no_grad():
        fi = model.encode_image(x)
        ft = model.encode_text(tokenizer(captions))
    fi = fi / fi.norm(dim=-1, keepdim=True)
    ft = ft / ft.norm(dim=-1, keepdim=True)
    return 100 * (fi * ft).sum(-1).clamp(min=0).double()


# ------------------------------------------------------------------ loading


def test_load_from_state_dict_file_records_hash(tiny_name, tiny_weights, tiny):
    model, _, _, info = tiny
    ref = torch.load(tiny_weights, weights_only=True)
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    assert info["weights_sha256"] == sha256_file(tiny_weights)
    assert info["weights_source"] == "path" and info["random_init"] is False
    assert info["model"] == tiny_name and info["preprocess"]["size"] in ((64, 64), 64)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_load_torchscript_archive_without_running_its_code(tiny_name, tiny_weights, tiny, tmp_path):
    """OpenAI's official files are TorchScript archives: read safely, loaded strictly."""
    model = tiny[0]
    scripted = tmp_path / "tiny_scripted.pt"
    with warnings.catch_warnings():  # torch.jit.script is deprecated, still how such files exist
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model).save(str(scripted))
    state = read_torchscript_state_dict(scripted)
    ref = model.state_dict()
    assert set(ref) <= set(state) and all(torch.equal(state[k], ref[k]) for k in ref)
    m2, _, _, info = load_clip(tiny_name, None, weights=scripted)
    assert all(torch.equal(v, ref[k]) for k, v in m2.state_dict().items())
    assert info["weights_sha256"] == sha256_file(scripted)


def test_torchscript_reader_refuses_code_globals(tmp_path):
    evil = tmp_path / "evil.pt"
    payload = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."  # os.system('true')
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("evil/data.pkl", payload)
        z.writestr("evil/constants.pkl", pickle.dumps(()))
        z.writestr("evil/code/__torch__/m.py", "class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n")
    with pytest.raises(WeightsError, match=r"refusing to load global 'os\.system'"):
        read_torchscript_state_dict(evil)


def test_default_openai_offline_names_file_and_hash():
    with pytest.raises(WeightsError) as e:
        load_clip("ViT-B-32", "openai")
    msg = str(e.value)
    assert "ViT-B-32.pt" in msg
    assert "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af" in msg
    assert "offline" in msg


def test_no_silent_random_weights(tiny_name):
    with pytest.raises(WeightsError, match="random CLIP weights are never used"):
        load_clip(tiny_name, None)
    with pytest.raises(WeightsError, match="random CLIP weights are never used"):
        load_clip(tiny_name, "")
    _, _, _, info = load_clip(tiny_name, None, allow_random=True)
    assert info["random_init"] is True and info["weights_sha256"] is None


def test_unknown_tag_and_model():
    with pytest.raises(WeightsError, match="unknown pretrained tag 'nope'.*openai"):
        load_clip("ViT-B-32", "nope")
    with pytest.raises(InputError, match="unknown CLIP model 'ViT-Q-99'"):
        load_clip("ViT-Q-99", "openai")


def test_wrong_architecture_file_is_weights_error(tiny_name, tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, bad)
    with pytest.raises(WeightsError, match="could not load CLIP weights"):
        load_clip(tiny_name, None, weights=bad)


def test_tag_settings_applied_to_file_weights(tiny_name, tiny_weights, monkeypatch):
    """With weights from a file the tag's QuickGELU and mean/std still apply (open_clip drops them)."""
    tag = {"quick_gelu": True, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "resize_mode": "shortest"}
    monkeypatch.setattr(clip_models, "_tag_config", lambda m, p: dict(tag) if p == "fake-tag" else {})
    model, pre, _, info = load_clip(tiny_name, "fake-tag", weights=tiny_weights)
    assert info["quick_gelu"] is True and tuple(info["preprocess"]["mean"]) == (0.5, 0.5, 0.5)
    assert any(type(m).__name__ == "QuickGELU" for m in model.modules())
    assert tuple(pre.transforms[-1].mean) == (0.5, 0.5, 0.5)


# ------------------------------------------------------------------ encoders


def test_truncation_counting(tiny):
    _, _, tok, _ = tiny
    exactly_77 = " ".join(["a"] * 75)  # 75 BPE tokens + start + end
    over = " ".join(["a"] * 76)
    assert caption_token_lengths(tok, [exactly_77, over]) == [77, 78]
    long_caption = "a very long caption " + "with many many words " * 20
    assert count_truncated(tok, ["a cat", exactly_77, over, long_caption]) == 2
    feats, n_trunc = encode_text(tiny[0], tok, ["a cat", long_caption])
    assert n_trunc == 1 and feats.dtype == torch.float32
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2))


def test_tensor_preprocessing_close_to_pil(tiny):
    """Tensor path vs open_clip's PIL path: only uint8 rounding differs (<=2 levels, <1% of values)."""
    _, preprocess, _, info = tiny
    cfg = dict(info["preprocess"])
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    for size in (256, 173):  # downscale to 64 from a square and from an odd size
        imgs = _images(4, size, seed=size)
        pil = torch.stack([preprocess(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in imgs])
        ours = clip_preprocess_uint8(imgs, cfg)
        levels = ((pil - ours) * std * 255).abs()
        assert levels.max() <= 2.01
        assert (levels > 0.5).float().mean() < 0.01


def test_matches_direct_open_clip_computation(tiny):
    model, preprocess, tok, info = tiny
    imgs = _images(len(CAPTIONS), seed=1)
    ref = _direct_pil_scores(model, preprocess, tok, imgs, CAPTIONS)
    assert (ref == 0).any() and (ref > 0).any()  # random model: the clamp is exercised
    # exact: identical preprocessed tensors through our encoders and score function
    x = torch.stack([preprocess(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in imgs])
    ours_exact = clip_score_from_features(encode_images_preprocessed(model, x), encode_text(model, tok, CAPTIONS)[0])
    torch.testing.assert_close(ours_exact, ref, atol=1e-4, rtol=0)
    # end to end: the accumulator (tensor preprocessing) vs the PIL reference
    acc = ClipScoreMetric(_config(info["model"], weights=info["weights_path"]))
    acc.update(Batch(images=imgs, files=[f"{i}.png" for i in range(len(imgs))], captions=list(CAPTIONS)))
    out = acc.compute()
    res, row = out.details, out.rows[0]
    assert res["n"] == len(CAPTIONS) and res["n_truncated"] == 0 and row.n == len(CAPTIONS)
    assert abs(res["clip_score"] - ref.mean().item()) < 0.01  # 100-point scale; measured <= 2e-5 (uint8 rounding)
    assert row.value == res["clip_score"]
    assert res["weights_sha256"] == info["weights_sha256"]
    assert "per image-caption pair" in row.notes and "ViT-B/32" in row.notes
    assert row.id.startswith(f"clip_score_{info['model']}_file-")


def test_batch_size_independence(tiny):
    info = tiny[3]
    imgs = _images(len(CAPTIONS), seed=2)
    files = [f"{i}.png" for i in range(len(imgs))]
    results = []
    for bs in (1, 3, len(CAPTIONS)):
        acc = ClipScoreMetric(_config(info["model"], weights=info["weights_path"], batch_size=bs))
        for s in range(0, len(imgs), bs):
            acc.update(Batch(images=imgs[s : s + bs], files=files[s : s + bs], captions=CAPTIONS[s : s + bs]))
        results.append(acc.compute().details["clip_score"])
    assert max(results) - min(results) < 1e-4


def test_score_function_clamps_each_pair():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    txt = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    scores = clip_score_from_features(img, txt)
    torch.testing.assert_close(scores, torch.tensor([100.0, 0.0, 100 / 2**0.5], dtype=torch.float64))
    with pytest.raises(InputError, match="one caption per image"):
        clip_score_from_features(img, txt[:2])


def test_torchmetrics_clamps_the_mean_instead():
    """Documented difference: torchmetrics CLIPScore = max(mean(100 cos), 0); ours = mean(100 max(cos, 0))."""
    import torchmetrics.multimodal.clip_score as tm_clip  # torchmetrics is in the test extras

    def torchmetrics_value(cos: torch.Tensor) -> float:
        # torchmetrics' own update/compute, with its feature step replaced by our cosines
        metric = tm_clip.CLIPScore(model_name_or_path=lambda: (None, None))
        original = tm_clip._clip_score_update
        tm_clip._clip_score_update = lambda s, t, m, p: (100 * cos, len(cos))
        try:
            metric.update(["x"] * len(cos), ["y"] * len(cos))
            return float(metric.compute())
        finally:
            tm_clip._clip_score_update = original

    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0], [1.0, -1.0]]), dim=-1)
    txt = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [-1.0, 0.1], [1.0, -0.5]]), dim=-1)
    cos = (img * txt).sum(-1)
    assert (cos < 0).any()
    ours = float(clip_score_from_features(img, txt).mean())
    tm = torchmetrics_value(cos)
    assert tm == pytest.approx(max(100 * cos.double().mean().item(), 0.0), abs=1e-4)
    assert ours == pytest.approx((100 * cos.double().clamp(min=0)).mean().item(), abs=1e-5)
    assert ours > tm + 1.0  # a pair with a negative cosine: the conventions differ
    flipped = txt * torch.sign(cos)[:, None]  # every cosine >= 0: the conventions agree
    assert float(clip_score_from_features(img, flipped).mean()) == pytest.approx(
        torchmetrics_value((img * flipped).sum(-1)), abs=1e-4
    )


# ------------------------------------------------------------------ errors and checks


def test_missing_caption_errors(tiny):
    info = tiny[3]
    acc = ClipScoreMetric(_config(info["model"], weights=info["weights_path"]))
    imgs = _images(2, 64)
    with pytest.raises(InputError, match=r"b\.png.*captions file"):
        acc.update(Batch(images=imgs, files=["a.png", "b.png"], captions=["a cat", None]))
    with pytest.raises(InputError, match="without a caption"):
        acc.update(Batch(images=imgs, files=["a.png", "b.png"]))
    with pytest.raises(InputError, match="no images were scored"):
        acc.compute()


def test_check_is_cheap_and_names_problems(tiny):
    info = tiny[3]
    item = lambda p, c: SimpleNamespace(path=Path(p), caption=c)  # noqa: E731
    samples = SimpleNamespace(name="gen", items=[item("1.png", "a dog"), item("2.png", None)])
    with pytest.raises(InputError, match=r"1 of 2 images in gen have no caption \(e\.g\. 2\.png\)"):
        ClipScoreMetric.check(_config(info["model"], weights=info["weights_path"]), samples)
    ok = SimpleNamespace(name="gen", items=[item("1.png", "a dog")])
    ClipScoreMetric.check(_config(info["model"], weights=info["weights_path"]), ok)
    with pytest.raises(WeightsError, match="ViT-B-32.pt"):
        ClipScoreMetric.check(_config("ViT-B-32", pretrained="openai"), ok)


@pytest.mark.real_assets
def test_tensor_preprocessing_on_real_coco_images(shared_dir, tiny):
    """Real photos at 256² (as the engine decodes them) and at their original size vs the PIL path."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = dict(tiny[3]["preprocess"], size=224)  # ViT-B/32's input size
    pil_t = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    files = sorted(glob.glob(str(shared_dir / "assets/coco/coco_mini/val2017/*.jpg")))[:8]
    assert files
    worst, frac = 0.0, []
    for f in files:
        im = Image.open(f).convert("RGB")
        w, h = im.size
        s = min(w, h)
        sq = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((256, 256), Image.BICUBIC)
        for p in (im, sq):
            x = torch.from_numpy(np.array(p)).permute(2, 0, 1)[None]
            levels = ((pil_t(p)[None] - clip_preprocess_uint8(x, cfg)) * std * 255).abs()
            worst = max(worst, levels.max().item())
            frac.append((levels > 0.5).float().mean().item())
    assert worst <= 2.01 and np.mean(frac) < 0.01


def test_engine_runs_clip_score(tiny, tmp_path):
    """Through the evaluation engine: EvalConfig fields, check(), one table row with provenance."""
    from lafitebench.data.sources.folder import sample_set
    from lafitebench.data.manifest import write_manifest
    from lafitebench.metrics.engine import EvalConfig, evaluate

    info = tiny[3]
    imgs = _images(4, seed=3)
    for i, im in enumerate(imgs):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(tmp_path / f"{i}.png")
    write_manifest(tmp_path / "manifest.jsonl", [{"file": f"{i}.png", "caption": CAPTIONS[i]} for i in range(4)])
    config = EvalConfig(metrics=["clip"], clip_model=info["model"], clip_pretrained=None,
                        clip_weights=info["weights_path"], device="cpu", batch_size=3, progress=False,
                        use_cache=False)
    result = evaluate(sample_set(tmp_path), None, config)
    row = result.table.iloc[0]
    assert len(result.table) == 1 and row.metric == "CLIP score" and row.n == 4
    direct = ClipScoreMetric(config)
    direct.update(Batch(images=imgs, files=[f"{i}.png" for i in range(4)], captions=CAPTIONS[:4]))
    assert row.value == pytest.approx(direct.compute().details["clip_score"], abs=1e-4)
    assert result.provenance["metric_details"]["clip"]["weights_sha256"] == info["weights_sha256"]
