"""The integer inference path: every planned layer computed from exported arrays.

Why a program and not a second model definition: networks differ in shortcuts,
concatenations, pools and the user's own modules, and writing each again for inference
would make two versions to keep in step. At export, :func:`program` runs the network
itself with every planned layer handed to :func:`layer_forward` (through
:func:`binflax.tracing.intercept`); everything else - ReLU, pooling, shortcuts, a
network's own batch norms - runs as the network defines it, from the variables it keeps
outside its planned layers. ``jax.export`` records that computation as a StableHLO
program (:mod:`~binflax.export.writer`), so a loaded file runs without the
network's Python class.

A layer with binary inputs and binary weights (an XNOR layer) runs as exact integer
arithmetic on +-1 values, with the arithmetic :mod:`~binflax.export.arithmetic` picks
(``"auto"``) or the one forced:

- ``"int8"``: an int8 convolution with int32 accumulation;
- ``"int8_dot"``: im2col and one int8 matrix product per group with int32 accumulation;
- ``"popcount"``: XNOR + popcount on 64-bit packed words (:func:`binflax.packing.conv_xnor`);
- ``"native"``: the same packed words through binflax's C++ kernel
  (:func:`binflax.native.conv_xnor`, a ``jax.ffi`` custom call on the CPU).

All give the same int32 accumulator, which is then multiplied by alpha (and by XNOR-Net's
K map where the layer scales its output). With packed links an XNOR layer whose output
feeds a popcount (or native) layer only through ReLU and max pooling writes that layer's
packed input directly from its accumulator (:mod:`~binflax.export.chain`); the native
kernel writes it from inside the kernel (:func:`binflax.native.conv_xnor_words`), so the
accumulator never reaches memory. Float-input layers run a
float conv with their folded kernel (for binary weights, the +-1 kernel times alpha and
the folded batch norm), as XLA's convolution or as im2col and a matrix product
(:func:`binflax.export.arithmetic.float_lowering`).

Layers compute in their 2-D view (:meth:`binflax.geometry.Geometry.as_2d`): a dense layer
as a 1x1 conv, a 1-D conv on one row; groups, dilation and circular or reflect padding
as the layer has them. The popcount's 64-bit words need ``jax_enable_x64``, which the
caller enables around tracing and calling a program.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from binflax import activations, native, packing, planned, quantizers, tracing
from binflax.export import arithmetic as arithmetic_lib
from binflax.export import chain as chain_lib
from binflax.export.format import ExportError
from binflax.geometry import Geometry2D
from binflax.tracing import LayerInfo

# The XNOR arithmetics on packed words: they share their arrays and can chain.
PACKED = ("popcount", "native")
# The arrays that decide a linked consumer's level from its producer's accumulator.
LEVEL_ARRAYS = ("scale", "input_step", "direction", "threshold", "input_shift",
                "norm_mean", "norm_var", "norm_scale", "norm_bias")  # fmt: skip
# The computations that call binflax's native kernels: a program with one is CPU-only.
NATIVE = ("native", "native_int8")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One program of an export: how every planned layer computes, and the packed links."""

    computations: tuple[tuple[str, str], ...]  # (layer, arithmetic or float lowering)
    links: tuple[chain_lib.Link, ...] = ()

    def computation(self, name: str) -> str:
        return dict(self.computations)[name]

    @property
    def uses_native(self) -> bool:
        """Whether a layer calls a native kernel (the program then runs on the CPU only)."""
        return any(c in NATIVE for _, c in self.computations)


