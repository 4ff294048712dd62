"""StyleGAN2 building blocks in pure PyTorch (CPU and GPU, no custom CUDA kernels).

Numerics follow the StyleGAN2 / StyleGAN2-ADA papers as used by LAFITE (Zhou et al. 2022):

- equalised learning rate (Karras et al. 2018, sec. 4.1): parameters are stored raw and scaled
  at run time by ``lr_multiplier / sqrt(fan_in)`` (weights) and ``lr_multiplier`` (biases);
- FIR resampling with the binomial filter [1, 3, 3, 1] (StyleGAN2 sec. 2 / appendix B);
- weight modulation and demodulation (StyleGAN2 eq. 1-3), eps 1e-8;
- bias + leaky ReLU (slope 0.2) with gain sqrt(2), then clamping to +-conv_clamp.

State-dict layouts match the official LAFITE / StyleGAN2-ADA modules, so an official snapshot
loads with ``load_state_dict(strict=True)`` and no key mapping.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

# Activation name -> (default alpha, default gain).
_ACTIVATIONS = {
    "linear": (None, 1.0),
    "relu": (None, math.sqrt(2)),
    "lrelu": (0.2, math.sqrt(2)),
}


# --------------------------------------------------------------------------------------------
# Small pure functions.


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit mean square along ``dim`` (StyleGAN 'pixel norm' of z)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    overwrite: bool = False,
) -> torch.Tensor:
    """Add bias ``b`` along ``dim``, apply ``act``, multiply by ``gain``, clamp to ``[-clamp, clamp]``.

    ``act`` is "linear", "relu" or "lrelu" (default slope 0.2). The default gain is sqrt(2) for
    relu/lrelu and 1 for linear. ``clamp`` None (or negative) disables clamping.
    ``overwrite``: the caller no longer needs ``x``, so without autograd every step may run in
    place. Raises ``InputError`` for an unknown activation.
    """
    if act not in _ACTIVATIONS:
        raise InputError(f"unknown activation {act!r}; use one of {sorted(_ACTIVATIONS)}")
    def_alpha, def_gain = _ACTIVATIONS[act]
    # Without autograd the steps after the first run in place on the fresh tensor: same values,
    # one allocation instead of four (large activations make allocation a real cost on CPU).
    no_grad = not (torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)))
    fresh = overwrite and no_grad
    if b is not None:
        shape = [-1 if i == dim else 1 for i in range(x.ndim)]
        x = x.add_(b.reshape(shape)) if fresh else x + b.reshape(shape)
        fresh = True
    inplace = fresh and no_grad
    if act == "lrelu":
        slope = def_alpha if alpha is None else float(alpha)
        x = F.leaky_relu_(x, slope) if inplace else F.leaky_relu(x, slope)
    elif act == "relu":
        x = F.relu_(x) if inplace else F.relu(x)
    gain = def_gain if gain is None else float(gain)
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-float(clamp), float(clamp)) if inplace else x.clamp(-float(clamp), float(clamp))
    return x


def setup_filter(f: Sequence[float] | torch.Tensor = (1, 3, 3, 1), normalize: bool = True) -> torch.Tensor:
    """Return the 2-D FIR filter ``outer(f, f)`` (normalised to sum 1) as float32 [k, k]."""
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 1:
        f = f.ger(f)
    if f.ndim != 2:
        raise InputError(f"FIR filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    return f


def _pad4(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    raise InputError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding}")


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative = crop), FIR-filter, then downsample.

    ``x``: [N, C, H, W]; ``f``: 2-D filter [kh, kw] (or 1-D, applied separably); padding is
    ``[x0, x1, y0, y1]`` in upsampled pixels. The filter is applied as a true convolution
    (flipped) unless ``flip_filter``; it is scaled by ``gain`` overall (``gain`` = up**2 keeps
    the mean after zero insertion).
    """
    px0, px1, py0, py1 = _pad4(padding)
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = f.to(x.dtype)
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape).contiguous(), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.numel()).contiguous(), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.numel(), 1).contiguous(), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _filter_size(f: torch.Tensor | None) -> int:
    return 1 if f is None else int(f.shape[-1])


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample [N, C, H, W] by ``up`` with FIR filter ``f`` (output [N, C, H*up, W*up])."""
    fw = _filter_size(f)
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=[p0, p1, p0, p1], gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """Downsample [N, C, H, W] by ``down`` with FIR filter ``f`` (output [N, C, H/down, W/down])."""
    fw = _filter_size(f)
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=[p0, p1, p0, p1])


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> torch.Tensor:
    """2-D convolution with optional FIR up- or downsampling by an integer factor.

    ``w``: [out, in/groups, kh, kw]; ``flip_weight`` True = cross-correlation (torch
    ``conv2d``), False = true convolution (kernel flipped). Upsampling is equivalent to
    zero insertion -> FIR ``f`` (gain up**2) -> convolution, computed as a strided transposed
    convolution followed by the FIR filter; downsampling is FIR ``f`` -> strided convolution
    (or downsample first for 1x1 kernels). Output size: H*up/down for ``padding = k//2``.
    """
    if up > 1 and down > 1:
        raise InputError("conv2d_resample: up- and downsampling at once is not supported")
    out_c, in_c_per_group, kh, kw = w.shape
    fw = _filter_size(f)
    p0 = p1 = int(padding)
    if up > 1:
        p0 += (fw + up - 1) // 2
        p1 += (fw - up) // 2
    if down > 1:
        p0 += (fw - down + 1) // 2
        p1 += (fw - down) // 2

    if up == 1 and down == 1:
        if p0 == p1:
            return F.conv2d(x, w if flip_weight else w.flip([2, 3]), padding=p0, groups=groups)
        x = F.pad(x, [p0, p1, p0, p1])
        return F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)

    if down > 1:
        if kh == 1 and kw == 1:
            x = upfirdn2d(x, f, down=down, padding=[p0, p1, p0, p1])
            return F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
        x = upfirdn2d(x, f, padding=[p0, p1, p0, p1])
        return F.conv2d(x, w if flip_weight else w.flip([2, 3]), stride=down, groups=groups)

    # Upsampling: conv_transpose2d computes a true convolution of the zero-inserted input,
    # so the kernel is flipped to obtain a correlation when flip_weight is True.
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_c // groups, in_c_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_c_per_group, out_c // groups, kh, kw)
    if flip_weight:
        wt = wt.flip([2, 3])
    x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
    # The transposed convolution already produced (kw - 1) extra pixels at the start and
    # (kw - up) at the end relative to the FIR padding.
    q0, q1 = p0 - (kw - 1), p1 - (kw - up)
    return upfirdn2d(x, f, padding=[q0, q1, p0 - (kh - 1), p1 - (kh - up)], gain=up * up)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """Modulated convolution (StyleGAN2 eq. 1-3): per-sample weights ``w * s``, demodulated
    by ``1/sqrt(sum (w*s)^2 + 1e-8)`` when ``demodulate``; ``noise`` is added after the conv.

    ``x``: [N, I, H, W]; ``weight``: [O, I, kh, kw]; ``styles``: [N, I]. ``fused_modconv``
    computes all samples with one grouped convolution; otherwise the input is scaled
    (mathematically identical, used for training and fp16).
    """
    n = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    if styles.shape != (n, in_c):
        raise InputError(f"modulated_conv2d: styles must have shape {(n, in_c)}, got {tuple(styles.shape)}")

    # Pre-normalise in fp16 to avoid overflow; demodulation cancels the scale exactly.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_c * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = None
    if demodulate:
        # sum_{i,k} (w_oik s_i)^2 = sum_i s_i^2 sum_k w_oik^2: a [N, I] x [I, O] product instead
        # of squaring the [N, O, I, kh, kw] per-sample weights (StyleGAN2 eq. 3).
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down,
                            padding=padding, flip_weight=flip_weight)
        inplace = not (torch.is_grad_enabled() and (x.requires_grad or (noise is not None and noise.requires_grad)))
        if demodulate:
            d = dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
            x = x.mul_(d) if inplace else x * d
        if noise is not None:
            x = x.add_(noise.to(x.dtype)) if inplace else x + noise.to(x.dtype)
        return x

    scale = styles.reshape(n, 1, in_c) if dcoefs is None else dcoefs.reshape(n, out_c, 1) * styles.reshape(n, 1, in_c)
    w = (weight.unsqueeze(0) * scale.reshape(*scale.shape, 1, 1)).reshape(-1, in_c, kh, kw)  # [N*O, I, kh, kw]
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                        groups=n, flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        inplace = not (torch.is_grad_enabled() and (x.requires_grad or noise.requires_grad))
        x = x.add_(noise.to(x.dtype)) if inplace else x + noise.to(x.dtype)
    return x


# --------------------------------------------------------------------------------------------
# Layers.


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: ``act(x @ (W*g).T + b*lr)``,
    ``g = lr_multiplier / sqrt(in_features)``. Keys: ``weight`` [out, in], ``bias`` [out]."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise InputError(f"unknown activation {activation!r}; use one of {sorted(_ACTIVATIONS)}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution with equalised learning rate, optional FIR up/downsampling, bias, activation
    and clamping. Keys: ``weight`` [out, in, k, k], ``bias`` [out] (optional),
    ``resample_filter`` buffer [4, 4]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = _ACTIVATIONS[activation][1]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MinibatchStdLayer(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, sec. 3): per group of ``group_size``
    samples (sample n belongs to group ``n % (N // G)``), the mean over features of the
    per-feature std, appended as ``num_channels`` extra channels."""

    def __init__(self, group_size: int | None = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        if n % g != 0:
            raise InputError(
                f"discriminator batch size {n} is not divisible by the minibatch-std group size {g}; "
                f"use a multiple of {g}"
            )
        nf = self.num_channels
        y = x.reshape(g, -1, nf, c // nf, h, w)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])
        y = y.reshape(-1, nf, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
