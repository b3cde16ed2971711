"""The one layer binflax builds every network from: a conv unit whose precision is planned.

Why one unit: the paper changes a network only in *where* inputs and weights are binary,
and the authors' block layouts differ only in where batch norm sits (docs/method.md
section 4):

- binary input: ``BN(in) -> sign -> conv(alpha * sign(W), no bias)``
- float input:  ``conv(W or alpha * sign(W)) -> BN(out)``

so :class:`HBNConv` is that unit, and models add ReLU, pooling and shortcuts around it.
Fully-connected layers are convs (AlexNet's fc6 is a 6x6 conv), which keeps the cost
model and the packed export to a single layer type.

In a binary-input unit, the tensor that ``sign`` receives is sown into the
``"binarized_inputs"`` collection under the unit's path; ``binflax.select`` reads it to
measure the input-binarization error without a second model definition. Every unit
reports its shapes to :mod:`binflax.tracing` as it runs, which is how the cost model and
``binflax.select`` find the planned layers.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from binflax import quantizers, tracing
from binflax.plan import LayerPrecision

# What a binary-input layer sows: the tensor ``sign`` receives, in this collection under
# this key (binflax.select measures it; binflax.binarize's layers sow the same).
BINARIZED_INPUTS = "binarized_inputs"
SIGN_INPUT = "sign_input"
# Every planned layer's batch-norm epsilon; the export folds its maps with the same one.
BN_EPSILON = 1e-5
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
      norm: include the unit's batch norm (False for the classifier).
      input_quantizer: name in :data:`binflax.quantizers.QUANTIZERS`.
      scale_inputs: XNOR-Net's K-map input scaling ([choice, beyond the paper]).
      stop_alpha_gradient: treat the weight scale alpha as a constant in the backward
        pass, as the authors' hand-written gradient does (default); False
        differentiates through it ([choice]).
      dtype: the compute dtype (``config.half_precision``: bfloat16). The conv's inputs
        and the batch norm's output take it; the conv accumulates in float32, so a
        binary layer's +-1 products sum exactly; parameters and batch-norm statistics
        stay float32.
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Any = "VALID"
    precision: LayerPrecision = FLOAT_PRECISION
    use_bias: bool = False
    norm: bool = True
    input_quantizer: str = "ste_sign"
    scale_inputs: bool = False
    stop_alpha_gradient: bool = True
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32

    def _batch_norm(self, x: jax.Array, train: bool) -> jax.Array:
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=BN_EPSILON,
            dtype=self.dtype,
            name="bn",
        )(x)

    def _kernel(self, in_features: int) -> jax.Array:
        kernel = self.param(
            "kernel",
            KERNEL_INIT,
            (*self.kernel_size, in_features, self.features),
        )
        if self.precision.binary_weight:
            return quantizers.binarize_weights(kernel, stop_alpha_gradient=self.stop_alpha_gradient)
        return kernel

    def _conv(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(
            jax.lax.convert_element_type(x, self.dtype),
            jax.lax.convert_element_type(kernel, self.dtype),
            self.strides,
            self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            preferred_element_type=jnp.float32,
        )

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        input_shape = tuple(x.shape)
        if self.precision.binary_input:
            if self.norm:
                x = self._batch_norm(x, train)
            x = jax.lax.convert_element_type(x, self.dtype)
            self.sow(BINARIZED_INPUTS, SIGN_INPUT, x)
            scale = (
                quantizers.xnor_input_scale(x, self.kernel_size, self.strides, self.padding)
                if self.scale_inputs
                else None
            )
            x = quantizers.get_quantizer(self.input_quantizer).fn(x)
            y = self._conv(x, self._kernel(x.shape[-1]))
            if scale is not None:
                y = y * scale
        else:
            y = self._conv(x, self._kernel(x.shape[-1]))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        if self.norm and not self.precision.binary_input:
            y = self._batch_norm(y, train)
        tracing.record(
            tracing.LayerInfo(
                name="/".join(self.scope.path),
                precision=self.precision,
                kernel_shape=(*self.kernel_size, input_shape[-1], self.features),
                input_shape=input_shape,
                output_shape=tuple(y.shape),
                use_bias=self.use_bias,
                norm=self.norm,
            )
        )
        return y


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
