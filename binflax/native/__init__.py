"""A native XNOR + popcount convolution behind ``jax.ffi``, exact to ``packing.conv_xnor``.

Why: XLA lowers the popcount convolution to byte lookups it can neither block for
registers nor widen lazily; ``xnor_kernel.cc`` does both, with AVX-512 (VPOPCNTDQ), AVX2
(two layouts: nibble-split for convolutions, packed for weights streamed once) and
portable code paths in one object chosen at run time (docs/native.md).

    from binflax import native

    native.available()  # builds the kernel on first use (seconds), then loads it from cache
    acc = native.conv_xnor(x_words, kernel, base, (3, 3), (1, 1), "SAME")

:func:`conv_xnor` takes the arguments of :func:`binflax.packing.conv_xnor` and returns the
same ``int32`` accumulator; given ``laid=layout_kernel(kernel)``, the weights laid out
once beforehand (as an exported model's are when it is loaded), a call does no layout of
them. Where the kernel cannot be built (no compiler, or the build
fails) binflax warns once and :func:`conv_xnor` runs ``packing.conv_xnor`` instead.

:func:`conv_int8` (``int8_kernel.cc``, the same object) is an int8 x int8 -> int32
convolution with :func:`binflax.packing.conv_int8`'s result, for the exported 8-bit
layers; :func:`layout_int8_kernel` lays its weights out once, and its paths
(:data:`INT8_ISAS`: AVX-512 VNNI and AVX-VNNI, both untested here, AVX2, portable) are
chosen the same way.

The path is the best the CPU running the call supports (chosen by the kernel at run
time, so an exported program moves between CPUs; a call given ``laid=`` runs the path
its layout names where the CPU has it), or the one named by the ``isa`` argument or,
when that is ``None``, by ``$BINFLAX_NATIVE_ISA`` (``avx512_vpopcntdq``, ``avx2``,
``avx2_packed``, ``portable``), read when a function is traced: the tests force each
path this way. ``avx2_packed`` is never the best path: it is the AVX2 path on a layout
of half the bytes, faster only where the weights are streamed once (a fully-connected
layer at batch 1), and runs where a kernel is laid out for it (:func:`layout_kernel`).
"""

from __future__ import annotations

import ctypes
import functools
import os
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from binflax import packing
from binflax.native import build

