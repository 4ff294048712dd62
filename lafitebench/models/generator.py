"""LAFITE generator: StyleGAN2 with the text feature injected into every synthesis layer.

Paper: Zhou et al., "LAFITE: Towards Language-Free Training for Text-to-Image Generation",
CVPR 2022, sec. 3.2 ("the text feature is fused into the style of every layer"). The mapping
network is StyleGAN2's and does not see the text. Each modulated layer derives its style from
the text feature h and its w in one of two ways (the official code's "structures"):

- structure 2 (blocks with resolution <= ``change``):
  ``style = affine_0(concat([pre_1(pre_0(h)), w]))`` -- text first in the concatenation;
- structure 1 (blocks with resolution > ``change``):
  ``style = bias_net(h) + affine(w) * scale_net(h)`` with 3-layer scale/bias nets.

Module names and shapes equal the official ones, so official state dicts load unchanged.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..runtime.rng import randn_from
from .capture import persistent_network
from .layers import FullyConnectedLayer, modulated_conv2d, normalize_2nd_moment, bias_act, setup_filter, upsample2d

NOISE_MODES = ("const", "random", "none")
# Width of the text branch output in both style structures (fixed in the official code).
TEXT_HIDDEN = 512


def check_text_features(text_features: Any, n: int, f_dim: int, device: torch.device) -> torch.Tensor:
    """Validate a text/pseudo-text condition and return it as float32 [n, f_dim] on ``device``.

    Raises ``InputError`` when it is missing, not a tensor, or has the wrong shape. The
    features are used as given (callers pass L2-normalised CLIP features); fp16 is cast.
    """
    if text_features is None:
        raise InputError(
            "text_features is required: pass L2-normalised CLIP text (or pseudo-text) features of "
            f"shape [N, {f_dim}] (LAFITE never substitutes random features for a missing condition)"
        )
    if not isinstance(text_features, torch.Tensor):
        raise InputError(f"text_features must be a torch.Tensor of shape [N, {f_dim}], got {type(text_features).__name__}")
    if text_features.ndim != 2 or text_features.shape[1] != f_dim:
        raise InputError(
            f"text_features must have shape [N, {f_dim}] (N samples, f_dim={f_dim} of this model), "
            f"got {list(text_features.shape)}"
        )
    if text_features.shape[0] != n:
        raise InputError(f"text_features has {text_features.shape[0]} rows but the batch has {n} samples")
    return text_features.to(device=device, dtype=torch.float32)


def _add_style_net(layer: nn.Module, structure: int, w_dim: int, f_dim: int, channels: int) -> None:
    """Attach the per-layer text style network (official module names) to ``layer``."""
    hidden = (f_dim + TEXT_HIDDEN) // 2
    if structure == 2:
        layer.pre_0 = FullyConnectedLayer(f_dim, hidden, activation="lrelu", lr_multiplier=0.01)
        layer.pre_1 = FullyConnectedLayer(hidden, TEXT_HIDDEN, activation="lrelu", lr_multiplier=0.01)
        layer.affine_0 = FullyConnectedLayer(TEXT_HIDDEN + w_dim, channels, bias_init=1)
    elif structure == 1:
        layer.affine = FullyConnectedLayer(w_dim, channels, bias_init=1)
        for branch in ("scale", "bias"):
            setattr(layer, f"{branch}_layer_0", FullyConnectedLayer(f_dim, hidden, activation="lrelu", lr_multiplier=0.01))
            setattr(layer, f"{branch}_layer_1", FullyConnectedLayer(hidden, TEXT_HIDDEN, activation="lrelu", lr_multiplier=0.01))
            setattr(layer, f"{branch}_layer_2", FullyConnectedLayer(TEXT_HIDDEN, channels))
    else:
        raise InputError(f"style structure must be 1 or 2, got {structure!r}")


def _text_style(layer: nn.Module, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Style of one layer from w [N, w_dim] and text feature h [N, f_dim] (see module docstring)."""
    if layer.structure == 2:
        t = layer.pre_1(layer.pre_0(h))
        return layer.affine_0(torch.cat([t, w], dim=1))
    scale = layer.scale_layer_2(layer.scale_layer_1(layer.scale_layer_0(h)))
    bias = layer.bias_layer_2(layer.bias_layer_1(layer.bias_layer_0(h)))
    return bias + layer.affine(w) * scale


