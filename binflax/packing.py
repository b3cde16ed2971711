"""Bit-packed signs and the exact integer arithmetic of a binary convolution.

Why: a layer whose inputs and weights are both +-1 needs no floating point. Its
accumulator is an integer, and there are two ways to compute it exactly:

- an ``int8`` convolution of the +-1 values with ``int32`` accumulation - the fast path
  XLA has on CPUs, on GPU int8 units and on TPU int8 MXUs;
- XNOR + popcount on words of 32 packed signs - what a bit-serial engine (Larq Compute
  Engine, XNOR-Net's kernels) runs: ``acc = K - 2 * popcount(x XOR w)``.

Both are here so that the export's integer inference path and the benchmark can check
one against the other, and both against a NumPy formula (tests/test_packing.py).

Packing convention (Larq Compute Engine's): along the channel axis, channel ``c`` is bit
``c % 32`` of word ``c // 32``; bit 1 means -1 and bit 0 means +1, so ``sign(0) = +1``
packs as 0; channels are padded to a multiple of 32 with 0 bits.

    >>> import jax.numpy as jnp
    >>> words = pack_signs(jnp.array([1.0, -1.0, 0.0, -2.0]))
    >>> int(words[0])  # channels 1 and 3 are negative: 0b1010
    10
    >>> unpack_signs(words, 4).tolist()
    [1, -1, 1, -1]

Spatial padding: the fake-quantized model zero-pads the *sign output*, so a padded
position is neither +1 nor -1 and contributes 0 to the accumulator. The ``int8`` path
pads with 0 and gets that for free. Packed words cannot hold a 0, so the popcount path
counts, per output pixel, only the taps that land inside the image:
``acc = n_valid * C - 2 * popcount over the valid taps``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BITS = 32
# Activations NHWC, kernels HWIO: the layouts XLA's CPU convolutions take without a
# transpose (an OHWI kernel compiles 5-10x slower and transposes on every call).
DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def packed_words(channels: int) -> int:
    """Words of 32 bits needed for ``channels`` signs."""
    return -(-channels // BITS)


def pack_signs(x: Any) -> Any:
    """Packs the signs of ``x`` along its last axis into ``uint32`` words (bit 1 = negative).

    NumPy in, NumPy out (the export packs kernels offline without compiling anything);
    anything else is computed with ``jax.numpy``.
    """
    xp = np if isinstance(x, np.ndarray) else jnp
    x = xp.asarray(x)
    channels = x.shape[-1]
    bits = (x < 0).astype(xp.uint32)
    pad = packed_words(channels) * BITS - channels
    bits = xp.pad(bits, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
    bits = bits.reshape(*x.shape[:-1], -1, BITS)
    return xp.sum(bits << xp.arange(BITS, dtype=xp.uint32), axis=-1, dtype=xp.uint32)


def unpack_signs(words: Any, channels: int, dtype: Any = np.int8) -> Any:
    """The +-1 values of the first ``channels`` packed signs along the last axis.

    NumPy in, NumPy out; anything else is computed with ``jax.numpy``.
    """
    xp = np if isinstance(words, np.ndarray) else jnp
    words = xp.asarray(words, xp.uint32)
    bits = (words[..., None] >> xp.arange(BITS, dtype=xp.uint32)) & 1
    bits = bits.reshape(*words.shape[:-1], -1)[..., :channels]
    return (1 - 2 * bits.astype(xp.int32)).astype(dtype)


def explicit_padding(
    spatial_shape: Sequence[int],
    kernel_size: Sequence[int],
    strides: Sequence[int],
    padding: Any,
) -> tuple[tuple[int, int], ...]:
    """``padding`` as ``((lo, hi), (lo, hi))``; accepts ``"SAME"``, ``"VALID"`` or pairs."""
    if isinstance(padding, str):
        return tuple(
            tuple(p) for p in lax.padtype_to_pads(spatial_shape, kernel_size, strides, padding)
        )
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def conv_int8(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Any) -> jax.Array:
    """``int8`` +-1 convolution with ``int32`` accumulation (kernel HWIO)."""
    return lax.conv_general_dilated(
        x.astype(jnp.int8),
        kernel.astype(jnp.int8),
        tuple(strides),
        padding,
        dimension_numbers=DIMENSION_NUMBERS,
        preferred_element_type=jnp.int32,
    )


def conv_int8_dot(
    x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Any
) -> jax.Array:
    """The same accumulator as :func:`conv_int8`, as im2col + one ``int8`` matrix product.

    An alternative lowering for backends whose ``int8`` convolution is slow but whose
    ``int8`` dot is not.
    """
    x = x.astype(jnp.int8)
    kernel = kernel.astype(jnp.int8)
    kh, kw, _, out_features = kernel.shape
    pads = explicit_padding(x.shape[1:3], (kh, kw), strides, padding)
    patches = jnp.concatenate([tap for _, _, tap, _ in _taps(x, (kh, kw), strides, pads)], axis=-1)
    return lax.dot_general(
        patches,
        kernel.reshape(-1, out_features),
        (((3,), (0,)), ((), ())),
        preferred_element_type=jnp.int32,
    )


def conv_popcount(
    x_words: jax.Array,
    kernel_words: jax.Array,
    channels: int,
    strides: Sequence[int],
    padding: Any,
) -> jax.Array:
    """XNOR + popcount convolution on packed words: ``n_valid * C - 2 * popcount(x ^ w)``.

    ``x_words`` is NHW(words) and ``kernel_words`` kh,kw,(words),O, both packed by
    :func:`pack_signs` over ``channels`` input channels. Padding bits are 0 in both
    operands, so they never count; taps in the spatial padding are left out of both the
    popcount and ``n_valid`` (see the module docstring).
    """
    x_words = jnp.asarray(x_words, jnp.uint32)
    kernel_words = jnp.asarray(kernel_words, jnp.uint32)
    kh, kw, words, _ = kernel_words.shape
    if x_words.shape[-1] != words:
        raise ValueError(
            f"input has {x_words.shape[-1]} packed words per pixel, the kernel {words}"
        )
    pads = explicit_padding(x_words.shape[1:3], (kh, kw), strides, padding)
    popcount = 0
    n_valid = 0
    for i, j, tap, valid in _taps(x_words, (kh, kw), strides, pads):
        xor = tap[..., :, None] ^ kernel_words[i, j]  # N, Ho, Wo, words, O
        counts = jnp.sum(lax.population_count(xor).astype(jnp.int32), axis=-2)
        popcount = popcount + jnp.where(valid[None, :, :, None], counts, 0)
        n_valid = n_valid + valid.astype(jnp.int32)[None, :, :, None]
    return n_valid * channels - 2 * popcount


def _taps(
    x: jax.Array,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
) -> Iterator[tuple[int, int, jax.Array, jax.Array]]:
    """For each kernel tap (i, j): the strided input slice it sees (zero-padded) and a
    boolean (H_out, W_out) map of the output pixels for which it lies inside the image."""
    (kh, kw), (sh, sw) = kernel_size, strides
    n, h, w, c = x.shape
    (top, bottom), (left, right) = pads
    out_h = (h + top + bottom - kh) // sh + 1
    out_w = (w + left + right - kw) // sw + 1
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    inside = jnp.pad(jnp.ones((h, w), bool), ((top, bottom), (left, right)))
    for i in range(kh):
        for j in range(kw):
            stop = (i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1)
            tap = lax.slice(padded, (0, i, j, 0), (n, *stop, c), (1, sh, sw, 1))
            valid = lax.slice(inside, (i, j), stop, (sh, sw))
            yield i, j, tap, valid
