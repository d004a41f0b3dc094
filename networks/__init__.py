"""StyleGAN2-ADA networks: our own implementation, state-compatible with the official pickles.

Module and parameter names follow the official networks one to one
(``mapping.fc0.weight``, ``synthesis.b8.conv0.noise_const``, ``b4.out.bias``, ...), so a
state dict read from an official pickle loads into these classes unchanged.
"""

from .layers import Conv2dLayer, FullyConnectedLayer, modulated_conv2d, normalize_2nd_moment
from .generator import (Generator, MappingNetwork, SynthesisBlock, SynthesisLayer, SynthesisNetwork,
                        ToRGBLayer)
from .discriminator import (Discriminator, DiscriminatorBlock, DiscriminatorEpilogue,
                            MinibatchStdLayer)

__all__ = [
    'Conv2dLayer', 'FullyConnectedLayer', 'modulated_conv2d', 'normalize_2nd_moment',
    'Generator', 'MappingNetwork', 'SynthesisBlock', 'SynthesisLayer', 'SynthesisNetwork', 'ToRGBLayer',
    'Discriminator', 'DiscriminatorBlock', 'DiscriminatorEpilogue', 'MinibatchStdLayer',
]