class MappingNetwork(nn.Module):
    """z -> w: normalise the 2nd moment of z, then ``num_layers`` lrelu FC layers with lr
    multiplier 0.01 (StyleGAN sec. 2). Tracks ``w_avg`` (EMA, beta 0.995) in training mode and
    applies truncation ``w_avg + psi * (w - w_avg)`` for the first ``truncation_cutoff`` ws."""

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 8,
        layer_features: int | None = None,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
        activation: str = "lrelu",
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim] + [layer_features] * (num_layers - 1) + [w_dim]
        for i in range(num_layers):
            self.add_module(f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = True,
    ) -> torch.Tensor:
        """Return ws [N, num_ws, w_dim]. Raises ``InputError`` for a z of the wrong shape."""
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
            shape = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(f"z must have shape [N, {self.z_dim}], got {shape}")
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.w_avg_beta is not None and self.training and update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise InputError("truncation needs w_avg, but this mapping network has w_avg_beta=None")
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x FIR upsampling), noise, bias, lrelu, clamp; its style
    comes from (w, h) through the layer's text style network."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        structure: int = 2,
        f_dim: int = 512,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp, self.structure = activation, conv_clamp, structure
        self.padding = kernel_size // 2
        self.act_gain = float(np.sqrt(2)) if activation in ("lrelu", "relu") else 1.0
        _add_style_net(self, structure, w_dim, f_dim, in_channels)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def style(self, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Per-sample style [N, in_channels] from w [N, w_dim] and h [N, f_dim]."""
        return _text_style(self, w, h)

    def forward(
        self,
        x: torch.Tensor,
        style: torch.Tensor,
        noise_mode: str = "const",
        fused_modconv: bool = True,
        gain: float = 1.0,
        noise_generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        noise = None
        if self.use_noise and noise_mode == "random":
            if isinstance(noise_generator, (list, tuple)):  # one generator per sample (runtime.rng)
                noise = randn_from(noise_generator, [1, self.resolution, self.resolution], device=x.device)
            else:
                noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device,
                                    generator=noise_generator)
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, style, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp,
                        overwrite=True)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation to RGB; style scaled by 1/sqrt(in_channels)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        structure: int = 2,
        f_dim: int = 512,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv_clamp, self.structure = conv_clamp, structure
        _add_style_net(self, structure, w_dim, f_dim, in_channels)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)

    def style(self, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Per-sample style [N, in_channels], including the 1/sqrt(in_channels) gain."""
        return _text_style(self, w, h) * self.weight_gain

    def forward(self, x: torch.Tensor, style: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, style, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp, overwrite=True)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' synthesis network: [conv0 (up 2x)], conv1, ToRGB; the RGB
    of the previous block is FIR-upsampled and added. b4 starts from a learned constant."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        structure: int = 2,
        f_dim: int = 512,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.img_channels, self.is_last = resolution, img_channels, is_last
        self.use_fp16, self.structure = use_fp16, structure
        self.fused_override: bool | None = None  # run-time layout choice (Generator.set_layout)
        self.channels_last: bool | None = None
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 1
        layer_kw = dict(conv_clamp=conv_clamp, structure=structure, f_dim=f_dim)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, **layer_kw)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **layer_kw)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, **layer_kw)

    def style_layers(self) -> list[nn.Module]:
        """The style-consuming layers of this block in the official style order."""
        layers = [self.conv1, self.torgb] if self.in_channels == 0 else [self.conv0, self.conv1, self.torgb]
        return layers

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        styles: Sequence[torch.Tensor],
        noise_mode: str = "const",
        force_fp32: bool = False,
        noise_generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = styles[0].shape[0]
        device = styles[0].device
        # fp16 only on CUDA; on CPU every block runs in float32.
        use_fp16 = self.use_fp16 and not force_fp32 and device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        # The official rule (one grouped convolution in fp32 inference) on GPU. On CPU the
        # per-sample weights cost more than they save: input scaling + one shared-weight
        # convolution in channels-last layout (same products, rounding-level differences).
        on_cpu = device.type == "cpu"
        fused = (not self.training) and (dtype == torch.float32 or n == 1)
        fused = fused and (not on_cpu if self.fused_override is None else self.fused_override)
        if x is not None and (on_cpu if self.channels_last is None else self.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        s = iter(styles)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([n, 1, 1, 1])
            x = self.conv1(x, next(s), noise_mode, fused, noise_generator=noise_generator)
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(s), noise_mode, fused, noise_generator=noise_generator)
            x = self.conv1(x, next(s), noise_mode, fused, noise_generator=noise_generator)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(s), fused).to(torch.float32)
        img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] + text feature h [N, f_dim] -> image [N, C, R, R].

    Blocks b4 ... b{R}; channels per block ``min(channel_base // res, channel_max)``;
    structure 2 for ``res <= change``, structure 1 above; fp16 (CUDA only) for the
    ``num_fp16_res`` highest resolutions.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        f_dim: int = 512,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = 256,
        change: int = 256,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise InputError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels, self.f_dim = w_dim, img_resolution, img_channels, f_dim
        self.change = change
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0, channels[res], w_dim, res, img_channels,
                is_last=(res == img_resolution), resample_filter=resample_filter, conv_clamp=conv_clamp,
                use_fp16=(res >= fp16_resolution), structure=2 if res <= change else 1, f_dim=f_dim,
            )
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def style_layers(self) -> list[nn.Module]:
        """All style-consuming layers in the official order (b4.conv1, b4.torgb, b8.conv0, ...)."""
        return [layer for block in self.blocks() for layer in block.style_layers()]

    def compute_styles(self, ws: torch.Tensor, h: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer styles from ws [N, num_ws, w_dim] and h [N, f_dim]; ToRGB ones include the gain."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise InputError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        styles = []
        w_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb).unbind(dim=1)
            for layer, w in zip(block.style_layers(), block_ws):
                styles.append(layer.style(w.to(torch.float32), h))
            w_idx += block.num_conv
        return styles

    def check_styles(self, styles: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Validate an explicit list of per-layer styles; raises ``InputError`` naming the layer."""
        layers = self.style_layers()
        if not isinstance(styles, (list, tuple)) or len(styles) != len(layers):
            got = len(styles) if isinstance(styles, (list, tuple)) else type(styles).__name__
            raise InputError(f"styles must be a list of {len(layers)} tensors (one per layer), got {got}")
        n = styles[0].shape[0] if isinstance(styles[0], torch.Tensor) else None
        names = self.style_layer_names()
        for name, layer, s in zip(names, layers, styles):
            if not isinstance(s, torch.Tensor) or s.ndim != 2 or s.shape != (n, layer.in_channels):
                shape = list(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise InputError(f"style for layer {name} must have shape [{n}, {layer.in_channels}], got {shape}")
        return [s.to(torch.float32) for s in styles]

    def style_layer_names(self) -> list[str]:
        names = []
        for block in self.blocks():
            for layer in block.style_layers():
                names.append(next(f"b{block.resolution}.{k}" for k, m in block.named_children() if m is layer))
        return names

    def forward(
        self,
        ws: torch.Tensor | None,
        text_features: torch.Tensor | None,
        noise_mode: str = "const",
        styles: Sequence[torch.Tensor] | None = None,
        return_styles: bool = False,
        force_fp32: bool = False,
        noise_generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ):
        """Synthesise images in about [-1, 1] ([N, C, R, R], float32).

        Give either ``ws`` + ``text_features`` or an explicit ``styles`` list (bypasses all
        style networks). Returns the images, or ``(images, styles)`` with ``return_styles``.
        Raises ``InputError`` for a bad noise mode, missing condition or wrong shapes.
        """
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if styles is None:
            if ws is None:
                raise InputError("give ws (and text_features) or an explicit list of styles")
            h = check_text_features(text_features, ws.shape[0], self.f_dim, ws.device)
            styles = self.compute_styles(ws, h)
        else:
            styles = self.check_styles(styles)
        x = img = None
        i = 0
        for block in self.blocks():
            k = block.num_conv + block.num_torgb
            x, img = block(x, img, styles[i:i + k], noise_mode=noise_mode, force_fp32=force_fp32,
                           noise_generator=noise_generator)
            i += k
        return (img, styles) if return_styles else img


@persistent_network
class Generator(nn.Module):
    """LAFITE generator ``G(z, h) -> image`` (mapping network + text-conditioned synthesis).

    Args mirror the official constructor: ``mapping_kwargs`` go to :class:`MappingNetwork`
    (e.g. ``num_layers``), ``synthesis_kwargs`` to :class:`SynthesisNetwork`
    (``channel_base, channel_max, num_fp16_res, conv_clamp, change``; an ``f_dim`` there must
    agree with ``f_dim``). Only ``c_dim = 0`` (no class labels) exists in LAFITE.
    Raises ``InputError`` for unsupported options.
    """

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        f_dim: int = 512,
        c_dim: int = 0,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if c_dim != 0:
            raise InputError(f"c_dim={c_dim}: class-conditional generators are not part of LAFITE; use c_dim=0")
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        if "f_dim" in synthesis_kwargs:
            sf = synthesis_kwargs.pop("f_dim")
            if sf != f_dim:
                raise InputError(f"f_dim={f_dim} disagrees with synthesis_kwargs['f_dim']={sf}")
        self.z_dim, self.w_dim, self.c_dim, self.f_dim = z_dim, w_dim, c_dim, f_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        try:
            self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, f_dim=f_dim, **synthesis_kwargs)
            self.num_ws = self.synthesis.num_ws
            self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, **mapping_kwargs)
        except TypeError as e:
            raise InputError(f"unsupported generator option: {e}") from e

    def set_layout(self, fused: bool | None = None, channels_last: bool | None = None) -> "Generator":
        """Choose how the synthesis convolutions run; ``None`` restores the automatic choice.

        Automatic: on GPU the official rule (one grouped convolution with per-sample weights in
        fp32 inference, NCHW); on CPU input scaling + one shared-weight convolution in
        channels-last layout. ``fused=True, channels_last=False`` on CPU is the official
        implementation's path (the benchmark baseline); ``channels_last=True`` is the GPU option.
        Weights, saved configs and outputs (up to float rounding) do not change.
        """
        for module in self.synthesis.modules():
            if isinstance(module, SynthesisBlock):
                module.fused_override, module.channels_last = fused, channels_last
        return self

    def forward(
        self,
        z: torch.Tensor | None,
        text_features: torch.Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        styles: Sequence[torch.Tensor] | None = None,
        return_ws: bool = False,
        return_styles: bool = False,
        force_fp32: bool = False,
        noise_generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ):
        """Generate images in about [-1, 1], float32 [N, C, R, R].

        ``z`` [N, z_dim]; ``text_features`` [N, f_dim] (L2-normalised CLIP features, required
        unless ``styles`` is given); truncation lerps w toward ``w_avg``; ``noise_mode`` is
        "const" | "random" | "none" (``noise_generator`` seeds "random": one generator for the batch,
        or one per sample as made by :func:`lafitebench.runtime.rng.sample_generators`). An explicit list of
        per-layer ``styles`` (order b4.conv1, b4.torgb, b8.conv0, ...; ToRGB styles include
        their gain) bypasses the mapping and style networks (``z`` may then be None).
        Returns the images, or a tuple ``(images, ws?, styles?)`` with the requested extras.
        Raises ``InputError`` for a missing condition, bad shapes or a bad noise mode.
        """
        ws = None
        if z is not None:
            ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        elif styles is None:
            raise InputError(f"z is required (shape [N, {self.z_dim}]) unless explicit styles are given")
        out = self.synthesis(ws, text_features, noise_mode=noise_mode, styles=styles, return_styles=return_styles,
                             force_fp32=force_fp32, noise_generator=noise_generator)
        img, used_styles = out if return_styles else (out, None)
        if not (return_ws or return_styles):
            return img
        extras = (img,)
        if return_ws:
            extras += (ws,)
        if return_styles:
            extras += (used_styles,)
        return extras


# Nested constructor dicts whose defaults a native config writes out (see models.capture):
# argument -> (sub-network class, arguments the generator passes to it itself).
Generator.nested_init_kwargs = {
    "mapping_kwargs": (MappingNetwork, frozenset({"z_dim", "w_dim", "num_ws"})),
    "synthesis_kwargs": (SynthesisNetwork, frozenset({"w_dim", "img_resolution", "img_channels", "f_dim"})),
}