def variant(
    layers: Sequence[LayerInfo],
    links: Sequence[chain_lib.Link],
    arithmetic: str,
    chain: bool,
    backend: str = "cpu",
) -> Variant:
    """What each layer runs for XNOR ``arithmetic`` (``"auto"``: each XNOR layer by
    :func:`arithmetic.xnor_arithmetic`, the native kernel included); float-input layers
    take the lowering measured fastest on ``backend`` at batch 1. With ``chain``, a link
    is used where its producer and consumer both run on packed words and it pays
    (:func:`arithmetic.link_pays`)."""
    computations = {}
    for info in layers:
        g = geometry_2d(info)
        if layer_kind(info) == "integer":
            computations[info.name] = arithmetic_lib.integer_arithmetic(
                arithmetic,
                info.precision.input_bits,
                info.precision.binary_weight,
                exact_in_float(info),
                g.fully_connected,
                backend,
                native_int8=native_int8_runs(info, g),
            )
        elif info.precision.xnor and arithmetic == "auto":
            computations[info.name] = arithmetic_lib.xnor_arithmetic(backend, native=True)
        elif info.precision.xnor:
            computations[info.name] = arithmetic
        else:
            plain = g.groups == 1 and g.dilation == (1, 1)
            lowering = arithmetic_lib.float_lowering(g.fully_connected, g.output_pixels(), backend)
            computations[info.name] = lowering if plain else "conv"
    bits = {info.name: info.precision.input_bits for info in layers}
    used = tuple(
        link
        for link in links
        if chain
        and computations[link.producer] in PACKED
        and computations[link.consumer] in PACKED
        and arithmetic_lib.link_pays(
            bits[link.consumer], computations[link.producer], computations[link.consumer]
        )
    )
    return Variant(tuple(computations.items()), used)


def layer_kind(info: LayerInfo) -> str:
    """``"xnor"`` (binary input and weights), ``"integer"`` (any other quantized input on
    binary or 8-bit weights: exact integer accumulators) or ``"float"`` (a float input, or
    a quantized input on float weights, convolved in float)."""
    if info.precision.xnor:
        return "xnor"
    if info.precision.quantized_input and info.precision.weight != "float":
        return "integer"
    return "float"


def exact_in_float(info: LayerInfo) -> bool:
    """Whether an integer unit's accumulator, ``sum(level * w)`` over a patch, stays below
    2**24 in magnitude at every partial sum, so that float32 computes it exactly."""
    *taps, cin, _ = info.kernel_shape
    level = 2 ** (info.precision.input_bits - 1)
    weight = 1 if info.precision.binary_weight else 127
    return math.prod(taps) * cin * level * weight < arithmetic_lib.FLOAT32_EXACT


def native_int8_runs(info: LayerInfo, g: Geometry2D) -> bool:
    """Whether the native int8 kernel can run an integer unit: 8-bit weights, or an input
    of more bits than run as planes on binary weights (their +-1 as int8 codes); one group;
    the kernel built."""
    precision = info.precision
    planes = arithmetic_lib.max_planes(g.fully_connected)
    codes = not precision.binary_weight or precision.input_bits > planes
    return codes and g.groups == 1 and native.available()


def geometry_2d(info: LayerInfo) -> Geometry2D:
    """The layer's 2-D view at its traced input size; an ExportError names a layer the
    integer path cannot run."""
    try:
        return info.geometry.as_2d(info.input_shape)
    except ValueError as e:
        raise ExportError(f"layer {info.name!r} cannot be exported: {e}") from None


# -- arrays, prepared once per program -------------------------------------------------


def prepare(
    layers: Sequence[LayerInfo],
    stored: Mapping[str, Mapping[str, np.ndarray]],
    plan: Variant,
    memo: dict | None = None,
) -> dict:
    """The per-layer arrays ``plan``'s program takes, from the file's arrays (NumPy only).

    What a deployment does once when it loads a model: kernels go from the file's OHWI
    to the layout each computation takes (HWIO for convolutions, int8 signs for the int8
    arithmetics, the im2col word matrix and its padding base per group for the popcount,
    (C_out, K) for a matrix product), and the packed links get their integer thresholds.
    ``memo`` keeps each layer's arrays per computation across the variants of one export.
    """
    missing = sorted({info.name for info in layers} - set(stored))
    if missing:
        raise ExportError(f"the export has no arrays for layer(s) {', '.join(missing)}")
    by_name = {info.name: info for info in layers}
    memo = {} if memo is None else memo
    prepared = {}
    for info in layers:
        computation = plan.computation(info.name)
        key = (info.name, computation)
        if key not in memo:
            memo[key] = _layer_arrays(info, dict(stored[info.name]), key[1])
        prepared[info.name] = dict(memo[key])
    for link in plan.links:
        prepared[link.producer].setdefault("to", {})[link.consumer] = _link_arrays(
            link, by_name, stored
        )
    return prepared


