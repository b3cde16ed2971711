"""SqueezeNet v1.0 with batch norm, as the HBN authors binarized it.

Fire modules as in v1.0 (squeeze 1x1, then expand 1x1 and expand 3x3 side by side on the
squeeze output, concatenated); pooling in PyTorch's ``ceil_mode``; the head is the
authors' (and torchvision's): dropout 0.2 -> ``conv10`` (1x1, with a bias) -> ReLU ->
global average pooling, so the logits are non-negative averages. Each of a fire
module's three convs is its own plan entry.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from binflax.layers import global_avg_pool, max_pool
from binflax.models.base import BinaryNet, UnitOptions

FIRE_V1_0 = {  # name: (squeeze, expand1x1, expand3x3)
    "fire2": (16, 64, 64),
    "fire3": (16, 64, 64),
    "fire4": (32, 128, 128),
    "fire5": (32, 128, 128),
    "fire6": (48, 192, 192),
    "fire7": (48, 192, 192),
    "fire8": (64, 256, 256),
    "fire9": (64, 256, 256),
}
POOL_AFTER = ("fire4", "fire8")


class Fire(UnitOptions):
    squeeze: int = 16
    expand1x1: int = 64
    expand3x3: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        s = self.activate(self.unit("squeeze", self.squeeze, 1)(x, train), "squeeze")
        e1 = self.activate(self.unit("expand1x1", self.expand1x1, 1)(s, train), "expand1x1")
        e3 = self.activate(self.unit("expand3x3", self.expand3x3, 3, 1, 1)(s, train), "expand3x3")
        return jnp.concatenate([e1, e3], axis=-1)


class SqueezeNet(BinaryNet):
    num_classes: int = 250
    dropout_rate: float = 0.2
    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.activate(self.unit("conv1", 96, 7, 2, use_bias=True)(x, train), "conv1")
        x = max_pool(x, 3, 2, ceil_mode=True)
        for name, (squeeze, expand1x1, expand3x3) in FIRE_V1_0.items():
            x = Fire(
                squeeze=squeeze,
                expand1x1=expand1x1,
                expand3x3=expand3x3,
                plan=self.plan,
                options=self.options,
                name=name,
            )(x, train)
            if name in POOL_AFTER:
                x = max_pool(x, 3, 2, ceil_mode=True)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.activate(
            self.unit("conv10", self.num_classes, 1, use_bias=True, norm=False)(x, train),
            "conv10",
            norm=False,
        )
        return global_avg_pool(x).reshape(x.shape[0], -1)
