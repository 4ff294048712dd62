"""Pseudo-text features for language-free training and generation (LAFITE sec. 3.1).

- Lafite-G (fixed Gaussian perturbation, paper eq. 1): ``h' = normalize(h + xi * ||h|| * eps/||eps||)``.
  The official code writes it as ``normalize(0.25 * i + 0.75 * n)`` with ``n = eps/||eps||`` and
  unit-norm ``i``. Both are the same direction when ``xi = 0.75 / 0.25 = 3`` (scaling a vector
  before normalising does not change the result), which :func:`gaussian_pseudo_text` uses by default.
- Text perturbation used in (semi-)supervised training: ``t' = normalize(0.9 * t + 0.1 * n)``.
- Lafite-NN (learned perturbation, paper eq. 2): :class:`PerturbationNetwork`, output
  ``normalize(c + mu(c) + exp(log_sigma(c)) * eps)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InputError
from ..io.state_dict import load_state_dict_strict, safe_torch_load
from .capture import persistent_network

PSEUDO_TEXT_FORMS = ("official", "paper")
#: Official mixing weights: i' = normalize(0.25 i + 0.75 n), t' = normalize(0.9 t + 0.1 n).
OFFICIAL_IMAGE_WEIGHT = 0.25
OFFICIAL_TEXT_WEIGHT = 0.9
#: xi for which the paper's form equals the official one: 0.75 / 0.25.
OFFICIAL_XI = (1 - OFFICIAL_IMAGE_WEIGHT) / OFFICIAL_IMAGE_WEIGHT


def _check_features(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a tensor of shape [N, f_dim], got {shape}")
    return x.to(torch.float32)


def unit_noise(shape: torch.Size | tuple, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``n = eps / ||eps||`` with ``eps ~ N(0, I)``, one unit vector per row of ``shape`` [N, D]."""
    eps = torch.randn(tuple(shape), device=device, generator=generator)
    return F.normalize(eps, dim=1)


