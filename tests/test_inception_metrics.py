"""Inception features, FID / KID / IS numerics and the FID-k blur presets.

Equivalence to torch-fidelity uses a randomly initialised Inception saved to a temporary file
(its classifier is random too, so IS is meaningful) and a dozen 64² PNGs per set; the network
resizes to 299² internally, so each image costs one full forward.
"""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageFilter

from lafitebench.data.sources.coco import coco_mini
from lafitebench.errors import InputError, WeightsError
from lafitebench.metrics import blur as blur_mod
from lafitebench.metrics.blur import BLUR_PRESETS, blur, lafite_sigma, pil_blur
from lafitebench.metrics.fid import FeatureMoments, features_to_stats, fid_from_stats, load_stats, save_stats
from lafitebench.encoders.inception import InceptionExtractor, save_random_inception_weights
from lafitebench.metrics.isc import is_from_logits
from lafitebench.metrics.kid import kid_from_features
from lafitebench.registry import UnknownNameError

RES = 64
N_A = N_B = 12
KID_SUBSET, KID_SUBSETS, IS_SPLITS = 6, 10, 3


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


# --- fixtures: random Inception weights, two small image sets, torch-fidelity's numbers ---------

@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return save_random_inception_weights(tmp_path_factory.mktemp("w") / "random_inception.pth", seed=0)


@pytest.fixture(scope="module")
def images():
    """24 real photos (bundled coco-mini) at 64², uint8 [24,3,64,64]."""
    s = coco_mini(RES)
    return torch.cat([b.images for b in s.subset(range(N_A + N_B)).loader(N_A + N_B)])


@pytest.fixture(scope="module")
def png_dirs(images, tmp_path_factory):
    root = tmp_path_factory.mktemp("png")
    dirs = []
    for name, part in (("a", images[:N_A]), ("b", images[N_A:])):
        d = root / name
        d.mkdir()
        for i, im in enumerate(part):
            Image.fromarray(im.permute(1, 2, 0).numpy()).save(d / f"{i:03d}.png")
        dirs.append(d)
    return dirs


@pytest.fixture(scope="module")
def torch_fidelity_metrics(png_dirs, weights_file):
    import torch_fidelity

    return torch_fidelity.calculate_metrics(
        input1=str(png_dirs[0]), input2=str(png_dirs[1]), cuda=False, isc=True, fid=True, kid=True,
        isc_splits=IS_SPLITS, kid_subset_size=KID_SUBSET, kid_subsets=KID_SUBSETS,
        feature_extractor_weights_path=str(weights_file), verbose=False, cache=False, save_cpu_ram=True)


@pytest.fixture(scope="module")
def exact_features(images, weights_file):
    ex = InceptionExtractor(weights_file, device="cpu", logits=True, channels_last=False)
    return ex(images[:N_A]), ex(images[N_A:])


@pytest.fixture(scope="module")
def fast_features(images, weights_file):
    ex = InceptionExtractor(weights_file, device="cpu", logits=True, channels_last=True)  # the --channels-last option
    assert ex.channels_last
    return ex(images[:N_A]), ex(images[N_A:])


# --- equivalence with torch-fidelity ------------------------------------------------------------

@pytest.mark.slow
def test_exact_path_equals_torch_fidelity(exact_features, torch_fidelity_metrics):
    a, b = exact_features
    tf = torch_fidelity_metrics
    fid = fid_from_stats(features_to_stats(a.pool3), features_to_stats(b.pool3), method="eigvals")
    kid = kid_from_features(a.pool3, b.pool3, KID_SUBSETS, KID_SUBSET, seed=2020)
    isc = is_from_logits(a.logits, IS_SPLITS, shuffle=True, seed=2020)
    assert _rel(fid, tf["frechet_inception_distance"]) <= 1e-6
    # The default trace (eigh) is exact: it equals the closed form from the SVD of the centred
    # features; torch-fidelity's eigvals sum carries rounding noise of the 2000+ zero eigenvalues
    # of this rank-deficient product (N=12), which is what separates the two here.
    truth = _fid_low_rank_truth(a.pool3, b.pool3)
    default = fid_from_stats(features_to_stats(a.pool3), features_to_stats(b.pool3))
    assert _rel(default, truth) <= 1e-10
    assert _rel(default, tf["frechet_inception_distance"]) <= 1e-5
    assert _rel(kid[0], tf["kernel_inception_distance_mean"]) <= 1e-6
    assert _rel(kid[1], tf["kernel_inception_distance_std"]) <= 1e-6
    assert _rel(isc[0], tf["inception_score_mean"]) <= 1e-6
    assert _rel(isc[1], tf["inception_score_std"]) <= 1e-6
    assert isc[0] > 1.2  # the random classifier is not degenerate


