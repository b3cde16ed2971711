"""A miniature Sketch-A-Net for the quickstart on scikit-learn's 8x8 digits (upscaled to 16x16).

Why this shape: it keeps the paper's story visible at smoke scale. Like Sketch-A-Net
it has a wide float first layer, a few 3x3 convs that hold most of the MACs, and two
"fully-connected" layers written as convs (a 4x4 conv on the 4x4 map, then a 1x1) that
cost little but suffer from binarized inputs - so a hybrid that keeps them float costs
only ~1.4x fbin's equivalent FLOPs. It is narrow on purpose: docs/method.md section 11
measured that a wide net hides the cost of binarization on the digits.

    16x16x1 -> conv1 48 5x5 -> pool -> conv2 64 3x3 -> conv3 64 3x3 -> pool
            -> conv4 128 4x4 (to 1x1) -> conv5 128 1x1 -> fc classes
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from binflax.layers import max_pool
from binflax.models.base import BinaryNet


class MiniSketchANet(BinaryNet):
    num_classes: int = 10
    widths: Sequence[int] = (48, 64, 64, 128, 128)
    dropout_rate: float = 0.0
    default_input_shape: ClassVar[tuple[int, int, int]] = (16, 16, 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c1, c2, c3, c4, c5 = self.widths
        x = self.activate(self.unit("conv1", c1, 5, 1, 2, use_bias=True)(x, train), "conv1")
        x = max_pool(x, 2, 2)
        x = self.activate(self.unit("conv2", c2, 3, 1, 1)(x, train), "conv2")
        x = self.activate(self.unit("conv3", c3, 3, 1, 1)(x, train), "conv3")
        x = max_pool(x, 2, 2)
        x = self.activate(self.unit("conv4", c4, x.shape[1:3])(x, train), "conv4")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.activate(self.unit("conv5", c5, 1)(x, train), "conv5")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.unit("fc", self.num_classes, 1, use_bias=True, norm=False)(x, train)
        return x.reshape(x.shape[0], -1)