def _link_arrays(
    link: chain_lib.Link, layers: Mapping[str, LayerInfo], stored: Mapping[str, Mapping]
) -> dict[str, np.ndarray]:
    """The integer thresholds that turn ``link``'s producer accumulator into its
    consumer's input: ``sense`` and ``limit`` (:func:`chain.step_limits`: ``(C,)`` for a
    binary consumer, ``(2**k - 1, C)`` for a k-bit one), and how each channel max-pools its
    threshold words (``and_mask``: AND where the level rises with the producer's output,
    OR where it falls).

    The levels are found with the unlinked program's own float operations (the
    producer's ``acc * [half step] * scale``, the ReLU, the consumer's folded sign or
    normalisation and quantizer), compiled by XLA with the arrays as arguments as the
    program has them, so every accumulator gets the level the unlinked program gives it."""
    producer, consumer = layers[link.producer], layers[link.consumer]
    p_arrays, c_arrays = stored[link.producer], stored[link.consumer]
    kh, kw, cin, channels = producer.kernel_shape
    bound = kh * kw * cin * (2**producer.precision.input_bits - 1)
    count = 2**consumer.precision.input_bits - 1

    def levels(p_arrays: Mapping, c_arrays: Mapping, acc: jax.Array) -> jax.Array:
        v = _accumulator_output(producer, p_arrays, acc.astype(jnp.int32))
        v = jnp.maximum(v, 0) if link.relu else v
        return unsigned_level(consumer, c_arrays, v)

    with jax.ensure_compile_time_eval():
        compiled = jax.jit(levels)
        arrays = [
            {k: jnp.asarray(v) for k, v in a.items() if k in LEVEL_ARRAYS}
            for a in (p_arrays, c_arrays)
        ]

        def evaluate(acc: np.ndarray) -> np.ndarray:
            return np.asarray(compiled(*arrays, jnp.asarray(acc, jnp.int32)))

        sense, limit = chain_lib.step_limits(evaluate, count, bound, channels)
        ends = evaluate(np.array([[-bound] * channels, [bound] * channels]))
        # Where the level falls as the producer's output rises, a max pool takes the least.
        extremes = np.array([[-bound], [bound]], np.int32)
        values = np.asarray(_accumulator_output(producer, p_arrays, extremes))
    rising_acc = values[1] >= values[0]
    falls = np.where(rising_acc, ends[1] < ends[0], ends[0] < ends[1])
    and_mask = chain_lib.pool_mask(np.where(falls, -1, 1))
    # A binary consumer's one limit row as (C,): the layout files written before k-bit
    # links store in their programs.
    return {"sense": sense, "limit": limit[0] if count == 1 else limit, "and_mask": and_mask}


def _layer_arrays(info: LayerInfo, arrays: dict[str, np.ndarray], computation: str) -> dict:
    g = geometry_2d(info)
    kernel, bits = arrays.pop("kernel", None), arrays.pop("kernel_bits", None)
    codes = arrays.pop("kernel_int8", None)
    cin, out_features = info.kernel_shape[-2:]
    group_out = out_features // g.groups
    if layer_kind(info) == "integer" and computation not in PACKED:
        kernel = packing.unpack_signs(bits, cin) if codes is None else codes  # int8 OHWI
        hwio = np.ascontiguousarray(kernel.transpose(1, 2, 3, 0))
        arrays["kernel"] = hwio.astype(np.float32) if computation == "exact_float" else hwio
        if computation == "native_int8":  # laid out here, once, for this CPU's path
            arrays["kernel_laid"] = native.layout_int8_kernel(hwio)
        arrays["correction"] = _valid_tap_sums(g, hwio)
        return arrays
    if codes is not None:  # 8-bit weights on a float input: the scale stays per channel
        kernel = codes.astype(np.float32)
    if computation in PACKED:
        groups = [bits[k * group_out : (k + 1) * group_out] for k in range(g.groups)]
        arrays["kernel_words"] = [packing.xnor_kernel(b) for b in groups]
        arrays["base"] = [
            packing.xnor_base(b, cin, g.spatial_shape, g.strides, g.padding, g.dilation)
            for b in groups
        ]
        if computation == "native":  # laid out here, once, for this CPU's path
            arrays["kernel_laid"] = [
                native.layout_kernel(k, isa=native_layout(g.fully_connected))
                for k in arrays["kernel_words"]
            ]
        return arrays
    if kernel is None and info.precision.xnor:
        kernel = packing.unpack_signs(bits, cin)  # int8 +-1
    elif kernel is None:  # +-1 weights, float input: alpha (and the folded BN) go in
        kernel = (
            packing.unpack_signs(bits, cin, np.float32) * arrays.pop("scale")[:, None, None, None]
        )
    if computation == "matmul":
        arrays["kernel_matrix"] = kernel.reshape(out_features, -1)  # (C_out, kh * kw * C_in)
    else:
        arrays["kernel"] = np.ascontiguousarray(kernel.transpose(1, 2, 3, 0))  # HWIO
    return arrays


