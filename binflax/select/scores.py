"""Layer scores: how strongly a layer's input asks to stay in float.

Why pluggable: the paper's joint metric is not published. binflax's default,
``log_ratio``, is ``S_l = E_l * ln(C_total / C_l)`` (docs/method.md section 7): it grows with
the input-binarization error ``E_l`` and falls with the layer's share of the compute. It
reproduces the authors' plotted metric for Sketch-A-Net's conv2 and conv3 up to one scale
factor, and their two Sketch-A-Net hybrids, but not every layer of every network. So a
score is any function ``(errors, macs, total_macs) -> scores`` over arrays, and the greedy
solver ranks by it; the exact solver does not use scores at all (it minimises the error
left binarized directly).

    >>> import jax.numpy as jnp
    >>> from binflax.select import scores
    >>> s = scores.get_score("log_ratio")(jnp.array([0.5, 0.5]), jnp.array([1.0, 10.0]), 100.0)
    >>> [round(float(v), 3) for v in s]
    [2.303, 1.151]

A score must be written in ``jax.numpy`` (the solvers call it under ``jax.jit``, in
float64) and return one finite number per layer, higher meaning "keep this input float".
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

ScoreFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def log_ratio(errors: jax.Array, macs: jax.Array, total_macs: jax.Array) -> jax.Array:
    """``E_l * ln(C_total / C_l)``: binflax's reading of the paper's joint metric."""
    return errors * jnp.log(total_macs / macs)


def error(errors: jax.Array, macs: jax.Array, total_macs: jax.Array) -> jax.Array:
    """``E_l`` alone: rank by input-binarization error, ignoring compute."""
    del macs, total_macs
    return errors


def error_per_mac(errors: jax.Array, macs: jax.Array, total_macs: jax.Array) -> jax.Array:
    """``E_l * C_total / C_l``: error removed per unit of compute (the knapsack ratio)."""
    return errors * total_macs / macs


SCORES: dict[str, ScoreFn] = {
    "log_ratio": log_ratio,
    "error": error,
    "error_per_mac": error_per_mac,
}


def get_score(score: str | ScoreFn) -> ScoreFn:
    """A score function from its registry name, or ``score`` itself when it is callable."""
    if callable(score):
        return score
    try:
        return SCORES[score]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown score {score!r}; give a callable (errors, macs, total_macs) -> scores "
            f"or one of: {', '.join(sorted(SCORES))}"
        ) from None


def score_name(score: str | ScoreFn) -> str:
    """The name a report shows for ``score``: its registry name or the function's name."""
    if isinstance(score, str):
        return score
    return getattr(score, "__name__", type(score).__name__)
