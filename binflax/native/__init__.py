"""A native XNOR + popcount convolution behind ``jax.ffi``, exact to ``packing.conv_xnor``.

Why: XLA lowers the popcount convolution to byte lookups it can neither block for
registers nor widen lazily; ``xnor_kernel.cc`` does both, with AVX-512 (VPOPCNTDQ), AVX2
and portable code paths in one object chosen at run time (docs/native.md).

    from binflax import native

    native.available()  # builds the kernel on first use (seconds), then loads it from cache
    acc = native.conv_xnor(x_words, kernel, base, (3, 3), (1, 1), "SAME")

:func:`conv_xnor` takes the arguments of :func:`binflax.packing.conv_xnor` and returns the
same ``int32`` accumulator. Where the kernel cannot be built (no compiler, or the build
fails) binflax warns once and :func:`conv_xnor` runs ``packing.conv_xnor`` instead.

The path is the best the CPU running the call supports (chosen by the kernel at run
time, so an exported program moves between CPUs), or the one named by the ``isa``
argument or, when that is ``None``, by ``$BINFLAX_NATIVE_ISA`` (``avx512_vpopcntdq``,
``avx2``, ``portable``), read when a function is traced: the tests force each path this
way.
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
}
# The C++ side's codes for its paths (enum Isa in xnor_kernel.cc).
ISAS = {"portable": 1, "avx2": 2, "avx512_vpopcntdq": 3}
AUTO = 0  # kAuto: the best path of the CPU the call runs on
ISA_ENV = "BINFLAX_NATIVE_ISA"


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
    for name in ("binflax_best_isa", "binflax_isa_supported"):
        getattr(library, name).restype = ctypes.c_int64
    library.binflax_isa_supported.argtypes = [ctypes.c_int64]
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
    return [name for name, code in ISAS.items() if library.binflax_isa_supported(code)]


def isa(requested: str | None = None) -> str:
    """The code path a call runs: ``requested``, else ``$BINFLAX_NATIVE_ISA``, else the best
    this CPU supports. Raises ``ValueError`` for an unknown or unsupported path and
    ``RuntimeError`` when the kernel is unavailable."""
    return _resolve(requested)


def _resolve(requested: str | None) -> str:
    library = _library()
    if library is None:
        raise RuntimeError("binflax.native: the kernel is unavailable")
    requested = requested or os.environ.get(ISA_ENV) or None
    if requested is None:
        code = library.binflax_best_isa()
        return next(name for name, c in ISAS.items() if c == code)
    if requested not in ISAS:
        raise ValueError(f"unknown ISA {requested!r}; expected one of {sorted(ISAS)}")
    if not library.binflax_isa_supported(ISAS[requested]):
        raise ValueError(f"this CPU cannot run the {requested} path")
    return requested


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
) -> jax.Array:
    """:func:`binflax.packing.conv_xnor` as one native custom call: the same ``int32``
    (N, H_out, W_out, C_out) accumulator, ``base - 2 * popcount(patch XOR kernel)``.

    ``x_words`` is NHW(words) in ``uint32`` or ``uint64`` (:func:`packing.xnor_word_type`),
    ``kernel`` the ``(P, C_out)`` matrix of :func:`packing.xnor_kernel` (or its ``uint32``
    rows), ``base`` from :func:`packing.xnor_base`. ``isa`` forces a code path (see
    :func:`isa`). Falls back to ``packing.conv_xnor`` when the kernel is unavailable.
    Traceable under ``jax.jit``; the geometry arguments are static.
    """
    geometry = (kernel_size, strides, padding, dilation)
    if _library() is None:
        return packing.conv_xnor(x_words, kernel, base, *geometry)
    call, args, shape = _prepare(x_words, kernel, base, *geometry, isa)
    (n, out_h, out_w), channels = shape, kernel.shape[1]
    result = jax.ShapeDtypeStruct((n, out_h, out_w, channels), jnp.int32)
    return call("binflax_xnor_conv", result, *args)


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
) -> jax.Array:
    """:func:`conv_xnor` with the next layer's threshold fused: its packed input words.

    ``pack_bits(sense * acc < limit, word_type)`` for the per-channel ``int32`` ``sense``
    and ``limit`` of :func:`binflax.export.chain.sign_limits`, as
    ``chain.threshold_words`` computes it from the accumulator, which here never leaves
    the kernel: a chain of binary layers stays packed. ``word_type`` is ``uint32`` or
    ``uint64`` (the latter under ``jax.enable_x64``).
    """
    geometry = (kernel_size, strides, padding, dilation)
    if _library() is None:
        acc = packing.conv_xnor(x_words, kernel, base, *geometry)
        return packing.pack_bits(sense * acc < limit, word_type)
    call, args, shape = _prepare(x_words, kernel, base, *geometry, isa)
    channels = kernel.shape[1]
    words = packing.packed_words(channels)
    if np.dtype(word_type) == np.uint64:
        words = -(-words // 2)
    result = jax.ShapeDtypeStruct((*shape, words), word_type)
    thresholds = [
        jnp.broadcast_to(jnp.asarray(v, jnp.int32).reshape(-1), (channels,)) for v in (sense, limit)
    ]
    return call("binflax_xnor_conv_words", result, *args, *thresholds)


def _prepare(x_words, kernel, base, kernel_size, strides, padding, dilation, isa):
    """The checked operands, a caller of an FFI target with the geometry's attributes, and
    the output's (N, H_out, W_out)."""
    forced = isa or os.environ.get(ISA_ENV)
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

    def call(target: str, result: jax.ShapeDtypeStruct, *operands: jax.Array) -> jax.Array:
        ffi = jax.ffi.ffi_call(target, result, vmap_method="sequential")
        return ffi(*operands, **attributes)

    return call, (x_words, kernel, base), (n, out_h, out_w)
