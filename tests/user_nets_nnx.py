"""Plain ``flax.nnx`` networks, written as a user would, without anything from binflax,
and a ``flax.linen`` twin of one of them (the same layers, names and arithmetic).

The tests binarize them with ``binflax.binarize``. Each NNX network's constructor takes
``(num_classes, *, rngs)`` and is called as ``model(images)``, its mode set NNX's way
(``model.train()`` / ``model.eval()``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx


class Block(nnx.Module):
    """Pre-activation block: BN -> ReLU -> conv1 (strided), BN -> ReLU -> conv2 (grouped),
    plus the shortcut: a strided 1x1 conv of the pre-activated input where the shape
    changes."""

    def __init__(self, cin: int, cout: int, strides: int, groups: int, *, rngs: nnx.Rngs):
        self.bn1 = nnx.BatchNorm(cin, rngs=rngs)
        self.shortcut = (
            nnx.Conv(cin, cout, (1, 1), strides, use_bias=False, rngs=rngs)
            if strides != 1 or cin != cout
            else None
        )
        self.conv1 = nnx.Conv(cin, cout, (3, 3), strides, use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(cout, rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), feature_group_count=groups, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(y)
        y = self.conv1(y)
        y = self.conv2(nnx.relu(self.bn2(y)))
        return y + shortcut


class ResNet(nnx.Module):
    """A stem, a list of blocks (the second strided, with a 1x1 shortcut and a grouped
    conv), BN -> ReLU -> average pool -> dropout -> Linear head.

    Layers, in call order: ``stem``, ``blocks/0/conv1``, ``blocks/0/conv2``,
    ``blocks/1/shortcut``, ``blocks/1/conv1``, ``blocks/1/conv2``, ``head``.
    """

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs, dropout_rate: float = 0.2):
        self.stem = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.blocks = nnx.List([Block(8, 8, 1, 2, rngs=rngs), Block(8, 16, 2, 4, rngs=rngs)])
        self.bn = nnx.BatchNorm(16, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.head = nnx.Linear(16, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = jnp.mean(nnx.relu(self.bn(x)), axis=(1, 2))
        return self.head(self.dropout(x))


class VGG(nnx.Module):
    """Two stages of (conv -> BN -> ReLU) x 2 -> max pool, then a Linear head: the NNX
    counterpart of tests/user_nets.py's VGG, sized for 16x16 single-channel images.

    Layers, in call order: ``convs/0`` .. ``convs/3``, ``hidden``, ``head``.
    """

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs, width: int = 8):
        chans = [(1, width), (width, width), (width, 2 * width), (2 * width, 2 * width)]
        self.convs = nnx.List([nnx.Conv(a, b, (3, 3), use_bias=False, rngs=rngs) for a, b in chans])
        self.norms = nnx.List([nnx.BatchNorm(b, rngs=rngs) for _, b in chans])
        self.hidden = nnx.Linear(2 * width * 4 * 4, 32, rngs=rngs)
        self.head = nnx.Linear(32, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = nnx.relu(norm(conv(x)))
            if i % 2 == 1:
                x = nnx.max_pool(x, (2, 2), (2, 2))
        x = nnx.relu(self.hidden(x.reshape(x.shape[0], -1)))
        return self.head(x)


class WithGeneral(nnx.Module):
    """A conv, an ``nnx.LinearGeneral`` and an ``nnx.Einsum`` (which binflax cannot plan)
    and a Linear head. Planned layers: ``conv``, ``head``."""

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.general = nnx.LinearGeneral(4, (2, 3), rngs=rngs)
        self.mix = nnx.Einsum("bk,kn->bn", (6, 6), rngs=rngs)
        self.head = nnx.Linear(6, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.mean(self.conv(x), axis=(1, 2))
        x = self.general(x).reshape(x.shape[0], -1)
        return self.head(self.mix(x))


# -- the linen twin of ResNet --------------------------------------------------------------


class LinenBlock(nn.Module):
    cin: int
    cout: int
    strides: int
    groups: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        y = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn1")(x))
        shortcut = x
        if self.strides != 1 or self.cin != self.cout:
            shortcut = nn.Conv(self.cout, (1, 1), self.strides, use_bias=False, name="shortcut")(y)
        y = nn.Conv(self.cout, (3, 3), self.strides, use_bias=False, name="conv1")(y)
        y = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn2")(y))
        y = nn.Conv(self.cout, (3, 3), feature_group_count=self.groups, name="conv2")(y)
        return y + shortcut


class LinenResNet(nn.Module):
    """:class:`ResNet` in ``flax.linen``: its layers are ``blocks_0/conv1`` where
    ResNet's are ``blocks/0/conv1`` (:func:`linen_name`)."""

    num_classes: int = 10
    dropout_rate: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Conv(8, (3, 3), name="stem")(x)
        x = LinenBlock(8, 8, 1, 2, name="blocks_0")(x, train)
        x = LinenBlock(8, 16, 2, 4, name="blocks_1")(x, train)
        x = jnp.mean(nn.relu(nn.BatchNorm(use_running_average=not train, name="bn")(x)), (1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head")(x)


def linen_name(path: str) -> str:
    """The twin's path of ResNet's ``path``: ``blocks/0/conv1`` -> ``blocks_0/conv1``."""
    return path.replace("blocks/", "blocks_")