def native_layout(fully_connected: bool) -> str:
    """The path a native XNOR unit's weights are laid out for at load (its calls run it):
    the one ``$BINFLAX_NATIVE_ISA`` forces, else :func:`arithmetic.xnor_layout`'s for this
    CPU's best path (``avx2_packed`` for a fully-connected unit on an AVX2 CPU)."""
    forced = native.forced_isa()
    return (
        forced if forced is not None else arithmetic_lib.xnor_layout(fully_connected, native.isa())
    )


def _valid_tap_sums(g: Geometry2D, hwio: np.ndarray) -> np.ndarray:
    """``sum(w)`` over the taps of each output pixel's patch that fall inside the map
    (H_out, W_out, C_out), ``int32``: the half steps an integer unit adds to twice its
    levels' accumulator, as a level ``i`` stands for the input ``2 i + 1`` half steps and a
    tap in the zero padding for none."""
    (kh, kw), (sh, sw), (dh, dw) = g.kernel_size, g.strides, g.dilation
    (top, bottom), (left, right) = g.padding
    inside = np.pad(np.ones(g.spatial_shape, np.int64), ((top, bottom), (left, right)))
    out_h = (inside.shape[0] - (kh - 1) * dh - 1) // sh + 1
    out_w = (inside.shape[1] - (kw - 1) * dw - 1) // sw + 1
    tap_sums = hwio.astype(np.int64).sum(axis=2)  # (kh, kw, C_out): each tap over its inputs
    total = np.zeros((out_h, out_w, hwio.shape[-1]), np.int64)
    for a in range(kh):
        for b in range(kw):
            rows = inside[a * dh : a * dh + (out_h - 1) * sh + 1 : sh]
            taps = rows[:, b * dw : b * dw + (out_w - 1) * sw + 1 : sw]
            total += taps[:, :, None] * tap_sums[a, b]
    return total.astype(np.int32)


# -- the program --------------------------------------------------------------------


def program(model: nn.Module, layers: Sequence[LayerInfo], plan: Variant) -> Callable:
    """``forward(prepared, variables, images) -> logits``: ``model`` with every planned
    layer computed from its prepared arrays, the rest from ``variables`` (what the
    network keeps outside its planned layers). The function ``jax.export`` records."""
    infos = {info.name: info for info in layers}
    consumers: dict[str, list[chain_lib.Link]] = {}
    for link in plan.links:
        consumers.setdefault(link.producer, []).append(link)

    def forward(prepared: Mapping, variables: Mapping, images: jax.Array) -> jax.Array:
        packed: dict[str, jax.Array] = {}  # consumer -> its input words, from its producer

        def handler(call: tracing.PlannedCall) -> jax.Array:
            name = call.info.name
            if name not in infos:
                raise ExportError(f"layer {name!r} was not traced when the model was exported")
            outgoing = {
                link: packing.xnor_word_type(
                    prepared[link.consumer]["kernel_words"][0], infos[name].kernel_shape[-1]
                )
                for link in consumers.get(name, ())
            }
            y, words = run_layer(
                infos[name],
                prepared[name],
                call.x,
                plan.computation(name),
                packed.pop(name, None),
                outgoing,
            )
            packed.update(words)
            return y

        with tracing.intercept(handler):
            return model.apply(dict(variables), images.astype(jnp.float32), train=False)

    return forward


