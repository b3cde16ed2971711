"""The integer inference path: the model's own topology, every unit run from exported arrays.

Why intercept instead of a second model definition: the networks differ in shortcuts,
fire concatenations and pools, and writing each again for inference would make two
versions to keep in step. :func:`integer_forward` runs the Flax model itself under
``flax.linen.intercept_methods`` and replaces every ``HBNConv.__call__`` by
:func:`layer_forward`, which reads only the exported arrays; ReLU, pooling, shortcuts
and concatenation run as the model defines them. No float variables are passed in.

A unit with binary inputs and binary weights runs as exact integer arithmetic on +-1
values: the sign comes from the folded threshold as ``int8``, the accumulator from one
of three exact backends (``arithmetic``):

- ``"int8"``: an int8 convolution with int32 accumulation;
- ``"int8_dot"``: im2col and one int8 matrix product with int32 accumulation;
- ``"popcount"``: XNOR + ``lax.population_count`` on the packed words (the reference).

All three give the same int32 accumulator, which is then multiplied by alpha (and by
XNOR-Net's K map when the model scales inputs). Float-input units run a float conv with
their folded kernel, or with the +-1 kernel and a per-channel scale.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from binflax import packing, quantizers
from binflax.export.format import ExportError
from binflax.layers import HBNConv

if TYPE_CHECKING:
    from binflax.export.model_file import ExportedModel

ARITHMETICS = ("int8", "int8_dot", "popcount")


def integer_forward(
    exported: ExportedModel, images: jax.Array, *, arithmetic: str = "int8"
) -> jax.Array:
    """Logits of the exported model for NHWC ``images``, binary units in integer arithmetic.

    Equals ``model.apply(variables, images, train=False)`` of the fake-quantized model
    up to float rounding (tests/test_export.py).
    """
    return _forward(exported.model, arithmetic, prepare(exported, arithmetic), jnp.asarray(images))


def prepare(exported: ExportedModel, arithmetic: str) -> dict[str, dict[str, jax.Array]]:
    """The per-layer arrays the forward pass takes, on the device, cached on ``exported``.

    What a deployment does once when it loads the model: kernels go from the file's OHWI
    to HWIO, the layout XLA's convolutions take, and for the int8 arithmetics every
    ``kernel_bits`` is unpacked to ``kernel_signs`` (int8 +-1); ``"popcount"`` keeps the
    bits of its XNOR layers.
    """
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"unknown arithmetic {arithmetic!r}; choose one of {ARITHMETICS}")
    if arithmetic not in exported.cache:
        prepared, stored = {}, exported.layer_arrays()
        for meta in exported.layers:
            arrays = dict(stored[meta["name"]])
            xnor = meta["input"] == "binary" and meta["weight"] == "binary"
            if "kernel_bits" in arrays and not (xnor and arithmetic == "popcount"):
                in_features = meta["kernel_shape"][2]
                arrays["kernel_signs"] = packing.unpack_signs(
                    arrays.pop("kernel_bits"), in_features
                )
            for field in ("kernel", "kernel_bits", "kernel_signs"):
                if field in arrays:
                    arrays[field] = arrays[field].transpose(1, 2, 3, 0)
            prepared[meta["name"]] = jax.device_put(arrays)
        exported.cache[arithmetic] = prepared
    return exported.cache[arithmetic]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward(
    model: nn.Module,
    arithmetic: str,
    layer_arrays: Mapping[str, Mapping[str, jax.Array]],
    images: jax.Array,
) -> jax.Array:
    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if not (isinstance(module, HBNConv) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        name = "/".join(module.scope.path)
        if name not in layer_arrays:
            raise ExportError(f"the export has no arrays for layer {name!r}")
        return layer_forward(module, layer_arrays[name], args[0], arithmetic)

    with nn.intercept_methods(intercept):
        return model.apply({}, images.astype(jnp.float32), train=False)


def layer_forward(
    module: HBNConv, arrays: Mapping[str, jax.Array], x: jax.Array, arithmetic: str = "int8"
) -> jax.Array:
    """One unit's output from its arrays as :func:`prepare` gives them."""
    in_features = x.shape[-1]
    _check_kernel(module, arrays, in_features)
    binary_weight = module.precision.binary_weight
    if module.precision.binary_input:
        signs = binarize(x, arrays)
        if binary_weight:
            y = integer_conv(signs, arrays, in_features, module, arithmetic).astype(x.dtype)
        else:
            y = _float_conv(signs.astype(x.dtype), arrays["kernel"], module)
        if module.scale_inputs:
            normed = x * arrays["bn_scale"] + arrays["bn_shift"] if "bn_scale" in arrays else x
            y = y * quantizers.xnor_input_scale(
                normed, module.kernel_size, module.strides, module.padding
            )
    else:
        y = _float_conv(x, arrays["kernel_signs" if binary_weight else "kernel"], module)
    if "scale" in arrays:
        y = y * arrays["scale"]
    if "bias" in arrays:
        y = y + arrays["bias"]
    return y


def binarize(x: jax.Array, arrays: Mapping[str, jax.Array]) -> jax.Array:
    """``sign(BN(x))`` as int8 +-1 from the folded threshold (plain ``sign(x)`` without one)."""
    if "threshold" not in arrays:
        return jnp.where(x >= 0, 1, -1).astype(jnp.int8)
    direction = arrays["direction"].astype(x.dtype)
    return jnp.where(direction * x >= direction * arrays["threshold"], 1, -1).astype(jnp.int8)


def integer_conv(
    signs: jax.Array,
    arrays: Mapping[str, jax.Array],
    in_features: int,
    module: HBNConv,
    arithmetic: str,
) -> jax.Array:
    """The unit's int32 accumulator from int8 +-1 inputs and its +-1 kernel."""
    pads = _pads(module, signs)
    if arithmetic == "popcount":
        words = packing.pack_signs(signs)
        return packing.conv_popcount(
            words, arrays["kernel_bits"], in_features, module.strides, pads
        )
    conv = packing.conv_int8 if arithmetic == "int8" else packing.conv_int8_dot
    return conv(signs, arrays["kernel_signs"], module.strides, pads)


def _float_conv(x: jax.Array, kernel: jax.Array, module: HBNConv) -> jax.Array:
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
    name = "/".join(module.scope.path)
    kh, kw = module.kernel_size
    if not module.precision.binary_weight:
        field, depth = "kernel", in_features
    elif "kernel_bits" in arrays:
        field, depth = "kernel_bits", packing.packed_words(in_features)
    else:
        field, depth = "kernel_signs", in_features
    if field not in arrays:
        raise ExportError(
            f"layer {name!r}: the plan says {module.precision.weight} weights but the export "
            f"has no {field!r}"
        )
    expected = (kh, kw, depth, module.features)
    if tuple(arrays[field].shape) != expected:
        raise ExportError(
            f"layer {name!r}: {field} has shape {tuple(arrays[field].shape)} (HWIO), this "
            f"input ({in_features} channels) needs {expected}"
        )