# FFI target names and the handlers (xnor_kernel.cc) they call.
TARGETS = {
    "binflax_xnor_conv": "BinflaxXnorConv",
    "binflax_xnor_conv_words": "BinflaxXnorConvWords",
    "binflax_xnor_conv_laid": "BinflaxXnorConvLaid",
    "binflax_xnor_conv_words_laid": "BinflaxXnorConvWordsLaid",
    "binflax_int8_conv": "BinflaxInt8Conv",  # int8_kernel.cc
    "binflax_int8_conv_laid": "BinflaxInt8ConvLaid",
}
# The C++ side's codes for its paths (enum Isa in xnor_kernel.cc).
ISAS = {"portable": 1, "avx2": 2, "avx512_vpopcntdq": 3, "avx2_packed": 4}
# Best last (supported_isas): avx2_packed is never the best path for a convolution.
_ISA_ORDER = ("portable", "avx2_packed", "avx2", "avx512_vpopcntdq")
MAX_BITS = 8  # kMaxBits: the most sign planes one conv_xnor call sums
AUTO = 0  # kAuto: the path a laid-out kernel names where the CPU has it, else its best
ISA_ENV = "BINFLAX_NATIVE_ISA"
# How each path lays out the kernel (Layout in xnor_kernel.cc): channels per group of
# vectors and uint64 planes per reduction word (2: the AVX2 nibble split).
LAYOUTS = {"portable": (4, 1), "avx2": (24, 2), "avx512_vpopcntdq": (32, 1), "avx2_packed": (24, 1)}
LAID_HEADER = 8  # uint64 words: magic, layout version, path, words, channels, 3 spare
# The int8 kernel's paths (enum Isa in int8_kernel.cc) and their layouts: channels per
# vector and vectors per group (int16 pairs of reduction steps per channel). The VNNI
# paths are compiled in and chosen where the CPU has them, but were never run here.
INT8_ISAS = {"portable": 1, "avx2": 2, "avx512_vnni": 3, "avx_vnni": 4}
INT8_LAYOUTS = {"portable": (8, 1), "avx2": (8, 2), "avx512_vnni": (16, 4), "avx_vnni": (8, 2)}


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The loaded kernel with its FFI target registered, or ``None`` after one warning."""
    try:
        path = build.library_path()
        library = ctypes.CDLL(str(path))
    except (build.BuildError, OSError) as error:
        warnings.warn(
            f"binflax.native: the XNOR kernel is unavailable, using XLA's popcount "
            f"(binflax.packing.conv_xnor) instead: {error}",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    for name in (
        "binflax_best_isa",
        "binflax_isa_supported",
        "binflax_laid_words",
        "binflax_layout_kernel",
        "binflax_call_layouts",
        "binflax_int8_best_isa",
        "binflax_int8_isa_supported",
        "binflax_int8_call_layouts",
        "binflax_layout_int8_kernel",
    ):
        getattr(library, name).restype = ctypes.c_int64
    library.binflax_int8_isa_supported.argtypes = [ctypes.c_int64]
    library.binflax_layout_int8_kernel.argtypes = [ctypes.c_int64, ctypes.c_void_p]
    library.binflax_layout_int8_kernel.argtypes += [ctypes.c_int64] * 3
    library.binflax_layout_int8_kernel.argtypes += [ctypes.c_void_p, ctypes.c_int64]
    library.binflax_isa_supported.argtypes = [ctypes.c_int64]
    library.binflax_laid_words.argtypes = [ctypes.c_int64] * 3
    library.binflax_layout_kernel.argtypes = [
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_int64,
    ]
    _register(str(path))
    return library


@functools.cache
def _register(path: str) -> None:
    """Registers the FFI targets once per object (a second registration of a name fails)."""
    library = ctypes.CDLL(path)
    for target, handler in TARGETS.items():
        jax.ffi.register_ffi_target(
            target, jax.ffi.pycapsule(getattr(library, handler)), platform="cpu"
        )


def available() -> bool:
    """Whether the native kernel is built and loaded (builds it on the first call)."""
    return _library() is not None


def supported_isas() -> list[str]:
    """The code paths this CPU can run, best last; empty when the kernel is unavailable."""
    library = _library()
    if library is None:
        return []
    return [name for name in _ISA_ORDER if library.binflax_isa_supported(ISAS[name])]


def isa(requested: str | None = None) -> str:
    """The code path a call runs: ``requested``, else ``$BINFLAX_NATIVE_ISA``, else the best
    this CPU supports. Raises ``ValueError`` for an unknown or unsupported path and
    ``RuntimeError`` when the kernel is unavailable."""
    return _resolve(requested)


def forced_isa() -> str | None:
    """The XNOR kernel's path ``$BINFLAX_NATIVE_ISA`` forces, or ``None`` (unset, or a
    path of the int8 kernel only): where it is set, a layout at load follows it rather
    than a per-layer rule."""
    return _environment(ISAS)


def _environment(paths: dict[str, int]) -> str | None:
    """``$BINFLAX_NATIVE_ISA`` where it names one of ``paths``; a path of the other kernel
    only (``avx512_vpopcntdq`` for the int8 kernel, ``avx512_vnni`` for the XNOR one)
    leaves this kernel on its best path, so one variable forces both kernels' shared
    paths (``avx2``, ``portable``) and either's own."""
    name = os.environ.get(ISA_ENV) or None
    if name is not None and name not in paths and name in {*ISAS, *INT8_ISAS}:
        return None
    return name


def _resolve(requested: str | None) -> str:
    library = _library()
    if library is None:
        raise RuntimeError("binflax.native: the kernel is unavailable")
    return _pick(requested, ISAS, library.binflax_best_isa, library.binflax_isa_supported, "")


