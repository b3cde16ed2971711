"""Quantization primitives: sign functions, the XNOR weight binarizer, k-bit inputs, 8-bit
weights, the latent-weight projection.

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
  the kernel's spatial and input-channel axes;
- a k-bit input (k = 2, 4, 8) is the mid-rise uniform quantizer whose 1-bit case is the
  sign: ``2**k`` levels ``step * (i + 1/2)``, ``i`` in ``[-2**(k-1), 2**(k-1) - 1]``, so a
  level is a sum of ``k`` signed binary planes ``step/2 * sum_j 2**j * b_j`` with
  ``b_j`` in ``{-1, +1}`` and a k-bit layer on binary weights runs as ``k`` XNOR
  popcounts. The step is learned with LSQ's gradient (Esser et al., ICLR 2020)
  ([choice]: LSQ over PACT, whose clipping assumes a non-negative ReLU output where
  binflax quantizes the normalised, signed input of the binary-input block);
- 8-bit weights are symmetric per output channel, ``s_o * round(W / s_o)`` with
  ``s_o = max |W| / 127``, the gradient straight through.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


def binary_sign(x: jax.Array) -> jax.Array:
    """``+1`` where ``x >= 0``, ``-1`` elsewhere, in ``x``'s dtype (no gradient rule)."""
    return jnp.where(x >= 0, 1, -1).astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def ste_sign(x: jax.Array, clip: float = 1.0) -> jax.Array:
    """Sign with the straight-through estimator: gradient ``g * 1[|x| <= clip]``.

    A custom JVP (its transpose is the gradient) rather than a custom VJP, so that
    second derivatives - ``binflax.select``'s Hessian score - see the same straight-through
    derivative in the forward pass as gradients do in the backward pass."""
    return binary_sign(x)


@ste_sign.defjvp
def _ste_sign_jvp(clip, primals, tangents):
    (x,), (t,) = primals, tangents
    # the primal through ste_sign itself, so that a derivative of this rule uses the rule
    return ste_sign(x, clip), jnp.where(jnp.abs(x) <= clip, t, jnp.zeros_like(t))


@jax.custom_jvp
def approx_sign(x: jax.Array) -> jax.Array:
    """Sign with Bi-Real Net's piecewise-polynomial gradient ``g * max(0, 2 - 2|x|)``."""
    return binary_sign(x)


@approx_sign.defjvp
def _approx_sign_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return approx_sign(x), t * jnp.maximum(0.0, 2.0 - 2.0 * jnp.abs(x)).astype(t.dtype)


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


def input_levels(bits: int) -> tuple[int, int]:
    """The smallest and largest level index ``i`` of the k-bit input quantizer."""
    half = 2 ** (bits - 1)
    return -half, half - 1


def grad_scale(x: jax.Array, scale: float) -> jax.Array:
    """``x`` forward, its gradient times ``scale`` backward (LSQ's step-gradient scale)."""
    return jax.lax.stop_gradient(x - x * scale) + x * scale


def quantize_input(x: jax.Array, step: jax.Array, bits: int) -> jax.Array:
    """The k-bit mid-rise quantizer ``step * (clip(floor(x / step), lo, hi) + 1/2)``.

    Gradients (LSQ): ``x`` gets ``g`` where ``x`` is inside the quantizer's range
    ``[lo * step, (hi + 1) * step)`` and 0 outside; ``step`` gets
    ``g * (q - x / step)`` inside and ``g * (clipped level)`` outside, summed, times
    LSQ's scale ``1 / sqrt(features * 2**(k-1))`` (features: the elements of one example).
    """
    lo, hi = input_levels(bits)
    step = lsq_step(x, step, bits)
    v = jnp.clip(x / step, lo, hi + 1)
    level = jnp.clip(jnp.floor(v), lo, hi)
    level = v + jax.lax.stop_gradient(level - v)  # straight through floor
    return (level + 0.5) * step


