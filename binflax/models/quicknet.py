"""A narrow six-conv net for the quickstart on scikit-learn's 8x8 digits (upscaled to 32x32).

Why narrow: HBN-METHOD.md section 10 measured that a wide net hides the cost of
binarizing on the digits, while channels 16-16-32-32-64-64 show the paper's ordering
(float ~ wbin > hybrid > fbin) in about ten seconds per variant on two CPU cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from binflax.layers import global_avg_pool, max_pool
from binflax.models.base import BinaryNet


class QuickNet(BinaryNet):
    num_classes: int = 10
    widths: Sequence[int] = (16, 16, 32, 32, 64, 64)
    dropout_rate: float = 0.0
    default_input_shape: ClassVar[tuple[int, int, int]] = (32, 32, 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for i, width in enumerate(self.widths, start=1):
            x = nn.relu(self.unit(f"conv{i}", width, 3, 1, 1, use_bias=i == 1)(x, train))
            if i % 2 == 0:
                x = max_pool(x, 2, 2)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(global_avg_pool(x))
        x = self.unit("fc", self.num_classes, 1, use_bias=True, norm=False)(x, train)
        return x.reshape(x.shape[0], -1)
