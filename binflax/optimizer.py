"""The authors' optimizer: Adam, their learning-rate and weight-decay schedules, and
the projection of the binary latent kernels after every step.

Why a module of its own: what updates the weights is the recipe's most consequential
choice (docs/reproduction.md measures the projection alone moving fbin by 8 points), and
the training loop (binflax.train) should read as a loop; tests and benchmarks build the
optimizer without the loop.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from binflax import quantizers
from binflax.plan import Plan

# The authors' ``imagenetscheduler`` (their code/utils.py, ``adjust_learning_rate``):
# ``(first epoch, learning rate, weight decay)``; epoch 0 runs at the configured
# ``learning_rate`` and ``weight_decay``, as their ``--maxlr`` and ``--weightDecay``.
IMAGENET_SCHEDULE = (
    (1, 1e-3, 5e-5),
    (19, 5e-4, 5e-5),
    (30, 1e-4, 0.0),
    (44, 5e-5, 0.0),
    (53, 2e-5, 0.0),
)
SCHEDULES = ("decay", "imagenet")
# After each step, binary latent kernels are: mean-centred over input channels and clipped
# to [-1, 1] (the authors') | clipped only (Larq's weight_clip) | left alone.
KERNEL_PROJECTIONS = ("center_clip", "clip", "none")


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
    """The learning rate per step, by ``config.lr_schedule``:

    - ``decay`` (the authors' ``decayscheduler``): ``lr * factor ** floor(epoch /
      decay_epochs)``, never below ``lr_floor``;
    - ``imagenet`` (their ``imagenetscheduler``): :data:`IMAGENET_SCHEDULE`.
    """
    if config.lr_schedule == "imagenet":
        return _epoch_table(
            config.learning_rate, [(e, lr) for e, lr, _ in IMAGENET_SCHEDULE], steps_per_epoch
        )
    return optax.exponential_decay(
        init_value=config.learning_rate,
        transition_steps=max(1, int(config.lr_decay_epochs * steps_per_epoch)),
        decay_rate=config.lr_decay_factor,
        staircase=True,
        end_value=config.lr_floor,
    )


def weight_decay_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> float | optax.Schedule:
    """``config.weight_decay``, or the ``imagenet`` schedule's decay per epoch."""
    if config.lr_schedule == "imagenet":
        return _epoch_table(
            config.weight_decay, [(e, wd) for e, _, wd in IMAGENET_SCHEDULE], steps_per_epoch
        )
    return float(config.weight_decay)


def _epoch_table(
    first: float, table: list[tuple[int, float]], steps_per_epoch: int
) -> optax.Schedule:
    """``first`` until the first table epoch, then each table value from its epoch on."""
    boundaries = jnp.array([epoch * steps_per_epoch for epoch, _ in table])
    values = jnp.array([first, *(value for _, value in table)], jnp.float32)
    return lambda step: values[jnp.searchsorted(boundaries, step, side="right")]


def binary_kernel_mask(params: Any, plan: Plan) -> Any:
    """True for the ``kernel`` leaves of layers whose weights the plan binarizes."""
    binary = {layer.name for layer in plan if layer.binary_weight}

    def is_binary(path, _):
        keys = [p.key for p in path]
        return keys[-1] == "kernel" and "/".join(keys[:-1]) in binary

    return jax.tree_util.tree_map_with_path(is_binary, params)


def create_optimizer(
    config: ml_collections.ConfigDict, plan: Plan, steps_per_epoch: int
) -> optax.GradientTransformation:
    """Adam with the config's schedule and the authors' L2 weight decay (added to the
    gradient before Adam, as PyTorch's ``Adam(weight_decay=...)``), then the projection of
    the binary latent kernels."""
    parts = [optax.adam(learning_rate_schedule(config, steps_per_epoch))]
    weight_decay = weight_decay_schedule(config, steps_per_epoch)
    if callable(weight_decay) or weight_decay:
        parts.insert(0, optax.add_decayed_weights(weight_decay))
    if config.kernel_projection != "none":
        parts.append(
            quantizers.project_binary_kernels(
                lambda params: binary_kernel_mask(params, plan),
                center=config.kernel_projection == "center_clip",
            )
        )
    return optax.chain(*parts)