def lsq_step(x: jax.Array, step: jax.Array, bits: int, features: int | None = None) -> jax.Array:
    """``step`` as :func:`quantize_input` uses it: its value, its gradient times LSQ's
    scale. The export computes its integer levels from the same value
    (:func:`input_level`), so that both decide every level boundary alike. ``features``:
    the elements of one example, where ``x`` is not a batch of examples (the scale's
    rounding reaches the value: ``grad_scale`` is not exactly the identity in float)."""
    if features is None:
        features = int(np.prod(x.shape[1:])) if x.ndim > 1 else int(x.size)
    return grad_scale(step, 1.0 / float(np.sqrt(features * 2 ** (bits - 1))))


def input_level(x: jax.Array, step: jax.Array, bits: int, features: int | None = None) -> jax.Array:
    """The level index ``i`` :func:`quantize_input` picks for ``x`` (no gradient), in
    ``x``'s dtype: the quantized input is ``step * (i + 1/2)``, the odd integer
    ``2 i + 1`` in half steps, which the export computes with (binflax.export.inference).
    ``features`` as for :func:`lsq_step`."""
    lo, hi = input_levels(bits)
    v = jnp.clip(x / lsq_step(x, step, bits, features), lo, hi + 1)
    return jnp.clip(jnp.floor(v), lo, hi)


def int8_weight_codes(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(round(W / s_o) as int8, s_o)`` in NumPy float32, the values
    :func:`quantize_weights_int8` computes (the export stores them)."""
    kernel = np.asarray(kernel, np.float32)
    scale = np.max(np.abs(kernel), axis=tuple(range(kernel.ndim - 1))) / np.float32(127.0)
    safe = np.where(scale > 0, scale, np.float32(1.0))
    return np.round(kernel / safe).astype(np.int8), scale.astype(np.float32)


@functools.cache
def gaussian_step(bits: int) -> float:
    """The step of the k-bit mid-rise quantizer with the least mean squared error on a
    unit Gaussian (Max, 1960): the initial step of a k-bit input, which the input's batch
    norm makes roughly unit Gaussian."""
    from scipy import optimize, stats  # here: importing scipy.stats takes seconds

    lo, hi = input_levels(bits)
    inner = np.arange(lo + 1, hi + 1, dtype=np.float64)  # the decision boundaries / step
    levels = np.arange(lo, hi + 1, dtype=np.float64) + 0.5

    def mse(step: float) -> float:
        edges = np.concatenate([[-np.inf], inner * step, [np.inf]])
        a, b = edges[:-1], edges[1:]
        c = levels * step
        finite_a, finite_b = np.where(np.isfinite(a), a, 0.0), np.where(np.isfinite(b), b, 0.0)
        pdf_a, pdf_b = stats.norm.pdf(a), stats.norm.pdf(b)  # 0 at the infinite ends
        mass = stats.norm.cdf(b) - stats.norm.cdf(a)
        first = pdf_a - pdf_b  # integral of x * phi over [a, b]
        second = mass + finite_a * pdf_a - finite_b * pdf_b  # of x**2 * phi
        return float(np.sum(second - 2 * c * first + c * c * mass))

    upper = 8.0 / (hi + 1)
    return float(optimize.minimize_scalar(mse, bounds=(1e-4, upper), method="bounded").x)


def int8_weight_scale(kernel: jax.Array) -> jax.Array:
    """``s_o = max |W| / 127`` per output channel (the kernel's last axis)."""
    return jnp.max(jnp.abs(kernel), axis=tuple(range(kernel.ndim - 1))) / 127.0


def quantize_weights_int8(kernel: jax.Array) -> jax.Array:
    """``s_o * round(W / s_o)``, symmetric per output channel, the gradient straight
    through to the latent kernel (``s_o`` a constant: the range is the kernel's own, so
    nothing is clipped)."""
    scale = jax.lax.stop_gradient(int8_weight_scale(kernel))
    safe = jnp.where(scale > 0, scale, 1.0)
    quantized = jnp.round(kernel / safe) * safe
    return kernel + jax.lax.stop_gradient(quantized - kernel)


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
