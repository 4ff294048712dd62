"""FD-DINOv2, CLIP-FD, KD, CMMD, precision/recall/density/coverage, bootstrap intervals, presets.

Formulas against the reference implementations installable here (torch-fidelity 0.4's P/R, the
``prdc`` package, clean-fid's Fréchet distance) and a transcription of the CMMD paper's estimator;
preprocessing against the toolkits' own code (or a transcription) on real COCO images; the whole
path (one pass, cache, ids, intervals, torchrun) with small random backbones, because no DINOv2 or
CLIP weights exist on these machines.
"""
from __future__ import annotations

import json
import sys
import types
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.tiny_backbones import CLIP, DINO, DINO_KW, meta_dinov2_file, register_test_backbones
from helpers.tiny_extractor import TinyExtractor
from lafitebench.data.sources.folder import folder_set
from lafitebench.encoders import preprocess as pp
from lafitebench.encoders.backbone import IMAGENET_MEAN, IMAGENET_STD
from lafitebench.encoders.clip import CLIP_MEAN, CLIP_STD
from lafitebench.encoders.dinov2 import build_dinov2, meta_pos_embed
from lafitebench.errors import InputError, WeightsError
from lafitebench.metrics.bootstrap import counts, draw, weighted_moments
from lafitebench.metrics.cmmd import cmmd_from_features, cmmd_replicates
from lafitebench.metrics.config import EvalConfig
from lafitebench.metrics.engine import evaluate
from lafitebench.metrics.fd import fd_from_features
from lafitebench.metrics.prdc import prdc_terms

def _feats(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, d)) + shift).astype(np.float32)


def _ties(n: int, d: int, seed: int) -> np.ndarray:
    """Small-integer features: many distances tie with a k-NN radius, so <= and < differ."""
    return np.random.default_rng(seed).integers(0, 3, size=(n, d)).astype(np.float32)


# --- formulas --------------------------------------------------------------------------------------

def test_precision_recall_equal_torch_fidelity():
    from torch_fidelity.metric_prc import calculate_precision_recall_full, calculate_precision_recall_part

    for fake, real in ((_feats(230, 24, 0, 0.3), _feats(260, 24, 1)), (_ties(150, 6, 0), _ties(170, 6, 1))):
        ours = prdc_terms(fake, real, pr_k=3, pr_rule="<=", block=64).values()  # several blocks
        for fn in (calculate_precision_recall_full, calculate_precision_recall_part):
            p, r = fn(torch.from_numpy(fake), torch.from_numpy(real), 3, 100)
            assert abs(ours["precision"] - p) <= 1e-6 and abs(ours["recall"] - r) <= 1e-6
        assert 0.2 < ours["precision"] < 1  # not a trivial all-in / all-out case
    strict = prdc_terms(fake, real, pr_k=3, pr_rule="<", block=64).values()
    assert strict["precision"] < ours["precision"]  # the tie-heavy set tells the rules apart


def test_prdc_equal_the_prdc_package(capsys):
    import prdc

    for fake, real in ((_feats(210, 16, 2, 0.4), _feats(190, 16, 3)), (_ties(160, 6, 2), _ties(140, 6, 3))):
        ref = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
        ours = prdc_terms(fake, real, pr_k=5, pr_rule="<", dc_k=5, dc_rule="<", block=50).values()
        for k in ("precision", "recall", "density", "coverage"):
            assert abs(ours[k] - float(ref[k])) <= 1e-6, k
        assert 0 < ours["coverage"] < 1


def test_fd_equals_clean_fid_on_features():
    from cleanfid.fid import frechet_distance

    x, y = _feats(400, 20, 4, 0.2), _feats(350, 20, 5)
    ref = frechet_distance(x.astype(np.float64).mean(0), np.cov(x.astype(np.float64), rowvar=False),
                           y.astype(np.float64).mean(0), np.cov(y.astype(np.float64), rowvar=False))
    assert abs(fd_from_features(x, y) - ref) <= 1e-6 * ref