def gaussian_pseudo_text(
    img_feat: torch.Tensor,
    xi: float | None = None,
    form: str = "official",
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Lafite-G pseudo-text feature from CLIP image features [N, D]; returns unit vectors [N, D].

    ``form="official"``: ``normalize(0.25 * normalize(i) + 0.75 * n)`` (``xi`` must be None or 3).
    ``form="paper"``: ``normalize(h + xi * ||h|| * n)`` with ``h`` as given, ``xi`` default 3
    (the same direction as the official form for any ``h``). ``n`` is a unit Gaussian direction per
    sample, drawn with ``generator`` unless ``noise`` [N, D] (unit rows) is passed, so the same
    draw can be shared with :func:`perturb_text`. Raises ``InputError`` for bad shapes or options.
    """
    h = _check_features(img_feat, "img_feat")
    if form not in PSEUDO_TEXT_FORMS:
        raise InputError(f"form must be one of {PSEUDO_TEXT_FORMS}, got {form!r}")
    n = _noise_like(h, noise, generator)
    if form == "official":
        if xi is not None and abs(float(xi) - OFFICIAL_XI) > 1e-12:
            raise InputError(f"form='official' fixes xi={OFFICIAL_XI:g} (weights 0.25/0.75); use form='paper' for xi={xi}")
        return F.normalize(OFFICIAL_IMAGE_WEIGHT * F.normalize(h, dim=1) + (1 - OFFICIAL_IMAGE_WEIGHT) * n, dim=1)
    xi = OFFICIAL_XI if xi is None else float(xi)
    if xi < 0:
        raise InputError(f"xi must be >= 0, got {xi}")
    return F.normalize(h + xi * h.norm(dim=1, keepdim=True) * n, dim=1)


def perturb_text(
    text_feat: torch.Tensor,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    weight: float = OFFICIAL_TEXT_WEIGHT,
) -> torch.Tensor:
    """Official ground-truth text perturbation ``normalize(0.9 * normalize(t) + 0.1 * n)`` [N, D].

    ``noise`` (unit rows) lets the caller share one draw with :func:`gaussian_pseudo_text`.
    Raises ``InputError`` for bad shapes or a weight outside [0, 1].
    """
    t = _check_features(text_feat, "text_feat")
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"weight must be in [0, 1], got {weight}")
    n = _noise_like(t, noise, generator)
    return F.normalize(weight * F.normalize(t, dim=1) + (1 - weight) * n, dim=1)


def _noise_like(x: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    if noise is None:
        return unit_noise(x.shape, device=x.device, generator=generator)
    if not isinstance(noise, torch.Tensor) or noise.shape != x.shape:
        shape = list(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise InputError(f"noise must have the features' shape {list(x.shape)}, got {shape}")
    return noise.to(device=x.device, dtype=torch.float32)


@persistent_network
class PerturbationNetwork(nn.Module):
    """Lafite-NN inference network: two MLP branches on the image feature c.

    ``linear1..linear4`` give mu and ``linear5..linear8`` give log sigma
    (``feature_dim -> hidden -> hidden -> hidden -> feature_dim``, leaky ReLU slope 0.01
    between layers). ``forward(c)`` returns ``normalize(c + mu + exp(log_sigma) * eps)``.
    Keys equal the official ``implicit.*.pth`` state dicts.
    """

    def __init__(self, feature_dim: int = 512, hidden_dim: int = 1024) -> None:
        super().__init__()
        self.feature_dim, self.hidden_dim = feature_dim, hidden_dim
        dims = [feature_dim, hidden_dim, hidden_dim, hidden_dim, feature_dim]
        for branch in range(2):
            for j in range(4):
                setattr(self, f"linear{branch * 4 + j + 1}", nn.Linear(dims[j], dims[j + 1]))

    def _branch(self, c: torch.Tensor, first: int) -> torch.Tensor:
        x = c
        for j in range(4):
            x = getattr(self, f"linear{first + j}")(x)
            if j < 3:
                x = F.leaky_relu(x, 0.01)
        return x

    def mu_log_sigma(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two branch outputs ``(mu, log_sigma)``, each [N, feature_dim]."""
        return self._branch(c, 1), self._branch(c, 5)

    def forward(self, c: torch.Tensor, generator: torch.Generator | None = None,
                eps: torch.Tensor | None = None) -> torch.Tensor:
        """Pseudo-text features ``normalize(c + mu + exp(log_sigma) * eps)`` [N, feature_dim].

        ``eps ~ N(0, I)`` is drawn with ``generator`` unless given. Raises ``InputError`` for
        features of the wrong shape.
        """
        c = _check_features(c, "image features")
        if c.shape[1] != self.feature_dim:
            raise InputError(f"image features must have shape [N, {self.feature_dim}], got {list(c.shape)}")
        c = c.to(self.linear1.weight.dtype)
        mu, log_sigma = self.mu_log_sigma(c)
        if eps is None:
            eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        elif eps.shape != mu.shape:
            raise InputError(f"eps must have shape {list(mu.shape)}, got {list(eps.shape)}")
        return F.normalize(c + mu + log_sigma.exp() * eps, dim=1)


def load_perturbation_network(path: str | Path, feature_dim: int | None = None,
                              device: str | torch.device = "cpu") -> PerturbationNetwork:
    """Load an official Lafite-NN ``implicit.*.pth`` state dict (weights-only, nothing executes).

    ``feature_dim`` defaults to the file's (``linear1.weight`` columns); the hidden width is
    read from the file too. Raises ``CheckpointError`` naming the file and key for a missing,
    unexpected or mis-shaped key, an unreadable file, or a ``feature_dim`` that disagrees.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"perturbation network file not found: {path}")
    state = safe_torch_load(path, f"perturbation network {path}")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (mapping of tensors), got {type(state).__name__}")
    w1 = state.get("linear1.weight")
    if not isinstance(w1, torch.Tensor) or w1.ndim != 2:
        raise CheckpointError(f"{path}: key 'linear1.weight' is missing or not a 2-D tensor")
    hidden, file_dim = int(w1.shape[0]), int(w1.shape[1])
    if feature_dim is not None and feature_dim != file_dim:
        raise CheckpointError(f"{path}: file has feature_dim {file_dim} (linear1.weight {list(w1.shape)}), "
                              f"but feature_dim={feature_dim} was requested")
    net = PerturbationNetwork(feature_dim=file_dim, hidden_dim=hidden)
    load_state_dict_strict(net, state, what=f"{path} (perturbation network)")
    return net.to(device).eval()
