"""LAFITE discriminator: StyleGAN2 ResNet discriminator with two heads on a shared feature.

Paper (Zhou et al. 2022, eq. 3): ``D(x, h) = f_d(x) + <h, f_s(x)>``, where ``f_d`` is the
``out`` head and ``f_s`` the ``fts`` head on the epilogue feature. The official code instead adds
the semantic term summed over the whole batch, ``(f_s * h).sum()``, to every logit; published
checkpoints were trained that way. Both are offered through ``semantic_term``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .capture import persistent_network
from .layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer, setup_filter

SEMANTIC_TERMS = ("paper", "official")


def semantic_logits(out: torch.Tensor, f_s: torch.Tensor, h: torch.Tensor, semantic_term: str = "paper") -> torch.Tensor:
    """Combine ``f_d(x)`` [N, 1] with the semantic term of features ``f_s`` and ``h`` [N, f_dim].

    "paper": ``out + <h_i, f_s(x_i)>`` per sample; "official": ``out + sum_i <h_i, f_s(x_i)>``
    (one scalar for the whole batch, as in the released training code).
    Raises ``InputError`` for an unknown ``semantic_term``.
    """
    if semantic_term == "paper":
        return out + (f_s * h).sum(dim=1, keepdim=True)
    if semantic_term == "official":
        return out + (f_s * h).sum()
    raise InputError(f"semantic_term must be one of {SEMANTIC_TERMS}, got {semantic_term!r}")


class DiscriminatorBlock(nn.Module):
    """ResNet block: [fromrgb], conv0 3x3, conv1 3x3 with 2x FIR downsampling, plus a 1x1
    downsampling skip; both paths scaled by sqrt(0.5) (StyleGAN2 fig. 7)."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation="lrelu", down=2,
                                 resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                resample_filter=resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor, force_fp32: bool = False) -> torch.Tensor:
        use_fp16 = self.use_fp16 and not force_fp32 and img.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        if self.in_channels == 0:
            x = self.fromrgb(img.to(dtype))
        else:
            x = x.to(dtype)
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=np.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    """4x4 epilogue: minibatch std -> conv 3x3 -> fc (shared feature) -> heads ``out`` (f_d, 1)
    and ``fts`` (f_s, f_dim). Always float32."""

    def __init__(
        self,
        in_channels: int,
        resolution: int = 4,
        f_dim: int = 512,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
        use_fts: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.use_fts = in_channels, resolution, use_fts
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation="lrelu")
        if use_fts:
            self.fts = FullyConnectedLayer(in_channels, f_dim)
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(f_d(x) [N, 1], f_s(x) [N, f_dim] or None)`` (f_s unnormalised)."""
        x = x.to(torch.float32)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        fts = self.fts(x) if self.use_fts else None
        return self.out(x), fts


@persistent_network
class Discriminator(nn.Module):
    """LAFITE discriminator ``D(x, h) -> (logits [N, 1], f_s(x) [N, f_dim])``.

    Blocks b{R} ... b8 then the 4x4 epilogue ``b4``; channels ``min(channel_base // res,
    channel_max)``; fp16 (CUDA only) for the ``num_fp16_res`` highest resolutions. With
    ``use_norm`` f_s is L2-normalised (before the semantic term and in the returned value).
    Raises ``InputError`` for unsupported options.
    """

    def __init__(
        self,
        img_resolution: int,
        img_channels: int = 3,
        f_dim: int = 512,
        c_dim: int = 0,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = 256,
        use_norm: bool = False,
        use_fts: bool = True,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        if c_dim != 0:
            raise InputError(f"c_dim={c_dim}: class-conditional discriminators are not part of LAFITE; use c_dim=0")
        log2 = int(np.log2(img_resolution))
        if img_resolution < 8 or 2 ** log2 != img_resolution:
            raise InputError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        self.img_resolution, self.img_channels, self.f_dim, self.c_dim = img_resolution, img_channels, f_dim, c_dim
        self.use_norm, self.use_fts = use_norm, use_fts
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0, channels[res], channels[res // 2], res, img_channels,
                resample_filter=resample_filter, conv_clamp=conv_clamp, use_fp16=(res >= fp16_resolution),
            )
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(channels[4], resolution=4, f_dim=f_dim, mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp, use_fts=use_fts)

    def forward(
        self,
        img: torch.Tensor,
        text_features: torch.Tensor | None = None,
        semantic_term: str = "paper",
        force_fp32: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Score images [N, C, R, R] in [-1, 1] against text features [N, f_dim].

        Returns ``(logits [N, 1], f_s [N, f_dim])``. ``semantic_term``: "paper" (per-sample
        ``f_d + <h, f_s>``, default) or "official" (batch-summed term added to every logit).
        ``text_features=None`` returns ``f_d(x)`` alone (no semantic term).
        Raises ``InputError`` for wrong shapes, an unknown ``semantic_term``, or text features
        given to a discriminator without the ``fts`` head.
        """
        if semantic_term not in SEMANTIC_TERMS:
            raise InputError(f"semantic_term must be one of {SEMANTIC_TERMS}, got {semantic_term!r}")
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or tuple(img.shape[1:]) != expected:
            shape = list(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise InputError(f"img must have shape [N, {', '.join(map(str, expected))}], got {shape}")
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        out, fts = self.b4(x)
        if fts is not None and self.use_norm:
            fts = F.normalize(fts, dim=1)
        if text_features is None:
            return out, fts
        if fts is None:
            raise InputError("this discriminator has no fts head (use_fts=False): call it without text_features")
        n = img.shape[0]
        if not isinstance(text_features, torch.Tensor) or text_features.shape != (n, self.f_dim):
            shape = list(text_features.shape) if isinstance(text_features, torch.Tensor) else type(text_features).__name__
            raise InputError(f"text_features must have shape [{n}, {self.f_dim}], got {shape}")
        h = text_features.to(device=fts.device, dtype=fts.dtype)
        return semantic_logits(out, fts, h, semantic_term), fts