def _cmmd_paper(x: np.ndarray, y: np.ndarray) -> float:
    """google-research/cmmd distance.mmd, transcribed (σ = 10, scale 1000, every pair averaged)."""
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    xs, ys = torch.diag(x @ x.T), torch.diag(y @ y.T)
    gamma = 1 / (2 * 10**2)
    k_xx = torch.mean(torch.exp(-gamma * (-2 * x @ x.T + xs[:, None] + xs[None, :])))
    k_xy = torch.mean(torch.exp(-gamma * (-2 * x @ y.T + xs[:, None] + ys[None, :])))
    k_yy = torch.mean(torch.exp(-gamma * (-2 * y @ y.T + ys[:, None] + ys[None, :])))
    return float(1000 * (k_xx + k_yy - 2 * k_xy))


def test_cmmd_equals_the_paper_estimator_blocked():
    x, y = _feats(90, 12, 6, 0.5) * 3, _feats(70, 12, 7) * 3
    ours = cmmd_from_features(x, y, block=16)
    assert abs(ours - _cmmd_paper(x.astype(np.float64), y.astype(np.float64))) <= 1e-9 * abs(ours)
    assert abs(ours - _cmmd_paper(x, y)) <= 1e-3 * abs(ours)  # the paper's code runs in float32
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 200)  # noqa: E731
    kxx, kyy, kxy = k(x.astype(float), x.astype(float)), k(y.astype(float), y.astype(float)), k(x.astype(float), y.astype(float))
    u = 1000 * ((kxx.sum() - 90) / (90 * 89) + (kyy.sum() - 70) / (70 * 69) - 2 * kxy.mean())
    assert abs(cmmd_from_features(x, y, estimator="unbiased", block=32) - u) <= 1e-9 * abs(u)


def test_a_set_against_itself():
    x = _feats(120, 16, 11) * 2
    assert abs(fd_from_features(x, x)) <= 1e-9 and cmmd_from_features(x, x, block=32) == 0.0
    t = prdc_terms(x, x, pr_k=3, pr_rule="<=", dc_k=5, dc_rule="<", block=50).values()
    assert t["precision"] == t["recall"] == t["coverage"] == 1.0
    shifted = cmmd_from_features(x, x + 3.0)
    assert shifted > 0 and cmmd_from_features(x, x + 3.0, estimator="unbiased") > 0


def test_resampling_by_counts_equals_materialised_resample():
    x, y = _feats(60, 8, 8, 0.3), _feats(50, 8, 9)
    idx = draw(7, 0, 60)
    mu, sigma = weighted_moments(x, counts(idx, 60))
    xr = x[idx].astype(np.float64)
    assert np.allclose(mu, xr.mean(0), rtol=0, atol=1e-12) and np.allclose(sigma, np.cov(xr, rowvar=False), atol=1e-12)
    reps = cmmd_replicates(torch.from_numpy(x), torch.from_numpy(y), np.stack([counts(idx, 60)]), sigma=10.0,
                           scale=1000.0, estimator="biased", block=16)
    assert abs(reps[0] - cmmd_from_features(x[idx], y)) <= 1e-9 * abs(reps[0])


def test_features_of_different_backbones_or_too_few_points_are_refused():
    x = _feats(10, 8, 0)
    with pytest.raises(InputError, match="different backbones"):
        fd_from_features(x, x, tags=("dinov2-vitl14:pil-bicubic", "dinov2-vitl14:torch-bicubic-aa"))
    with pytest.raises(InputError, match="different widths"):
        cmmd_from_features(x, _feats(10, 4, 1))
    with pytest.raises(InputError, match=r"k=5 need at least 6 images"):
        prdc_terms(x[:5], x, pr_k=5)


# --- preprocessing parity on real COCO images -------------------------------------------------------

@pytest.fixture(scope="module")
def coco_uint8(shared_dir):
    files = sorted((shared_dir / "assets/coco/coco_mini/val2017").glob("*.jpg"))[:4]
    ims = [np.asarray(Image.open(f).convert("RGB").resize((256, 256), Image.Resampling.BICUBIC)) for f in files]
    return torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).contiguous()


def test_torch_fidelity_preprocessing_is_its_own(coco_uint8):
    from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP
    from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2

    dino = FeatureExtractorDinoV2.__new__(FeatureExtractorDinoV2)  # its forward, with the network as identity
    torch.nn.Module.__init__(dino)
    dino.feature_extractor_internal_dtype, dino.features_list, dino.model = torch.float32, ["dinov2"], torch.nn.Identity()
    assert torch.equal(dino.forward(coco_uint8)[0], pp.tf_bilinear(coco_uint8, 224, IMAGENET_MEAN, IMAGENET_STD))
    clip = FeatureExtractorCLIP.__new__(FeatureExtractorCLIP)
    torch.nn.Module.__init__(clip)
    clip.feature_extractor_internal_dtype, clip.features_list, clip.resolution = torch.float32, ["clip"], 224
    clip.model = types.SimpleNamespace(visual=lambda x: x)
    assert torch.equal(clip.forward(coco_uint8)[0], pp.tf_bilinear(coco_uint8, 224, CLIP_MEAN, CLIP_STD))


