"""Sketch-A-Net (Yu et al. 2015) in the HBN authors' batch-norm form.

Shapes (docs/method.md section 5): 225x225x1 -> conv1 64 15/3 -> pool 3/2 -> conv2 128 5
-> pool -> conv3..conv5 256 3 pad 1 -> pool -> conv6 512 7x7 -> conv7 512 1x1 ->
conv8 classes 1x1; spatial sizes 71 -> 35 -> 31 -> 15 -> 15 -> 7 -> 1; ~608 M MACs.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from binflax.layers import max_pool
from binflax.models.base import BinaryNet


class SketchANet(BinaryNet):
    num_classes: int = 250
    default_input_shape: ClassVar[tuple[int, int, int]] = (225, 225, 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.activate(self.unit("conv1", 64, 15, 3, use_bias=True)(x, train), "conv1")
        x = max_pool(x, 3, 2)
        x = self.activate(self.unit("conv2", 128, 5)(x, train), "conv2")
        x = max_pool(x, 3, 2)
        x = self.activate(self.unit("conv3", 256, 3, 1, 1)(x, train), "conv3")
        x = self.activate(self.unit("conv4", 256, 3, 1, 1)(x, train), "conv4")
        x = self.activate(self.unit("conv5", 256, 3, 1, 1)(x, train), "conv5")
        x = max_pool(x, 3, 2)
        x = self.activate(self.unit("conv6", 512, 7)(x, train), "conv6")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.activate(self.unit("conv7", 512, 1)(x, train), "conv7")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.unit("conv8", self.num_classes, 1, use_bias=True, norm=False)(x, train)
        return x.reshape(x.shape[0], -1)
