"""The native int8 convolution gives packing.conv_int8's int32 accumulators exactly.

Each geometry is checked against ``binflax.packing.conv_int8`` (XLA's int8 convolution)
and a NumPy int64 convolution, on every int8 path this CPU has (forced in turn), with the
weights laid out per call and laid out ahead, and at the int8 extremes, where a
saturating int16 step (``vpmaddubsw``) would go wrong.
"""

from __future__ import annotations

import functools
import warnings

import jax
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from binflax import native, packing

# (batch, height, width, C_in, C_out, kernel, stride, padding[, dilation]): the first
# layers of AlexNet, ResNet-18 and Sketch-A-Net (C_in 3 and 1) on small maps, 3x3 SAME
# and VALID, dilation (of rows only too), odd channel counts and kernel-row lengths, batch
# > 1, 1x1 and fully connected, asymmetric padding, channels past one group of every
# layout. Pixels whose patch lies inside the image are read in place, the others from
# laid-out patches: every geometry with padding has both.
GEOMETRIES = {
    "alexnet_conv1_11x11_s4": (1, 47, 45, 3, 64, 11, 4, "SAME"),
    "resnet_conv1_7x7_s2_b2": (2, 30, 31, 3, 64, 7, 2, "SAME"),
    "sketchanet_conv1_15x15_s3_c1": (1, 45, 45, 1, 64, 15, 3, "VALID"),
    "c1_3x3_same_odd_out": (2, 9, 7, 1, 5, 3, 1, "SAME"),
    "c5_3x3_valid_b3": (3, 8, 9, 5, 37, 3, 1, "VALID"),
    "c64_3x3_same": (1, 10, 10, 64, 64, 3, 1, "SAME"),
    "c17_3x3_dilated_2": (2, 11, 12, 17, 19, 3, 1, "SAME", (2, 2)),
    "c3_5x3_dilated_asymmetric": (1, 13, 11, 3, 9, (5, 3), (2, 1), ((2, 0), (1, 3)), (1, 2)),
    # row dilation only: pixels inside the image are read in place, rows dh apart
    "c4_3x3_row_dilated_2": (2, 12, 11, 4, 11, 3, 1, "SAME", (2, 1)),
    "c3_3x5_row_dilated_3_valid": (1, 13, 12, 3, 20, (3, 5), 1, "VALID", (3, 1)),
    "c33_1x1": (2, 5, 6, 33, 70, 1, 1, "VALID"),
    "c100_fully_connected_b3": (3, 4, 4, 100, 10, 4, 1, "VALID"),
    "c256_3x3_s2": (1, 7, 7, 256, 129, 3, 2, "SAME"),
}