def test_clean_fid_clip_preprocessing_is_its_own(coco_uint8, monkeypatch):
    monkeypatch.setitem(sys.modules, "clip", types.ModuleType("clip"))  # clean-fid imports OpenAI's package at the top
    from cleanfid.clip_features import CLIP_fx, img_preprocess_clip

    fx = CLIP_fx.__new__(CLIP_fx)
    fx.model = types.SimpleNamespace(encode_image=lambda x: x)
    theirs = torch.cat([fx(torch.from_numpy(img_preprocess_clip(im.permute(1, 2, 0).numpy()).astype(np.float32))
                           .permute(2, 0, 1)) for im in coco_uint8])
    assert torch.allclose(theirs, pp.pil_bicubic_crop(coco_uint8, 224, CLIP_MEAN, CLIP_STD), rtol=0, atol=1e-6)


def test_dgm_eval_edm2_and_cmmd_preprocessing_equal_their_transcriptions(coco_uint8):
    import torchvision.transforms as T

    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in coco_uint8]
    # dgm-eval DINOv2Encoder.transform (= edm2 resize_mode='pil')
    dgm = T.Compose([T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                     T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    assert torch.allclose(torch.stack([dgm(im) for im in pil]), pp.pil_bicubic(coco_uint8, 224, IMAGENET_MEAN,
                                                                                   IMAGENET_STD), atol=1e-6)
    # edm2 DINOv2Detector(resize_mode='torch')
    x = torch.nn.functional.interpolate(coco_uint8.to(torch.float32), size=(224, 224), mode="bicubic", antialias=True)
    x = (x / 255 - torch.tensor(IMAGENET_MEAN).view(1, -1, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, -1, 1, 1)
    assert torch.allclose(x, pp.torch_bicubic_aa(coco_uint8, 224, IMAGENET_MEAN, IMAGENET_STD), atol=1e-6)
    # google-research/cmmd: _center_crop_and_resize (PIL), /255, _resize_bicubic, CLIPImageProcessor normalise
    arr = np.stack([np.asarray(im.resize((336, 336), resample=Image.BICUBIC)).astype(np.float32) for im in pil]) / 255.0
    t = torch.nn.functional.interpolate(torch.from_numpy(arr.transpose(0, 3, 1, 2)), size=(336, 336), mode="bicubic")
    t = (t - torch.tensor(CLIP_MEAN).view(1, -1, 1, 1)) / torch.tensor(CLIP_STD).view(1, -1, 1, 1)
    assert torch.allclose(t, pp.cmmd(coco_uint8, 336, CLIP_MEAN, CLIP_STD), atol=1e-6)
    # the preprocessings differ from each other (they are part of the metric id for a reason)
    assert not torch.allclose(pp.pil_bicubic(coco_uint8, 224, IMAGENET_MEAN, IMAGENET_STD),
                              pp.torch_bicubic_aa(coco_uint8, 224, IMAGENET_MEAN, IMAGENET_STD), atol=1e-3)


# --- DINOv2 from Meta's file format ----------------------------------------------------------------

def test_dinov2_loads_meta_files_and_resamples_positions_as_meta(tmp_path):
    import math

    f = meta_dinov2_file(tmp_path / "dinov2.pth")
    sd = torch.load(f, weights_only=True)
    model = build_dinov2("vit_small_patch14_dinov2", f, 28, DINO_KW)
    # Meta's interpolate_pos_encoding at 28² (2×2 patches of a 4×4 grid): bicubic, scale (2 + 0.1) / 4
    pos = sd["pos_embed"]
    m, dim = int(math.sqrt(pos.shape[1] - 1)), pos.shape[-1]
    patch = torch.nn.functional.interpolate(pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2),
                                            scale_factor=((2 + 0.1) / m, (2 + 0.1) / m), mode="bicubic",
                                            antialias=False).permute(0, 2, 3, 1).reshape(1, 4, dim)
    assert torch.equal(model.pos_embed, torch.cat([pos[:, :1], patch], 1))
    assert torch.equal(meta_pos_embed(pos, 4), pos)
    x = torch.randn(2, 3, 28, 28)
    assert torch.equal(model(x), model.forward_features(x)[:, 0])  # the CLS token after the final norm
    bad = tmp_path / "other.pth"
    torch.save({"pos_embed": pos, "cls_token": sd["cls_token"]}, bad)
    with pytest.raises(WeightsError, match="other.pth"):
        build_dinov2("vit_small_patch14_dinov2", bad, 28, DINO_KW)


# --- the whole path with random backbones ----------------------------------------------------------

@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    return register_test_backbones(tmp_path_factory.mktemp("backbones"))


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    from lafitebench.data.sources.coco import coco_mini

    root = tmp_path_factory.mktemp("modern")
    mini = coco_mini()
    out = []
    for name, items in (("samples", mini.items[:24]), ("reference", mini.items[50:80])):
        d = root / name
        d.mkdir()
        for i, it in enumerate(items):
            Image.open(it.path).convert("RGB").resize((64, 64)).save(d / f"{i:03d}.png")
        out.append(d)
    return out


def _config(backbones, **kw) -> EvalConfig:
    base = dict(metrics=["fid", "fd", "clip-fd", "kd", "cmmd", "prdc"], resolution=64, batch_size=8,
                fd_backbone=DINO, kd_backbone=DINO, clip_fd_backbone=CLIP, cmmd_backbone=CLIP,
                prdc_backbone="inception", backbone_weights=backbones, kid_subset_size=10, kid_subsets=10,
                progress=False, device="cpu")
    return EvalConfig(**{**base, **kw})


class CountingSet:
    """An image set whose loader counts the passes made over it."""

    def __init__(self, inner):
        self.inner, self.passes = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def loader(self, *a, **kw):
        self.passes += 1
        return self.inner.loader(*a, **kw)


def test_one_pass_feeds_every_backbone_and_the_cache_serves_the_next_run(sets, backbones, tmp_path, monkeypatch):
    monkeypatch.setenv("LAFITEBENCH_CACHE", str(tmp_path / "cache"))
    s, r = CountingSet(folder_set(str(sets[0]), resolution=64)), CountingSet(folder_set(str(sets[1]), resolution=64))
    ex = TinyExtractor()
    res = evaluate(s, r, _config(backbones), extractor=ex)
    assert s.passes == 1 and r.passes == 1  # each set decoded once for all backbones
    bb = res.provenance["backbones"]
    assert bb[DINO]["forwards"] == bb[CLIP]["forwards"] // 2 == 24 + 30  # CLIP: two preprocessings
    assert bb["inception"]["forwards"] == 54 and ex.calls == 3 + 4  # P/R/D/C reuse FID's Inception pass
    ids = list(res.table.metric_id)
    assert f"fd24[{DINO}:pil-bicubic]" in ids and f"clipfd24[{CLIP}:pil-bicubic-crop]" in ids
    assert f"cmmd24[{CLIP}:cmmd+l2]" in ids and "precision24[inception:torch-fidelity,k=3,<=]" in ids
    assert "density24[inception:torch-fidelity,k=5,<]" in ids
    assert res.provenance["feature_cache"]["samples"]["hits"] == []
    from lafitebench.metrics.embedding import FeatureCache

    rows = {}
    for p in FeatureCache().root.glob("*.npz"):
        try:
            with np.load(p) as z:
                rows[json.loads(str(z["key_payload"]))["feature"]] = z["rows"]
        except (ValueError, OSError, zipfile.BadZipFile):  # none here; a reader must not stop at one
            continue
    assert np.allclose(np.linalg.norm(rows[f"{CLIP}:cmmd+l2"], axis=1), 1, atol=1e-5)  # CMMD: L2-normalised
    assert not np.allclose(np.linalg.norm(rows[f"{CLIP}:pil-bicubic-crop"], axis=1), 1, atol=1e-2)  # CLIP-FD: raw

    s2, r2 = CountingSet(folder_set(str(sets[0]), resolution=64)), CountingSet(folder_set(str(sets[1]), resolution=64))
    again = evaluate(s2, r2, _config(backbones, metrics=["fd", "cmmd"]), extractor=TinyExtractor())
    assert again.provenance["backbones"][DINO]["forwards"] == 0 and again.provenance["backbones"][CLIP]["forwards"] == 0
    assert r2.passes == 0 and sorted(again.provenance["feature_cache"]["reference"]["hits"]) == [
        f"{CLIP}:cmmd+l2", f"{DINO}:pil-bicubic"]
    for mid in again.table.metric_id:
        assert again.table.set_index("metric_id").value[mid] == res.table.set_index("metric_id").value[mid]

    other = meta_dinov2_file(tmp_path / "other-dinov2.pth", seed=1)  # other weights: other features, a miss
    fourth = evaluate(folder_set(str(sets[0]), resolution=64), folder_set(str(sets[1]), resolution=64),
                      _config(backbones, metrics=["fd"], backbone_weights={**backbones, DINO: str(other)}),
                      extractor=TinyExtractor())
    assert fourth.provenance["feature_cache"]["samples"]["computed"] == [f"{DINO}:pil-bicubic"]
    assert fourth.table.value[0] != res.table.set_index("metric_id").value[f"fd24[{DINO}:pil-bicubic]"]

    edm2 = evaluate(folder_set(str(sets[0]), resolution=64), folder_set(str(sets[1]), resolution=64),
                    _config(backbones, metrics=["fd"], preset="edm2"), extractor=TinyExtractor())
    assert list(edm2.table.metric_id) == [f"fd24[{DINO}:torch-bicubic-aa]"]  # another preprocessing: another id
    assert edm2.provenance["feature_cache"]["samples"]["computed"] == [f"{DINO}:torch-bicubic-aa"]

    for p in FeatureCache().root.glob("*.npz"):  # cut short, as by a crash mid-write without the atomic rename
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    third = evaluate(folder_set(str(sets[0]), resolution=64), folder_set(str(sets[1]), resolution=64),
                     _config(backbones, metrics=["cmmd"]), extractor=TinyExtractor())
    assert third.provenance["feature_cache"]["reference"]["hits"] == []  # unreadable entries are recomputed
    assert third.table.value[0] == again.table.set_index("metric_id").value[third.table.metric_id[0]]


def test_bootstrap_intervals_resample_features_deterministically(sets, backbones, tmp_path, monkeypatch):
    monkeypatch.setenv("LAFITEBENCH_CACHE", str(tmp_path / "cache"))
    s, r = folder_set(str(sets[0]), resolution=64), folder_set(str(sets[1]), resolution=64)
    cfg = _config(backbones, bootstrap=40, metrics=["fid", "kid", "fd", "cmmd", "prdc"])
    a = evaluate(s, r, cfg, extractor=TinyExtractor()).table.set_index("metric_id")
    b = evaluate(s, r, cfg, extractor=TinyExtractor()).table.set_index("metric_id")
    assert a[["ci_low", "ci_high"]].equals(b[["ci_low", "ci_high"]])
    assert a.ci_low.notna().all() and (a.ci_low < a.ci_high).all() and (a.ci_low <= a.value + 1e-12).sum() >= len(a) - 2
    c = evaluate(s, r, _config(backbones, bootstrap=40, seed=7, metrics=["cmmd"]),
                 extractor=TinyExtractor()).table.set_index("metric_id")
    assert c.ci_low.iloc[0] != a.loc[c.index[0], "ci_low"]


def test_bootstrap_interval_is_the_percentile_of_resampled_recomputations(sets, backbones, tmp_path, monkeypatch):
    from lafitebench.metrics.bootstrap import interval
    from lafitebench.metrics.embedding import FeatureCache

    monkeypatch.setenv("LAFITEBENCH_CACHE", str(tmp_path / "cache"))
    s, r = folder_set(str(sets[0]), resolution=64), folder_set(str(sets[1]), resolution=64)
    res = evaluate(s, r, _config(backbones, bootstrap=30, metrics=["fd"]), extractor=TinyExtractor())
    rows = {json.loads(str(np.load(p)["key_payload"]))["set_fingerprint"]: torch.from_numpy(np.load(p)["rows"])
            for p in FeatureCache().root.glob("*.npz")}
    x, y = rows[s.fingerprint()].numpy(), rows[r.fingerprint()].numpy()
    vals = [fd_from_features(x[draw(2020, b, len(x))], y) for b in range(30)]
    lo, hi = interval(vals)
    row = res.table.iloc[0]
    assert abs(row.ci_low - lo) <= 1e-6 * abs(lo) and abs(row.ci_high - hi) <= 1e-6 * abs(hi)  # FD ~ 1e-5 here


# --- presets and bad input --------------------------------------------------------------------------

def test_presets_fix_their_choices_and_refuse_metrics_they_do_not_define(sets, backbones):
    from lafitebench.metrics.presets import resolve_preset

    cfg = resolve_preset(EvalConfig(preset="dgm-eval"))
    assert (cfg.prdc_backbone, cfg.pr_k, cfg.pr_rule, cfg.dc_k) == ("dinov2-vitl14", 5, "<", 5)
    assert resolve_preset(EvalConfig(preset="dgm-eval", pr_k=7)).pr_k == 7  # a user's own choice is kept
    s = folder_set(str(sets[0]), resolution=64)
    with pytest.raises(InputError, match="preset clean-fid does not define fid"):
        evaluate(s, s, _config(backbones, metrics=["fid", "clip-fd"], preset="clean-fid"), extractor=TinyExtractor())


def test_missing_backbone_weights_offline_are_named_before_any_image_is_read(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lafitebench.cli import app

    monkeypatch.setenv("LAFITEBENCH_OFFLINE", "1")
    monkeypatch.setenv("LAFITEBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LAFITEBENCH_WEIGHTS", raising=False)
    d = tmp_path / "samples"
    d.mkdir()
    (d / "broken.png").write_bytes(b"not an image")
    for i in range(3):
        Image.new("RGB", (64, 64), (i * 40, 0, 0)).save(d / f"{i}.png")
    res = CliRunner().invoke(app, ["eval", "--samples", str(d), "--reference", str(d), "--metrics", "fd-dinov2,cmmd",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "dinov2_vitl14_pretrain.pth" in text and "--backbone-weights=dinov2-vitl14=PATH" in text
    assert "ViT-L-14-336px.pt" in text and "--backbone-weights=clip-vitl14-336=PATH" in text  # both, at once
    assert "--clip-weights" not in text and "broken.png" not in text
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()


def test_too_few_images_for_k_names_the_minimum(tmp_path, backbones, sets):
    s = folder_set(str(sets[0]), resolution=64)
    few = folder_set(str(sets[0]), resolution=64)
    few.items = few.items[:4]
    with pytest.raises(InputError, match=r"k=5 need at least 6 images in each set \(samples: 4"):
        evaluate(few, s, _config(backbones, metrics=["prdc"]), extractor=TinyExtractor())


@pytest.mark.slow
def test_eval_cli_prdc_and_intervals_on_real_inception(sets, shared_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lafitebench.cli import app

    monkeypatch.setenv("LAFITEBENCH_CACHE", str(tmp_path / "cache"))
    w = shared_dir / "assets/inception/inception-2015-12-05-pool3-fidelity-layout.pth"
    res = CliRunner().invoke(app, ["eval", "--samples", str(sets[0]), "--reference", str(sets[1]), "--resolution", "64",
                                   "--metrics", "fid,prdc", "--bootstrap", "25", "--inception-weights", str(w),
                                   "--out", str(tmp_path / "o")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "precision24[inception:torch-fidelity,k=3,<=]" in res.stdout and "Coverage[inception]" in res.stdout
    assert "ci_low" in res.stdout
    t = __import__("pandas").read_csv(tmp_path / "o" / "results.csv")
    assert len(t) == 5 and t.ci_low.notna().all() and (t.ci_low <= t.ci_high).all()
    prov = json.loads((tmp_path / "o" / "results.json").read_text())["provenance"]
    assert prov["bootstrap"]["replicates"] == 25 and prov["features"] == ["inception:torch-fidelity"]
    assert prov["backbones"]["inception"]["weights_sha256"] == prov["inception"]["sha256"]


def test_clip_score_and_soa_intervals_resample_their_per_image_terms():
    from lafitebench.metrics.clip_score import ClipScoreMetric
    from lafitebench.metrics.soa import SoaMetric, soa_from_detections

    cfg = EvalConfig(metrics=["clip", "soa"], bootstrap=5)
    clip = ClipScoreMetric(cfg)
    scores = torch.tensor([10.0, 20.0, 35.0, 12.0, 28.0, 31.0], dtype=torch.float64)
    clip.append("scores", scores, list(range(6)))
    clip.info = {"model": "m", "pretrained": "t", "weights_sha256": None, "random_init": False, "preprocess": {}}
    clip.compute()
    draws = [draw(1, b, 6) for b in range(5)]
    assert clip.bootstrap(draws)[clip._id] == pytest.approx([float(scores[idx].mean()) for idx in draws], abs=1e-12)

    soa = SoaMetric(cfg)
    soa._detector = types.SimpleNamespace(provenance=lambda: {"detector": "stub", "nms_iou": 0.4,
                                                              "detector_input_size": 256})
    targets = [0, 0, 1, 1, 2, 2]
    found = torch.zeros(6, 80, dtype=torch.uint8)
    for i, hit in enumerate([1, 0, 1, 1, 0, 1]):
        found[i, targets[i]] = hit
    soa.append("target", torch.tensor(targets), list(range(6)))
    soa.append("found", found, list(range(6)))
    soa.compute()
    reps = soa.bootstrap(draws)
    sets = [set(torch.nonzero(r).flatten().tolist()) for r in found]
    for b, idx in enumerate(draws):
        c, i, _ = soa_from_detections([sets[j] for j in idx], [targets[j] for j in idx])
        assert reps[soa._ids[0]][b] == c and reps[soa._ids[1]][b] == i
    assert len(set(reps[soa._ids[1]])) > 1  # the draws differ, so do the values


@pytest.mark.slow
def test_vgg16_backbone_equals_torch_fidelity_prc_extractor(coco_uint8, tmp_path):
    """The torch-fidelity preset's P/R features: torch-fidelity's own VGG16 extractor (fc2_relu,
    its resize and normalisation) on real COCO images, with the same (random) weights file."""
    import torchvision
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    from lafitebench.encoders.backbone import BACKBONES, BackboneSpec, FeatureSpec, load_embedder

    with torch.device("meta"):  # shapes only: a seeded random file without the slow default init
        shapes = {k: v.shape for k, v in torchvision.models.vgg16().state_dict().items()}
    g = torch.Generator().manual_seed(0)
    f = tmp_path / "vgg16-random.pth"
    torch.save({k: torch.randn(shp, generator=g) * (2 / max(1, shp[1:].numel())) ** 0.5 if len(shp) > 1
                else torch.zeros(shp) for k, shp in shapes.items()}, f)
    if "vgg16-test" not in BACKBONES:
        BACKBONES.register("vgg16-test", BackboneSpec("vgg16-test", "vgg16", 4096, 224, str(f), "torchvision vgg16"))
    ours = load_embedder("vgg16-test", EvalConfig(device="cpu")).embed(coco_uint8[:2], FeatureSpec("vgg16-test", "tf-bilinear"))
    theirs = FeatureExtractorVGG16("vgg16", ["fc2_relu"], feature_extractor_weights_path=str(f))(coco_uint8[:2])[0]
    assert ours.shape == (2, 4096) and torch.allclose(ours, theirs, rtol=0, atol=1e-5 * float(theirs.abs().max()))
    from lafitebench.metrics.presets import resolve_preset

    assert resolve_preset(EvalConfig(preset="torch-fidelity")).prdc_backbone == "vgg16"


def test_inception_score_interval_resamples_its_logits(sets, tmp_path, monkeypatch):
    from lafitebench.metrics.isc import is_from_logits

    monkeypatch.setenv("LAFITEBENCH_CACHE", str(tmp_path / "cache"))
    s = folder_set(str(sets[0]), resolution=64)
    ex = TinyExtractor()
    res = evaluate(s, None, EvalConfig(metrics=["is"], resolution=64, isc_splits=3, bootstrap=30, progress=False),
                   extractor=ex)
    logits = torch.cat([TinyExtractor()(b.images).logits for b in s.loader(8)])
    from lafitebench.metrics.bootstrap import interval

    lo, hi = interval([is_from_logits(logits[torch.as_tensor(draw(2020, b, 24))], 3, True, 2020)[0] for b in range(30)])
    row = res.table.iloc[0]
    assert abs(row.ci_low - lo) <= 1e-6 * lo and abs(row.ci_high - hi) <= 1e-6 * hi and lo < hi
