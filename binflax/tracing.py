"""Which layers a network plans, their shapes, and one way to step into every planned call.

Why one hook: binflax plans two kinds of layer - its own :class:`~binflax.layers.HBNConv`
units and the ``nn.Conv``/``nn.Dense`` layers of a network it binarizes
(:mod:`binflax.binarized`) - and several parts of binflax must see or replace every
planned layer as the network runs: the tracer behind the cost model and
``binflax.select``, the export's integer path and its probe for packed links. Both kinds
of layer hand each call to :func:`run` as a :class:`PlannedCall` (its
:class:`LayerInfo`, its module, its input and the fake-quantized computation), and
:func:`intercept` installs the one handler that decides what the call returns. With no
handler the layer computes as trained. A block that adds a real-valued shortcut onto a
planned layer's output does it with :func:`shortcut_add`, so that the float adds are
counted with the layer they follow (the cost model).

    >>> from binflax import models
    >>> [info.name for info in trace_layers(models.create("mini_sketchanet"))][:2]
    ['conv1', 'conv2']
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from binflax.geometry import Geometry
from binflax.plan import LayerPrecision, PlanError


class LayerInfo(NamedTuple):
    """One planned layer as traced from shapes alone.

    ``kernel_shape`` is the kernel parameter's shape: ``(kh, kw, cin, cout)`` for a 2-D
    conv (``cin`` per group in a grouped conv), ``(k, cin, cout)`` for a 1-D one,
    ``(cin, cout)`` for a dense layer. ``norm``: the layer has a batch norm (on its input
    when the input is binary, else on its output). ``input_threshold``: a learned
    per-input-channel threshold before ``sign`` (``input_norm="shift"``, ReActNet's
    RSign). ``scale_inputs``: XNOR-Net's K map scales the binary conv's output.
    ``geometry``: strides, padding, dilation and groups (a 2-D VALID conv when absent).
    ``rprelu``: the output passes through ReActNet's RPReLU (``activation="rprelu"``).
    ``shortcut_adds``: float adds per example of a shortcut onto this layer's output
    (:func:`shortcut_add`; filled by :func:`trace_layers`).
    """

    name: str
    precision: LayerPrecision
    kernel_shape: tuple[int, ...]
    input_shape: tuple[int, ...]  # batch 1, channels last
    output_shape: tuple[int, ...]
    use_bias: bool
    norm: bool
    input_threshold: bool = False
    geometry: Geometry | None = None
    scale_inputs: bool = False
    rprelu: bool = False
    shortcut_adds: int = 0

    @property
    def macs(self) -> int:
        """Output positions times kernel size: ``H_out * W_out * C_out * C_in/groups * kh *
        kw`` for a conv, ``C_in * C_out`` per position for a dense layer."""
        return math.prod(self.output_shape[1:-1]) * math.prod(self.kernel_shape)

    @property
    def features(self) -> int:
        return self.kernel_shape[-1]


class PlannedCall(NamedTuple):
    """One call of a planned layer: what it is, where, on what, and how it computes."""

    info: LayerInfo
    module: nn.Module
    x: jax.Array
    compute: Callable[[jax.Array], jax.Array]  # the layer as trained, on any input


Handler = Callable[[PlannedCall], jax.Array]
_HANDLER: contextvars.ContextVar[Handler | None] = contextvars.ContextVar(
    "binflax_planned_call_handler", default=None
)
# Shortcut adds per planned layer, while trace_layers records them.
_ADDS: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "binflax_shortcut_adds", default=None
)


def run(call: PlannedCall) -> jax.Array:
    """What a planned layer returns: the installed handler's answer, else ``compute(x)``."""
    handler = _HANDLER.get()
    return call.compute(call.x) if handler is None else handler(call)


@contextlib.contextmanager
def intercept(handler: Handler) -> Iterator[None]:
    """Every planned layer called inside the block is handed to ``handler``, which returns
    the layer's output (``call.compute(call.x)`` to let it compute as trained)."""
    token = _HANDLER.set(handler)
    try:
        yield
    finally:
        _HANDLER.reset(token)


def shortcut_add(layer: str, y: jax.Array, shortcut: jax.Array) -> jax.Array:
    """``y + shortcut``, where ``y`` derives from planned layer ``layer``'s output (its
    path, as :class:`LayerInfo` names it): one float add per element of ``y``, which
    :func:`trace_layers` records as the layer's ``shortcut_adds``."""
    adds = _ADDS.get()
    if adds is not None:
        adds[layer] = adds.get(layer, 0) + math.prod(y.shape[1:])
    return y + shortcut


def trace_layers(
    model: nn.Module, input_shape: Sequence[int] | None = None
) -> tuple[LayerInfo, ...]:
    """Every planned layer of ``model`` in call order, from ``jax.eval_shape`` only.

    No data and no weights are needed; ``input_shape`` is one example's shape (H, W, C)
    and defaults to the model's ``default_input_shape``. A layer that runs more than
    once per forward pass is refused: a plan, a measurement and a cost are per layer.
    """
    input_shape = tuple(input_shape or model.default_input_shape)
    try:
        hash(model)
    except TypeError:  # a field of the network holds a list or a dict: trace it each time
        return _trace_layers(model, input_shape)
    return _trace_layers_remembered(model, input_shape)


def _trace_layers(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[LayerInfo, ...]:
    found: list[LayerInfo] = []
    adds: dict[str, int] = {}

    def record(call: PlannedCall) -> jax.Array:
        found.append(call.info)
        return call.compute(call.x)

    token = _ADDS.set(adds)
    try:
        with intercept(record):
            jax.eval_shape(
                lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape), jnp.float32))
            )
    finally:
        _ADDS.reset(token)
    names = [info.name for info in found]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PlanError(
            f"layer(s) {', '.join(repeated)} run more than once in one forward pass; "
            "binflax plans, measures and costs each layer once: give each use a layer of its own"
        )
    unknown = sorted(set(adds) - set(names))
    if unknown:
        raise PlanError(f"shortcut adds recorded for {', '.join(unknown)}, not a planned layer")
    return tuple(info._replace(shortcut_adds=adds.get(info.name, 0)) for info in found)


# A linen module is a frozen dataclass: equal fields, equal network, so the same layers.
# The pipeline, the cost model, the selection and the export trace one network many times.
_trace_layers_remembered = functools.lru_cache(maxsize=256)(_trace_layers)


def layer_names(model: nn.Module, input_shape: Sequence[int] | None = None) -> tuple[str, ...]:
    """The planned layers of ``model`` in call order (the first is the stem, the last the
    classifier), traced with no plan, so every layer runs as a float layer."""
    return tuple(info.name for info in trace_layers(model.clone(plan=None), input_shape))
