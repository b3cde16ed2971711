"""The native XNOR kernel gives conv_xnor's accumulators exactly, on every code path.

Each geometry is checked against ``binflax.packing.conv_xnor`` and against the +-1
convolution written in NumPy; each ISA path the CPU has is forced in turn, so an AVX-512
machine also runs the AVX2 and portable paths. The kernel is built once per session (the
``native`` fixture); without a compiler these tests skip and the fallback test still runs.
"""

from __future__ import annotations

import functools
import warnings

import jax
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from binflax import native, packing
from binflax.native import build

# (batch, height, width, C_in, C_out, kernel, stride, padding): channels 1 to 512, odd and
# even word counts, 1x1 to 11x11 kernels, a fully-connected one, asymmetric padding.
GEOMETRIES = {
    "c1_3x3_same": (1, 6, 6, 1, 8, 3, 1, "SAME"),
    "c31_3x3_s2_b3": (3, 7, 5, 31, 33, 3, 2, "SAME"),
    "c32_1x1": (1, 5, 5, 32, 31, 1, 1, "VALID"),
    "c33_asymmetric_b3": (3, 6, 7, 33, 17, 3, 1, ((2, 0), (1, 2))),
    "c64_5x5_s2": (1, 9, 9, 64, 64, 5, 2, "SAME"),
    "c64_11x11_s4": (1, 23, 23, 64, 24, 11, 4, ((2, 1), (2, 1))),
    "c100_fully_connected_b3": (3, 4, 4, 100, 10, 4, 1, "VALID"),
    "c100_3x3_s2_valid": (1, 6, 6, 100, 100, 3, 2, "VALID"),
    "c512_3x3": (1, 5, 5, 512, 40, 3, 1, "SAME"),
    "c64_3x3_dilated_2": (1, 8, 9, 64, 16, 3, 1, "SAME", (2, 2)),
    # batch 1, an odd uint32 count per pixel (19) paired across taps, 86-90 reduction
    # words (the byte counts widened three times), 2 full groups of 24 channels and 2 more
    "c600_fully_connected_b1": (1, 3, 3, 600, 50, 3, 1, "VALID"),
}
WORD_BITS = (32, 64)


@pytest.fixture(scope="session")
def paths() -> list[str]:
    """The ISA paths this CPU runs; builds the kernel (once) or skips."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if not native.available():
            pytest.skip(f"native kernel unavailable: {caught[0].message if caught else ''}")
    return native.supported_isas()


def numpy_conv(x: np.ndarray, w: np.ndarray, strides, pads, dilation) -> np.ndarray:
    """The float model's accumulator: +-1 input zero-padded, times the HWIO +-1 kernel."""
    (kh, kw), (sh, sw), (dh, dw) = w.shape[:2], strides, dilation
    padded = np.pad(x.astype(np.int32), ((0, 0), *pads, (0, 0)))
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    patches = sliding_window_view(padded, span, axis=(1, 2))[:, ::sh, ::sw, :, ::dh, ::dw]
    return np.einsum("nhwcij,ijco->nhwo", patches, w.astype(np.int32))


@functools.cache
def case(name: str, bits: int):
    """Operands for a geometry in ``bits``-bit kernel words, and the two references."""
    n, h, w, cin, cout, k, s, padding, *dilated = GEOMETRIES[name]
    dilation = tuple(dilated[0]) if dilated else (1, 1)
    rng = np.random.default_rng(len(name) + bits)
    x = np.where(rng.random((n, h, w, cin)) < 0.5, -1, 1).astype(np.int8)
    weights = np.where(rng.random((k, k, cin, cout)) < 0.5, -1, 1).astype(np.int8)
    span = tuple((k - 1) * d + 1 for d in dilation)
    pads = packing.explicit_padding((h, w), span, (s, s), padding)
    kernel_bits = packing.pack_signs(weights.transpose(3, 0, 1, 2))  # OHWI
    base = packing.xnor_base(kernel_bits, cin, (h, w), (s, s), padding, *dilated)
    with jax.enable_x64(bits == 64):
        # uint64 pairs, or the (kh * kw * words, C_out) uint32 rows they pair
        kernel = packing.xnor_kernel(kernel_bits) if bits == 64 else kernel_bits.reshape(cout, -1).T
        word_type = packing.xnor_word_type(jax.numpy.asarray(kernel), cin)
        x_words = np.asarray(packing.pack_bits(x < 0, word_type))
        args = (x_words, kernel, base, (k, k), (s, s), padding, *dilated)
        xla = jax.jit(packing.conv_xnor, static_argnums=tuple(range(3, len(args))))
        reference = np.asarray(xla(*args))
    expected = numpy_conv(x, weights, (s, s), pads, dilation)
    np.testing.assert_array_equal(reference, expected)
    return args, expected


