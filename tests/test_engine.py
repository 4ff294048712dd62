"""The evaluation engine: one pass, torch-fidelity equivalence end to end, cache, errors before work."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image

from lafitebench.data.sources.coco import coco_mini
from lafitebench.data.sources.folder import folder_set
from lafitebench.errors import InputError, WeightsError
from lafitebench.metrics import engine as eng
from lafitebench.metrics.cache import STATS_VERSION, RefStatsCache, refstats_key
from lafitebench.metrics.base import Metric, MetricOutput, MetricRow
from lafitebench.metrics.engine import METRICS, EvalConfig, evaluate, reference_statistics
from lafitebench.encoders.inception import InceptionExtractor, save_random_inception_weights

from helpers.tiny_extractor import TinyExtractor

RES = 64
N = 12


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    return save_random_inception_weights(d / "r0.pth", seed=0), save_random_inception_weights(d / "r1.pth", seed=1)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Two folders of 12 real 64² PNGs each (bundled coco-mini photos)."""
    s = coco_mini(RES)
    imgs = torch.cat([b.images for b in s.subset(range(2 * N)).loader(2 * N)])
    root = tmp_path_factory.mktemp("sets")
    out = []
    for name, part in (("a", imgs[:N]), ("b", imgs[N:])):
        d = root / name
        d.mkdir()
        for i, im in enumerate(part):
            Image.fromarray(im.permute(1, 2, 0).numpy()).save(d / f"{i:03d}.png")
        out.append(d)
    return out


def _sets(dirs):
    return folder_set(dirs[0], resolution=RES), folder_set(dirs[1], resolution=RES)


def _cfg(weights, **kw) -> EvalConfig:
    base = dict(metrics=["fid"], fid_blur=[0], resolution=RES, inception_weights=str(weights[0]), device="cpu",
                kid_subset_size=6, kid_subsets=10, isc_splits=3, progress=False, use_cache=False)
    base.update(kw)
    return EvalConfig(**base)


def _value(res, metric: str) -> float:
    return float(res.table.set_index("metric").loc[metric, "value"])


@pytest.fixture(scope="module")
def exact_result(weights, dirs):
    a, b = _sets(dirs)
    return evaluate(a, b, _cfg(weights, metrics=["is", "fid", "kid"], fid_blur=[0, 2], inception_channels_last=False,
                               fid_trace="eigvals"))  # torch-fidelity's trace formula, for bit-level parity


# --- end-to-end equivalence ----------------------------------------------------------------------

@pytest.mark.slow
def test_engine_equals_torch_fidelity(exact_result, weights, dirs, tmp_path):
    import torch_fidelity

    common = dict(cuda=False, feature_extractor_weights_path=str(weights[0]), verbose=False, cache=False,
                  save_cpu_ram=True)
    tf0 = torch_fidelity.calculate_metrics(input1=str(dirs[0]), input2=str(dirs[1]), isc=True, fid=True, kid=True,
                                           isc_splits=3, kid_subset_size=6, kid_subsets=10, **common)
    # FID-2 the naive way: blurred PNG copies (LAFITE's torchvision transform), then torch-fidelity
    k = 2
    tblur = torchvision.transforms.GaussianBlur(2 * k + 1, sigma=math.sqrt(((2 * k + 1) ** 2 - 1) / 12))
    blurred = []
    for d in dirs:
        out = tmp_path / f"{d.name}_blur{k}"
        out.mkdir()
        for f in sorted(d.glob("*.png")):
            x = torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1)
            Image.fromarray(tblur(x).permute(1, 2, 0).numpy()).save(out / f.name)
        blurred.append(str(out))
    tf2 = torch_fidelity.calculate_metrics(input1=blurred[0], input2=blurred[1], fid=True, **common)

    r = exact_result
    assert _rel(_value(r, "FID-0"), tf0["frechet_inception_distance"]) <= 1e-6
    assert _rel(_value(r, "FID-2"), tf2["frechet_inception_distance"]) <= 1e-6
    assert _rel(_value(r, "IS"), tf0["inception_score_mean"]) <= 1e-6
    assert _rel(_value(r, "KID"), tf0["kernel_inception_distance_mean"]) <= 1e-6
    t = r.table.set_index("metric")
    assert _rel(float(t.loc["IS", "std"]), tf0["inception_score_std"]) <= 1e-6
    assert _rel(float(t.loc["KID", "std"]), tf0["kernel_inception_distance_std"]) <= 1e-6