def test_channels_last_path_close_to_torch_fidelity(fast_features, torch_fidelity_metrics):
    """The default CPU path differs from torch-fidelity's layout by float32 rounding only."""
    a, b = fast_features
    tf = torch_fidelity_metrics
    fid = fid_from_stats(features_to_stats(a.pool3), features_to_stats(b.pool3), method="eigvals")
    isc = is_from_logits(a.logits, IS_SPLITS)
    kid = kid_from_features(a.pool3, b.pool3, KID_SUBSETS, KID_SUBSET)
    assert _rel(fid, tf["frechet_inception_distance"]) <= 1e-6
    assert _rel(isc[0], tf["inception_score_mean"]) <= 1e-6
    # KID is a difference of large kernel sums in float32: rounding in the features is amplified,
    # yet stays far below KID's own subset-to-subset spread.
    assert abs(kid[0] - tf["kernel_inception_distance_mean"]) <= 1e-4 * abs(tf["kernel_inception_distance_mean"])
    assert abs(kid[0] - tf["kernel_inception_distance_mean"]) < 1e-3 * tf["kernel_inception_distance_std"]


def _fid_low_rank_truth(f1, f2) -> float:
    """FID in closed form from features (float64): Tr((S1 S2)^½) is the nuclear norm of
    A1 A2ᵀ / sqrt((n1-1)(n2-1)) for the centred feature matrices A1, A2."""
    x1, x2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    a1, a2 = x1 - x1.mean(0), x2 - x2.mean(0)
    n1, n2 = len(x1), len(x2)
    nuc = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    tr1, tr2 = (a1 ** 2).sum() / (n1 - 1), (a2 ** 2).sum() / (n2 - 1)
    return float(((x1.mean(0) - x2.mean(0)) ** 2).sum() + tr1 + tr2 - 2 * nuc)


def test_fid_trace_methods_agree_and_eigh_is_exact():
    """eigh and torch-fidelity's eigvals agree at full rank; eigh equals the closed form at any rank."""
    for n1, n2 in ((20, 15), (40, 35), (150, 120), (400, 300)):
        f1, f2 = _synthetic(6, n1, n2)
        s1, s2 = features_to_stats(f1), features_to_stats(f2)
        e, v = fid_from_stats(s1, s2), fid_from_stats(s1, s2, method="eigvals")
        assert _rel(e, _fid_low_rank_truth(f1, f2)) <= 1e-10
        assert _rel(e, v) <= (1e-11 if min(n1, n2) > 64 else 1e-6)
    with pytest.raises(InputError, match="trace method"):
        fid_from_stats(s1, s2, method="sqrtm")


def _synthetic(seed: int, n1: int, n2: int, d: int = 64):
    rng = np.random.RandomState(seed)
    f1 = torch.from_numpy((rng.rand(n1, d) * rng.rand(d)).astype(np.float32))
    f2 = torch.from_numpy((rng.rand(n2, d) * rng.rand(d) + 0.01).astype(np.float32))
    return f1, f2


