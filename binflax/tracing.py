"""Which layers a network plans, and their shapes, from ``jax.eval_shape`` alone.

Why one recorder: binflax plans two kinds of layer - its own :class:`~binflax.layers.HBNConv`
units and the ``nn.Conv``/``nn.Dense`` layers of a network it binarizes
(:mod:`binflax.binarized`). Each kind reports itself here as it runs, with its module path
and its plan entry, so the cost model, ``binflax.select``, the training loop and the
export read one list (:func:`trace_layers`), in call order, whatever built the network.
Outside :func:`trace_layers` reporting is a no-op.

    >>> from binflax import models
    >>> [info.name for info in trace_layers(models.create("mini_sketchanet"))][:2]
    ['conv1', 'conv2']
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from binflax.plan import LayerPrecision, PlanError


class LayerInfo(NamedTuple):
    """One planned layer as traced from shapes alone.

    ``kernel_shape`` is the kernel parameter's shape: ``(kh, kw, cin, cout)`` for a 2-D
    conv (``cin`` per group in a grouped conv), ``(k, cin, cout)`` for a 1-D one,
    ``(cin, cout)`` for a dense layer. ``norm``: the layer has a batch norm (on its input
    when the input is binary, else on its output). ``input_threshold``: a learned
    per-input-channel threshold before ``sign`` (``binarize(..., input_norm="shift")``).
    """

    name: str
    precision: LayerPrecision
    kernel_shape: tuple[int, ...]
    input_shape: tuple[int, ...]  # batch 1, channels last
    output_shape: tuple[int, ...]
    use_bias: bool
    norm: bool
    input_threshold: bool = False

    @property
    def macs(self) -> int:
        """Output positions times kernel size: ``H_out * W_out * C_out * C_in/groups * kh *
        kw`` for a conv, ``C_in * C_out`` per position for a dense layer."""
        return math.prod(self.output_shape[1:-1]) * math.prod(self.kernel_shape)


_RECORDING: contextvars.ContextVar[list[LayerInfo] | None] = contextvars.ContextVar(
    "binflax_traced_layers", default=None
)


def record(info: LayerInfo) -> None:
    """Reports one planned layer's call; kept only while :func:`trace_layers` runs."""
    found = _RECORDING.get()
    if found is not None:
        found.append(info)


def trace_layers(
    model: nn.Module, input_shape: Sequence[int] | None = None
) -> tuple[LayerInfo, ...]:
    """Every planned layer of ``model`` in call order, from ``jax.eval_shape`` only.

    No data and no weights are needed; ``input_shape`` is one example's shape (H, W, C)
    and defaults to the model's ``default_input_shape``. A layer that runs more than
    once per forward pass is refused: a plan, a measurement and a cost are per layer.
    """
    input_shape = tuple(input_shape or model.default_input_shape)
    found: list[LayerInfo] = []
    token = _RECORDING.set(found)
    try:
        jax.eval_shape(
            lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape), jnp.float32))
        )
    finally:
        _RECORDING.reset(token)
    names = [info.name for info in found]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PlanError(
            f"layer(s) {', '.join(repeated)} run more than once in one forward pass; "
            "binflax plans, measures and costs each layer once: give each use a layer of its own"
        )
    return tuple(found)


def layer_names(model: nn.Module, input_shape: Sequence[int] | None = None) -> tuple[str, ...]:
    """The planned layers of ``model`` in call order (the first is the stem, the last the
    classifier), traced with no plan, so every layer runs as a float layer."""
    return tuple(info.name for info in trace_layers(model.clone(plan=None), input_shape))
