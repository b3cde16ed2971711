"""Random variables for a network, drawn in NumPy: what the tests and the benchmarks run
a network with when its trained weights do not matter.

Why NumPy and not ``model.init``: XLA's CPU compile of the initializers' random-number
code takes seconds per large kernel (AlexNet's would take minutes), while the shapes
alone come from ``jax.eval_shape`` at no cost. Why in the package: the tests and the
benchmarks both need the same variables, and the package must not import the tests;
this module imports nothing of binflax, so it sits below everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def random_variables(
    model: nn.Module, input_shape: Sequence[int], seed: int = 0, *, kernel_std: float | None = None
) -> dict:
    """``params`` and ``batch_stats`` of ``model`` for one example of ``input_shape``,
    every leaf drawn from a NumPy generator seeded with ``seed``.

    Far from the initial values on purpose, so that what folds, flips or thresholds
    them is exercised: kernels normal with ``kernel_std`` (default He's
    ``sqrt(2 / fan_in)``), norm scales uniform in [-1.5, 1.5] with the first exactly 0
    (sign flips and a zero scale), running means normal with std 0.5, running variances
    uniform in [0.05, 2], RPReLU slopes (``beta``) uniform in [0.05, 0.8] as ReActNet's,
    k-bit input steps uniform in [0.05, 1] (positive, as the quantizer needs),
    everything else (biases, shifts, thresholds) normal with std 0.3.
    """
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *input_shape)))
    rng = np.random.default_rng(seed)

    def draw(path, leaf) -> jax.Array:
        field = str(getattr(path[-1], "key", path[-1]))
        if field == "kernel":
            std = np.sqrt(2 / np.prod(leaf.shape[:-1])) if kernel_std is None else kernel_std
            value = rng.normal(0.0, std, leaf.shape)
        elif field == "scale":
            value = rng.uniform(-1.5, 1.5, leaf.shape)
            value.flat[0] = 0.0
        elif field == "mean":
            value = rng.normal(0.0, 0.5, leaf.shape)
        elif field == "var":
            value = rng.uniform(0.05, 2.0, leaf.shape)
        elif field == "input_step":  # a k-bit input's step (binflax.planned.INPUT_STEP)
            value = rng.uniform(0.05, 1.0, leaf.shape)
        elif field == "beta" and "rprelu" in {str(getattr(p, "key", p)) for p in path}:
            value = rng.uniform(0.05, 0.8, leaf.shape)
        else:
            value = rng.normal(0.0, 0.3, leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return {
        collection: jax.tree_util.tree_map_with_path(draw, shapes[collection])
        for collection in ("params", "batch_stats")
        if collection in shapes
    }
