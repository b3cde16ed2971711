"""The config's network: which model class, which plan, which compute dtype.

Why a module of its own: ``summary``, ``select``, the benchmarks and the training loop
all build the network a config names, and none of them but training needs the training
loop (nothing here imports :mod:`binflax.train`). The config's recipe is resolved here
too (:func:`resolved`), since which fields it fills depends on the network's class.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from binflax import binarized_nnx, models, planned, recipe_presets
from binflax.binarized import binarize
from binflax.errors import UserError
from binflax.plan import Plan

HALF_PRECISION_BACKENDS = ("tpu", "gpu")
# The field a resolved config carries (True); configs/default.py has no such field, so no
# flag can set it.
RESOLVED = "recipe_resolved"

_Function = TypeVar("_Function", bound=Callable[..., Any])


def half_precision(config: ml_collections.ConfigDict) -> bool:
    """``config.half_precision``; ``None`` (the paper configs) means bfloat16 compute on a
    TPU or GPU backend and float32 on a CPU, whose bfloat16 arithmetic is emulated."""
    if config.half_precision is None:
        return jax.default_backend() in HALF_PRECISION_BACKENDS
    return bool(config.half_precision)


def resolved(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` with the fields it leaves unset taken from ``config.recipe``
    (:func:`binflax.recipe_presets.resolve`; the block only where the model has one),
    marked resolved (:data:`RESOLVED`); a config already marked is returned as it is.

    Call it through :func:`takes_config`, the one place that resolves: the mark is what
    lets a resolved config pass every marked function below without a second resolve.
    """
    if config.get(RESOLVED):
        return config
    try:
        if config.model in models.MODELS:
            cls = models.MODELS[config.model]
            fields = frozenset(field.name for field in dataclasses.fields(cls))
        else:
            fields = frozenset(models.model_fields(models.import_model(config.model)))
    except UserError:  # a bad config.model: config_check names it
        fields = frozenset()
    config = recipe_presets.resolve(config, fields)
    with config.unlocked():
        config[RESOLVED] = True
    return config


def takes_config(function: _Function) -> _Function:
    """Marks a public function whose first argument is a config: it runs with that config
    :func:`resolved`.

    Why: the command line resolves and checks a user's config once, at its entry
    (``config_check.checked``), and everything below takes that config as it is. But the
    library's entry points (``build_model``, ``train.train_and_evaluate``,
    ``modes.train_variant``, ...) are also called directly, by tests, benchmarks and
    notebooks, with a config as ``get_config()`` returns it, whose recipe fields are
    still ``None``. Each such function is marked; a config that was resolved (the
    command line's, or one an outer marked function resolved) carries the mark and goes
    through untouched, so the recipe is filled in one place and never twice.
    """

    @functools.wraps(function)
    def with_resolved_config(config: ml_collections.ConfigDict, *args, **kwargs):
        return function(resolved(config), *args, **kwargs)

    return with_resolved_config  # type: ignore[return-value]


def config_shapes(config: ml_collections.ConfigDict) -> tuple[int, tuple[int, int, int]]:
    """Classes and input shape (H, W, C) from the config alone, so that ``summary``, the
    budget report and ``export`` need no dataset."""
    return int(config.num_classes), (config.image_size, config.image_size, config.channels)


def model_kwargs(config: ml_collections.ConfigDict) -> dict:
    """``config.model_kwargs`` without the fields left unset (``None``)."""
    return {k: v for k, v in config.model_kwargs.to_dict().items() if v is not None}


@takes_config
def build_model(
    config: ml_collections.ConfigDict, num_classes: int, plan: str | Plan | None = None
) -> nn.Module:
    """The config's model with ``plan`` (default ``config.plan``) resolved on its layers,
    computing in bfloat16 under :func:`half_precision` (parameters stay float32).

    ``config.model`` is a registered name (``binflax.models.MODELS``) or the import path
    ``"package.module:ClassName"`` of a ``flax.linen`` or ``flax.nnx`` network of your
    own. That class is built with ``num_classes``, ``config.model_kwargs`` and, when it
    has the field, ``dropout_rate`` (so per-variant recipes reach it) - an NNX class also
    with ``rngs=nnx.Rngs(config.seed)`` - then passed through
    ``binflax.binarize`` at the config's input shape (docs/byom.md).
    """
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
    if "dropout_rate" in models.model_fields(cls):
        fields.setdefault("dropout_rate", config.dropout_rate)
    input_shape = (config.image_size, config.image_size, config.channels)
    if issubclass(cls, nnx.Module):  # built (initialised) from the config's seed
        fields["rngs"] = nnx.Rngs(config.seed)
        # The training loop takes linen modules: the NNX network's linen face.
        return binarized_nnx.linen_face(
            cls(**fields),
            plan,
            input_shape=input_shape,
            binarize_last_weights=config.binarize_last_weights,
            options=options,
        )
    return binarize(
        cls(**fields),
        plan,
        input_shape=input_shape,
        binarize_last_weights=config.binarize_last_weights,
        options=options,
    )
