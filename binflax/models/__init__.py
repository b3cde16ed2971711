"""The model registry: the paper's four networks, the quickstart net and two small
benchmarks binary-network papers report (LeNet-5 on MNIST, VGG-Small on CIFAR-10), built
with a plan.

    >>> from binflax import models
    >>> model = models.create("alexnet", plan="fbin", num_classes=1000)
    >>> models.layer_names(model)[:3]
    ('conv1', 'conv2', 'conv3')

``create`` resolves the plan (a preset, a plan JSON path, a :class:`~binflax.plan.Plan` or
``(regex, input, weight)`` rules) against the network's own layer names, so a plan that
names a layer the network does not have fails at once with a message that names it.
A network of your own is not registered: :func:`import_model` finds its class from
``"package.module:ClassName"`` and ``binflax.binarize`` plans it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import flax.linen as nn
from flax import nnx

from binflax import plan as plan_lib
from binflax import planned
from binflax.models.alexnet import AlexNet
from binflax.models.base import BinaryNet, ModelError
from binflax.models.lenet5 import LeNet5
from binflax.models.mini_sketchanet import MiniSketchANet
from binflax.models.resnet import ResNet, ResNet18
from binflax.models.sketchanet import SketchANet
from binflax.models.squeezenet import SqueezeNet
from binflax.models.vgg_small import VGGSmall
from binflax.plan import Plan
from binflax.tracing import LayerInfo, layer_names, trace_layers

MODELS: dict[str, type[BinaryNet]] = {
    "alexnet": AlexNet,
    "sketchanet": SketchANet,
    "resnet18": ResNet18,
    "squeezenet": SqueezeNet,
    "mini_sketchanet": MiniSketchANet,
    "lenet5": LeNet5,
    "vgg_small": VGGSmall,
}

__all__ = [
    "MODELS",
    "AlexNet",
    "BinaryNet",
    "LayerInfo",
    "LeNet5",
    "MiniSketchANet",
    "ModelError",
    "ResNet",
    "ResNet18",
    "SketchANet",
    "SqueezeNet",
    "VGGSmall",
    "create",
    "import_model",
    "model_fields",
    "layer_names",
    "trace_layers",
]


def import_model(spec: str) -> type[nn.Module] | type[nnx.Module]:
    """The class that ``"package.module:ClassName"`` names: a ``flax.linen`` module with a
    ``num_classes`` field, called as ``model(images, train=...)``, or a ``flax.nnx``
    module whose constructor takes ``num_classes`` and ``rngs`` (``config.model`` for a
    network of your own; see docs/byom.md)."""
    module_name, sep, class_name = spec.partition(":")
    if not (sep and module_name and class_name):
        raise ModelError(
            f"{spec!r} is neither a registered model ({', '.join(sorted(MODELS))}) nor an "
            "import path 'package.module:ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelError(f"{spec!r}: cannot import {module_name!r}: {e}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module | nnx.Module)):
        found = "nothing" if cls is None else type(cls).__name__
        raise ModelError(
            f"{spec!r}: {module_name} has {found} named {class_name!r}, not a flax.linen "
            "Module class (nor a flax.nnx one)"
        )
    fields = model_fields(cls)
    if "num_classes" not in fields:
        raise ModelError(
            f"{spec!r}: {class_name} has no num_classes field; binflax sets it to the "
            "dataset's number of classes"
        )
    if issubclass(cls, nnx.Module) and "rngs" not in inspect.signature(cls.__init__).parameters:
        raise ModelError(
            f"{spec!r}: {class_name}'s constructor takes no rngs; binflax builds an NNX "
            "network as ClassName(num_classes=..., rngs=nnx.Rngs(config.seed))"
        )
    return cls


def model_fields(cls: type) -> tuple[str, ...]:
    """What a network class of your own is built with: a linen module's fields, an NNX
    module's constructor keywords (but ``rngs``)."""
    if issubclass(cls, nnx.Module):
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return tuple(p.name for p in parameters if p.kind in kinds and p.name != "rngs")
    return tuple(
        field.name for field in dataclasses.fields(cls) if field.name not in ("parent", "name")
    )


def create(
    name: str,
    *,
    plan: str | Plan | plan_lib.Rules = "float",
    binarize_last_weights: bool = False,
    **kwargs,
) -> BinaryNet:
    """Builds registered model ``name`` with ``plan`` resolved against its layers.

    ``kwargs`` are the model's fields (``num_classes``, ``dropout_rate``, ``width``, ...)
    and its units' :class:`~binflax.planned.BinaryOptions`, as ``options=`` or field by
    field (``input_quantizer="approx_sign"``, ``scale_inputs=True``, ...).
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; models: {', '.join(sorted(MODELS))}") from None
    options = planned.take_options(kwargs)  # the rest are the model's own fields
    model = cls(options=options, **kwargs)
    resolved = plan_lib.resolve(
        plan, layer_names(model), binarize_last_weights=binarize_last_weights
    )
    return model.clone(plan=resolved)