def run_layer(
    info: LayerInfo,
    arrays: Mapping,
    x: jax.Array,
    computation: str,
    words: jax.Array | None = None,
    outgoing: Mapping[chain_lib.Link, type] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One planned layer as a program runs it: its float output, and for each link it
    produces (``outgoing``: link -> the consumer's word type) the consumer's packed input.

    ``words`` is this layer's own packed input where a producer wrote it (``x`` then only
    gives the shape). The float output is unused where every consumer reads words, and
    XLA drops it (the native custom call has no side effect)."""
    if words is None and not outgoing:
        return layer_forward(info, arrays, x, computation), {}
    if layer_kind(info) == "xnor":
        acc = integer_accumulator(info, arrays, x, computation, words)
        y = acc
    else:  # a k-bit input on binary weights, as bit planes
        if words is None:
            levels, _ = input_levels(info, arrays, x)
            acc = level_accumulator(info, arrays, levels, computation)
        else:
            bits = info.precision.input_bits
            acc = _packed_conv(geometry_2d(info), arrays, [words], computation, bits)
        y = acc.astype(x.dtype) * half_step(info, arrays, x.dtype)
    packed = {}
    for link, word_type in (outgoing or {}).items():
        packed[link.consumer] = _consumer_input(info, arrays, x, words, acc, link, word_type,
                                                computation)  # fmt: skip
    return _finish(info, arrays, x, y), packed


def _consumer_input(
    info: LayerInfo,
    arrays: Mapping,
    x: jax.Array,
    words: jax.Array | None,
    acc: jax.Array,
    link: chain_lib.Link,
    word_type,
    computation: str,
) -> jax.Array:
    """``link``'s consumer input from this producer's accumulator: one packed word per
    consumer threshold (for a binary consumer, written inside the native kernel where an
    XNOR producer runs on it), max-pooled on the words, as the consumer's sign or planes
    (:func:`chain.level_planes`)."""
    to = arrays["to"][link.consumer]
    limits = to["limit"] if to["limit"].ndim == 2 else to["limit"][None]  # (2**k - 1, C)
    if computation == "native" and layer_kind(info) == "xnor" and len(limits) == 1:
        below = [_native_words(info, arrays, x, words, to, word_type)]
    else:
        below = [chain_lib.threshold_words(acc, to["sense"], lim, word_type) for lim in limits]
    if link.pool is not None:
        below = [chain_lib.max_pool_words(w, to["and_mask"], link.pool) for w in below]
    return chain_lib.level_planes(below)


def _accumulator_output(info: LayerInfo, arrays: Mapping, acc: jax.Array) -> jax.Array:
    """A linkable unit's float output for its ``int32`` accumulator, as :func:`run_layer`
    computes it (no K map, bias or RPReLU: :func:`chain.find_links`), element-wise."""
    y = acc.astype(jnp.float32)
    if layer_kind(info) == "integer":
        y = y * half_step(info, arrays, jnp.float32)
    return y * arrays["scale"] if "scale" in arrays else y


def unsigned_level(info: LayerInfo, arrays: Mapping, x: jax.Array) -> jax.Array:
    """The level a quantized-input unit gives its input ``x`` (any shape, channels last),
    ``int32`` from 0: 1 for a +1 sign and 0 for -1, or a k-bit level ``i`` plus
    ``2**(k-1)``, with the unlinked program's operations."""
    if info.precision.binary_input:
        return (binarize(x, arrays) > 0).astype(jnp.int32)
    return _k_bit_level(info, arrays, x).astype(jnp.int32) + 2 ** (info.precision.input_bits - 1)


def layer_forward(
    info: LayerInfo, arrays: Mapping[str, jax.Array], x: jax.Array, computation: str
) -> jax.Array:
    """One layer's output for its float input ``x``, from its arrays as :func:`prepare`
    gives them for ``computation``."""
    kind = layer_kind(info)
    if kind == "xnor":
        return _finish(info, arrays, x, integer_accumulator(info, arrays, x, computation))
    if kind == "integer":
        levels, half_step = input_levels(info, arrays, x)
        y = level_accumulator(info, arrays, levels, computation).astype(x.dtype) * half_step
        return _finish(info, arrays, x, y)
    g = geometry_2d(info)
    x2d = _view_2d(info, x)
    if info.precision.binary_input:
        inputs = binarize(x2d, arrays).astype(x.dtype)
    elif info.precision.quantized_input:
        levels, half_step = input_levels(info, arrays, x)
        inputs = (2 * levels + 1).astype(x.dtype) * half_step
    else:
        inputs = x2d
    y = _float_conv(g, arrays, g.pad(inputs), computation)
    return _finish(info, arrays, x, y)


def input_levels(
    info: LayerInfo, arrays: Mapping[str, jax.Array], x: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """A quantized input's integer levels ``i`` (``int32``, 2-D view) and the half step
    ``h``: the layer's input is ``(2 i + 1) h``. A binary input is the 1-bit case: ``i``
    is 0 for +1 and -1 for -1, and ``h`` is 1. A k-bit input is normalised and quantized
    with the model's own operations (:func:`binflax.quantizers.input_level`)."""
    if info.precision.binary_input:
        signs = binarize(_view_2d(info, x), arrays).astype(jnp.int32)
        return (signs - 1) // 2, jnp.ones((), x.dtype)
    _check_input(info, x)
    g = geometry_2d(info)
    levels = _k_bit_level(info, arrays, x).astype(jnp.int32)
    return levels.reshape(-1, *g.input_spatial, x.shape[-1]), half_step(info, arrays, x.dtype)


def _k_bit_level(info: LayerInfo, arrays: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
    """The k-bit level ``i`` (float) of ``x``, any shape with channels last: normalised
    and quantized with the model's own operations, the LSQ step's scale from the layer's
    per-example input size (as the model computes it, whatever ``x``'s shape)."""
    step = arrays["input_step"].astype(x.dtype)[0]
    features = math.prod(info.input_shape[1:])
    return quantizers.input_level(_normalised(arrays, x), step, info.precision.input_bits, features)


def half_step(info: LayerInfo, arrays: Mapping[str, jax.Array], dtype) -> jax.Array:
    """Half the k-bit quantizer's step as the model computes it
    (:func:`binflax.quantizers.lsq_step`, whose gradient scale depends on the size of one
    example's input and reaches the value's last bit)."""
    step = arrays["input_step"].astype(dtype)[0]
    features = math.prod(info.input_shape[1:])
    return quantizers.lsq_step(step, step, info.precision.input_bits, features) / 2


def _normalised(arrays: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
    """A k-bit input before its quantizer: flax.linen.BatchNorm's inference, operation
    by operation, or ReActNet's learned shift, or ``x`` itself."""
    if "norm_mean" in arrays:
        scale = lax.rsqrt(arrays["norm_var"] + planned.BN_EPSILON) * arrays["norm_scale"]
        return (x - arrays["norm_mean"]) * scale + arrays["norm_bias"]
    if "input_shift" in arrays:
        return x - arrays["input_shift"]
    return x


def level_accumulator(
    info: LayerInfo, arrays: Mapping[str, jax.Array], levels: jax.Array, arithmetic: str
) -> jax.Array:
    """An integer unit's exact ``int32`` accumulator in half steps, ``sum((2 i + 1) w)``
    over each patch's taps inside the map, from the input's levels ``i`` (2-D view).

    On packed words (binary weights): the level's ``k`` bits are ``k`` sign planes, ``2 i
    + 1 = sum_j 2**j b_j`` with ``b_j = +1`` where bit ``j`` of ``i + 2**(k-1)`` is set, so
    the accumulator is ``sum_j 2**j`` of each plane's XNOR popcount (the planes stacked on
    the batch axis: one native call sums them, :func:`binflax.native.conv_xnor`'s
    ``bits``; XLA's popcount sums its accumulators after). Otherwise ``2 conv(i, w)``
    plus the kernel summed over the taps inside the map (``correction``), as XLA's int8
    convolution, binflax's native int8 kernel (``"native_int8"``,
    :func:`binflax.native.conv_int8`, its weights laid out at load) or, exact below 2**24,
    a float32 convolution."""
    g = geometry_2d(info)
    if arithmetic in PACKED:
        bits = info.precision.input_bits
        unsigned = levels + 2 ** (bits - 1)
        negative = jnp.concatenate([(unsigned >> j) & 1 == 0 for j in range(bits)])
        cin = info.kernel_shape[-2]
        words = [
            packing.pack_bits(
                negative[..., k * cin : (k + 1) * cin], packing.xnor_word_type(kernel, cin)
            )
            for k, kernel in enumerate(arrays["kernel_words"])
        ]
        return _packed_conv(g, arrays, words, arithmetic, bits)
    x = g.pad(levels)
    kernel = arrays["kernel"]
    if arithmetic == "exact_float":
        acc = _float_conv(g, {"kernel": kernel}, x.astype(jnp.float32), "conv")
        acc = jnp.round(acc).astype(jnp.int32)
    elif arithmetic == "native_int8":
        acc = native.conv_int8(x.astype(jnp.int8), kernel, g.strides, g.padding, g.dilation,
                               laid=arrays.get("kernel_laid"))  # fmt: skip
    else:
        acc = packing.conv_int8(x, kernel, g.strides, g.padding, g.dilation, g.groups)
    return 2 * acc + arrays["correction"]


def binarize(x: jax.Array, arrays: Mapping[str, jax.Array]) -> jax.Array:
    """``sign(norm(x))`` as int8 +-1 from the folded threshold (plain ``sign(x)`` without one)."""
    if "threshold" not in arrays:
        return jnp.where(x >= 0, 1, -1).astype(jnp.int8)
    direction = arrays["direction"].astype(x.dtype)
    return jnp.where(direction * x >= direction * arrays["threshold"], 1, -1).astype(jnp.int8)


def integer_accumulator(
    info: LayerInfo,
    arrays: Mapping[str, jax.Array],
    x: jax.Array,
    arithmetic: str,
    words: jax.Array | None = None,
) -> jax.Array:
    """An XNOR layer's int32 accumulator (2-D view) for its float input ``x`` (binarized
    here) or, for the packed arithmetics, for the packed ``words`` its producer wrote."""
    g = geometry_2d(info)
    cin = info.kernel_shape[-2]
    if arithmetic in PACKED:
        return _packed_conv(g, arrays, _input_words(info, arrays, x, words), arithmetic)
    signs = g.pad(binarize(_view_2d(info, x), arrays))
    kernel = arrays["kernel"]
    if arithmetic == "int8":
        return packing.conv_int8(signs, kernel, g.strides, g.padding, g.dilation, g.groups)
    group_out = kernel.shape[-1] // g.groups
    return _concat(
        [
            packing.conv_int8_dot(
                signs[..., k * cin : (k + 1) * cin],
                kernel[..., k * group_out : (k + 1) * group_out],
                g.strides,
                g.padding,
                g.dilation,
            )
            for k in range(g.groups)
        ]
    )


def _packed_conv(
    g: Geometry2D,
    arrays: Mapping[str, jax.Array],
    words: Sequence[jax.Array],
    arithmetic: str,
    bits: int = 1,
) -> jax.Array:
    """The packed arithmetic's ``int32`` accumulator of each group's input ``words``
    (``bits`` sign planes stacked on the batch axis, summed), concatenated: the native
    kernel with the weights laid out at load (prepare), or XLA's popcount."""
    kernels = arrays["kernel_words"]
    laid_out = arrays.get("kernel_laid", [None] * len(kernels))
    geometry = (g.kernel_size, g.strides, g.padding, g.dilation)
    parts = []
    for w, kernel, base, laid in zip(words, kernels, arrays["base"], laid_out, strict=True):
        if arithmetic == "native":
            parts.append(native.conv_xnor(g.pad(w), kernel, base, *geometry, laid=laid, bits=bits))
        else:
            acc = packing.conv_xnor(g.pad(w), kernel, base, *geometry)
            parts.append(packing.sum_bit_planes(acc, bits))
    return _concat(parts)


def _input_words(
    info: LayerInfo, arrays: Mapping[str, jax.Array], x: jax.Array, words: jax.Array | None
) -> list[jax.Array]:
    """An XNOR layer's packed input words per group: its producer's, else ``x``'s signs."""
    if words is not None:
        return [words]
    cin = info.kernel_shape[-2]
    signs = binarize(_view_2d(info, x), arrays)
    return [
        packing.pack_bits(
            signs[..., k * cin : (k + 1) * cin] < 0,
            packing.xnor_word_type(kernel, cin),
        )
        for k, kernel in enumerate(arrays["kernel_words"])
    ]


def _native_words(
    info: LayerInfo,
    arrays: Mapping[str, jax.Array],
    x: jax.Array,
    words: jax.Array | None,
    to: Mapping[str, jax.Array],
    word_type,
) -> jax.Array:
    """A linked producer's consumer input, thresholded and packed inside the native kernel
    (linked layers have one group and no pre-padding: :func:`chain.find_links`)."""
    g = geometry_2d(info)
    (w,) = _input_words(info, arrays, x, words)
    (kernel,), (base,) = arrays["kernel_words"], arrays["base"]
    (laid,) = arrays.get("kernel_laid", [None])
    return native.conv_xnor_words(
        w, kernel, base, to["sense"], to["limit"], g.kernel_size, g.strides, g.padding,
        g.dilation, word_type=word_type, laid=laid,
    )  # fmt: skip


def _concat(parts: list[jax.Array]) -> jax.Array:
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def _view_2d(info: LayerInfo, x: jax.Array) -> jax.Array:
    """``x`` as the NHWC map of the layer's 2-D view (extra batch axes folded into N)."""
    g = geometry_2d(info)
    _check_input(info, x)
    return x.reshape(-1, *g.input_spatial, x.shape[-1])


def _check_input(info: LayerInfo, x: jax.Array) -> None:
    if tuple(x.shape[1:]) != tuple(info.input_shape[1:]):
        raise ExportError(
            f"layer {info.name!r} gets an input of shape {tuple(x.shape)}; it was exported "
            f"for {tuple(info.input_shape[1:])} per example"
        )


def _finish(
    info: LayerInfo, arrays: Mapping[str, jax.Array], x: jax.Array, y: jax.Array
) -> jax.Array:
    """``y [* K] [* scale] [+ bias]``, then ``[RPReLU]``, in the layer's own output shape:
    the rest of the layer after its convolution, in float."""
    y = y.reshape(x.shape[0], *info.output_shape[1:]).astype(x.dtype)
    if info.scale_inputs:
        normed = x * arrays["bn_scale"] + arrays["bn_shift"]
        y = y * planned.k_map(info.geometry, normed)
    if "scale" in arrays:
        y = y * arrays["scale"]
    if "bias" in arrays:
        y = y + arrays["bias"]
    if "rprelu_beta" in arrays:
        y = activations.rprelu(
            y, arrays["rprelu_gamma"], arrays["rprelu_beta"], arrays["rprelu_zeta"]
        )
    return y


def _float_conv(
    g: Geometry2D, arrays: Mapping[str, jax.Array], x: jax.Array, computation: str
) -> jax.Array:
    """A float-input layer's convolution, as XLA's conv or as im2col and a matrix product."""
    if computation == "matmul":
        patches = packing.im2col(x, g.kernel_size, g.strides, g.padding)
        return lax.dot_general(
            patches, arrays["kernel_matrix"].astype(x.dtype), (((3,), (1,)), ((), ()))
        )
    return lax.conv_general_dilated(
        x,
        arrays["kernel"].astype(x.dtype),
        g.strides,
        g.padding,
        rhs_dilation=g.dilation,
        dimension_numbers=packing.DIMENSION_NUMBERS,
        feature_group_count=g.groups,
    )