@pytest.fixture(scope="session")
def paths() -> list[str]:
    """The int8 paths this CPU runs; builds the kernel (once) or skips."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if not native.available():
            pytest.skip(f"native kernel unavailable: {caught[0].message if caught else ''}")
    return native.int8_supported_isas()


def geometry(name: str):
    n, h, w, cin, cout, k, s, padding, *dilation = GEOMETRIES[name]
    k = (k, k) if isinstance(k, int) else k
    s = (s, s) if isinstance(s, int) else s
    return (n, h, w, cin), (*k, cin, cout), s, padding, tuple(dilation[0] if dilation else (1, 1))


def numpy_conv(x, w, strides, padding, dilation) -> np.ndarray:
    """sum(x * w) over each zero-padded patch, in int64."""
    (kh, kw), (sh, sw), (dh, dw) = w.shape[:2], strides, dilation
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    pads = packing.explicit_padding(x.shape[1:3], span, strides, padding)
    padded = np.pad(x.astype(np.int64), ((0, 0), *pads, (0, 0)))
    patches = sliding_window_view(padded, span, axis=(1, 2))[:, ::sh, ::sw, :, ::dh, ::dw]
    return np.einsum("nhwcij,ijco->nhwo", patches, w.astype(np.int64))


@functools.cache
def case(name: str, fill: str = "random"):
    """Operands and both references: random int8, or every value at an extreme."""
    x_shape, w_shape, strides, padding, dilation = geometry(name)
    rng = np.random.default_rng(abs(hash((name, fill))) % 2**32)
    if fill == "random":
        x = rng.integers(-128, 128, x_shape).astype(np.int8)
        w = rng.integers(-128, 128, w_shape).astype(np.int8)
    else:
        x_value, w_value = {"min_min": (-128, -128), "max_min": (127, -128),
                            "min_max": (-128, 127)}[fill]  # fmt: skip
        x, w = np.full(x_shape, x_value, np.int8), np.full(w_shape, w_value, np.int8)
    want = np.asarray(packing.conv_int8(x, w, strides, padding, dilation))
    np.testing.assert_array_equal(want, numpy_conv(x, w, strides, padding, dilation))
    return x, w, (strides, padding, dilation), want


def conv(x, w, geometry_args, **kwargs):
    strides, padding, dilation = geometry_args
    fn = jax.jit(lambda a, b, laid: native.conv_int8(a, b, strides, padding, dilation,
                                                     laid=laid, **kwargs))  # fmt: skip
    return np.asarray(fn(x, w, kwargs.pop("laid", None)))


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_accumulators_equal_conv_int8_and_numpy_on_every_path(paths, name):
    x, w, args, want = case(name)
    for isa in paths:
        got = conv(x, w, args, isa=isa)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want, err_msg=f"{name} on {isa}")
        laid = native.layout_int8_kernel(w, isa=isa)
        np.testing.assert_array_equal(conv(x, w, args, isa=isa, laid=laid), want,
                                      err_msg=f"{name} on {isa}, laid out")  # fmt: skip


@pytest.mark.parametrize("fill", ["min_min", "max_min", "min_max"])
@pytest.mark.parametrize("name", ["alexnet_conv1_11x11_s4", "c256_3x3_s2", "c5_3x3_valid_b3"])
def test_extreme_values_do_not_saturate(paths, name, fill):
    """-128 * -128 summed in pairs is 2**15, one past int16: exact only if the pairs are
    summed in int32 (vpmaddwd), not saturated in int16."""
    x, w, args, want = case(name, fill)
    for isa in paths:
        np.testing.assert_array_equal(conv(x, w, args, isa=isa), want, err_msg=f"{isa} {fill}")


def call_layouts() -> int:
    """How many calls so far laid out their own weights."""
    return native._library().binflax_int8_call_layouts()


@pytest.mark.parametrize("laid_for", ["portable", "avx2", "avx512_vnni", "avx_vnni"])
@pytest.mark.parametrize("name", ["c256_3x3_s2", "c5_3x3_valid_b3"])  # even, odd kernel rows
def test_a_kernel_laid_out_for_any_path_gives_the_accumulators(paths, laid_for, name):
    """Laid out for the path a call runs, the call does no layout; for another (the
    AVX-512 layout included, which this CPU may not run), it reads the weights back from
    that layout and lays them out again, exactly."""
    x, w, args, want = case(name)
    laid = native.layout_int8_kernel(w, isa=laid_for)
    assert laid.shape == (native.int8_laid_size(w.shape),) and laid.dtype == np.uint32
    for isa in paths:
        before = call_layouts()
        np.testing.assert_array_equal(conv(x, w, args, isa=isa, laid=laid), want,
                                      err_msg=f"laid out for {laid_for}, run on {isa}")  # fmt: skip
        assert call_layouts() == before + (laid_for != isa)


def test_unforced_calls_run_the_best_path_and_the_environment_forces_one(paths, monkeypatch):
    x, w, args, want = case("c5_3x3_valid_b3")
    monkeypatch.delenv(native.ISA_ENV, raising=False)
    assert native.int8_isa() == paths[-1]
    np.testing.assert_array_equal(conv(x, w, args), want)
    # A path of the XNOR kernel only leaves the int8 kernel on its best, and back.
    monkeypatch.setenv(native.ISA_ENV, "avx512_vpopcntdq")
    assert native.int8_isa() == paths[-1]
    monkeypatch.setenv(native.ISA_ENV, "avx512_vnni")
    assert native.isa() == native.supported_isas()[-1]
    monkeypatch.setenv(native.ISA_ENV, "portable")
    assert native.int8_isa() == "portable"
    np.testing.assert_array_equal(conv(x, w, args), want)


def test_unknown_unsupported_or_mismatched_operands_are_refused(paths):
    x, w, args, _ = case("c5_3x3_valid_b3")
    with pytest.raises(ValueError, match="unknown int8 ISA"):
        native.conv_int8(x, w, *args, isa="sse9")
    for isa in set(native.INT8_ISAS) - set(paths):
        with pytest.raises(ValueError, match="cannot run"):
            native.conv_int8(x, w, *args, isa=isa)
    with pytest.raises(ValueError, match="channels"):
        native.conv_int8(x[..., :4], w, *args)
    with pytest.raises(ValueError, match="int8"):
        native.conv_int8(x.astype(np.int32), w, *args)
    with pytest.raises(ValueError, match="laid must be"):
        native.conv_int8(x, w, *args, laid=native.layout_int8_kernel(w[:2]))
    # The same size (one group on every path), other channels: refused by the kernel.
    with pytest.raises(Exception, match="output channels differ"):
        conv(x, w, args, laid=native.layout_int8_kernel(w[:, :, :, :3]))
    damaged = native.layout_int8_kernel(w).copy()
    damaged[0] ^= 1
    with pytest.raises(Exception, match="not a kernel"):
        conv(x, w, args, laid=damaged)
