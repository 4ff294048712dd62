"""Unit tests of the LAFITE networks (tiny configurations, CPU, float32)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lafitebench.errors import CheckpointError, InputError
from lafitebench.models.discriminator import Discriminator
from lafitebench.models.generator import Generator
from lafitebench.models.layers import (
    bias_act,
    conv2d_resample,
    downsample2d,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)
from lafitebench.models.pseudo_text import (
    OFFICIAL_XI,
    PerturbationNetwork,
    gaussian_pseudo_text,
    load_perturbation_network,
    perturb_text,
    unit_noise,
)

F_DIM = 16


def _tiny_generator(change: int = 8, **synthesis) -> Generator:
    torch.manual_seed(0)
    kw = dict(channel_base=64, channel_max=8, change=change, conv_clamp=256)
    kw.update(synthesis)
    G = Generator(z_dim=8, w_dim=8, img_resolution=16, f_dim=F_DIM, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs=kw).eval()
    with torch.no_grad():  # non-zero noise strengths / w_avg so every path matters
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
        G.mapping.w_avg.normal_()
    return G


def _inputs(n: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, generator=g)
    h = F.normalize(torch.randn(n, F_DIM, generator=g), dim=1)
    return z, h


# ---------------------------------------------------------------------------- layers

def test_bias_act_lrelu_gain_and_clamp():
    x = torch.tensor([[-1.0, 0.5, 300.0]])
    y = bias_act(x, torch.tensor([0.0, 0.5, 0.0]), act="lrelu", clamp=256)
    assert torch.allclose(y, torch.tensor([[-0.2 * math.sqrt(2), math.sqrt(2), 256.0]]))
    with pytest.raises(InputError, match="activation"):
        bias_act(x, act="swish")


def test_fir_resampling_preserves_constants():
    f = setup_filter([1, 3, 3, 1])
    assert torch.isclose(f.sum(), torch.tensor(1.0))
    x = torch.full((1, 2, 8, 8), 3.0)
    up = upsample2d(x, f)
    down = downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.tensor(3.0))
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(3.0))


@pytest.mark.parametrize("flip_weight", [True, False])
def test_upsampling_conv_equals_zero_insert_fir_then_conv(flip_weight):
    # conv2d_resample(up=2) == FIR upsampling (padded by padding + 2 / + 1) then a valid conv.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 5, generator=g)
    w = torch.randn(4, 3, 3, 3, generator=g)
    f = setup_filter([1, 3, 3, 1])
    got = conv2d_resample(x, w, f, up=2, padding=1, flip_weight=flip_weight)
    ref = upfirdn2d(x, f, up=2, padding=[3, 2, 3, 2], gain=4)
    ref = F.conv2d(ref, w if flip_weight else w.flip([2, 3]))
    assert got.shape == (2, 4, 10, 10)
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_fused_equals_unfused(up, demodulate):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, 6, generator=g)
    w = torch.randn(5, 4, 3, 3, generator=g)
    s = torch.randn(3, 4, generator=g)
    f = setup_filter([1, 3, 3, 1])
    a = modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f, demodulate=demodulate, fused_modconv=True)
    b = modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f, demodulate=demodulate, fused_modconv=False)
    assert torch.allclose(a, b, atol=1e-5)


def test_demodulation_normalises_output_channel_weights():
    # 1x1 kernel: feeding the one-hot input e_i reads column i of the effective (modulated,
    # demodulated) weight; each output row must have unit L2 norm (StyleGAN2 eq. 3).
    w = torch.randn(3, 4, 1, 1)
    s = torch.rand(1, 4) + 0.5
    eff = torch.stack([modulated_conv2d(torch.eye(4)[i].reshape(1, 4, 1, 1), w, s)[0, :, 0, 0] for i in range(4)], 1)
    assert torch.allclose(eff.norm(dim=1), torch.ones(3), atol=1e-4)


# ---------------------------------------------------------------------------- generator

def test_generator_shapes_and_both_structures():
    G = _tiny_generator(change=8)  # b4, b8: structure 2; b16: structure 1
    keys = set(G.state_dict())
    assert "synthesis.b8.conv0.pre_0.weight" in keys and "synthesis.b8.torgb.affine_0.weight" in keys
    assert "synthesis.b8.conv0.affine.weight" not in keys
    for k in ("affine", "scale_layer_0", "scale_layer_1", "scale_layer_2", "bias_layer_0", "bias_layer_1",
              "bias_layer_2"):
        assert f"synthesis.b16.conv0.{k}.weight" in keys and f"synthesis.b16.torgb.{k}.weight" in keys
    assert "synthesis.b16.conv1.pre_0.weight" not in keys
    assert G.state_dict()["synthesis.b8.conv0.affine_0.weight"].shape == (8, 512 + 8)  # text first, then w
    assert G.state_dict()["synthesis.b8.conv0.pre_0.weight"].shape == ((F_DIM + 512) // 2, F_DIM)
    assert G.num_ws == 6
    z, h = _inputs()
    with torch.no_grad():
        img, ws, styles = G(z, h, return_ws=True, return_styles=True)
    assert img.shape == (2, 3, 16, 16) and img.dtype == torch.float32
    assert ws.shape == (2, 6, 8)
    assert [tuple(s.shape) for s in styles] == [(2, 8)] * 6 + [(2, 4)] * 2
    assert G.synthesis.style_layer_names()[:3] == ["b4.conv1", "b4.torgb", "b8.conv0"]


def test_structure_1_uses_text_scale_and_bias():
    G = _tiny_generator(change=8)
    layer = G.synthesis.b16.conv1
    z, h = _inputs()
    w = G.mapping(z)[:, 0]
    with torch.no_grad():
        want = layer.bias_layer_2(layer.bias_layer_1(layer.bias_layer_0(h))) + layer.affine(w) * \
            layer.scale_layer_2(layer.scale_layer_1(layer.scale_layer_0(h)))
        assert torch.allclose(layer.style(w, h), want)


def test_noise_modes():
    G = _tiny_generator()
    z, h = _inputs()
    with torch.no_grad():
        const1, const2 = G(z, h, noise_mode="const"), G(z, h, noise_mode="const")
        none = G(z, h, noise_mode="none")
        r1 = G(z, h, noise_mode="random", noise_generator=torch.Generator().manual_seed(5))
        r2 = G(z, h, noise_mode="random", noise_generator=torch.Generator().manual_seed(5))
        r3 = G(z, h, noise_mode="random", noise_generator=torch.Generator().manual_seed(6))
    assert torch.equal(const1, const2)
    assert not torch.allclose(const1, none)
    assert torch.equal(r1, r2) and not torch.allclose(r1, r3)
    with pytest.raises(InputError, match="noise_mode"):
        G(z, h, noise_mode="fixed")


def test_truncation():
    G = _tiny_generator()
    z, h = _inputs()
    with torch.no_grad():
        assert torch.equal(G(z, h, truncation_psi=1.0), G(z, h))
        ws = G.mapping(z)
        ws0 = G.mapping(z, truncation_psi=0.0)
        assert torch.allclose(ws0, G.mapping.w_avg.expand_as(ws0))
        ws_half = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
        assert torch.allclose(ws_half[:, :2], G.mapping.w_avg + 0.5 * (ws[:, :2] - G.mapping.w_avg))
        assert torch.equal(ws_half[:, 2:], ws[:, 2:])


def test_w_avg_tracks_only_in_training():
    G = _tiny_generator()
    z, _ = _inputs()
    before = G.mapping.w_avg.clone()
    G.mapping(z)
    assert torch.equal(G.mapping.w_avg, before)
    G.train()
    with torch.no_grad():
        w = G.mapping(z)[:, 0]
    assert torch.allclose(G.mapping.w_avg, w.mean(0).lerp(before, 0.995), atol=1e-6)


def test_explicit_styles_bypass_style_networks():
    G = _tiny_generator()
    z, h = _inputs()
    with torch.no_grad():
        img, styles = G(z, h, return_styles=True)
        again = G(None, None, styles=styles)
        assert torch.allclose(img, again, atol=1e-6)
        changed = [s.clone() for s in styles]
        changed[2] = changed[2] + torch.linspace(0, 1, changed[2].shape[1])  # uniform scaling would demodulate away
        assert not torch.allclose(G(None, None, styles=changed), img)
    with pytest.raises(InputError, match="styles must be a list of 8"):
        G(None, None, styles=styles[:-1])
    with pytest.raises(InputError, match="b4.torgb"):
        G(None, None, styles=[styles[0], styles[1][:, :3]] + styles[2:])


def test_missing_or_malformed_text_is_an_error():
    G = _tiny_generator()
    z, h = _inputs()
    with pytest.raises(InputError, match="text_features is required"):
        G(z, None)
    with pytest.raises(InputError, match=r"\[N, 16\]"):
        G(z, torch.randn(2, 512))
    with pytest.raises(InputError, match="rows"):
        G(z, h[:1])
    with pytest.raises(InputError, match="z must have shape"):
        G(torch.randn(2, 9), h)
    # fp16 text features (as the official scripts feed them) are cast, not refused
    with torch.no_grad():
        assert torch.allclose(G(z, h.half()), G(z, h.half().float()))


def test_training_mode_unfused_path_matches_eval():
    G = _tiny_generator()
    z, h = _inputs()
    with torch.no_grad():
        a = G(z, h)
        G.train()
        b = G(z, h)
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("fused,channels_last", [(True, False), (False, False), (True, True), (False, True)])
def test_every_layout_gives_the_official_path_images(fused, channels_last):
    """The CPU default (unfused, channels-last, in-place activations) equals the official path
    (one grouped convolution with per-sample weights, NCHW) and every other layout choice."""
    G = _tiny_generator()
    z, h = _inputs(n=3)
    with torch.no_grad():
        official = G.set_layout(fused=True, channels_last=False)(z, h)
        other = G.set_layout(fused=fused, channels_last=channels_last)(z, h)
        default = G.set_layout()(z, h)
    assert torch.allclose(other, official, atol=1e-5) and torch.allclose(default, official, atol=1e-5)


def test_bias_act_in_place_only_when_allowed():
    x = torch.randn(2, 3, 4, 4)
    kept = x.clone()
    bias_act(x, torch.ones(3), act="lrelu", clamp=1.0)
    assert torch.equal(x, kept)  # the caller's tensor is untouched unless overwrite=True
    y = bias_act(x.clone().requires_grad_(), torch.ones(3), act="lrelu", overwrite=True)
    y.sum().backward()  # autograd still works: no in-place step on tensors it needs


def test_fp16_blocks_run_fp32_on_cpu():
    G = _tiny_generator(num_fp16_res=2)
    assert G.synthesis.b16.use_fp16 and not G.synthesis.b4.use_fp16
    z, h = _inputs()
    with torch.no_grad():
        ref = _tiny_generator(num_fp16_res=0)(z, h)
        assert torch.allclose(G(z, h), ref)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_blocks_on_cuda_close_to_fp32():
    G = _tiny_generator(num_fp16_res=2).cuda()
    z, h = (t.cuda() for t in _inputs())
    with torch.no_grad():
        a = G(z, h)
        b = G(z, h, force_fp32=True)
    assert a.dtype == torch.float32
    assert (a - b).abs().max() < 0.05 * b.abs().max()


# ---------------------------------------------------------------------------- discriminator

def _tiny_discriminator(**kw) -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(img_resolution=16, f_dim=F_DIM, channel_base=64, channel_max=8, **kw).eval()


def test_discriminator_paper_and_official_semantic_terms():
    D = _tiny_discriminator()
    assert {"b16.fromrgb.weight", "b16.skip.weight", "b4.fc.weight", "b4.out.weight", "b4.fts.weight",
            "b4.conv.weight"} <= set(D.state_dict())
    assert "b16.skip.bias" not in D.state_dict()
    img = torch.rand(4, 3, 16, 16) * 2 - 1
    h = F.normalize(torch.randn(4, F_DIM), dim=1)
    with torch.no_grad():
        out, fs = D(img)
        paper, fs_p = D(img, h)  # default: paper
        official, fs_o = D(img, h, semantic_term="official")
    assert out.shape == (4, 1) and fs.shape == (4, F_DIM)
    assert torch.equal(fs, fs_p) and torch.equal(fs, fs_o)
    per_sample = (fs * h).sum(dim=1, keepdim=True)
    assert torch.allclose(paper, out + per_sample, atol=1e-6)
    assert torch.allclose(official, out + per_sample.sum(), atol=1e-5)
    assert torch.allclose((paper - out).sum(), (official - out)[0, 0], atol=1e-5)
    with pytest.raises(InputError, match="semantic_term"):
        D(img, h, semantic_term="both")
    with pytest.raises(InputError, match="text_features"):
        D(img, h[:, :4])


def test_discriminator_use_norm_and_batch_groups():
    D = _tiny_discriminator(use_norm=True)
    with torch.no_grad():
        _, fs = D(torch.zeros(2, 3, 16, 16).uniform_(-1, 1))
    assert torch.allclose(fs.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(InputError, match="divisible"):
        D(torch.zeros(6, 3, 16, 16))
    with pytest.raises(InputError, match="img must have shape"):
        D(torch.zeros(4, 3, 32, 32))


# ---------------------------------------------------------------------------- pseudo-text

def test_gaussian_pseudo_text_forms_and_norms():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(5, F_DIM, generator=g) * 3  # not unit norm on purpose
    n = unit_noise((5, F_DIM), generator=g)
    off = gaussian_pseudo_text(img, noise=n)
    pap = gaussian_pseudo_text(img, form="paper", noise=n)
    want = F.normalize(0.25 * F.normalize(img, dim=1) + 0.75 * n, dim=1)
    assert torch.allclose(off, want, atol=1e-6)
    assert torch.allclose(pap, off, atol=1e-6)  # xi = 3 is the official form
    assert OFFICIAL_XI == 3
    assert torch.allclose(off.norm(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(gaussian_pseudo_text(img, xi=0.0, form="paper", noise=n), F.normalize(img, dim=1))
    assert not torch.allclose(gaussian_pseudo_text(img, xi=1.0, form="paper", noise=n), pap)
    a = gaussian_pseudo_text(img, generator=torch.Generator().manual_seed(3))
    b = gaussian_pseudo_text(img, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(InputError, match="xi"):
        gaussian_pseudo_text(img, xi=2.0, form="official")
    with pytest.raises(InputError, match="form"):
        gaussian_pseudo_text(img, form="nn")


def test_text_perturbation():
    t = F.normalize(torch.randn(3, F_DIM), dim=1)
    n = unit_noise((3, F_DIM))
    got = perturb_text(t, noise=n)
    assert torch.allclose(got, F.normalize(0.9 * t + 0.1 * n, dim=1), atol=1e-6)
    assert torch.allclose(got.norm(dim=1), torch.ones(3), atol=1e-6)


def test_perturbation_network_official_layout():
    net = PerturbationNetwork()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["linear1.weight"] == (1024, 512) and shapes["linear4.weight"] == (512, 1024)
    assert shapes["linear5.weight"] == (1024, 512) and shapes["linear8.bias"] == (512,)
    assert len(shapes) == 16


def test_perturbation_network_forward_and_load(tmp_path):
    torch.manual_seed(0)
    net = PerturbationNetwork(feature_dim=F_DIM, hidden_dim=32).eval()
    c = F.normalize(torch.randn(4, F_DIM), dim=1)
    eps = torch.randn(4, F_DIM)
    with torch.no_grad():
        out = net(c, eps=eps)
        mu, log_sigma = net.mu_log_sigma(c)
    assert torch.allclose(out, F.normalize(c + mu + log_sigma.exp() * eps, dim=1), atol=1e-6)
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-6)

    path = tmp_path / "implicit.0.001.pth"
    torch.save(net.state_dict(), path)
    loaded = load_perturbation_network(path)
    assert loaded.feature_dim == F_DIM and loaded.hidden_dim == 32
    with torch.no_grad():
        assert torch.equal(loaded(c, eps=eps), out)
    with pytest.raises(CheckpointError, match="feature_dim"):
        load_perturbation_network(path, feature_dim=512)

    sd = net.state_dict()
    del sd["linear6.bias"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="linear6.bias"):
        load_perturbation_network(tmp_path / "missing.pth")

    sd = net.state_dict()
    sd["linear7.weight"] = torch.zeros(32, 31)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"linear7.weight.*\[32, 31\].*\[32, 32\]"):
        load_perturbation_network(tmp_path / "shape.pth")

    (tmp_path / "trunc.pth").write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="trunc.pth"):
        load_perturbation_network(tmp_path / "trunc.pth")