def laid_size(kernel_shape: Sequence[int], kernel_dtype: Any) -> int:
    """The ``uint32`` length of :func:`layout_kernel`'s buffer for a ``(P, C_out)`` kernel
    matrix of ``kernel_dtype`` words: the header and the largest of the paths' layouts, so
    the same on every CPU (an exported program's operand shapes are fixed in the file)."""
    rows, channels = kernel_shape
    words = rows if np.dtype(kernel_dtype) == np.uint64 else -(-rows // 2)
    laid = max(-(-channels // group) * group * words * planes for group, planes in LAYOUTS.values())
    return 2 * (LAID_HEADER + laid)


def layout_kernel(kernel: Any, *, isa: str | None = None) -> np.ndarray:
    """The ``(P, C_out)`` kernel matrix of :func:`packing.xnor_kernel` (``uint64`` words or
    ``uint32`` rows) laid out once for the kernel's code path ``isa``, for
    :func:`conv_xnor`'s ``laid`` argument: what a deployment does when it loads a model,
    so that a call is only the arithmetic.

    ``isa`` defaults to the path calls run here (:func:`isa`: ``$BINFLAX_NATIVE_ISA``, else
    the CPU's best); any path can be laid out on any CPU (it is data). A ``uint32`` array
    of :func:`laid_size` (the same for every path): a header naming the path, then the
    layout, then zeros. A call that is not forced to a path runs the one the header names
    where this CPU has it (so a layout for ``avx2_packed`` selects that path). A call
    that runs another path (a program forced to another ISA, or the buffer moved to a CPU
    without the path) reads the words back from it and lays them out for its own path,
    per call: slower, as exact. Needs the kernel (``RuntimeError`` where it is
    unavailable)."""
    library = _library()
    if library is None:
        raise RuntimeError("binflax.native: the kernel is unavailable")
    name = _resolve(None) if isa is None else isa
    if name not in ISAS:
        raise ValueError(f"unknown ISA {name!r}; expected one of {sorted(ISAS)}")
    kernel = np.asarray(kernel)
    if kernel.ndim != 2 or kernel.dtype not in (np.uint32, np.uint64):
        raise ValueError(f"the kernel must be a (P, C_out) uint32 or uint64 matrix, got "
                         f"{kernel.dtype} {kernel.shape}")  # fmt: skip
    kernel = np.ascontiguousarray(kernel)
    out = np.zeros(laid_size(kernel.shape, kernel.dtype) // 2, np.uint64)
    status = library.binflax_layout_kernel(
        ISAS[name],
        kernel.ctypes.data,
        int(kernel.dtype == np.uint64),
        kernel.shape[0],
        kernel.shape[1],
        out.ctypes.data,
        out.size,
    )
    if status != 0:
        raise ValueError(f"binflax.native: could not lay out a {kernel.shape} kernel")
    return out.view(np.uint32)


def conv_xnor(
    x_words: jax.Array,
    kernel: jax.Array,
    base: jax.Array,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    padding: Any,
    dilation: Sequence[int] = (1, 1),
    *,
    isa: str | None = None,
    laid: Any = None,
    bits: int = 1,
) -> jax.Array:
    """:func:`binflax.packing.conv_xnor` as one native custom call: the same ``int32``
    (N, H_out, W_out, C_out) accumulator, ``base - 2 * popcount(patch XOR kernel)``.

    ``x_words`` is NHW(words) in ``uint32`` or ``uint64`` (:func:`packing.xnor_word_type`),
    ``kernel`` the ``(P, C_out)`` matrix of :func:`packing.xnor_kernel` (or its ``uint32``
    rows), ``base`` from :func:`packing.xnor_base`. ``isa`` forces a code path (see
    :func:`isa`). ``laid``, ``kernel`` laid out ahead by :func:`layout_kernel`, spares
    the call the kernel's layout (the kernel then only gives the shapes and the
    fallback). Falls back to ``packing.conv_xnor`` when the kernel is unavailable.
    Traceable under ``jax.jit``; the geometry arguments are static.

    ``bits`` > 1: ``x_words`` stacks a ``bits``-bit input's sign planes on the batch axis
    (``bits * N`` images), and the call returns their accumulators summed as
    :func:`binflax.packing.sum_bit_planes` sums them (N images), each pixel's planes
    computed together while its kernel group is in L1: the XLA sum after a call of all
    planes cost as much again as the call itself (docs/native.md, "Bit planes").
    """
    geometry = (kernel_size, strides, padding, dilation)
    if not 1 <= bits <= MAX_BITS or x_words.shape[0] % bits:
        raise ValueError(
            f"bits must be 1 to {MAX_BITS} planes stacked on a batch of {x_words.shape[0]}, "
            f"got {bits}"
        )
    if _library() is None:
        return packing.sum_bit_planes(packing.conv_xnor(x_words, kernel, base, *geometry), bits)
    call, args, shape = _prepare(x_words, kernel, base, *geometry, isa, laid)
    (n, out_h, out_w), channels = shape, kernel.shape[1]
    result = jax.ShapeDtypeStruct((n // bits, out_h, out_w, channels), jnp.int32)
    return call("binflax_xnor_conv", result, *args, bits=np.int64(bits))


def conv_xnor_words(
    x_words: jax.Array,
    kernel: jax.Array,
    base: jax.Array,
    sense: jax.Array,
    limit: jax.Array,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    padding: Any,
    dilation: Sequence[int] = (1, 1),
    *,
    word_type: Any = np.uint32,
    isa: str | None = None,
    laid: Any = None,
) -> jax.Array:
    """:func:`conv_xnor` with the next layer's threshold fused: its packed input words.

    ``pack_bits(sense * acc < limit, word_type)`` for the per-channel ``int32`` ``sense``
    and ``limit`` of a binary consumer (:func:`binflax.export.chain.step_limits`), as
    ``chain.threshold_words`` computes it from the accumulator, which here never leaves
    the kernel: a chain of binary layers stays packed. ``word_type`` is ``uint32`` or
    ``uint64`` (the latter under ``jax.enable_x64``); ``laid`` as for :func:`conv_xnor`.
    """
    geometry = (kernel_size, strides, padding, dilation)
    if _library() is None:
        acc = packing.conv_xnor(x_words, kernel, base, *geometry)
        return packing.pack_bits(sense * acc < limit, word_type)
    call, args, shape = _prepare(x_words, kernel, base, *geometry, isa, laid)
    channels = kernel.shape[1]
    words = packing.packed_words(channels)
    if np.dtype(word_type) == np.uint64:
        words = -(-words // 2)
    result = jax.ShapeDtypeStruct((*shape, words), word_type)
    thresholds = [
        jnp.broadcast_to(jnp.asarray(v, jnp.int32).reshape(-1), (channels,)) for v in (sense, limit)
    ]
    return call("binflax_xnor_conv_words", result, *args, *thresholds)


def _prepare(x_words, kernel, base, kernel_size, strides, padding, dilation, isa, laid=None):
    """The checked operands, a caller of an FFI target (``_laid`` appended to its name where
    ``laid`` replaces the kernel) with the geometry's attributes, and the output's
    (N, H_out, W_out)."""
    forced = isa or _environment(ISAS)
    # Unforced calls carry code 0: the kernel picks the CPU's best path when it runs, so
    # a program exported on an AVX-512 machine still runs on an AVX2 one.
    code = ISAS[_resolve(forced)] if forced else AUTO
    x_words, kernel = jnp.asarray(x_words), jnp.asarray(kernel)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    n, h, w, words = x_words.shape
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)  # the dilated kernel's extent
    (top, bottom), (left, right) = packing.explicit_padding((h, w), span, strides, padding)
    out_h = (h + top + bottom - span[0]) // sh + 1
    out_w = (w + left + right - span[1]) // sw + 1
    rows32 = kh * kw * words * (2 if x_words.dtype == jnp.uint64 else 1)
    rows = -(-rows32 // 2) if kernel.dtype == jnp.uint64 else rows32
    if kernel.shape[0] != rows:
        raise ValueError(f"input patches have {rows} words, the kernel {kernel.shape[0]} rows")
    base = jnp.broadcast_to(jnp.asarray(base, jnp.int32), (out_h, out_w, kernel.shape[1]))
    attributes = dict(kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, top=top, left=left, isa=code)
    attributes = {k: np.int64(v) for k, v in attributes.items()}
    suffix = ""
    if laid is not None:
        size = laid_size(kernel.shape, kernel.dtype)
        if laid.shape != (size,) or laid.dtype != np.uint32:
            raise ValueError(
                f"laid must be layout_kernel's uint32 ({size},) array for a {kernel.dtype} "
                f"{tuple(kernel.shape)} kernel, got {laid.dtype} {tuple(laid.shape)}"
            )
        kernel, suffix = jnp.asarray(laid), "_laid"

    def call(
        target: str, result: jax.ShapeDtypeStruct, *operands: jax.Array, **extra: np.int64
    ) -> jax.Array:
        ffi = jax.ffi.ffi_call(target + suffix, result, vmap_method="sequential")
        return ffi(*operands, **attributes, **extra)

    return call, (x_words, kernel, base), (n, out_h, out_w)


# -- the int8 convolution (int8_kernel.cc) ----------------------------------------------


def int8_supported_isas() -> list[str]:
    """The int8 kernel's paths this CPU can run, best last; empty when unavailable."""
    library = _library()
    if library is None:
        return []
    order = ("portable", "avx2", "avx_vnni", "avx512_vnni")
    return [name for name in order if library.binflax_int8_isa_supported(INT8_ISAS[name])]


def int8_isa(requested: str | None = None) -> str:
    """The int8 kernel's path for a call: ``requested``, else ``$BINFLAX_NATIVE_ISA`` where
    it names an int8 path, else the best this CPU supports (as :func:`isa`)."""
    library = _library()
    if library is None:
        raise RuntimeError("binflax.native: the kernel is unavailable")
    return _pick(
        requested,
        INT8_ISAS,
        library.binflax_int8_best_isa,
        library.binflax_int8_isa_supported,
        "int8 kernel's ",
    )


def _pick(requested, paths: dict[str, int], best, supported, what: str) -> str:
    """``requested``, else ``$BINFLAX_NATIVE_ISA`` where it names one of ``paths``, else
    the CPU's ``best()``; an unknown or unsupported path is a ``ValueError``."""
    requested = requested or _environment(paths)
    if requested is None:
        code = best()
        return next(name for name, c in paths.items() if c == code)
    if requested not in paths:
        kind = "int8 " if paths is INT8_ISAS else ""
        raise ValueError(f"unknown {kind}ISA {requested!r}; expected one of {sorted(paths)}")
    if not supported(paths[requested]):
        raise ValueError(f"this CPU cannot run the {what}{requested} path")
    return requested


def int8_laid_size(kernel_shape: Sequence[int]) -> int:
    """The ``uint32`` length of :func:`layout_int8_kernel`'s buffer for an HWIO kernel: the
    header and the largest of the paths' layouts, so the same on every CPU."""
    kh, kw, cin, channels = kernel_shape
    pairs = kh * -(-kw * cin // 2)  # per kernel row, padded to pairs
    groups = [lanes * vectors for lanes, vectors in INT8_LAYOUTS.values()]
    values = max(-(-channels // group) * group * pairs * 2 for group in groups)
    return 2 * (LAID_HEADER + -(-values // 4))


def layout_int8_kernel(kernel: Any, *, isa: str | None = None) -> np.ndarray:
    """An ``int8`` HWIO kernel laid out once for the int8 kernel's path ``isa`` (default
    :func:`int8_isa`), for :func:`conv_int8`'s ``laid``: what an exported model does when
    it is loaded. A ``uint32`` array of :func:`int8_laid_size`: a header naming the path,
    the weights as int16 pairs of reduction steps per group of channels, zeros. A call on
    another path lays the weights out again from it, per call: slower, as exact."""
    library = _library()
    if library is None:
        raise RuntimeError("binflax.native: the kernel is unavailable")
    name = int8_isa() if isa is None else isa
    if name not in INT8_ISAS:
        raise ValueError(f"unknown int8 ISA {name!r}; expected one of {sorted(INT8_ISAS)}")
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.dtype != np.int8:
        raise ValueError(f"the kernel must be int8 HWIO, got {kernel.dtype} {kernel.shape}")
    matrix = np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]))
    out = np.zeros(int8_laid_size(kernel.shape) // 2, np.uint64)
    run = kernel.shape[1] * kernel.shape[2]  # kw * C_in: one kernel row's weights
    status = library.binflax_layout_int8_kernel(
        INT8_ISAS[name], matrix.ctypes.data, matrix.shape[0], run, matrix.shape[1],
        out.ctypes.data, out.size,
    )  # fmt: skip
    if status != 0:
        raise ValueError(f"binflax.native: could not lay out a {kernel.shape} int8 kernel")
    return out.view(np.uint32)


def conv_int8(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int],
    padding: Any,
    dilation: Sequence[int] = (1, 1),
    *,
    laid: Any = None,
    isa: str | None = None,
) -> jax.Array:
    """:func:`binflax.packing.conv_int8` (one group) as one native custom call: the same
    ``int32`` (N, H_out, W_out, C_out) ``sum(x * w)`` over each zero-padded patch, exactly.

    ``x`` is ``int8`` NHWC, ``kernel`` ``int8`` HWIO; padding ``"SAME"``, ``"VALID"`` or
    explicit pairs. ``laid``, the kernel laid out ahead by :func:`layout_int8_kernel`,
    spares the call the weights' layout (the kernel then gives the shapes and the
    fallback). ``isa`` forces a path (:func:`int8_isa`). Falls back to
    ``packing.conv_int8`` when the kernel is unavailable. Traceable under ``jax.jit``.
    """
    if _library() is None:
        return packing.conv_int8(x, kernel, strides, padding, dilation)
    forced = isa or _environment(INT8_ISAS)
    code = INT8_ISAS[int8_isa(forced)] if forced else AUTO
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    if x.dtype != jnp.int8 or kernel.dtype != jnp.int8:
        raise ValueError(f"x and the kernel must be int8, got {x.dtype} and {kernel.dtype}")
    kh, kw, cin, channels = kernel.shape
    n, h, w, c = x.shape
    if c != cin:
        raise ValueError(f"the input has {c} channels, the kernel {cin} (one group only)")
    (sh, sw), (dh, dw) = strides, dilation
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    (top, bottom), (left, right) = packing.explicit_padding((h, w), span, strides, padding)
    out_h = (h + top + bottom - span[0]) // sh + 1
    out_w = (w + left + right - span[1]) // sw + 1
    attributes = dict(kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, top=top, left=left, isa=code)
    attributes = {k: np.int64(v) for k, v in attributes.items()}
    target, operand = "binflax_int8_conv", kernel
    if laid is not None:
        size = int8_laid_size(kernel.shape)
        if laid.shape != (size,) or laid.dtype != np.uint32:
            raise ValueError(
                f"laid must be layout_int8_kernel's uint32 ({size},) array for a "
                f"{tuple(kernel.shape)} kernel, got {laid.dtype} {tuple(laid.shape)}"
            )
        target, operand = "binflax_int8_conv_laid", jnp.asarray(laid)
    result = jax.ShapeDtypeStruct((n, out_h, out_w, channels), jnp.int32)
    call = jax.ffi.ffi_call(target, result, vmap_method="sequential")
    return call(x, operand, **attributes)
