"""LeNet-5 as XNOR-Net's PyTorch code binarizes it for MNIST (jiecaoyu/XNOR-Net-PyTorch,
``MNIST/models/LeNet_5.py``).

Why this net: it is the smallest network binary-network papers report (that code: 99.23%
binary, 99.34% float), so a plan's cost in accuracy shows in minutes on a CPU. The layer
order is that file's: a float ``conv1 -> BN -> ReLU -> pool``, then binary units
``BN -> sign -> conv -> ReLU`` (``conv2``, pooled after its ReLU, then ``fc1``), then a
float classifier on ``fc1``'s ReLU output. Its first conv and last fc keep float weights,
as binflax's presets keep the first and last layers.

    28x28x1 -> conv1 20 5x5 -> pool -> conv2 50 5x5 -> pool -> fc1 500 (4x4 conv, to 1x1)
            -> fc classes; spatial sizes 24 -> 12 -> 8 -> 4 -> 1; 2.29 M MACs, 0.43 M params

Where binflax differs from that file: ``fc1`` is a conv over whatever map remains (at
28x28 the file's ``view(-1, 50*4*4)`` and ``Linear``: the same MACs and weights) and
``fc`` a 1x1 conv; only ``conv1`` and ``fc`` have a bias (the file's binary layers have
one too); every batch norm is affine (``bn_conv1`` is not) and none has its scale clamped
to >= 0.01; latent weights are not mean-centred and clipped to [-1, 1] before
binarization; alpha is a constant in the backward pass unless ``stop_alpha_gradient`` is
False (the file's ``updateBinaryGradWeight`` differentiates through it); and
``dropout_rate`` (0, as in the file) acts on ``fc1``'s output.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from binflax.layers import max_pool
from binflax.models.base import BinaryNet


class LeNet5(BinaryNet):
    num_classes: int = 10
    dropout_rate: float = 0.0
    default_input_shape: ClassVar[tuple[int, int, int]] = (28, 28, 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.activate(self.unit("conv1", 20, 5, use_bias=True)(x, train), "conv1")
        x = max_pool(x, 2, 2)
        x = self.activate(self.unit("conv2", 50, 5)(x, train), "conv2")
        x = max_pool(x, 2, 2)
        x = self.activate(self.unit("fc1", 500, x.shape[1:3])(x, train), "fc1")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.unit("fc", self.num_classes, 1, use_bias=True, norm=False)(x, train)
        return x.reshape(x.shape[0], -1)