def test_table_and_provenance(exact_result, weights):
    t = exact_result.table
    assert list(t.columns) == ["metric_id", "metric", "value", "std", "n", "higher_is_better", "notes", "ci_low", "ci_high"]
    assert list(t.metric_id) == ["is12_3splits_shuffled", "fid12_blur0", "fid12_blur2_lafite", "kid12_s6x10"]
    assert list(t.metric) == ["IS", "FID-0", "FID-2", "KID"]
    assert list(t.higher_is_better) == [True, False, False, False]
    assert (t.n == N).all()
    p = exact_result.provenance
    assert p["inception"]["sha256"] == InceptionExtractor(weights[0], device="cpu", logits=False).sha256
    assert p["inception"]["channels_last"] is False and p["inception"]["has_classifier"] is True
    assert p["inputs"]["samples"]["n"] == N and len(p["inputs"]["samples"]["fingerprint"]) == 64
    assert p["inputs"]["reference"]["fingerprint"] != p["inputs"]["samples"]["fingerprint"]
    assert p["blur"]["preset"] == "lafite" and p["blur"]["levels"] == [0, 2]
    assert p["blur"]["effective_sigma"]["2"] == pytest.approx(1.17, abs=0.01)
    assert p["seeds"] == {"is_shuffle": 2020, "kid_subsets": 2020}
    assert {"torch", "torch-fidelity", "numpy", "scipy", "open_clip_torch", "ultralytics"} <= set(p["libraries"])
    assert p["lafitebench_version"] and p["date"]
    assert p["cache"]["enabled"] is False and p["cache"]["misses"] == [0, 2]
    # one pass: each sample image went through Inception once per blur level
    assert p["inception_pass"]["sample_forwards"] == 2 * N and p["inception_pass"]["reference_forwards"] == 2 * N


def test_metric_ids():
    assert eng.count_tag(30000) == "30k" and eng.count_tag(50) == "50" and eng.count_tag(1500) == "1500"
    assert eng.fid_metric_id(30000, 2, "lafite") == "fid30k_blur2_lafite"
    assert eng.fid_metric_id(30000, 0, "pil") == "fid30k_blur0"
    assert eng.is_metric_id(30000, 10, False) == "is30k_10splits_ordered"
    assert eng.kid_metric_id(5000, 1000, 100) == "kid5k_s1000x100"


def test_batch_size_and_workers_do_not_change_results(weights, dirs):
    a, b = _sets(dirs)
    kw = dict(metrics=["is", "fid", "kid"], fid_blur=[0, 2])
    r1 = evaluate(a, b, _cfg(weights, **kw, batch_size=12), extractor=TinyExtractor())
    r2 = evaluate(a, b, _cfg(weights, **kw, batch_size=5, num_workers=1), extractor=TinyExtractor())
    for m in ("IS", "FID-0", "FID-2"):
        assert _rel(_value(r2, m), _value(r1, m)) <= 1e-6, m  # float32 conv blocking may differ
    kid_std = float(r1.table.set_index("metric").loc["KID", "std"])  # KID's float32 kernel sums amplify rounding
    assert abs(_value(r2, "KID") - _value(r1, "KID")) <= 1e-5 * kid_std


def test_set_against_itself(weights, dirs):
    a, b = _sets(dirs)
    against_itself = evaluate(a, a, _cfg(weights), extractor=TinyExtractor())
    against_other = evaluate(a, b, _cfg(weights), extractor=TinyExtractor())
    assert abs(_value(against_itself, "FID-0")) < 1e-6 * _value(against_other, "FID-0")


# --- reference cache -------------------------------------------------------------------------------

def test_cache_hit_is_identical_and_skips_reference(weights, dirs):
    a, b = _sets(dirs)
    cfg = _cfg(weights, fid_blur=[0, 1], use_cache=True)
    r1 = evaluate(a, b, cfg, extractor=TinyExtractor())
    r2 = evaluate(a, b, cfg, extractor=TinyExtractor())
    assert r1.provenance["cache"]["misses"] == [0, 1] and r1.provenance["cache"]["hits"] == []
    assert r2.provenance["cache"]["hits"] == [0, 1] and r2.provenance["cache"]["misses"] == []
    assert r2.provenance["inception_pass"]["reference_forwards"] == 0
    pd.testing.assert_series_equal(r1.table["value"], r2.table["value"])


