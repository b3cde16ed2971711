"""VGG-Small: BinaryNet's CIFAR-10 network (Courbariaux, Hubara et al. 2016), the one
binary-network papers report on CIFAR-10, with a width to shrink it.

Why a width: at full width it has ~14 M parameters and ~0.6 G MACs, too many to train on
a CPU. ``width`` is the first stage's channels; the stages have width, 2*width and 4*width
and the two hidden fully-connected layers 8*width, so ``width=16`` keeps the topology in
10 M MACs. ``fc1`` is a conv over whatever map the third pool leaves (4x4 at 32x32, 3x3
at Fashion-MNIST's 28x28), so every input size gives the same plan names.

    32x32x3 -> conv1, conv2 128 3x3 -> pool -> conv3, conv4 256 3x3 -> pool
            -> conv5, conv6 512 3x3 -> pool -> fc1 1024 (4x4 conv, to 1x1) -> fc2 1024
            -> fc classes; spatial sizes 32 -> 16 -> 8 -> 4 -> 1; 617 M MACs, 14.0 M params

Where binflax differs from BinaryNet's ``Train-time/cifar10.py``: its units (a ReLU after
each hidden layer, the pool after the ReLU, batch norm on a binary unit's input) stand
for the file's ``conv -> pool -> BN -> sign``; the first conv's weights and the
classifier's input stay float (binflax's presets; the file binarizes every weight and
every input but the image); the classifier is a 1x1 conv with a bias and no batch norm,
trained with softmax cross-entropy (the file: batch norm and a squared hinge loss); and
``dropout_rate`` (0, as in the file) acts after ``fc1`` and ``fc2``, as in AlexNet.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from binflax.layers import max_pool
from binflax.models.base import BinaryNet


class VGGSmall(BinaryNet):
    num_classes: int = 10
    width: int = 128
    dropout_rate: float = 0.0
    default_input_shape: ClassVar[tuple[int, int, int]] = (32, 32, 3)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        w = self.width
        x = self.activate(self.unit("conv1", w, 3, 1, 1, use_bias=True)(x, train), "conv1")
        x = self.activate(self.unit("conv2", w, 3, 1, 1)(x, train), "conv2")
        x = max_pool(x, 2, 2)
        x = self.activate(self.unit("conv3", 2 * w, 3, 1, 1)(x, train), "conv3")
        x = self.activate(self.unit("conv4", 2 * w, 3, 1, 1)(x, train), "conv4")
        x = max_pool(x, 2, 2)
        x = self.activate(self.unit("conv5", 4 * w, 3, 1, 1)(x, train), "conv5")
        x = self.activate(self.unit("conv6", 4 * w, 3, 1, 1)(x, train), "conv6")
        x = max_pool(x, 2, 2)
        x = self.activate(self.unit("fc1", 8 * w, x.shape[1:3])(x, train), "fc1")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.activate(self.unit("fc2", 8 * w, 1)(x, train), "fc2")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.unit("fc", self.num_classes, 1, use_bias=True, norm=False)(x, train)
        return x.reshape(x.shape[0], -1)
