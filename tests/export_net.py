"""A plain ``flax.linen`` network with every layer kind the export must carry, written as a
user would and imported by nothing in binflax (tests/test_export_binarized.py loads its
export in a process that never imports this module).

Layers, in call order: ``stem``, ``block0/conv1``, ``block0/conv2``,
``block1/shortcut`` (strided 1x1), ``block1/conv1``, ``block1/conv2``, ``pair1`` and
``pair2`` (only a ReLU between them: packed words can pass), ``grouped`` (4 groups,
dilation 2, circular padding), ``Dense_0`` (hidden), ``head`` (Dense).
"""

from __future__ import annotations

import flax.linen as nn
import jax


class Block(nn.Module):
    """conv -> BN -> ReLU -> conv -> BN, plus the shortcut (a strided 1x1 conv where the
    shape changes), then ReLU: the user's own batch norms between planned layers."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(
                self.features, (1, 1), self.strides, use_bias=False, name="shortcut"
            )(x)
        y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False, name="conv1")(x)
        y = nn.relu(nn.BatchNorm(use_running_average=not train)(y))
        y = nn.Conv(self.features, (3, 3), use_bias=False, name="conv2")(y)
        y = nn.BatchNorm(use_running_average=not train)(y)
        return nn.relu(y + shortcut)


class ExportNet(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(nn.Conv(16, (3, 3), name="stem")(x))
        x = Block(16, name="block0")(x, train)
        x = Block(32, strides=2, name="block1")(x, train)
        x = nn.relu(nn.Conv(32, (3, 3), use_bias=False, name="pair1")(x))
        x = nn.Conv(32, (3, 3), use_bias=False, name="pair2")(x)
        x = nn.Conv(
            32, (3, 3), feature_group_count=4, kernel_dilation=2, padding="CIRCULAR",
            name="grouped",
        )(x)  # fmt: skip
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Dense(48)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes, name="head")(x)
