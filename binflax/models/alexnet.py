"""AlexNet as the HBN authors trained it: batch norm, no groups, no LRN, convs for fc layers.

Shapes (docs/method.md section 5): 224x224x3 -> conv1 96 11/4 pad 2 -> pool 3/2 ->
conv2 256 5 pad 2 -> pool -> conv3 384 3 -> conv4 384 3 -> conv5 256 3 -> pool ->
fc6 4096 (6x6 conv) -> fc7 4096 -> fc8 classes; 1135.3 M MACs in all.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from binflax.layers import max_pool
from binflax.models.base import BinaryNet


class AlexNet(BinaryNet):
    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.activate(self.unit("conv1", 96, 11, 4, 2, use_bias=True)(x, train), "conv1")
        x = max_pool(x, 3, 2)
        x = self.activate(self.unit("conv2", 256, 5, 1, 2)(x, train), "conv2")
        x = max_pool(x, 3, 2)
        x = self.activate(self.unit("conv3", 384, 3, 1, 1)(x, train), "conv3")
        x = self.activate(self.unit("conv4", 384, 3, 1, 1)(x, train), "conv4")
        x = self.activate(self.unit("conv5", 256, 3, 1, 1)(x, train), "conv5")
        x = max_pool(x, 3, 2)
        x = self.activate(self.unit("fc6", 4096, 6)(x, train), "fc6")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.activate(self.unit("fc7", 4096, 1)(x, train), "fc7")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.unit("fc8", self.num_classes, 1, use_bias=True, norm=False)(x, train)
        return x.reshape(x.shape[0], -1)
