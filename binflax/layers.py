"""The one layer binflax builds every network from: a conv unit whose precision is planned.

Why one unit: the paper changes a network only in *where* inputs and weights are binary,
and the authors' block layouts differ only in where batch norm sits (docs/method.md
section 4):

- binary input: ``BN(in) -> sign -> conv(alpha * sign(W), no bias)``
- float input:  ``conv(W or alpha * sign(W)) -> BN(out)``

so :class:`HBNConv` is that unit, and models add ReLU, pooling and shortcuts around it.
Fully-connected layers are convs (AlexNet's fc6 is a 6x6 conv), which keeps the cost
model and the packed export to a single layer type. What a planned layer computes is
:mod:`binflax.planned`'s, the same code ``binflax.binarize`` runs for a network of your
own; this module adds the float-input block's output batch norm and the authors'
initialisation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from binflax import planned, tracing
from binflax.geometry import Geometry
from binflax.plan import LayerPrecision

FLOAT_PRECISION = LayerPrecision("", "float", "float")
# The authors' ``weights_init``: Kaiming-normal with fan_out (kh * kw * out channels),
# untruncated, for every conv (docs/method.md section 5).
KERNEL_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class HBNConv(nn.Module):
    """A conv layer with planned input and weight precision.

    Attributes:
      features: output channels.
      kernel_size, strides, padding: as ``nn.Conv``.
      precision: this layer's entry of the plan.
      use_bias: add a float bias after the conv (first layer and classifier).
      norm: include the unit's batch norm (False for the classifier); on a binary input
        it is ``options.input_norm``.
      options: how the unit binarizes (:class:`binflax.planned.BinaryOptions`). Its
        ``dtype`` and ``bn_momentum`` are also the output batch norm's; parameters and
        batch-norm statistics stay float32. With ``activation="rprelu"`` a binary-input
        unit ends in an RPReLU (``BN(in) -> sign -> conv -> RPReLU``).
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Any = "VALID"
    precision: LayerPrecision = FLOAT_PRECISION
    use_bias: bool = False
    norm: bool = True
    options: planned.BinaryOptions = planned.BinaryOptions()

    @property
    def geometry(self) -> Geometry:
        return Geometry.conv(self.kernel_size, self.strides, self.padding)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        options = self.options
        if not self.norm:  # a unit without its batch norm (the classifier) has no input norm
            options = dataclasses.replace(options, input_norm="none")
        info = planned.layer_info(
            "/".join(self.scope.path),
            self.precision,
            self.geometry,
            x,
            self.features,
            use_bias=self.use_bias,
            options=options,
            output_norm=self.norm,
            every_unit=self.norm,  # every unit but a classifier (models.base: activate)
        )

        def compute(x: jax.Array) -> jax.Array:
            y = planned.forward(self, info, options, x, kernel_init=KERNEL_INIT, update_stats=train)
            if self.norm and not self.precision.quantized_input:
                y = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=options.bn_momentum,
                    epsilon=planned.BN_EPSILON,
                    dtype=options.dtype,
                    name="bn",
                )(y)
                if info.rprelu:
                    y = planned.rprelu(self, y)
            return y

        return tracing.run(tracing.PlannedCall(info, self, x, compute))


def max_pool(x: jax.Array, window: int, stride: int, ceil_mode: bool = False) -> jax.Array:
    """Max pooling with PyTorch's ``ceil_mode`` (the authors' SqueezeNet uses it)."""
    pads = [(0, 0), (0, 0)]
    if ceil_mode:
        for i, size in enumerate(x.shape[1:3]):
            out = -(-(size - window) // stride) + 1
            if (out - 1) * stride >= size:  # PyTorch: the last window must start inside
                out -= 1
            pads[i] = (0, max(0, (out - 1) * stride + window - size))
    return nn.max_pool(x, (window, window), (stride, stride), padding=pads)


def global_avg_pool(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2), keepdims=True)
