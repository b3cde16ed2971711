"""The integer inference path: the model's own topology, every unit run from exported arrays.

Why intercept instead of a second model definition: the networks differ in shortcuts,
fire concatenations and pools, and writing each again for inference would make two
versions to keep in step. :func:`integer_forward` runs the Flax model itself under
``flax.linen.intercept_methods`` and replaces every ``HBNConv.__call__`` by a
computation from the exported arrays; ReLU, pooling, shortcuts and concatenation run
as the model defines them. No float variables are passed in.

A unit with binary inputs and binary weights (an XNOR unit) runs as exact integer
arithmetic on +-1 values, with the arithmetic :mod:`~binflax.export.arithmetic` picks
for it (``arithmetic="auto"``) or the one forced:

- ``"int8"``: an int8 convolution with int32 accumulation;
- ``"int8_dot"``: im2col and one int8 matrix product with int32 accumulation;
- ``"popcount"``: XNOR + popcount on 64-bit packed words (:func:`binflax.packing.conv_xnor`).

All give the same int32 accumulator, which is then multiplied by alpha (and by XNOR-Net's
K map when the model scales inputs). With ``chain=True`` an XNOR unit whose output feeds
a popcount unit only through ReLU and max pooling writes that unit's packed input
directly from its accumulator (:mod:`~binflax.export.chain`); its float output is then
unused and XLA drops it. Float-input units run a float conv with their folded kernel
(for binary weights, the +-1 kernel times alpha and the folded batch norm), as XLA's
convolution or as im2col and a matrix product (fully-connected layers written as convs,
small maps on the CPU: :func:`binflax.export.arithmetic.float_lowering`).

The popcount's 64-bit words need ``jax_enable_x64``, which :func:`integer_forward`
enables for the duration of its call only; call it eagerly (it compiles itself), not
inside another ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from binflax import packing, quantizers
from binflax.export import arithmetic as arithmetic_lib
from binflax.export import chain as chain_lib
from binflax.export.format import ExportError
from binflax.export.units import Unit, trace_units
from binflax.layers import HBNConv

if TYPE_CHECKING:
    from binflax.export.model_file import ExportedModel

ARITHMETICS = arithmetic_lib.ARITHMETICS


@dataclasses.dataclass(frozen=True)
class Program:
    """What runs where, for one input size: hashable, so a static argument of ``jax.jit``.

    ``arithmetics`` maps every XNOR unit to its arithmetic; ``links`` are the packed
    producer -> consumer pairs in use.
    """

    arithmetics: tuple[tuple[str, str], ...]
    links: tuple[chain_lib.Link, ...]

    def arithmetic(self, name: str) -> str:
        return dict(self.arithmetics)[name]


def integer_forward(
    exported: ExportedModel,
    images: jax.Array,
    *,
    arithmetic: str = "auto",
    chain: bool = True,
) -> jax.Array:
    """Logits of the exported model for NHWC ``images``, XNOR units in integer arithmetic.

    ``arithmetic`` is ``"auto"`` (:func:`binflax.export.arithmetic.choose`) or
    one of ``"int8"``, ``"int8_dot"``, ``"popcount"`` for every XNOR unit; ``chain``
    passes packed words between XNOR units where that is exact. Equals
    ``model.apply(variables, images, train=False)`` of the fake-quantized model up to
    float rounding (tests/test_export.py).
    """
    images = jnp.asarray(images)
    # 64-bit words for the popcount (binflax.packing.conv_xnor); only inside this call.
    with jax.enable_x64(True):
        program, arrays = prepare(exported, tuple(images.shape[1:]), arithmetic, chain)
        return _forward(exported.model, program, arrays, images)


def prepare(
    exported: ExportedModel,
    input_shape: Sequence[int],
    arithmetic: str = "auto",
    chain: bool = True,
) -> tuple[Program, dict]:
    """The program and the per-unit device arrays for inputs of ``input_shape`` (H, W, C).

    What a deployment does once when it loads the model, cached on ``exported``: kernels
    go from the file's OHWI to the layout each arithmetic takes (HWIO for convolutions,
    int8 signs for the int8 arithmetics, the im2col word matrix and its padding base for
    the popcount), and the packed links get their integer thresholds. Call it inside
    ``jax.enable_x64(True)``: the popcount kernels hold ``uint64`` words.
    """
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"unknown arithmetic {arithmetic!r}; choose one of {ARITHMETICS}")
    key = (tuple(input_shape), arithmetic, chain)
    if key not in exported.cache:
        exported.cache[key] = _build(exported, tuple(input_shape), arithmetic, chain)
    return exported.cache[key]


def _build(
    exported: ExportedModel, input_shape: tuple[int, ...], arithmetic: str, chain: bool
) -> tuple[Program, dict]:
    model = exported.model
    units = {unit.name: unit for unit in trace_units(model, input_shape)}
    backend = jax.default_backend()
    arithmetics = {
        name: arithmetic_lib.choose(backend) if arithmetic == "auto" else arithmetic
        for name, unit in units.items()
        if unit.precision.xnor
    }
    links = ()
    if chain:
        links = tuple(
            link
            for link in chain_lib.find_links(model, input_shape)
            if arithmetics[link.consumer] == "popcount"
        )
    stored = exported.layer_arrays()
    missing = sorted(set(units) - set(stored))
    if missing:
        raise ExportError(f"the export has no arrays for layer(s) {', '.join(missing)}")
    prepared = {
        name: _unit_arrays(
            unit,
            dict(stored[name]),
            arithmetics.get(name)
            or arithmetic_lib.float_lowering(unit.fully_connected, unit.pixels, backend),
        )
        for name, unit in units.items()
    }
    for link in links:
        producer, consumer = units[link.producer], stored[link.consumer]
        kh, kw, cin, cout = producer.kernel_shape
        direction = consumer.get("direction", np.ones(cout, np.int8))
        sense, limit = chain_lib.sign_limits(
            stored[link.producer]["scale"],
            consumer.get("threshold", np.zeros(cout, np.float32)),
            direction,
            relu=link.relu,
            bound=kh * kw * cin,
        )
        prepared[link.producer].setdefault("to", {})[link.consumer] = {
            "sense": sense,
            "limit": limit,
            "and_mask": chain_lib.pool_mask(direction),
        }
    program = Program(tuple(sorted(arithmetics.items())), links)
    with jax.ensure_compile_time_eval():  # arrays for the cache even under a trace
        return program, jax.device_put(prepared)


def _unit_arrays(unit: Unit, arrays: dict[str, np.ndarray], computation: str) -> dict:
    """One unit's stored arrays in the forms its computation takes: an XNOR arithmetic,
    or a float unit's lowering at batch 1 (``"conv"``: HWIO, ``"matmul"``: (C_out, K))."""
    kernel, bits = arrays.pop("kernel", None), arrays.pop("kernel_bits", None)
    cin, out_features = unit.kernel_shape[2:]
    if computation == "popcount":
        arrays["kernel_words"] = packing.xnor_kernel(bits)
        arrays["base"] = packing.xnor_base(bits, cin, unit.input_shape[1:3], unit.strides,
                                           unit.padding)  # fmt: skip
        return arrays
    if kernel is None and unit.precision.xnor:
        kernel = packing.unpack_signs(bits, cin)  # int8 +-1
    elif kernel is None:  # +-1 weights, float input: alpha (and the folded BN) go in
        kernel = (
            packing.unpack_signs(bits, cin, np.float32) * arrays.pop("scale")[:, None, None, None]
        )
    if computation == "matmul":
        arrays["kernel_matrix"] = kernel.reshape(out_features, -1)  # (C_out, kh * kw * C_in)
    else:
        arrays["kernel"] = kernel.transpose(1, 2, 3, 0)  # HWIO
    return arrays


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward(
    model: nn.Module,
    program: Program,
    layer_arrays: Mapping[str, Mapping[str, jax.Array]],
    images: jax.Array,
) -> jax.Array:
    consumers: dict[str, list[chain_lib.Link]] = {}
    for link in program.links:
        consumers.setdefault(link.producer, []).append(link)
    packed: dict[str, jax.Array] = {}  # consumer -> its input words, written by its producer

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if not (isinstance(module, HBNConv) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        name = "/".join(module.scope.path)
        arrays, x = layer_arrays[name], args[0]
        if not module.precision.xnor:
            return layer_forward(module, arrays, x)
        acc = integer_conv(module, arrays, x, program.arithmetic(name), packed.pop(name, None))
        for link in consumers.get(name, ()):
            to = arrays["to"][link.consumer]
            word_type = packing.xnor_word_type(layer_arrays[link.consumer]["kernel_words"],
                                               acc.shape[-1])  # fmt: skip
            words = chain_lib.threshold_words(acc, to["sense"], to["limit"], word_type)
            if link.pool is not None:
                words = chain_lib.max_pool_words(words, to["and_mask"], link.pool)
            packed[link.consumer] = words
        return _scale(module, arrays, x, acc.astype(x.dtype))

    with nn.intercept_methods(intercept):
        return model.apply({}, images.astype(jnp.float32), train=False)


def layer_forward(
    module: HBNConv, arrays: Mapping[str, jax.Array], x: jax.Array, arithmetic: str = "int8"
) -> jax.Array:
    """One unit's output for its float input ``x``, from its arrays as :func:`prepare`
    gives them for ``arithmetic`` (which matters for XNOR units only)."""
    if module.precision.xnor:
        acc = integer_conv(module, arrays, x, arithmetic)
        return _scale(module, arrays, x, acc.astype(x.dtype))
    inputs = binarize(x, arrays).astype(x.dtype) if module.precision.binary_input else x
    return _scale(module, arrays, x, _float_conv(module, arrays, inputs))


def binarize(x: jax.Array, arrays: Mapping[str, jax.Array]) -> jax.Array:
    """``sign(BN(x))`` as int8 +-1 from the folded threshold (plain ``sign(x)`` without one)."""
    if "threshold" not in arrays:
        return jnp.where(x >= 0, 1, -1).astype(jnp.int8)
    direction = arrays["direction"].astype(x.dtype)
    return jnp.where(direction * x >= direction * arrays["threshold"], 1, -1).astype(jnp.int8)


def integer_conv(
    module: HBNConv,
    arrays: Mapping[str, jax.Array],
    x: jax.Array,
    arithmetic: str,
    words: jax.Array | None = None,
) -> jax.Array:
    """An XNOR unit's int32 accumulator for its float input ``x`` (binarized here) or, for
    the popcount, for the packed ``words`` of that input when its producer wrote them."""
    _check_kernel(module, arrays, x.shape[-1])
    pads = _pads(module, x)
    if arithmetic == "popcount":
        if words is None:
            word_type = packing.xnor_word_type(arrays["kernel_words"], x.shape[-1])
            words = packing.pack_bits(binarize(x, arrays) < 0, word_type)
        return packing.conv_xnor(
            words, arrays["kernel_words"], arrays["base"], module.kernel_size, module.strides, pads
        )
    conv = packing.conv_int8 if arithmetic == "int8" else packing.conv_int8_dot
    return conv(binarize(x, arrays), arrays["kernel"], module.strides, pads)


def _scale(module: HBNConv, arrays: Mapping[str, jax.Array], x: jax.Array, y: jax.Array):
    """``y [* K] [* scale] [+ bias]``: the rest of the unit after its convolution."""
    if module.precision.binary_input and module.scale_inputs:
        normed = x * arrays["bn_scale"] + arrays["bn_shift"] if "bn_scale" in arrays else x
        y = y * quantizers.xnor_input_scale(
            normed, module.kernel_size, module.strides, module.padding
        )
    if "scale" in arrays:
        y = y * arrays["scale"]
    if "bias" in arrays:
        y = y + arrays["bias"]
    return y


def _float_conv(module: HBNConv, arrays: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
    """A float-input unit's convolution, as XLA's conv or as im2col and a matrix product
    (:func:`binflax.export.arithmetic.float_lowering` at this batch size)."""
    _check_kernel(module, arrays, x.shape[-1])
    kernel = arrays.get("kernel")
    if "kernel_matrix" in arrays:
        matrix = arrays["kernel_matrix"].astype(x.dtype)
        patches = packing.im2col(x, module.kernel_size, module.strides, module.padding)
        n, out_h, out_w, _ = patches.shape
        fully_connected = _pads(module, x) == ((0, 0), (0, 0)) and out_h == out_w == 1
        pixels = n * out_h * out_w
        if (
            arithmetic_lib.float_lowering(fully_connected, pixels, jax.default_backend())
            == "matmul"
        ):
            return lax.dot_general(patches, matrix, (((3,), (1,)), ((), ())))
        # A larger batch than the layout was chosen for: back to the convolution.
        kernel = matrix.reshape(-1, *module.kernel_size, x.shape[-1]).transpose(1, 2, 3, 0)
    return lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        module.strides,
        _pads(module, x),
        dimension_numbers=packing.DIMENSION_NUMBERS,
    )


def _pads(module: HBNConv, x: jax.Array) -> tuple[tuple[int, int], ...]:
    return packing.explicit_padding(
        x.shape[1:3], module.kernel_size, module.strides, module.padding
    )


def _check_kernel(module: HBNConv, arrays: Mapping[str, jax.Array], in_features: int) -> None:
    """An input whose channels do not fit the kernel is an error that names the layer."""
    kh, kw = module.kernel_size
    if "kernel_words" in arrays:
        rows = -(-kh * kw * packing.packed_words(in_features) // 2)
        field, expected = "kernel_words", (rows, module.features)
    elif "kernel_matrix" in arrays:
        field, expected = "kernel_matrix", (module.features, kh * kw * in_features)
    else:
        field, expected = "kernel", (kh, kw, in_features, module.features)
    if tuple(arrays[field].shape) != expected:
        name = "/".join(module.scope.path)
        raise ExportError(
            f"layer {name!r}: {field} has shape {tuple(arrays[field].shape)}, this input "
            f"({in_features} channels) needs {expected}"
        )
