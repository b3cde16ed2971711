"""The model registry: the paper's four networks and the quickstart net, built with a plan.

    >>> from binflax import models
    >>> model = models.create("alexnet", plan="fbin", num_classes=1000)
    >>> models.layer_names(model)[:3]
    ('conv1', 'conv2', 'conv3')

``create`` resolves the plan (a preset, a plan JSON path or a :class:`~binflax.plan.Plan`)
against the network's own layer names, so a plan that names a layer the network does
not have fails at once with a message that names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from binflax import plan as plan_lib
from binflax.layers import HBNConv
from binflax.models.alexnet import AlexNet
from binflax.models.base import BinaryNet
from binflax.models.mini_sketchanet import MiniSketchANet
from binflax.models.resnet import ResNet, ResNet18
from binflax.models.sketchanet import SketchANet
from binflax.models.squeezenet import SqueezeNet
from binflax.plan import LayerPrecision, Plan

MODELS: dict[str, type[BinaryNet]] = {
    "alexnet": AlexNet,
    "sketchanet": SketchANet,
    "resnet18": ResNet18,
    "squeezenet": SqueezeNet,
    "mini_sketchanet": MiniSketchANet,
}

__all__ = [
    "MODELS",
    "AlexNet",
    "BinaryNet",
    "LayerInfo",
    "MiniSketchANet",
    "ResNet",
    "ResNet18",
    "SketchANet",
    "SqueezeNet",
    "create",
    "layer_names",
    "trace_layers",
]


class LayerInfo(NamedTuple):
    """One planned conv layer as traced from shapes alone."""

    name: str
    precision: LayerPrecision
    kernel_shape: tuple[int, int, int, int]  # (kh, kw, cin, cout)
    input_shape: tuple[int, ...]  # NHWC, batch 1
    output_shape: tuple[int, ...]
    use_bias: bool
    norm: bool

    @property
    def macs(self) -> int:
        kh, kw, cin, cout = self.kernel_shape
        _, h, w, _ = self.output_shape
        return h * w * cout * cin * kh * kw


def trace_layers(
    model: nn.Module, input_shape: Sequence[int] | None = None
) -> tuple[LayerInfo, ...]:
    """Every :class:`HBNConv` of ``model`` in call order, from ``jax.eval_shape`` only.

    No data and no weights are needed; ``input_shape`` is (H, W, C) and defaults to the
    model's ``default_input_shape``.
    """
    input_shape = tuple(input_shape or model.default_input_shape)
    found: list[LayerInfo] = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if isinstance(module, HBNConv) and context.method_name == "__call__":
            x = args[0]
            found.append(
                LayerInfo(
                    name="/".join(module.scope.path),
                    precision=module.precision,
                    kernel_shape=(*module.kernel_size, x.shape[-1], module.features),
                    input_shape=tuple(x.shape),
                    output_shape=tuple(out.shape),
                    use_bias=module.use_bias,
                    norm=module.norm,
                )
            )
        return out

    with nn.intercept_methods(record):
        jax.eval_shape(
            lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape), jnp.float32))
        )
    return tuple(found)


def layer_names(model: nn.Module) -> tuple[str, ...]:
    """The planned layers of ``model`` in call order (the first is the stem, the last the
    classifier)."""
    return tuple(info.name for info in trace_layers(model.clone(plan=None)))


def create(
    name: str,
    *,
    plan: str | Plan = "float",
    binarize_last_weights: bool = False,
    **kwargs,
) -> BinaryNet:
    """Builds registered model ``name`` with ``plan`` resolved against its layers.

    ``kwargs`` are the model's fields (``num_classes``, ``dropout_rate``,
    ``input_quantizer``, ``scale_inputs``, ``stop_alpha_gradient``, ...).
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; models: {', '.join(sorted(MODELS))}") from None
    model = cls(**kwargs)
    resolved = plan_lib.resolve(
        plan, layer_names(model), binarize_last_weights=binarize_last_weights
    )
    return model.clone(plan=resolved)
