"""binflax.packing against NumPy: LCE bit order, and the accumulator K - 2 * popcount(xor)
from every arithmetic: int8 conv, int8 im2col product, the popcount reference and the fast
XNOR kernel with 32- and 64-bit words."""

import jax
import numpy as np
import pytest

from binflax import packing


def np_pack(signs: np.ndarray) -> np.ndarray:
    """Independent packing: bit 1 for negative, little bit order, 32 bits per word."""
    channels = signs.shape[-1]
    pad = (-channels) % 32
    bits = np.pad(signs < 0, [(0, 0)] * (signs.ndim - 1) + [(0, pad)])
    return np.ascontiguousarray(np.packbits(bits, axis=-1, bitorder="little")).view("<u4")


@pytest.mark.parametrize("channels", [1, 32, 33, 70])
def test_pack_matches_lce_convention_and_round_trips(channels):
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((3, 2, channels)).astype(np.float32)
    x[0, 0, 0] = 0.0  # sign(0) = +1 packs as bit 0
    words = packing.pack_signs(x)
    assert words.dtype == np.uint32 and words.shape == (3, 2, -(-channels // 32))
    np.testing.assert_array_equal(words, np_pack(x))
    np.testing.assert_array_equal(np.asarray(packing.pack_signs(jax.numpy.asarray(x))), words)
    assert int(words[0, 0, 0]) & 1 == 0
    expected = np.where(x >= 0, 1, -1)
    np.testing.assert_array_equal(np.asarray(packing.unpack_signs(words, channels)), expected)
    if channels % 32:  # padding bits are 0 (+1)
        assert not np.any(words[..., -1] >> (channels % 32))


def test_first_channel_is_lowest_bit():
    signs = np.ones(32, np.float32)
    signs[[0, 3]] = -1
    assert int(packing.pack_signs(signs)[0]) == 0b1001


def np_accumulators(x, w, strides, pads):
    """Direct sum over taps inside the image, and K - 2 * popcount(xor) per output pixel."""
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    (top, bottom), (left, right) = pads
    out_h = (h + top + bottom - kh) // strides[0] + 1
    out_w = (wd + left + right - kw) // strides[1] + 1
    direct = np.zeros((n, out_h, out_w, o), np.int64)
    popcount = np.zeros_like(direct)
    for b in range(n):
        for i in range(out_h):
            for j in range(out_w):
                taps = [
                    (di, dj)
                    for di in range(kh)
                    for dj in range(kw)
                    if 0 <= i * strides[0] + di - top < h and 0 <= j * strides[1] + dj - left < wd
                ]
                xs = (
                    np.stack(
                        [
                            x[b, i * strides[0] + di - top, j * strides[1] + dj - left]
                            for di, dj in taps
                        ]
                    )
                    if taps
                    else np.zeros((0, c))
                )
                ws = np.stack([w[di, dj].T for di, dj in taps], 1) if taps else np.zeros((o, 0, c))
                direct[b, i, j] = np.einsum("tc,otc->o", xs, ws)
                k = len(taps) * c
                xor = np_pack(xs)[None] ^ np_pack(ws)
                popcount[b, i, j] = k - 2 * np.bitwise_count(xor).sum(axis=(1, 2))
    return direct, popcount


def random_case(rng):
    kh, kw = rng.integers(1, 5, size=2)
    strides = tuple(int(s) for s in rng.integers(1, 4, size=2))
    padding = rng.choice(["VALID", "SAME", "explicit"])
    if padding == "explicit":
        padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, size=(2, 2)))
    h, w = rng.integers(max(kh, kw), 9, size=2)
    c = int(rng.choice([1, 5, 32, 33, 70]))
    x = np.where(rng.random((int(rng.integers(1, 3)), h, w, c)) < 0.5, -1, 1).astype(np.int8)
    kernel = np.where(rng.random((kh, kw, c, int(rng.integers(1, 6)))) < 0.5, -1, 1).astype(np.int8)
    return x, kernel, strides, padding


