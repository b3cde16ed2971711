"""What every binflax model shares: plan lookup and the options of its binary units.

Why: the four paper models differ in topology only. Each builds its layers through
:meth:`BinaryNet.unit`, which reads the layer's precision from the plan by the layer's
own module path (``plan.precision_of``, the lookup ``binflax.binarize`` uses for a
network of your own), so a plan entry and a parameter path are always the same string
(``conv3``, ``layer4_1/conv1``, ``fire2/squeeze``) and a nested block needs to be told
only the plan, not where it sits.

A unit's activation is one of its options: with ``activation="rprelu"`` a binary-input
unit ends in ReActNet's RPReLU, which replaces the ReLU that follows it, so the models
apply their ReLUs through :meth:`UnitOptions.activate` rather than ``nn.relu``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax

from binflax import planned, tracing
from binflax.errors import UserError
from binflax.layers import HBNConv
from binflax.plan import LayerPrecision, Plan, precision_of


class ModelError(UserError, ValueError):
    """A model name, import path or field value that does not give a model binflax can
    build."""


class UnitOptions(nn.Module):
    """Fields that configure the binary units (shared by models and their blocks): the
    plan, and the units' :class:`~binflax.planned.BinaryOptions`, handed whole to every
    unit and nested block (``activation="rprelu"`` replaces every unit's ReLU)."""

    plan: Plan | None = None
    options: planned.BinaryOptions = planned.BinaryOptions()

    def path(self, name: str) -> str:
        """The module path (and plan entry) of this module's unit ``name``."""
        return "/".join((*self.scope.path, name))

    def precision(self, name: str) -> LayerPrecision:
        """The plan's entry for this module's unit ``name``."""
        return precision_of(self.plan, self.path(name))

    def activate(self, x: jax.Array, name: str, norm: bool = True) -> jax.Array:
        """The model's ReLU after unit ``name`` (``x`` its output, or a sum it ends):
        ``x`` itself where the unit applies its own RPReLU, which replaces the ReLU
        (every unit with a batch norm, under ``activation="rprelu"``; ``norm`` is the
        unit's: a classifier without one keeps its ReLU)."""
        if planned.ends_in_rprelu(self.precision(name), self.options.activation, every_unit=norm):
            return x
        return nn.relu(x)

    def shortcut_add(self, name: str, y: jax.Array, shortcut: jax.Array) -> jax.Array:
        """``y + shortcut`` onto unit ``name``'s output, counted by the cost model
        (:func:`binflax.tracing.shortcut_add`)."""
        return tracing.shortcut_add(self.path(name), y, shortcut)

    def unit(
        self,
        name: str,
        features: int,
        kernel: int | tuple[int, int],
        strides: int = 1,
        padding: int | Any = "VALID",
        **kwargs,
    ) -> HBNConv:
        """A :class:`HBNConv` named ``name`` whose precision is the plan's entry for its
        module path (this module's path, then ``name``)."""
        precision = self.precision(name)
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        return HBNConv(
            features=features,
            kernel_size=kernel,
            strides=(strides, strides),
            padding=padding,
            precision=precision,
            options=self.options,
            name=name,
            **kwargs,
        )


class BinaryNet(UnitOptions):
    """Base of the registered models: a classifier with a plan.

    ``__call__(images, train=False) -> logits`` with images NHWC.
    """

    num_classes: int = 1000
    dropout_rate: float = 0.5

    default_input_shape: ClassVar[tuple[int, int, int]] = (224, 224, 3)
