"""LAFITE networks in pure PyTorch: generator, discriminator, pseudo-text features.

State-dict keys equal the official LAFITE ones, so official snapshots load without mapping
(see :mod:`lafitebench.checkpoints.official`).
"""
from .capture import NETWORKS, complete_init_kwargs, persistent_network
from .discriminator import Discriminator, DiscriminatorBlock, DiscriminatorEpilogue, semantic_logits
from .generator import (
    Generator,
    MappingNetwork,
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGBLayer,
)
from .layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    MinibatchStdLayer,
    bias_act,
    modulated_conv2d,
    upfirdn2d,
)
from .pseudo_text import (
    PerturbationNetwork,
    gaussian_pseudo_text,
    load_perturbation_network,
    perturb_text,
)

__all__ = [
    "NETWORKS", "complete_init_kwargs", "persistent_network", "Conv2dLayer", "Discriminator", "DiscriminatorBlock", "DiscriminatorEpilogue", "FullyConnectedLayer",
    "Generator", "MappingNetwork", "MinibatchStdLayer", "PerturbationNetwork", "SynthesisBlock", "SynthesisLayer",
    "SynthesisNetwork", "ToRGBLayer", "bias_act", "gaussian_pseudo_text", "load_perturbation_network",
    "modulated_conv2d", "perturb_text", "semantic_logits", "upfirdn2d",
]
