"""ReActNet's RPReLU: a PReLU between two learned per-channel shifts.

Why: a binary conv's output distribution is what the next ``sign`` cuts, and ReActNet
(Liu et al., ECCV 2020, liuzechun/ReActNet) lets each channel learn where that
distribution sits and how its negative side folds, in place of a fixed ReLU. The
function is

    ``RPReLU(x) = PReLU_beta(x - gamma) + zeta``,  ``PReLU_beta(y) = y if y > 0 else beta * y``

with ``gamma``, ``beta`` and ``zeta`` one float per channel (the last axis). The
initialisation is the authors': ``LearnableBias`` at zero for both shifts, PyTorch's
``nn.PReLU(channels)`` at 0.25 for the slope, so a new RPReLU is a leaky ReLU. At
``x == gamma`` the gradient takes the slope, as PyTorch's PReLU does. A planned layer
applies it to a binary-input layer's output with ``activation="rprelu"``
(docs/method.md section 4).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = ("relu", "rprelu")
# PyTorch's nn.PReLU init, which ReActNet keeps.
PRELU_SLOPE = 0.25
# Float operations per element: subtract gamma, compare, multiply by beta, add zeta.
RPRELU_OPS = 4


def rprelu(x: jax.Array, gamma: jax.Array, beta: jax.Array, zeta: jax.Array) -> jax.Array:
    """``PReLU_beta(x - gamma) + zeta`` per channel (the last axis), in ``x``'s dtype."""
    gamma, beta, zeta = (jnp.asarray(p, x.dtype) for p in (gamma, beta, zeta))
    y = x - gamma
    return jnp.where(y > 0, y, beta * y) + zeta


class RPReLU(nn.Module):
    """:func:`rprelu` with its parameters ``gamma``, ``beta`` and ``zeta`` (C,) learned."""

    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (x.shape[-1],)
        gamma = self.param("gamma", nn.initializers.zeros, shape, self.param_dtype)
        beta = self.param("beta", nn.initializers.constant(PRELU_SLOPE), shape, self.param_dtype)
        zeta = self.param("zeta", nn.initializers.zeros, shape, self.param_dtype)
        return rprelu(x, gamma, beta, zeta)
