"""binflax.packing against NumPy: LCE bit order, and the accumulator K - 2 * popcount(xor)."""

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
    for result in (int8, dot, pop):
        assert result.dtype == np.int32
        np.testing.assert_array_equal(np.asarray(result), direct)


def test_popcount_rejects_mismatched_words():
    x = packing.pack_signs(np.ones((1, 3, 3, 64), np.int8))
    kernel = packing.pack_signs(np.ones((1, 1, 2, 32), np.int8)).transpose(0, 1, 3, 2)
    with pytest.raises(ValueError, match="packed words"):
        packing.conv_popcount(x, kernel, 64, (1, 1), "VALID")