@pytest.mark.parametrize("seed", range(8))
def test_integer_accumulators_equal_k_minus_twice_popcount(seed):
    x, kernel, strides, padding = random_case(np.random.default_rng(seed))
    pads = packing.explicit_padding(x.shape[1:3], kernel.shape[:2], strides, padding)
    direct, popcount_ref = np_accumulators(x, kernel, strides, pads)
    np.testing.assert_array_equal(direct, popcount_ref)

    int8 = jax.jit(packing.conv_int8, static_argnums=(2, 3))(x, kernel, strides, padding)
    dot = jax.jit(packing.conv_int8_dot, static_argnums=(2, 3))(x, kernel, strides, padding)
    pop = jax.jit(packing.conv_popcount, static_argnums=(2, 3, 4))(
        packing.pack_signs(x),
        packing.pack_signs(kernel.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
        x.shape[-1],
        strides,
        padding,
    )
    for result in (int8, dot, pop, *xnor_accumulators(x, kernel, strides, padding)):
        assert result.dtype == np.int32
        np.testing.assert_array_equal(np.asarray(result), direct)


def xnor_accumulators(x, kernel, strides, padding):
    """conv_xnor with 32-bit words and, under x64, with 64-bit words."""
    bits = packing.pack_signs(kernel.transpose(3, 0, 1, 2))  # OHWI
    base = packing.xnor_base(bits, x.shape[-1], x.shape[1:3], strides, padding)
    xnor = jax.jit(packing.conv_xnor, static_argnums=(3, 4, 5))
    words32 = bits.reshape(bits.shape[0], -1).T  # (kh * kw * words, O), im2col order
    results = [xnor(packing.pack_signs(x), words32, base, kernel.shape[:2], strides, padding)]
    with jax.enable_x64(True):
        words64 = packing.xnor_kernel(bits)
        assert words64.dtype == np.uint64 and words64.shape[0] == -(-words32.shape[0] // 2)
        results.append(
            xnor(packing.pack_signs(x), words64, base, kernel.shape[:2], strides, padding)
        )
    return results


def test_xnor_kernel_pairs_words_low_half_first():
    bits = np.arange(1, 1 + 2 * 3 * 1 * 1, dtype=np.uint32).reshape(2, 3, 1, 1)  # O=2, taps 3
    words = packing.xnor_kernel(bits)
    assert words.shape == (2, 2)  # 3 words per output, padded to 4, paired
    assert int(words[0, 0]) == 1 | (2 << 32) and int(words[1, 0]) == 3  # 4th word is 0
    assert int(words[0, 1]) == 4 | (5 << 32)


def test_xnor_base_counts_padded_taps():
    """A 3x3 SAME conv on a 2x2 input: every output pixel has 4 taps in the image."""
    kernel = -np.ones((3, 3, 5, 1), np.int8)  # every weight -1: popcount 5 per tap
    bits = packing.pack_signs(kernel.transpose(3, 0, 1, 2))
    base = packing.xnor_base(bits, 5, (2, 2), (1, 1), "SAME")
    # n_valid * C + 2 * (5 padded taps) * popcount 5
    np.testing.assert_array_equal(base[..., 0], np.full((2, 2), 4 * 5 + 2 * 5 * 5))


def test_im2col_orders_patches_as_an_hwio_kernel_flattens():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    kernel = np.random.default_rng(0).standard_normal((3, 3, 3, 5)).astype(np.float32)
    patches = packing.im2col(x, (3, 3), (1, 1), "SAME")
    assert patches.shape == (2, 4, 4, 27)
    conv = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=packing.DIMENSION_NUMBERS
    )
    np.testing.assert_allclose(patches @ kernel.reshape(27, 5), conv, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(packing.im2col(x, (4, 4), (1, 1), "VALID"),
                                  x.reshape(2, 1, 1, -1))  # fmt: skip


def test_popcount_rejects_mismatched_words():
    x = packing.pack_signs(np.ones((1, 3, 3, 64), np.int8))
    kernel = packing.pack_signs(np.ones((1, 1, 2, 32), np.int8)).transpose(0, 1, 3, 2)
    with pytest.raises(ValueError, match="packed words"):
        packing.conv_popcount(x, kernel, 64, (1, 1), "VALID")
