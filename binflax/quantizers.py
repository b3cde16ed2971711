"""Binarization primitives: sign functions, the XNOR weight binarizer, the latent-weight projection.

Why a module of its own: every binary layer in binflax is built from these few pieces, and
each piece has a forward pass and a *different* backward pass (a straight-through
estimator). Keeping them small, named and tested against NumPy formulas makes the rest
of the library trustworthy.

    >>> import jax.numpy as jnp
    >>> from binflax import quantizers
    >>> quantizers.ste_sign(jnp.array([-0.5, 0.0, 2.0]))
    Array([-1.,  1.,  1.], dtype=float32)

Conventions (docs/method.md section 3):
- ``sign(0) == +1`` (as Larq and LCE); ``jnp.sign`` maps 0 to 0 and is never used bare.
- input binarization is a plain sign, gradient ``g * 1[|x| <= clip]`` (Larq's ``ste_sign``);
- weight binarization is XNOR-Net's ``alpha_o * sign(W)`` with ``alpha_o = mean |W|`` over
  the kernel's spatial and input-channel axes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


def binary_sign(x: jax.Array) -> jax.Array:
    """``+1`` where ``x >= 0``, ``-1`` elsewhere, in ``x``'s dtype (no gradient rule)."""
    return jnp.where(x >= 0, 1, -1).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def ste_sign(x: jax.Array, clip: float = 1.0) -> jax.Array:
    """Sign with the straight-through estimator: gradient ``g * 1[|x| <= clip]``."""
    return binary_sign(x)


def _ste_sign_fwd(x, clip):
    return binary_sign(x), x


def _ste_sign_bwd(clip, x, g):
    return (jnp.where(jnp.abs(x) <= clip, g, jnp.zeros_like(g)),)


ste_sign.defvjp(_ste_sign_fwd, _ste_sign_bwd)


@jax.custom_vjp
def approx_sign(x: jax.Array) -> jax.Array:
    """Sign with Bi-Real Net's piecewise-polynomial gradient ``g * max(0, 2 - 2|x|)``."""
    return binary_sign(x)


def _approx_sign_fwd(x):
    return binary_sign(x), x


def _approx_sign_bwd(x, g):
    return (g * jnp.maximum(0.0, 2.0 - 2.0 * jnp.abs(x)).astype(g.dtype),)


approx_sign.defvjp(_approx_sign_fwd, _approx_sign_bwd)


def weight_scale(kernel: jax.Array) -> jax.Array:
    """XNOR-Net's ``alpha_o = mean |W|`` per output filter (the kernel's last axis)."""
    return jnp.mean(jnp.abs(kernel), axis=tuple(range(kernel.ndim - 1)))


def binarize_weights(kernel: jax.Array, *, stop_alpha_gradient: bool = True) -> jax.Array:
    """``alpha_o * sign(W)``; the gradient reaches the latent kernel through the STE.

    ``stop_alpha_gradient`` (the default) treats alpha as a constant in the backward pass:
    the latent gradient is ``g * alpha * 1[|W| <= 1]``, which the authors' hand-written
    ``updateBinaryGradWeight`` matches to within ~2% up to a per-layer constant. False
    differentiates through alpha as well ([choice], see docs/choices.md).
    """
    alpha = weight_scale(kernel)
    if stop_alpha_gradient:
        alpha = jax.lax.stop_gradient(alpha)
    return alpha * ste_sign(kernel)


class Quantizer(NamedTuple):
    """A named input quantizer with its precision, as Larq users know them."""

    name: str
    fn: Callable[[jax.Array], jax.Array]
    bits: int
    description: str


QUANTIZERS: dict[str, Quantizer] = {
    "ste_sign": Quantizer("ste_sign", ste_sign, 1, "sign, gradient g*1[|x|<=1] (authors, Larq)"),
    "approx_sign": Quantizer("approx_sign", approx_sign, 1, "sign, Bi-Real gradient g*(2-2|x|)"),
}


def get_quantizer(name: str) -> Quantizer:
    """Looks a quantizer up by name; an unknown name lists the known ones."""
    try:
        return QUANTIZERS[name]
    except KeyError:
        raise ValueError(
            f"unknown input quantizer {name!r}; known: {', '.join(sorted(QUANTIZERS))}"
        ) from None


def project_latent_kernel(kernel: jax.Array, *, center: bool = True) -> jax.Array:
    """The authors' post-step projection: mean-centre over input channels, clip to [-1, 1].

    ``center=False`` only clips: Larq's ``weight_clip`` constraint (config
    ``kernel_projection="clip"``; docs/reproduction.md compares the two).
    """
    if center:
        kernel = kernel - jnp.mean(kernel, axis=-2, keepdims=True)
    return jnp.clip(kernel, -1.0, 1.0)


def project_binary_kernels(mask: Any, *, center: bool = True) -> optax.GradientTransformation:
    """Optax transformation: after the update, binary latent kernels are projected.

    ``mask`` is a pytree of bools shaped like the params (True for the kernels whose
    weights are binarized) or a callable ``params -> mask``. The returned updates are
    ``project(params + updates) - params`` on masked leaves and untouched elsewhere, so
    ``optax.apply_updates`` lands exactly on the projected kernel. Chain it last.
    ``center`` as in :func:`project_latent_kernel`.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("project_binary_kernels needs params: call update(g, s, params)")
        leaf_mask = mask(params) if callable(mask) else mask

        def project(update, param, is_binary):
            if not is_binary:
                return update
            return project_latent_kernel(param + update, center=center) - param

        return jax.tree.map(project, updates, params, leaf_mask), state

    return optax.GradientTransformation(init_fn, update_fn)