def test_cache_keys_follow_settings(weights, dirs):
    """Blur preset/level and weights change the key; level 0 is shared by presets; no stale entries."""
    _, b = _sets(dirs)
    cache = RefStatsCache()
    cfg = _cfg(weights, use_cache=True)
    ex0, ex1 = TinyExtractor(seed=0), TinyExtractor(seed=1)

    stats, rep = reference_statistics(b, ex0, [0, 1], "lafite", False, cfg, cache)
    assert rep["misses"] == [0, 1]
    _, rep = reference_statistics(b, ex0, [0, 1], "lafite", False, cfg, cache)
    assert rep["hits"] == [0, 1] and not rep["misses"]
    _, rep = reference_statistics(b, ex0, [0, 1], "pil", False, cfg, cache)
    assert rep["hits"] == [0] and rep["misses"] == [1]
    _, rep = reference_statistics(b, ex0, [2], "lafite", False, cfg, cache)
    assert rep["misses"] == [2]
    _, rep = reference_statistics(b, ex1, [0], "lafite", False, cfg, cache)
    assert rep["misses"] == [0]
    # KID needs features: a FID-only entry does not serve it, a FID+KID entry serves both
    kid_stats, rep = reference_statistics(b, ex0, [0], "lafite", True, cfg, cache)
    assert rep["misses"] == [0] and kid_stats[0].features.shape == (N, ex0.pool3_dim)
    assert kid_stats[0].features.dtype == np.float32
    assert np.array_equal(kid_stats[0].stats.mu, stats[0].stats.mu)


def test_cache_never_serves_stale_or_corrupt(weights, dirs):
    _, b = _sets(dirs)
    cache = RefStatsCache()
    cfg = _cfg(weights, use_cache=True)
    ex = TinyExtractor()
    good, rep = reference_statistics(b, ex, [0, 1], "lafite", False, cfg, cache)
    f0, f1 = rep["files"][0], rep["files"][1]
    shutil.copyfile(f1, f0)  # right name, wrong content (the stored key differs)
    with open(f1, "r+b") as fh:  # truncated file
        fh.truncate(100)
    again, rep = reference_statistics(b, ex, [0, 1], "lafite", False, cfg, cache)
    assert rep["misses"] == [0, 1]
    for k in (0, 1):
        assert np.array_equal(again[k].stats.sigma, good[k].stats.sigma)
    _, rep = reference_statistics(b, ex, [0, 1], "lafite", False, cfg, cache)
    assert rep["hits"] == [0, 1]  # rewritten atomically


def test_cache_key_payload():
    args = dict(fingerprint="f" * 64, resolution=256, crop="center", blur_level=2,
                inception={"weights_sha256": "a" * 64}, contents=["fid_stats"])
    k1, payload = refstats_key(blur_preset="lafite", **args)
    k2, _ = refstats_key(blur_preset="pil", **args)
    assert k1 != k2 and payload["stats_version"] == STATS_VERSION
    assert refstats_key(blur_preset="lafite", **{**args, "resolution": 128})[0] != k1
    assert refstats_key(blur_preset="lafite", **{**args, "crop": "none"})[0] != k1
    k0a, _ = refstats_key(blur_preset="lafite", **{**args, "blur_level": 0})
    k0b, _ = refstats_key(blur_preset="pil", **{**args, "blur_level": 0})
    assert k0a == k0b  # no blur: the preset does not matter


# --- checks before any work -----------------------------------------------------------------------

@pytest.fixture
def no_forward(monkeypatch):
    def boom(self, images):
        raise AssertionError("Inception ran before the inputs were checked")

    monkeypatch.setattr(InceptionExtractor, "__call__", boom)


@pytest.mark.parametrize("kw, match", [
    (dict(metrics=["kid"], kid_subset_size=1000), "KID subset size 1000 is larger than a set"),
    (dict(metrics=["is"], isc_splits=20), "at least 20 images"),
    (dict(metrics=["fidd"]), "Did you mean 'fid'"),
    (dict(metrics=["fid"], fid_blur=[-1]), "non-negative"),
    (dict(metrics=["fid"], fid_blur=[2], blur_preset="gauss"), "blur_preset"),
    (dict(metrics=["clip"]), "caption"),
    (dict(metrics=["soa"]), "SOA class"),
    (dict(metrics=["fid"], resolution=128), "decoded at 64"),
])
def test_input_errors_before_work(weights, dirs, no_forward, kw, match):
    a, b = _sets(dirs)
    with pytest.raises(InputError, match=match):
        evaluate(a, b, _cfg(weights, **kw))