def test_pure_numerics_equal_torch_fidelity_functions():
    """Same features in, same numbers out (64-d features keep the eigensolver cheap)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    for n1, n2 in ((40, 35), (150, 120)):  # rank-deficient and full-rank covariances
        f1, f2 = _synthetic(0, n1, n2)
        tf_fid = fid_statistics_to_metric(fid_features_to_statistics(f1), fid_features_to_statistics(f2), False)
        assert _rel(fid_from_stats(features_to_stats(f1), features_to_stats(f2)),
                    tf_fid["frechet_inception_distance"]) <= 1e-6
    f1, f2 = _synthetic(1, 40, 35, d=256)
    tf_kid = kid_features_to_metric(f1, f2, kid_subsets=7, kid_subset_size=20, verbose=False, rng_seed=5,
                                    kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                    kid_kernel_poly_coef0=1)
    assert kid_from_features(f1, f2, 7, 20, seed=5) == (tf_kid["kernel_inception_distance_mean"],
                                                       tf_kid["kernel_inception_distance_std"])
    logits = torch.from_numpy(np.random.RandomState(2).randn(23, 1008).astype(np.float32) * 3)
    for shuffle in (True, False):
        tf_is = isc_features_to_metric(logits, splits=4, shuffle=shuffle, rng_seed=7)
        assert is_from_logits(logits, 4, shuffle, 7) == (tf_is["inception_score_mean"], tf_is["inception_score_std"])


def test_pinned_values():
    """Regression pins of the pure numerics on fixed synthetic features."""
    f1, f2 = _synthetic(3, 90, 80)
    assert fid_from_stats(features_to_stats(f1), features_to_stats(f2)) == pytest.approx(PIN_FID, rel=1e-9)
    f1, f2 = _synthetic(4, 30, 30, d=256)
    assert kid_from_features(f1, f2, 5, 10, seed=3)[0] == pytest.approx(PIN_KID, rel=1e-6)
    logits = np.random.RandomState(5).randn(30, 1008).astype(np.float32) * 2
    assert is_from_logits(logits, 3, True, 2020)[0] == pytest.approx(PIN_IS_SHUFFLED, rel=1e-10)
    assert is_from_logits(logits, 3, False)[0] == pytest.approx(PIN_IS_ORDERED, rel=1e-10)


PIN_FID = 4.288499251742177
PIN_KID = 0.1479856014251709
PIN_IS_SHUFFLED = 3.595312586282521
PIN_IS_ORDERED = 3.5848515107941483


# --- invariants --------------------------------------------------------------------------------

def test_set_against_itself_is_zero():
    f1, _ = _synthetic(6, 200, 2)  # full-rank 64-d covariance
    s = features_to_stats(f1)
    assert abs(fid_from_stats(s, s)) <= 1e-9 * np.trace(s.sigma)


def test_batch_size_independence(images, weights_file, exact_features):
    ex = InceptionExtractor(weights_file, device="cpu", logits=True)
    parts = [ex(images[:N_A][i:i + 5]) for i in range(0, N_A, 5)]
    pool3 = torch.cat([p.pool3 for p in parts])
    ref = exact_features[0].pool3
    assert torch.allclose(pool3, ref, rtol=1e-5, atol=1e-6 * ref.abs().max().item())
    moments = FeatureMoments()
    for p in parts:
        moments.update(p.pool3)
    s = moments.stats()
    t = features_to_stats(ref)
    assert np.allclose(s.mu, t.mu, rtol=1e-5) and np.allclose(s.sigma, t.sigma, rtol=1e-4, atol=1e-6 * np.abs(t.sigma).max())


def test_deterministic(images, weights_file, exact_features):
    ex = InceptionExtractor(weights_file, device="cpu", logits=True)  # default layout = torch-fidelity's
    out = ex(images[:N_A])
    assert torch.equal(out.pool3, exact_features[0].pool3)
    assert torch.equal(out.logits, exact_features[0].logits)


def test_streaming_moments_equal_numpy(exact_features):
    f = exact_features[0].pool3
    acc = FeatureMoments()
    for i in range(0, len(f), 5):
        acc.update(f[i:i + 5])
    s = acc.stats()
    f64 = f.numpy().astype(np.float64)
    assert np.allclose(s.mu, f64.mean(0), rtol=1e-12, atol=0)
    assert np.allclose(s.sigma, np.cov(f64, rowvar=False), rtol=1e-9, atol=1e-12 * np.abs(s.sigma).max())
    assert s.n == len(f)


def test_stats_roundtrip(tmp_path, exact_features):
    s = features_to_stats(exact_features[0].pool3)
    save_stats(tmp_path / "s.npz", s)
    t = load_stats(tmp_path / "s.npz")
    assert t.n == s.n and np.array_equal(t.mu, s.mu) and np.array_equal(t.sigma, s.sigma)
    with pytest.raises(InputError, match="not found"):
        load_stats(tmp_path / "missing.npz")


def test_network_in_eval_mode(weights_file, images):
    ex = InceptionExtractor(weights_file, device="cpu", logits=False)
    assert not ex.training and not any(m.training for m in ex.net.modules())
    bn = ex.net.Conv2d_1a_3x3.bn
    before = bn.running_mean.clone()
    ex.net.train()  # even if someone flips it, a forward runs in eval mode
    ex(images[:2])
    assert not ex.training and torch.equal(bn.running_mean, before)


# --- weights checks ----------------------------------------------------------------------------

def test_pool3_only_weights_refuse_inception_score(weights_file, tmp_path):
    sd = torch.load(weights_file, weights_only=True)
    sd["fc.weight"].zero_()
    sd["fc.bias"].zero_()
    p = tmp_path / "pool3_only.pth"
    torch.save(sd, p)
    with pytest.raises(WeightsError, match="no 1008-way classifier"):
        InceptionExtractor(p, device="cpu", logits=True)
    ex = InceptionExtractor(p, device="cpu", logits=False)  # FID/KID only: fine
    assert not ex.has_classifier


def test_bad_weight_files(weights_file, tmp_path):
    sd = torch.load(weights_file, weights_only=True)
    sd.pop("Mixed_7c.branch_pool.conv.weight")
    torch.save(sd, tmp_path / "missing_key.pth")
    with pytest.raises(WeightsError, match="layout"):
        InceptionExtractor(tmp_path / "missing_key.pth", device="cpu", logits=False)

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(WeightsError, match="weights-only file: it needs code outside the tensor allow-list"):
        InceptionExtractor(tmp_path / "evil.pth", device="cpu", logits=False)


def test_bad_input_images(weights_file):
    ex = InceptionExtractor(weights_file, device="cpu", logits=False)
    with pytest.raises(InputError, match="uint8"):
        ex(torch.zeros(1, 3, 8, 8))


# --- fewer-images errors -----------------------------------------------------------------------

def test_too_few_images_errors():
    f = np.ones((5, 2048), np.float32)
    with pytest.raises(InputError, match="at least 2"):
        features_to_stats(f[:1])
    with pytest.raises(InputError, match="kid_subset_size"):
        kid_from_features(f, f)  # default subset size 1000 > 5
    with pytest.raises(InputError, match="at least 10 images"):
        is_from_logits(np.zeros((5, 1008), np.float32))


# --- blur presets --------------------------------------------------------------------------------

def test_blur_presets_registry():
    assert set(BLUR_PRESETS.names()) == {"lafite", "pil"}
    with pytest.raises(UnknownNameError, match="lafite"):
        blur(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 1, "lafitte")
    assert [round(lafite_sigma(k), 2) for k in (1, 2, 4, 8)] == [0.82, 1.41, 2.58, 4.90]
    assert [BLUR_PRESETS.get("pil").sigma(k) for k in (1, 2)] == [1.0, 2.0]


def test_blur_level_zero_is_identity(images):
    for p in ("lafite", "pil"):
        assert blur(images[:2], 0, p) is images[:2] or torch.equal(blur(images[:2], 0, p), images[:2])
    with pytest.raises(InputError, match="non-negative"):
        blur(images[:1], -1)
    with pytest.raises(InputError, match="uint8"):
        blur(images[:1].float(), 1)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_lafite_blur_equals_torchvision_transform(images, k):
    x = images[:4]
    state = torch.get_rng_state()
    ours = blur(x, k, "lafite")
    assert torch.equal(torch.get_rng_state(), state)  # no draw from the global RNG
    sigma = math.sqrt(((2 * k + 1) ** 2 - 1) / 12)
    ref = torchvision.transforms.GaussianBlur(kernel_size=2 * k + 1, sigma=sigma)(x)
    assert ours.dtype == torch.uint8 and torch.equal(ours, ref)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_pil_blur_equals_pillow(k):
    s = coco_mini(256)
    imgs = [Image.open(it.path).convert("RGB") for it in s.items[:3]]
    imgs.append(imgs[0].crop((0, 0, 37, 21)))  # non-square, smaller than the box
    for im in imgs:
        ref = np.asarray(im.filter(ImageFilter.GaussianBlur(radius=k)))
        x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None]
        out = pil_blur(x, k)[0].permute(1, 2, 0).numpy()
        assert np.array_equal(out, ref), f"max diff {np.abs(out.astype(int) - ref).max()}"


def test_pil_box_radius_matches_pillow_formula():
    # Pillow: sigma^2 = r^2 / 3 per pass; extended box radius from Gwosdek et al. (2011)
    assert blur_mod.pil_box_radius(1.0) == pytest.approx(0.25, abs=1e-6)
    assert blur_mod.pil_box_radius(2.0) == pytest.approx(1.375, abs=1e-6)


# --- real assets ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.real_assets
def test_real_inception_fid_equals_torch_fidelity(shared_dir, tmp_path):
    """FID between 10 and 10 real COCO images with the shared (pool3-only) Inception file."""
    import torch_fidelity

    from lafitebench.metrics.engine import EvalConfig, evaluate

    weights = shared_dir / "assets/inception/inception-2015-12-05-pool3-fidelity-layout.pth"
    s = coco_mini(256)
    a, b = s.subset(range(10), "a"), s.subset(range(10, 20), "b")
    dirs = []
    for name, part in (("a", a), ("b", b)):
        d = tmp_path / name
        d.mkdir()
        for i, it in enumerate(part.items):  # same bytes, names sorted in item order
            (d / f"{i:03d}{it.path.suffix}").write_bytes(it.path.read_bytes())
        dirs.append(str(d))
    tf = torch_fidelity.calculate_metrics(input1=dirs[0], input2=dirs[1], cuda=False, fid=True,
                                          feature_extractor_weights_path=str(weights), verbose=False,
                                          cache=False, save_cpu_ram=True)["frechet_inception_distance"]
    res = evaluate(a, b, EvalConfig(metrics=["fid"], fid_blur=[0], inception_weights=str(weights), device="cpu",
                                    use_cache=False, progress=False))
    ours = float(res.table["value"][0])
    assert _rel(ours, tf) <= 1e-6
    assert 100 < ours < 1000  # 10 vs 10 photos: large small-sample FID
    assert res.provenance["inception"]["has_classifier"] is False