@pytest.mark.parametrize("bits", WORD_BITS)
@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("isa", list(native.ISAS))
def test_accumulators_equal_conv_xnor_and_numpy(paths, isa, name, bits):
    if isa not in paths:
        pytest.skip(f"this CPU cannot run the {isa} path")
    args, expected = case(name, bits)
    with jax.enable_x64(bits == 64):
        out = native.conv_xnor(*args, isa=isa)
        assert out.dtype == np.int32
        np.testing.assert_array_equal(np.asarray(out), expected)


def thresholds(channels: int, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(sense, limit)`` as chain.step_limits gives a binary consumer: +-1,
    and limits that split the accumulators' range (some channels always or never set)."""
    rng = np.random.default_rng(channels)
    sense = np.where(rng.random(channels) < 0.5, -1, 1).astype(np.int32)
    return sense, rng.integers(-bound - 2, bound + 3, channels).astype(np.int32)


@pytest.mark.parametrize("word_type", [np.uint32, np.uint64])
@pytest.mark.parametrize(
    "name", ["c1_3x3_same", "c31_3x3_s2_b3", "c33_asymmetric_b3", "c100_fully_connected_b3"]
)
@pytest.mark.parametrize("isa", list(native.ISAS))
def test_fused_threshold_writes_the_next_layers_words(paths, isa, name, word_type):
    if isa not in paths:
        pytest.skip(f"this CPU cannot run the {isa} path")
    args, expected = case(name, 64)
    sense, limit = thresholds(expected.shape[-1], int(np.abs(expected).max()))
    with jax.enable_x64(True):
        words = native.conv_xnor_words(
            *args[:3], sense, limit, *args[3:], word_type=word_type, isa=isa
        )
        reference = packing.pack_bits(jax.numpy.asarray(sense * expected < limit), word_type)
        assert words.dtype == word_type and words.shape == reference.shape
        np.testing.assert_array_equal(np.asarray(words), np.asarray(reference))


def test_inside_jit_with_the_path_from_the_environment(paths, monkeypatch):
    args, expected = case("c33_asymmetric_b3", 64)
    fn = jax.jit(native.conv_xnor, static_argnums=(3, 4, 5))
    for isa in paths:
        monkeypatch.setenv(native.ISA_ENV, isa)
        assert native.isa() == isa
        fn.clear_cache()  # the path is read when tracing
        with jax.enable_x64(True):
            np.testing.assert_array_equal(np.asarray(fn(*args)), expected)


def test_unknown_or_unsupported_path_is_refused(paths, monkeypatch):
    monkeypatch.setenv(native.ISA_ENV, "sse9")
    with pytest.raises(ValueError, match="unknown ISA"):
        native.isa()
    missing = [isa for isa in native.ISAS if isa not in paths]
    if missing:
        with pytest.raises(ValueError, match="cannot run"):
            native.isa(missing[0])
    assert native.isa("portable") == "portable"


def test_mismatched_kernel_rows_are_refused(paths):
    (x_words, kernel, base, *geometry), _ = case("c33_asymmetric_b3", 32)
    with pytest.raises(ValueError, match="kernel 2 rows"):
        native.conv_xnor(x_words, kernel[:2], base, *geometry)


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """A process with no usable compiler and an empty cache; the real kernel afterwards."""
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    monkeypatch.setenv("BINFLAX_CACHE_DIR", str(tmp_path))
    native._library.cache_clear()
    yield
    native._library.cache_clear()  # the next call loads the cached kernel again


def test_the_kernel_builds_wherever_a_compiler_is_found():
    """Guards the skips elsewhere: with g++ (or $CXX) on PATH, a failed build is a bug."""
    try:
        build.compiler()
    except build.BuildError as error:
        pytest.skip(f"no compiler here: {error}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = native.available()
    assert available, [str(w.message) for w in caught]


def test_build_failure_warns_once_and_falls_back(no_compiler):
    args, expected = case("c32_1x1", 32)
    dilated_args, dilated_expected = case("c64_3x3_dilated_2", 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not native.available()
        assert not native.available()
        assert native.supported_isas() == []
        out = native.conv_xnor(*args)
        sense, limit = thresholds(out.shape[-1], 9)
        words = native.conv_xnor_words(*args[:3], sense, limit, *args[3:])
        dilated = native.conv_xnor(*dilated_args)
    messages = [str(w.message) for w in caught if "binflax.native" in str(w.message)]
    assert len(messages) == 1, messages
    assert "/nonexistent/g++" in messages[0] and "packing.conv_xnor" in messages[0]
    np.testing.assert_array_equal(np.asarray(out), expected)
    np.testing.assert_array_equal(np.asarray(words), packing.pack_bits(sense * expected < limit))
    np.testing.assert_array_equal(np.asarray(dilated), dilated_expected)


# -- the kernel laid out once (native.layout_kernel) -----------------------------------


def call_layouts() -> int:
    """How many calls so far laid out their own kernel (the object's counter)."""
    return native._library().binflax_call_layouts()


@pytest.mark.parametrize("bits", WORD_BITS)
@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("isa", list(native.ISAS))
def test_a_kernel_laid_out_for_the_path_gives_the_accumulators_without_a_layout(
    paths, isa, name, bits
):
    if isa not in paths:
        pytest.skip(f"this CPU cannot run the {isa} path")
    args, expected = case(name, bits)
    with jax.enable_x64(bits == 64):
        laid = native.layout_kernel(args[1], isa=isa)
        before = call_layouts()
        out = native.conv_xnor(*args, isa=isa, laid=laid)
        np.testing.assert_array_equal(np.asarray(out), expected)
        assert call_layouts() == before  # the call did no layout of its own
        plain = call_layouts()
        native.conv_xnor(*args, isa=isa)
        assert call_layouts() == plain + 1  # the counter counts


@pytest.mark.parametrize("name", ["c31_3x3_s2_b3", "c100_fully_connected_b3", "c64_11x11_s4"])
@pytest.mark.parametrize("laid_for", list(native.ISAS))
@pytest.mark.parametrize("isa", list(native.ISAS))
def test_a_kernel_laid_out_for_another_path_falls_back_exactly(paths, isa, laid_for, name):
    """A program forced to another path, or a layout from another CPU: the call reads the
    words back from the layout (any path's, AVX-512's too on a CPU without it) and lays
    them out for its own path."""
    if isa not in paths:
        pytest.skip(f"this CPU cannot run the {isa} path")
    for bits in WORD_BITS:
        args, expected = case(name, bits)
        with jax.enable_x64(bits == 64):
            laid = native.layout_kernel(args[1], isa=laid_for)
            before = call_layouts()
            out = native.conv_xnor(*args, isa=isa, laid=laid)
            np.testing.assert_array_equal(np.asarray(out), expected)
            assert call_layouts() == before + (laid_for != isa)
            sense, limit = thresholds(expected.shape[-1], int(np.abs(expected).max()))
            words = native.conv_xnor_words(*args[:3], sense, limit, *args[3:], isa=isa, laid=laid)
            reference = packing.pack_bits(jax.numpy.asarray(sense * expected < limit))
            np.testing.assert_array_equal(np.asarray(words), np.asarray(reference))


@pytest.mark.parametrize("name", ["c600_fully_connected_b1", "c31_3x3_s2_b3", "c64_11x11_s4"])
@pytest.mark.parametrize("laid_for", list(native.ISAS))
def test_an_unforced_call_runs_the_path_its_kernel_was_laid_out_for(
    paths, laid_for, name, monkeypatch
):
    """How the export picks a path per layer (avx2_packed for a fully-connected one): a
    call that forces no path runs the layout's where this CPU has it, laying nothing out
    per call; a layout for a path the CPU lacks is read back for the CPU's best path."""
    monkeypatch.delenv(native.ISA_ENV, raising=False)
    for bits in WORD_BITS:
        args, expected = case(name, bits)
        with jax.enable_x64(bits == 64):
            laid = native.layout_kernel(args[1], isa=laid_for)
            before = call_layouts()
            out = native.conv_xnor(*args, laid=laid)
            np.testing.assert_array_equal(np.asarray(out), expected)
            assert call_layouts() == before + (laid_for not in paths), laid_for
            sense, limit = thresholds(expected.shape[-1], int(np.abs(expected).max()))
            words = native.conv_xnor_words(*args[:3], sense, limit, *args[3:], laid=laid)
            reference = packing.pack_bits(jax.numpy.asarray(sense * expected < limit))
            np.testing.assert_array_equal(np.asarray(words), np.asarray(reference))


def test_the_packed_avx2_path_is_never_the_best_one(paths, monkeypatch):
    """Convolutions keep the nibble-split AVX2 path: the packed one runs only where a
    kernel is laid out for it (or it is forced)."""
    monkeypatch.delenv(native.ISA_ENV, raising=False)
    assert native.isa() == paths[-1] != "avx2_packed"
    if "avx2" in paths:
        assert "avx2_packed" in paths
    assert native.LAYOUTS["avx2_packed"] == (24, 1)


def test_the_layout_has_one_size_on_every_path_and_cpu(paths):
    """An exported program fixes its operands' shapes: the buffer must not depend on the
    path, and the Python size must hold what the kernel writes for each."""
    library = native._library()
    for rows, channels, dtype in [(1, 1, np.uint64), (9, 33, np.uint32), (144, 4096, np.uint64),
                                  (5, 100, np.uint32), (2, 24, np.uint64)]:  # fmt: skip
        words = rows if dtype == np.uint64 else -(-rows // 2)
        kernel = np.arange(rows * channels, dtype=dtype).reshape(rows, channels)
        size = native.laid_size(kernel.shape, dtype)
        per_path = [
            library.binflax_laid_words(code, words, channels) for code in native.ISAS.values()
        ]
        assert size == 2 * (native.LAID_HEADER + max(per_path))
        for isa in native.ISAS:
            laid = native.layout_kernel(kernel, isa=isa)
            assert laid.dtype == np.uint32 and laid.shape == (size,)
            header = laid.view(np.uint64)[: native.LAID_HEADER]
            assert list(header[2:5]) == [native.ISAS[isa], words, channels]


def test_a_damaged_or_mismatched_layout_is_refused(paths):
    (x_words, kernel, base, *geometry), _ = case("c33_asymmetric_b3", 32)
    laid = native.layout_kernel(kernel)
    with pytest.raises(ValueError, match="layout_kernel's uint32"):
        native.conv_xnor(x_words, kernel, base, *geometry, laid=laid[:-2])
    damaged = laid.copy()
    damaged[0] ^= 1  # the magic word
    with pytest.raises(Exception, match="binflax_layout_kernel"):
        np.asarray(native.conv_xnor(x_words, kernel, base, *geometry, laid=damaged))
    other = native.layout_kernel(kernel[:-2])  # fewer rows than the input's patches
    other = np.concatenate([other, np.zeros(laid.size - other.size, np.uint32)])
    with pytest.raises(Exception, match="kernel rows"):
        np.asarray(native.conv_xnor(x_words, kernel, base, *geometry, laid=other))
    with pytest.raises(ValueError, match="unknown ISA"):
        native.layout_kernel(kernel, isa="sse9")


# -- a k-bit input's sign planes in one call (conv_xnor's bits) ---------------------------


@functools.cache
def planes_case(name: str, bits: int):
    """A ``bits``-bit input on a geometry's binary kernel: its sign planes stacked on the
    batch axis (plane ``j`` negative where bit ``j`` of ``i + 2**(bits-1)`` is clear), the
    call's operands, and the NumPy accumulator of the input ``2 i + 1``."""
    n, h, w, cin, cout, k, s, padding, *dilated = GEOMETRIES[name]
    dilation = tuple(dilated[0]) if dilated else (1, 1)
    rng = np.random.default_rng(len(name) * bits)
    levels = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), (n, h, w, cin))
    weights = np.where(rng.random((k, k, cin, cout)) < 0.5, -1, 1).astype(np.int8)
    span = tuple((k - 1) * d + 1 for d in dilation)
    pads = packing.explicit_padding((h, w), span, (s, s), padding)
    kernel_bits = packing.pack_signs(weights.transpose(3, 0, 1, 2))
    base = packing.xnor_base(kernel_bits, cin, (h, w), (s, s), padding, *dilated)
    unsigned = levels + 2 ** (bits - 1)
    negative = np.concatenate([(unsigned >> j) & 1 == 0 for j in range(bits)])
    with jax.enable_x64(True):
        kernel = packing.xnor_kernel(kernel_bits)
        word_type = packing.xnor_word_type(jax.numpy.asarray(kernel), cin)
        x_words = np.asarray(packing.pack_bits(negative, word_type))
    args = (x_words, kernel, base, (k, k), (s, s), padding, *dilated)
    return args, numpy_conv(2 * levels + 1, weights, (s, s), pads, dilation)


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("isa", list(native.ISAS))
def test_a_k_bit_inputs_planes_sum_to_its_accumulator(paths, isa, name, bits):
    if isa not in paths:
        pytest.skip(f"this CPU cannot run the {isa} path")
    args, expected = planes_case(name, bits)
    with jax.enable_x64(True):
        laid = native.layout_kernel(args[1], isa=isa)
        for kwargs in ({}, {"laid": laid}):
            out = native.conv_xnor(*args, isa=isa, bits=bits, **kwargs)
            assert out.dtype == np.int32
            np.testing.assert_array_equal(np.asarray(out), expected)


def test_eight_planes_and_the_xla_sum_agree(paths):
    """The most planes a call sums, against :func:`packing.sum_bit_planes` of XLA's
    popcount, which the fallback and the popcount arithmetic run."""
    args, expected = planes_case("c31_3x3_s2_b3", 8)
    with jax.enable_x64(True):
        out = native.conv_xnor(*args, bits=8)
        xla = packing.sum_bit_planes(packing.conv_xnor(*args), 8)
    np.testing.assert_array_equal(np.asarray(out), expected)
    np.testing.assert_array_equal(np.asarray(xla), expected)


def test_planes_that_do_not_stack_are_refused(paths):
    args, _ = planes_case("c31_3x3_s2_b3", 2)
    with pytest.raises(ValueError, match="bits must be 1 to 8 planes stacked on a batch of 6"):
        native.conv_xnor(*args, bits=4)
    with pytest.raises(ValueError, match="got 9"):
        native.conv_xnor(*args, bits=9)
    with pytest.raises(ValueError, match="does not stack 4 equal planes"):
        packing.sum_bit_planes(jax.numpy.zeros((6, 2)), 4)


def test_the_fallback_sums_the_planes(no_compiler):
    args, expected = planes_case("c33_asymmetric_b3", 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with jax.enable_x64(True):
            out = native.conv_xnor(*args, bits=2)
    np.testing.assert_array_equal(np.asarray(out), expected)
