"""ResNet-18 in torchvision's layout, with the HBN authors' binary basic block.

Binary input: ``BN -> sign -> conv3x3 -> ReLU -> BN -> sign -> conv3x3 -> +shortcut ->
ReLU``; float input: ``conv -> BN -> ReLU -> conv -> BN -> +shortcut -> ReLU``. Each conv
is its own plan entry, so a hybrid can mix the two inside one block. The classifier is a
1x1 conv after global average pooling. Block ``b`` of stage ``s`` is ``layer{s}_{b}``, as
torchvision's ``layer{s}.{b}``. Unlike the authors' hybrid ResNet files, the second
block of stage 1 is fed by the first block (their files feed it from the stem).

``stem`` picks the first layer: ``"imagenet"`` (the default, torchvision's) is a 7x7
stride-2 ``conv1`` and a 3x3 stride-2 max pool, 224 -> 112 -> 56; ``"cifar"`` is the
3x3 stride-1 ``conv1`` with no pool that CIFAR papers use, so a 32x32 image keeps its
32x32 map through stage 1 (the ImageNet stem leaves 8x8). The plan names are the same.

``block`` picks the residual topology (docs/method.md section 4):

- ``"xnor"`` (the default): the basic block above, one shortcut per two convs;
- ``"bireal"``: Bi-Real Net's (Liu et al., ECCV 2018): every conv is its own residual,
  ``relu(unit(x) + x)``, so a real-valued identity shortcut runs around each binary
  conv; where the shape changes, the shortcut is a 2x2 stride-2 average pool and the
  planned 1x1 unit ``downsample``;
- ``"reactnet"``: the bireal topology with ReActNet's units (Liu et al., ECCV 2020):
  ``input_norm="shift"`` (RSign) and ``activation="rprelu"`` for every unit of the
  blocks, whatever the model's own fields say, so ``rprelu(unit(x)) + x``.

In every block the plan decides each conv's precision and the names are the same
(``layer1_0/conv1``, ``layer1_0/conv2``, ``layer2_0/downsample``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from binflax.layers import global_avg_pool
from binflax.models.base import BinaryNet, ModelError, UnitOptions

BLOCKS = ("xnor", "bireal", "reactnet")
# What block="reactnet" sets on the units of its blocks: RSign and RPReLU.
REACTNET_UNITS = {"input_norm": "shift", "activation": "rprelu"}

STEMS = {  # stem: (conv1 kernel, stride, padding, max pool after it)
    "imagenet": (7, 2, 3, True),
    "cifar": (3, 1, 1, False),
}


class BasicBlock(UnitOptions):
    """The HBN authors' block: two convs, one shortcut (a strided 1x1 unit where the
    shape changes)."""

    features: int = 64
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        shortcut = x
        conv1 = self.unit("conv1", self.features, 3, self.strides, 1)
        y = self.activate(conv1(x, train), "conv1")
        y = self.unit("conv2", self.features, 3, 1, 1)(y, train)
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = self.unit("downsample", self.features, 1, self.strides)(x, train)
        return self.activate(self.shortcut_add("conv2", y, shortcut), "conv2")


class BiRealBlock(UnitOptions):
    """Bi-Real Net's block: each of the two convs is its own residual,
    ``activate(conv(x) + shortcut(x))``. The first conv's shortcut is the identity or,
    where the shape changes, Bi-Real's ``AvgPool(2, 2) -> conv1x1 -> BN`` with the 1x1 the
    planned unit ``downsample``, whose precision the plan sets like any conv's (Bi-Real
    keeps it float; fbin binarizes it, as in the xnor block). The pool pads an odd map at
    its end, as the 3x3 stride-2 conv does, so both give the same size."""

    features: int = 64
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        y = self.unit("conv1", self.features, 3, self.strides, 1)(x, train)
        shortcut = x
        if self.strides != 1:
            window = (self.strides, self.strides)
            shortcut = nn.avg_pool(shortcut, window, window, "SAME", count_include_pad=False)
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = self.unit("downsample", self.features, 1)(shortcut, train)
        x = self.activate(self.shortcut_add("conv1", y, shortcut), "conv1")
        y = self.unit("conv2", self.features, 3, 1, 1)(x, train)
        return self.activate(self.shortcut_add("conv2", y, x), "conv2")


class ResNet(BinaryNet):
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "imagenet"
    block: str = "xnor"
    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.stem not in STEMS:
            raise ModelError(
                f"unknown {type(self).__name__} stem={self.stem!r}; stem is one of "
                f"{', '.join(map(repr, STEMS))}"
            )
        if self.block not in BLOCKS:
            raise ModelError(
                f"unknown {type(self).__name__} block={self.block!r}; block is one of "
                f"{', '.join(map(repr, BLOCKS))}"
            )
        kernel, strides, padding, pool = STEMS[self.stem]
        conv1 = self.unit("conv1", self.widths[0], kernel, strides, padding, use_bias=True)
        x = self.activate(conv1(x, train), "conv1")
        if pool:
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        block_class = BasicBlock if self.block == "xnor" else BiRealBlock
        options = self.options
        if self.block == "reactnet":
            options = dataclasses.replace(options, **REACTNET_UNITS)
        stages = zip(self.stage_sizes, self.widths, strict=True)
        for stage, (blocks, width) in enumerate(stages, start=1):
            for block in range(blocks):
                name = f"layer{stage}_{block}"
                strides = 2 if stage > 1 and block == 0 else 1
                block_unit = block_class(
                    features=width, strides=strides, plan=self.plan, options=options, name=name
                )
                x = block_unit(x, train)
        x = global_avg_pool(x)
        x = self.unit("fc", self.num_classes, 1, use_bias=True, norm=False)(x, train)
        return x.reshape(x.shape[0], -1)


class ResNet18(ResNet):
    """ResNet-18: stage sizes (2, 2, 2, 2); ~1814 M MACs and 11.69 M params at 224x224x3;
    with ``stem="cifar"``, ~555 M MACs and 11.17 M params at 32x32x3 with 10 classes."""
