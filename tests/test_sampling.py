"""Per-sample seeding and constructor capture.

Every random draw that shapes sample i comes from (seed, i): images 0..6 made in one batch of 7,
in batches of 1 or split 3+4 are bit-identical on CPU; networks record their constructor
arguments themselves, so native checkpoints need no hand-kept table.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from lafitebench.errors import InputError
from lafitebench.models import NETWORKS, Generator, PerturbationNetwork
from lafitebench.models.pseudo_text import gaussian_pseudo_text
from lafitebench.models.sampling import generate, latents, perturbation_eps, to_uint8, unit_directions
from lafitebench.runtime.rng import check_seed, randn_per_sample, sample_seed


@pytest.fixture(scope="module")
def fixture_model(shared_dir):
    from lafitebench.checkpoints.load import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown CLIP backbone of the fixture snapshot
        return load_model(shared_dir / "fixtures/lafite_official/lafite_tiny64.pkl")


def _h(n: int, dim: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(0)), dim=1)


@pytest.mark.real_assets
@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_batch_1_and_7_are_bit_identical(fixture_model, noise_mode):
    m = fixture_model
    h = _h(7, m.f_dim)
    seven = m.sample(h, seed=123, noise_mode=noise_mode)
    ones = torch.cat([m.sample(h[i:i + 1], seed=123, indices=[i], noise_mode=noise_mode) for i in range(7)])
    split = torch.cat([m.sample(h[:3], 123, [0, 1, 2], noise_mode=noise_mode),
                       m.sample(h[3:], 123, [3, 4, 5, 6], noise_mode=noise_mode)])
    assert torch.equal(seven, ones) and torch.equal(seven, split)
    assert torch.equal(to_uint8(seven), to_uint8(ones))
    assert not torch.equal(seven, m.sample(h, seed=124, noise_mode=noise_mode))  # the seed matters


@pytest.mark.real_assets
def test_random_noise_is_per_sample(fixture_model):
    """Layer noise of sample 2 does not change when sample 0 is left out."""
    m = fixture_model
    h = _h(3, m.f_dim)
    full = m.sample(h, 7, [0, 1, 2], noise_mode="random")
    tail = m.sample(h[1:], 7, [1, 2], noise_mode="random")
    assert torch.equal(full[1:], tail)


def test_streams_depend_on_seed_index_and_stream_only():
    z = latents(5, [0, 1, 2, 3], 16)
    assert torch.equal(z[3], latents(5, [3], 16)[0]) and torch.equal(z[1:3], latents(5, [1, 2], 16))
    assert not torch.equal(z[0], z[1]) and not torch.equal(latents(6, [0], 16)[0], z[0])
    assert sample_seed(1, 0, "z") != sample_seed(0, 1, "z")  # not seed + index
    assert not torch.equal(randn_per_sample(5, [0], [16], "z"), randn_per_sample(5, [0], [16], "eps"))
    d = unit_directions(5, range(4), 32)
    assert torch.allclose(d.norm(dim=1), torch.ones(4)) and torch.equal(d[2], unit_directions(5, [2], 32)[0])
    assert torch.equal(perturbation_eps(5, range(3), 8)[1], perturbation_eps(5, [1], 8)[0])


def test_pseudo_text_with_per_sample_directions():
    img = _h(5, 32)
    a = gaussian_pseudo_text(img, noise=unit_directions(9, range(5), 32))
    b = gaussian_pseudo_text(img[2:3], noise=unit_directions(9, [2], 32))
    assert torch.allclose(a[2:3], b, atol=1e-7)


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True, "3"])
def test_bad_seed_is_refused(seed):
    with pytest.raises(InputError, match="seed must be an integer"):
        check_seed(seed)


def test_generate_checks_rows():
    G = Generator(z_dim=8, w_dim=8, img_resolution=8, f_dim=16, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=16))
    with pytest.raises(InputError, match="one row per sample index"):
        generate(G, _h(3, 16), 0, [0, 1])


def test_networks_capture_their_constructor_arguments():
    G = Generator(8, 8, 16, f_dim=16, mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64))
    kw = G.init_kwargs
    assert kw["z_dim"] == 8 and kw["img_resolution"] == 16 and kw["c_dim"] == 0 and kw["img_channels"] == 3
    assert kw["mapping_kwargs"]["num_layers"] == 1 and "lr_multiplier" in kw["mapping_kwargs"]  # defaults written out
    assert kw["synthesis_kwargs"]["channel_base"] == 64 and "channel_max" in kw["synthesis_kwargs"]
    rebuilt = Generator(**kw)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in G.state_dict().items()}
    assert PerturbationNetwork(feature_dim=8, hidden_dim=4).init_kwargs == {"feature_dim": 8, "hidden_dim": 4}
    assert all(n in NETWORKS for n in ("Generator", "Discriminator", "PerturbationNetwork"))
