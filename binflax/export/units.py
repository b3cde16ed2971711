"""Every planned unit of a model at one input size, with the geometry its kernels need.

Why a trace of its own: :func:`binflax.models.trace_layers` gives shapes and
precisions, but the integer path also needs each unit's strides and explicit padding to
prepare its popcount base (:func:`binflax.packing.xnor_base`) before anything is
compiled. Like ``trace_layers`` it runs ``jax.eval_shape`` only: no data, no weights.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from binflax import packing
from binflax.layers import HBNConv
from binflax.plan import LayerPrecision


@dataclasses.dataclass(frozen=True)
class Unit:
    """One :class:`~binflax.layers.HBNConv` call: shapes NHWC at batch 1, kernel HWIO."""

    name: str
    precision: LayerPrecision
    kernel_shape: tuple[int, int, int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, int, int, int]
    use_bias: bool

    @property
    def pixels(self) -> int:
        """Output pixels at batch 1."""
        return self.output_shape[1] * self.output_shape[2]

    @property
    def fully_connected(self) -> bool:
        """The kernel covers the whole unpadded input: a dense layer written as a conv."""
        return self.padding == ((0, 0), (0, 0)) and self.kernel_shape[:2] == self.input_shape[1:3]


def trace_units(model: nn.Module, input_shape: Sequence[int]) -> tuple[Unit, ...]:
    """The units of ``model`` in call order for inputs of ``input_shape`` (H, W, C)."""
    return _trace_units(model, tuple(input_shape))


@functools.lru_cache(maxsize=64)
def _trace_units(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[Unit, ...]:
    found: list[Unit] = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if isinstance(module, HBNConv) and context.method_name == "__call__":
            x = args[0]
            found.append(
                Unit(
                    name="/".join(module.scope.path),
                    precision=module.precision,
                    kernel_shape=(*module.kernel_size, x.shape[-1], module.features),
                    strides=tuple(module.strides),
                    padding=packing.explicit_padding(
                        x.shape[1:3], module.kernel_size, module.strides, module.padding
                    ),
                    input_shape=tuple(x.shape),
                    output_shape=tuple(out.shape),
                    use_bias=module.use_bias,
                )
            )
        return out

    with nn.intercept_methods(record):
        jax.eval_shape(
            lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape), jnp.float32))
        )
    return tuple(found)
