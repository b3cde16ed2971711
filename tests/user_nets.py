"""Plain ``flax.linen`` networks, written as a user would, without anything from binflax.

The tests binarize them with ``binflax.binarize``, and the command line trains them:

    python main.py --config=configs/quickstart.py --config.model=tests.user_nets:VGG

Each takes ``num_classes`` and is called as ``model(images, train=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class VGG(nn.Module):
    """Two stages of (conv -> BN -> ReLU) x 2 -> max pool, then a Dense head.

    Layers, in call order: ``Conv_0`` .. ``Conv_3``, ``Dense_0``, ``Dense_1``.
    """

    num_classes: int = 10
    widths: Sequence[int] = (8, 16)
    hidden: int = 32
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for width in self.widths:
            for _ in range(2):
                x = nn.Conv(width, (3, 3), use_bias=False)(x)
                x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN -> ReLU -> conv, twice, plus the shortcut (a strided
    1x1 conv of the pre-activated input where the shape changes)."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        y = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(
                self.features, (1, 1), self.strides, use_bias=False, name="shortcut"
            )(y)
        y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False, name="conv1")(y)
        y = nn.relu(nn.BatchNorm(use_running_average=not train)(y))
        y = nn.Conv(self.features, (3, 3), use_bias=False, name="conv2")(y)
        return y + shortcut


class Stage(nn.Module):
    features: int
    blocks: int
    strides: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for index in range(self.blocks):
            strides = self.strides if index == 0 else 1
            x = PreActBlock(self.features, strides, name=f"block{index}")(x, train)
        return x


class PreActResNet(nn.Module):
    """A small pre-activation ResNet: stem, stages of nested blocks, BN -> ReLU -> average
    pool -> Dense head. Layers: ``stem``, ``stage0/block0/conv1``, ... ``head``."""

    num_classes: int = 10
    widths: Sequence[int] = (8, 16)
    blocks: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Conv(self.widths[0], (3, 3), name="stem")(x)
        for index, width in enumerate(self.widths):
            strides = 1 if index == 0 else 2
            x = Stage(width, self.blocks, strides, name=f"stage{index}")(x, train)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        return nn.Dense(self.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


class GroupedNet(nn.Module):
    """A stem, a strided grouped conv, a dilated conv with circular padding, a Dense head.

    Layers: ``Conv_0``, ``Conv_1`` (4 groups), ``Conv_2`` (dilation 2), ``Dense_0``.
    """

    num_classes: int = 10
    groups: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(nn.Conv(8, (3, 3), padding=1)(x))
        x = nn.Conv(8, (3, 3), strides=2, feature_group_count=self.groups)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        x = nn.relu(nn.Conv(16, (3, 3), kernel_dilation=2, padding="CIRCULAR")(x))
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))
