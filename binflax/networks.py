"""The config's network: which model class, which plan, which compute dtype.

Why a module of its own: ``summary``, ``select``, the benchmarks and the training loop
all build the network a config names, and none of them but training needs the training
loop (nothing here imports :mod:`binflax.train`).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from binflax import models, planned, recipe_presets
from binflax.binarized import binarize
from binflax.errors import UserError
from binflax.plan import Plan

HALF_PRECISION_BACKENDS = ("tpu", "gpu")


def half_precision(config: ml_collections.ConfigDict) -> bool:
    """``config.half_precision``; ``None`` (the paper configs) means bfloat16 compute on a
    TPU or GPU backend and float32 on a CPU, whose bfloat16 arithmetic is emulated."""
    if config.half_precision is None:
        return jax.default_backend() in HALF_PRECISION_BACKENDS
    return bool(config.half_precision)


def with_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` with the fields it leaves unset taken from ``config.recipe``
    (:func:`binflax.recipe_presets.resolve`); the block only where the model has one."""
    try:
        cls = models.MODELS.get(config.model) or models.import_model(config.model)
        fields = frozenset(field.name for field in dataclasses.fields(cls))
    except UserError:  # a bad config.model: config_check names it
        fields = frozenset()
    return recipe_presets.resolve(config, fields)


def model_kwargs(config: ml_collections.ConfigDict) -> dict:
    """``config.model_kwargs`` without the fields left unset (``None``)."""
    return {k: v for k, v in config.model_kwargs.to_dict().items() if v is not None}


def build_model(
    config: ml_collections.ConfigDict, num_classes: int, plan: str | Plan | None = None
) -> nn.Module:
    """The config's model with ``plan`` (default ``config.plan``) resolved on its layers,
    computing in bfloat16 under :func:`half_precision` (parameters stay float32).

    ``config.model`` is a registered name (``binflax.models.MODELS``) or the import path
    ``"package.module:ClassName"`` of a ``flax.linen`` network of your own. That class is
    built with ``num_classes``, ``config.model_kwargs`` and, when it has the field,
    ``dropout_rate`` (so per-variant recipes reach it), then passed through
    ``binflax.binarize`` at the config's input shape (docs/byom.md).
    """
    config = with_recipe(config)
    plan = config.plan if plan is None else plan
    # The planned layers' options: every BinaryOptions field the config has, named alike.
    fields = {name: config[name] for name in planned.OPTION_NAMES if name in config}
    fields["dtype"] = jnp.bfloat16 if half_precision(config) else jnp.float32
    options = planned.BinaryOptions(**fields)
    if config.model in models.MODELS:
        return models.create(
            config.model,
            plan=plan,
            binarize_last_weights=config.binarize_last_weights,
            num_classes=num_classes,
            dropout_rate=config.dropout_rate,
            options=options,
            **model_kwargs(config),
        )
    cls = models.import_model(config.model)
    fields = {"num_classes": num_classes, **model_kwargs(config)}
    if "dropout_rate" in {field.name for field in dataclasses.fields(cls)}:
        fields.setdefault("dropout_rate", config.dropout_rate)
    return binarize(
        cls(**fields),
        plan,
        input_shape=(config.image_size, config.image_size, config.channels),
        binarize_last_weights=config.binarize_last_weights,
        options=options,
    )