def test_reference_required_and_fid_needs_two_images(weights, dirs, no_forward):
    a, b = _sets(dirs)
    with pytest.raises(InputError, match="need a reference set"):
        evaluate(a, None, _cfg(weights, metrics=["fid"]))
    with pytest.raises(InputError, match="at least 2 images"):
        evaluate(a, b.subset([0]), _cfg(weights, metrics=["fid"]))


def test_weights_errors_before_work(weights, dirs, no_forward, tmp_path):
    a, b = _sets(dirs)
    sd = torch.load(weights[0], weights_only=True)
    sd["fc.weight"].zero_()
    torch.save(sd, tmp_path / "pool3.pth")
    with pytest.raises(WeightsError, match="Inception Score cannot be computed"):
        evaluate(a, b, _cfg(weights, metrics=["fid", "is"], inception_weights=str(tmp_path / "pool3.pth")))
    with pytest.raises(WeightsError, match="weights-inception-2015-12-05-6726825d.pth"):  # offline, not cached
        evaluate(a, b, _cfg(weights, inception_weights=None))


@pytest.fixture
def bad_samples(dirs, tmp_path):
    bad_dir = tmp_path / "bad"
    shutil.copytree(dirs[0], bad_dir)
    (bad_dir / "005.png").write_bytes(b"not a png at all")
    return folder_set(bad_dir, resolution=RES)


def test_bad_images_fail_before_work(weights, dirs, bad_samples, no_forward):
    with pytest.raises(InputError, match="005.png"):
        evaluate(bad_samples, _sets(dirs)[1], _cfg(weights))


def test_bad_images_skipped_on_request(weights, dirs, bad_samples):
    r = evaluate(bad_samples, _sets(dirs)[1], _cfg(weights, skip_bad=True), extractor=TinyExtractor())
    assert int(r.table.n[0]) == N - 1 and r.table.metric_id[0] == f"fid{N - 1}_blur0"
    assert any(f.endswith("005.png") for f in r.provenance["inputs"]["samples"]["skipped"])


# --- registry and other accumulators --------------------------------------------------------------

def test_metrics_registry():
    assert set(METRICS.names()) == {"fid", "kid", "is", "clip", "soa", "fd", "clip-fd", "kd", "cmmd", "prdc"}
    assert METRICS.canonical_name("fd-dinov2") == "fd"
    assert METRICS.canonical_name("isc") == "is"
    assert METRICS.get("clip").__name__ == "ClipScoreMetric"
    assert METRICS.get("soa").__name__ == "SoaMetric"


class _CountingMetric(Metric):
    """Stand-in for CLIP/SOA: sees the same decoded batches, returns two rows and a per-class table."""

    name = "dummy"

    def setup(self):
        self.add_state("n", torch.zeros((), dtype=torch.int64))
        self.add_state("checksum", torch.zeros((), dtype=torch.int64))

    def update(self, batch):
        self.add("n", torch.tensor(batch.images.shape[0]))
        self.add("checksum", batch.images.to(torch.int64).sum())

    def compute(self):
        n, c = int(self.value("n")), int(self.value("checksum"))
        rows = [MetricRow("dummy_a", "A", float(n), n=n), MetricRow("dummy_b", "B", float(c), n=n, higher_is_better=False)]
        return MetricOutput(rows=rows, tables={"soa_per_class": pd.DataFrame({"c": [1]})}, details={"extra": np.int64(3)})


def test_other_accumulators_get_every_batch(monkeypatch, dirs, weights, no_forward):
    monkeypatch.setitem(METRICS._entries, "dummy", _CountingMetric)
    a, _ = _sets(dirs)
    r = evaluate(a, None, _cfg(weights, metrics=["dummy"], batch_size=5))
    expected = sum(int(bt.images.to(torch.int64).sum()) for bt in a.loader(12))
    t = r.table.set_index("metric_id")
    assert t.loc["dummy_a", "value"] == N and t.loc["dummy_b", "value"] == expected
    assert list(r.per_class.c) == [1] and r.provenance["metric_details"]["dummy"]["extra"] == 3
    assert "inception" not in r.provenance  # no Inception metric requested: network not loaded


