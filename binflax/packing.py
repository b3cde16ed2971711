"""Bit-packed signs and the exact integer arithmetic of a binary convolution.

Why: a layer whose inputs and weights are both +-1 needs no floating point. Its
accumulator is an integer, and there are two ways to compute it exactly:

- an ``int8`` convolution of the +-1 values with ``int32`` accumulation - the fast path
  XLA has on CPUs, on GPU int8 units and on TPU int8 MXUs;
- XNOR + popcount on words of 32 packed signs - what a bit-serial engine (Larq Compute
  Engine, XNOR-Net's kernels) runs: ``acc = K - 2 * popcount(x XOR w)``.

Both are here so that the export's integer inference path and the benchmark can check
one against the other, and both against a NumPy formula (tests/test_packing.py). The
popcount arithmetic has two forms: :func:`conv_popcount`, the reference (per kernel tap,
padding masked in the graph), and :func:`conv_xnor`, the fast one the export runs (one
im2col of packed words, 64-bit words, padding folded into a precomputed base).

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
# 64-bit words summed per fused reduction in conv_xnor. Measured on a 2-core AVX2 CPU
# (docs/export.md): 8 to 16 are within noise of each other, 8 a little ahead (a byte
# holds the count of up to 31 words); 32 and more make XLA split the reduction into a
# materialized partial sum, several times slower.
WORD_GROUP = 8
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
    return pack_bits(xp.asarray(x) < 0)


def pack_bits(bits: Any, word_type: Any = np.uint32) -> Any:
    """Packs booleans along the last axis into words (channel ``c``: bit ``c % 32`` of
    ``uint32`` word ``c // 32``, or of its :func:`pair_words` pair for ``uint64``).

    What an integer layer that thresholds its accumulator writes for the next layer
    (``True`` = -1); padding bits are 0. NumPy in, NumPy out (``uint32`` only).
    """
    xp = np if isinstance(bits, np.ndarray) else jnp
    channels = bits.shape[-1]
    bits = bits.astype(xp.uint32)
    pad = packed_words(channels) * BITS - channels
    bits = xp.pad(bits, [(0, 0)] * (bits.ndim - 1) + [(0, pad)])
    bits = bits.reshape(*bits.shape[:-1], -1, BITS)
    words = xp.sum(bits << xp.arange(BITS, dtype=xp.uint32), axis=-1, dtype=xp.uint32)
    return pair_words(words) if word_type == np.uint64 else words


def unpack_signs(words: Any, channels: int, dtype: Any = np.int8) -> Any:
    """The +-1 values of the first ``channels`` packed signs along the last axis.

    NumPy in, NumPy out; anything else is computed with ``jax.numpy``.
    """
    if isinstance(words, np.ndarray):  # little-endian words: bit c of a word is byte c // 8's
        raw = np.ascontiguousarray(words, "<u4").view(np.uint8)
        bits = np.unpackbits(raw, axis=-1, bitorder="little")[..., :channels]
        return (1 - 2 * bits.astype(np.int8)).astype(dtype)
    words = jnp.asarray(words, jnp.uint32)
    bits = (words[..., None] >> jnp.arange(BITS, dtype=jnp.uint32)) & 1
    bits = bits.reshape(*words.shape[:-1], -1)[..., :channels]
    return (1 - 2 * bits.astype(jnp.int32)).astype(dtype)


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


def conv_int8(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int],
    padding: Any,
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
) -> jax.Array:
    """``int8`` +-1 convolution with ``int32`` accumulation (kernel HWIO, ``I`` per group)."""
    return lax.conv_general_dilated(
        x.astype(jnp.int8),
        kernel.astype(jnp.int8),
        tuple(strides),
        padding,
        rhs_dilation=tuple(dilation),
        dimension_numbers=DIMENSION_NUMBERS,
        feature_group_count=groups,
        preferred_element_type=jnp.int32,
    )


def conv_int8_dot(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int],
    padding: Any,
    dilation: Sequence[int] = (1, 1),
) -> jax.Array:
    """The same accumulator as :func:`conv_int8`, as im2col + one ``int8`` matrix product.

    An alternative lowering for backends whose ``int8`` convolution is slow but whose
    ``int8`` dot is not.
    """
    kernel = kernel.astype(jnp.int8)
    kh, kw, _, out_features = kernel.shape
    return lax.dot_general(
        im2col(x.astype(jnp.int8), (kh, kw), strides, padding, dilation),
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
        counts = jnp.sum(lax.population_count(xor), axis=-2, dtype=jnp.int32)
        popcount = popcount + jnp.where(valid[None, :, :, None], counts, 0)
        n_valid = n_valid + valid.astype(jnp.int32)[None, :, :, None]
    return n_valid * channels - 2 * popcount


def xnor_kernel(kernel_bits: np.ndarray) -> np.ndarray:
    """An OHWI packed kernel as the ``(P, C_out)`` ``uint64`` matrix :func:`conv_xnor` takes.

    Rows follow the im2col order of :func:`conv_xnor` (kernel row, column, word); the
    ``uint32`` words are paired into ``uint64`` ones (the first of a pair in the low half,
    so channel ``c`` stays bit ``c % 64``), with a zero word appended to an odd count.
    Pairs may straddle two taps: the input's patches are paired the same way.
    """
    kernel_bits = np.asarray(kernel_bits, np.uint32)
    out_features = kernel_bits.shape[0]
    rows = kernel_bits.reshape(out_features, -1).T
    rows = np.pad(rows, ((0, rows.shape[0] % 2), (0, 0)))
    pairs = np.ascontiguousarray(rows.reshape(-1, 2, out_features).transpose(0, 2, 1))
    return pairs.view(np.uint64)[..., 0]


def xnor_base(
    kernel_bits: np.ndarray,
    channels: int,
    spatial_shape: Sequence[int],
    strides: Sequence[int],
    padding: Any,
    dilation: Sequence[int] = (1, 1),
) -> np.ndarray:
    """The accumulator of :func:`conv_xnor` before its popcount: ``int32`` (H_out, W_out, C_out).

    :func:`conv_xnor` pads the input with 0 words (+1 signs), so a tap in the spatial
    padding adds ``popcount(w_tap)`` to the popcount, where the float model adds nothing.
    Per output pixel, ``base = n_valid * C + 2 * sum over its padded taps of
    popcount(w_tap)`` takes that back: ``acc = base - 2 * popcount(patch XOR w)``. It
    depends only on the kernel and the geometry, so it is computed once per input size.
    """
    kernel_bits = np.asarray(kernel_bits, np.uint32)
    _, kh, kw, _ = kernel_bits.shape
    (dh, dw), (sh, sw) = dilation, strides
    pads = explicit_padding(spatial_shape, _dilated((kh, kw), dilation), strides, padding)
    (top, bottom), (left, right) = pads
    h, w = spatial_shape
    out_h = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    out_w = (w + left + right - (kw - 1) * dw - 1) // sw + 1
    inside = np.pad(np.ones((h, w), bool), pads)
    padded_taps = np.stack(
        [
            ~inside[i * dh : i * dh + (out_h - 1) * sh + 1 : sh][
                :, j * dw : j * dw + (out_w - 1) * sw + 1 : sw
            ]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=-1,
    ).astype(np.int64)  # (H_out, W_out, taps)
    tap_popcounts = np.bitwise_count(kernel_bits).sum(axis=-1, dtype=np.int64)  # (O, kh, kw)
    tap_popcounts = tap_popcounts.reshape(kernel_bits.shape[0], -1).T  # (taps, O)
    n_valid = kh * kw - padded_taps.sum(axis=-1)
    base = n_valid[..., None] * channels + 2 * (padded_taps @ tap_popcounts)
    return base.astype(np.int32)


def conv_xnor(
    x_words: jax.Array,
    kernel: jax.Array,
    base: jax.Array,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    padding: Any,
    dilation: Sequence[int] = (1, 1),
) -> jax.Array:
    """The fast XNOR + popcount convolution: one im2col of packed words, ``base - 2 * popcount``.

    ``kernel`` and ``base`` come from :func:`xnor_kernel` and :func:`xnor_base`;
    ``x_words`` is NHW(words) packed by :func:`pack_bits` in the type
    :func:`xnor_word_type` gives (``uint32`` words are paired after the im2col when the
    kernel holds ``uint64`` words). 64-bit words need ``jax.enable_x64``: LLVM lowers a
    vector popcount of 64-bit lanes to byte lookups (``vpshufb``) and one sum of absolute
    differences (``vpsadbw``), about half the instructions per bit of 32-bit lanes. The
    popcount is summed in the word type over groups of :data:`WORD_GROUP` words, each one
    loop that XLA vectorizes over the output channels; LLVM then adds the group's
    per-byte counts and folds the bytes once per group. Returns the same ``int32``
    accumulator as :func:`conv_int8` and :func:`conv_popcount`.
    """
    patches = im2col(x_words, kernel_size, strides, padding, dilation)
    if patches.dtype != kernel.dtype:
        patches = pair_words(patches)
    if patches.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"input patches have {patches.shape[-1]} words, the kernel {kernel.shape[0]} rows"
        )
    popcount = 0
    for start in range(0, kernel.shape[0], WORD_GROUP):
        stop = min(start + WORD_GROUP, kernel.shape[0])
        counts = lax.population_count(patches[..., start:stop, None] ^ kernel[start:stop])
        popcount = popcount + jnp.sum(counts, axis=-2, dtype=kernel.dtype).astype(jnp.int32)
    return base - 2 * popcount


def sum_bit_planes(acc: jax.Array, bits: int) -> jax.Array:
    """A ``bits``-bit input's accumulator from its sign planes' accumulators, stacked on
    the batch axis (plane ``j``, the signs of the level's bit ``j``, ``j``-th):
    ``sum_j 2**j acc_j``, since the input ``2 i + 1 = sum_j 2**j b_j`` for the planes'
    signs ``b_j`` (:func:`binflax.export.inference.level_accumulator`)."""
    if acc.shape[0] % bits:
        raise ValueError(f"a batch of {acc.shape[0]} does not stack {bits} equal planes")
    planes = acc.reshape(bits, acc.shape[0] // bits, *acc.shape[1:])
    # Shifts and adds, which XLA fuses into one loop: as a tensordot with (1, 2, ...) it
    # ran as an integer dot, 9x the popcount's own time on AlexNet's conv2.
    return sum(planes[j] << j for j in range(bits))


def xnor_word_type(kernel: jax.Array, channels: int) -> Any:
    """The word type :func:`conv_xnor` takes its input packed in, for ``channels``.

    ``uint64`` when the kernel is ``uint64`` and a pixel's channels fill whole 64-bit
    words (an even number of 32-bit words): packing then pairs the words once per pixel,
    before the im2col copies each pixel ``kh * kw`` times. Otherwise ``uint32``, paired
    after the im2col, where pairs may straddle two taps as in :func:`xnor_kernel`.
    """
    if kernel.dtype == jnp.uint64 and packed_words(channels) % 2 == 0:
        return jnp.uint64
    return jnp.uint32


def pair_words(words: jax.Array) -> jax.Array:
    """``uint32`` words along the last axis as ``uint64`` ones, the first of a pair in the
    low half (so channel ``c`` stays bit ``c % 64``); a zero word pads an odd count.

    Shifts and ORs of strided slices, which XLA fuses into their neighbours; a
    ``bitcast_convert_type`` becomes a separate reduction on XLA's CPU backend.
    """
    if words.shape[-1] % 2:
        words = jnp.pad(words, [(0, 0)] * (words.ndim - 1) + [(0, 1)])
    low, high = words[..., 0::2].astype(jnp.uint64), words[..., 1::2].astype(jnp.uint64)
    return low | (high << 32)


def im2col(
    x: jax.Array,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    padding: Any,
    dilation: Sequence[int] = (1, 1),
) -> jax.Array:
    """NHWC -> (N, H_out, W_out, kh * kw * C): each output pixel's patch, zero-padded,
    ordered (kernel row, kernel column, channel) as an HWIO kernel flattens."""
    _, h, w, c = x.shape
    pads = explicit_padding((h, w), _dilated(kernel_size, dilation), strides, padding)
    if pads == ((0, 0), (0, 0)) and tuple(kernel_size) == (h, w):
        return x.reshape(-1, 1, 1, h * w * c)  # a fully-connected layer: one patch
    padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    return jnp.concatenate(list(_tap_slices(padded, kernel_size, strides, dilation)), axis=-1)


def _dilated(kernel_size: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    return tuple((k - 1) * d + 1 for k, d in zip(kernel_size, dilation, strict=True))


def _tap_slices(
    padded: jax.Array,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int] = (1, 1),
) -> Iterator[jax.Array]:
    """For each kernel tap, row-major: the strided slice of the padded input it sees."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    _, h, w, _ = padded.shape
    out_h = (h - (kh - 1) * dh - 1) // sh + 1
    out_w = (w - (kw - 1) * dw - 1) // sw + 1
    for i in range(kh):
        for j in range(kw):
            rows, cols = i * dh, j * dw
            yield padded[
                :, rows : rows + (out_h - 1) * sh + 1 : sh, cols : cols + (out_w - 1) * sw + 1 : sw
            ]


def _taps(
    x: jax.Array,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
) -> Iterator[tuple[int, int, jax.Array, jax.Array]]:
    """For each kernel tap (i, j): the strided input slice it sees (zero-padded) and a
    boolean (H_out, W_out) map of the output pixels for which it lies inside the image."""
    kh, kw = kernel_size
    (top, bottom), (left, right) = pads
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    inside = jnp.pad(jnp.ones(x.shape[1:3], bool), ((top, bottom), (left, right)))
    slices = _tap_slices(padded, kernel_size, strides)
    valid = _tap_slices(inside[None, :, :, None], kernel_size, strides)
    for (i, j), tap, tap_valid in zip(
        ((i, j) for i in range(kh) for j in range(kw)), slices, valid, strict=True
    ):
        yield i, j, tap, tap_valid[0, :, :, 0]