def test_lafite_official_protocol_divides_the_covariance_by_n(weights, dirs):
    """--protocol lafite-official: FID from covariances divided by N (StyleGAN2-ADA FeatureStats),
    checked against the closed form from the features; recorded in the id and provenance."""
    from lafitebench.metrics.config import apply_protocol
    from lafitebench.metrics.fid import FidStats, fid_from_stats

    a, b = _sets(dirs)
    ex = TinyExtractor()
    cfg = apply_protocol(_cfg(weights, metrics=["fid"]), "lafite-official")
    r = evaluate(a, b, cfg, extractor=ex)
    fa = torch.cat([ex(bt.images).pool3 for bt in a.loader(12)]).double().numpy()
    fb = torch.cat([ex(bt.images).pool3 for bt in b.loader(12)]).double().numpy()
    pop = [FidStats(mu=f.mean(0), sigma=np.cov(f, rowvar=False, bias=True), n=len(f)) for f in (fa, fb)]
    assert _rel(_value(r, "FID-0"), fid_from_stats(*pop)) < 1e-9
    unbiased = evaluate(a, b, _cfg(weights, metrics=["fid"]), extractor=ex)
    assert _value(r, "FID-0") != _value(unbiased, "FID-0")
    assert r.table.metric_id[0].endswith("_popcov") and r.provenance["protocol"]["name"] == "lafite-official"
    assert not r.provenance["config"]["isc_shuffle"]


def test_a_left_out_metric_gives_its_errors_short_reason(dirs):
    """The reason a metric is left out is the error's ``short`` field (data), not text parsed out of
    its message: a decoy file name in the message does not leak into the reason."""
    from lafitebench.metrics.plan import _unavailable

    class NeedsWeights(Metric):
        name = "needs-weights"
        needs_reference = False

        @classmethod
        def check(cls, config, samples, reference):
            raise WeightsError("long instructions mentioning file 'decoy.pt' and sha256 ...",
                               short="weights file real.pt not available here")

    class NeedsCaptions(Metric):
        name = "needs-captions"
        needs_reference = False

        @classmethod
        def check(cls, config, samples, reference):
            raise InputError("no captions (e.g. a.png, b.png); give a manifest", short="12 images have no caption")

    samples, _ = _sets(dirs)
    reason = _unavailable(NeedsWeights, EvalConfig(), samples, None)
    assert reason.startswith("weights file real.pt not available here") and "decoy" not in reason
    assert _unavailable(NeedsCaptions, EvalConfig(), samples, None) == "12 images have no caption"


def test_fid_does_not_depend_on_the_order_the_moments_were_summed(tmp_path):
    """As on 2 processes (each rank sums its batches, then the sums are added): at N = 12 < 2048 the
    trace term's rounding-level eigenvalues must not enter (their square roots moved FID by 5e-8)."""
    from lafitebench.metrics.fid import centred_factor, fid_from_stats, moments_to_stats

    ex = InceptionExtractor(save_random_inception_weights(tmp_path / "r.pth"), device="cpu", logits=False,
                            channels_last=True)
    mini = coco_mini()

    def feats(items):
        ims = np.stack([np.asarray(Image.open(it.path).convert("RGB").resize((64, 64))) for it in items])
        return ex(torch.from_numpy(ims).permute(0, 3, 1, 2).contiguous()).pool3.double().numpy()

    x, y = feats(mini.items[:12]), feats(mini.items[50:60])

    def sums(parts):
        s, o = np.zeros(x.shape[1]), np.zeros((x.shape[1],) * 2)
        for part in parts:
            s, o = s + part.sum(0), o + part.T @ part
        return s, o

    batches = [x[i:i + 2] for i in range(0, 12, 2)]
    one = moments_to_stats(*sums(batches), 12)
    (s0, o0), (s1, o1) = sums(batches[0::2]), sums(batches[1::2])  # two ranks' sums, then added
    two = moments_to_stats(s0 + s1, o0 + o1, 12)
    ref = moments_to_stats(y.sum(0), y.T @ y, 10)
    a = fid_from_stats(one, ref, factor_b=centred_factor(y, ref.mu))
    b = fid_from_stats(two, ref, factor_b=centred_factor(y, ref.mu))
    assert abs(a - b) <= 1e-9 * abs(a)
