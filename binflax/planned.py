"""The planned layer: one computation behind binflax's units and ``binflax.binarize``.

Why one core: a layer whose precision the plan sets computes the same thing whether it
is an :class:`~binflax.layers.HBNConv` of binflax's models or an ``nn.Conv``/``nn.Dense``
of a network of your own (docs/method.md sections 3-4):

- binary weights: ``alpha * sign(W)``, ``alpha = mean |W|`` per output channel, the
  gradient reaching the latent ``W`` through the STE, alpha constant in the backward pass
  by default (the authors') or differentiated;
- binary input: ``norm(x) -> sign -> layer``, where ``norm`` (:data:`INPUT_NORMS`) is a
  batch norm of the layer's input under the layer's path as ``bn`` (the authors' block),
  a learned per-channel ``threshold`` subtracted before ``sign`` (``"shift"``, ReActNet's
  RSign) or nothing; optionally XNOR-Net's K map scales the output; the tensor ``sign``
  receives is sown into ``"binarized_inputs"`` for ``binflax.select``; with
  ``activation="rprelu"`` the layer's output passes through ReActNet's RPReLU
  (:mod:`binflax.activations`), created under the layer's path as ``rprelu``;
- a k-bit input (2, 4 or 8 bits) takes the binary input's block with the k-bit quantizer
  in place of ``sign``, ``norm(x) -> quantize_k -> layer``, its step a learned scalar
  ``input_step`` under the layer's path, initialised to the best step for a unit
  Gaussian (:func:`binflax.quantizers.gaussian_step`); 8-bit weights are
  ``s_o * round(W / s_o)`` per output channel (:mod:`binflax.quantizers`);
- the layer's linear map in the compute dtype with float32 accumulation, so that +-1
  products sum exactly (:meth:`binflax.geometry.Geometry.apply`).

Every option works on both paths: each caller only creates its parameters the way its
layer type does and hands the call to :func:`binflax.tracing.run`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from binflax import activations, quantizers
from binflax.errors import UserError
from binflax.geometry import Geometry
from binflax.plan import LayerPrecision
from binflax.tracing import LayerInfo

# What a binary-input layer sows: the tensor ``sign`` receives, in this collection under
# this key (binflax.select measures it).
BINARIZED_INPUTS = "binarized_inputs"
SIGN_INPUT = "sign_input"
# Zeros that binflax.select adds to the tensor ``sign`` receives, to differentiate the
# loss with respect to it (absent - and nothing added - unless passed to ``apply``).
INPUT_PROBES = "input_probes"
# A k-bit input's learned quantizer step, a scalar parameter under the layer's path.
INPUT_STEP = "input_step"
# Every planned layer's batch-norm epsilon; the export folds its maps with the same one.
BN_EPSILON = 1e-5
INPUT_NORMS = ("batchnorm", "shift", "none")


class OptionError(UserError, ValueError):
    """A planned-layer option that does not exist."""


@dataclasses.dataclass(frozen=True)
class BinaryOptions:
    """How a planned layer binarizes: one object, carried whole from the public
    constructors (``models.create``, ``binflax.binarize``, a config) to every planned
    layer, so that an option is named here, checked here and read where it acts.

    Frozen, so hashable: a valid ``flax.linen`` field, and a model holding it stays a
    ``jax.jit`` static argument.

    Attributes:
      input_norm: what a binary-input layer applies before ``sign``: ``"batchnorm"``,
        ``"shift"`` or ``"none"``.
      scale_inputs: XNOR-Net's K map ([choice, beyond the paper]).
      input_quantizer: a name in :data:`binflax.quantizers.QUANTIZERS`.
      activation: what a binary-input layer's output passes through: ``"relu"`` (nothing
        of the layer's own: the network's activation follows, as before) or
        ``"rprelu"`` (a learned RPReLU; binflax's models then skip the ReLU that
        follows the unit, a network of your own keeps its own activation).
      stop_alpha_gradient: alpha is a constant in the backward pass (the authors').
      bn_momentum: of the input batch norm (PyTorch's 0.1 is Flax's 0.9).
      dtype: the compute dtype (bfloat16: ``config.half_precision``); accumulation is
        float32 and parameters keep their own dtype.
    """

    input_norm: str = "batchnorm"
    scale_inputs: bool = False
    input_quantizer: str = "ste_sign"
    stop_alpha_gradient: bool = True
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32
    activation: str = "relu"

    def __post_init__(self) -> None:
        """The one check of the options, with one message each."""
        if self.input_norm not in INPUT_NORMS:
            raise OptionError(
                f"input_norm={self.input_norm!r}; choose one of {', '.join(INPUT_NORMS)}"
            )
        if self.input_quantizer not in quantizers.QUANTIZERS:
            raise OptionError(
                f"input_quantizer={self.input_quantizer!r}; known: "
                f"{', '.join(quantizers.QUANTIZERS)}"
            )
        if self.activation not in activations.ACTIVATIONS:
            raise OptionError(
                f"activation={self.activation!r}; choose one of "
                f"{', '.join(activations.ACTIVATIONS)}"
            )


# The names of BinaryOptions' fields, for what hands them on by name (a config, a model
# file's header, a public constructor's keyword arguments).
OPTION_NAMES = tuple(field.name for field in dataclasses.fields(BinaryOptions))


def take_options(kwargs: dict[str, Any]) -> BinaryOptions:
    """The one :class:`BinaryOptions` of a public constructor's keyword arguments, removed
    from ``kwargs``: ``kwargs["options"]`` (default: every default) with each option given
    on its own (``scale_inputs=True``) in its place, so that ``models.create`` and
    ``binflax.binarize`` take either spelling."""
    loose = {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}
    return dataclasses.replace(kwargs.pop("options", None) or BinaryOptions(), **loose)


def ends_in_rprelu(precision: LayerPrecision, activation: str, every_unit: bool = False) -> bool:
    """A planned layer's output passes through its own RPReLU: the activation is
    ``"rprelu"`` and its input is binary, or ``every_unit`` - binflax's models, where
    RPReLU replaces every ReLU after a unit (a ReLU before an RSign would make its input
    all +1), while a network of your own keeps its own activations after float layers."""
    return activation == "rprelu" and (precision.quantized_input or every_unit)


def layer_info(
    name: str,
    precision: LayerPrecision,
    geometry: Geometry,
    x: jax.Array,
    features: int,
    *,
    use_bias: bool,
    options: BinaryOptions,
    output_norm: bool = False,
    every_unit: bool = False,
) -> LayerInfo:
    """The :class:`~binflax.tracing.LayerInfo` of a planned call on ``x``.

    ``output_norm``: the layer's own batch norm follows it where its input is float
    (HBNConv's ``conv -> BN`` block); it is folded into the export like the input one.
    ``every_unit``: see :func:`ends_in_rprelu`."""
    quantized = precision.quantized_input
    return LayerInfo(
        name=name,
        precision=precision,
        kernel_shape=geometry.kernel_shape(x.shape[-1], features),
        input_shape=tuple(x.shape),
        output_shape=geometry.output_shape(x.shape, features),
        use_bias=use_bias,
        norm=(options.input_norm == "batchnorm") if quantized else output_norm,
        input_threshold=quantized and options.input_norm == "shift",
        geometry=geometry,
        scale_inputs=precision.binary_input and options.scale_inputs,
        rprelu=ends_in_rprelu(precision, options.activation, every_unit),
    )


def forward(
    module: nn.Module,
    info: LayerInfo,
    options: BinaryOptions,
    x: jax.Array,
    *,
    kernel_init: Any,
    bias_init: Any = nn.initializers.zeros,
    param_dtype: Any = jnp.float32,
    update_stats: bool,
    precision: Any = None,
) -> jax.Array:
    """The fake-quantized planned layer on ``x``, its parameters created in ``module`` as
    ``nn.Conv``/``nn.Dense`` create theirs (``kernel``, then ``bias``: same names,
    shapes and order, so a float network's initial values and checkpoints carry over).

    ``update_stats``: the input batch norm updates its statistics (training).
    """
    geometry = info.geometry
    kernel = module.param("kernel", kernel_init, info.kernel_shape, param_dtype)
    bias = module.param("bias", bias_init, (info.features,), param_dtype) if info.use_bias else None
    scale = None
    if info.precision.quantized_input:
        x = _input_norm(module, info, options, x, update_stats, param_dtype)
        x = lax.convert_element_type(x, options.dtype)
        module.sow(BINARIZED_INPUTS, SIGN_INPUT, x)
        if module.has_variable(INPUT_PROBES, SIGN_INPUT):  # only when select passes them
            x = x + module.get_variable(INPUT_PROBES, SIGN_INPUT).astype(x.dtype)
        if info.scale_inputs:
            scale = k_map(geometry, x)
        if info.precision.binary_input:
            x = quantizers.get_quantizer(options.input_quantizer).fn(x)
        else:
            bits = info.precision.input_bits
            step = module.param(
                INPUT_STEP,
                nn.initializers.constant(quantizers.gaussian_step(bits)),
                (),
                param_dtype,
            )
            x = quantizers.quantize_input(x, lax.convert_element_type(step, options.dtype), bits)
    if info.precision.binary_weight:
        kernel = quantizers.binarize_weights(
            kernel, stop_alpha_gradient=options.stop_alpha_gradient
        )
    elif info.precision.weight == "int8":
        kernel = quantizers.quantize_weights_int8(kernel)
    y = geometry.apply(
        lax.convert_element_type(x, options.dtype),
        lax.convert_element_type(kernel, options.dtype),
        precision=precision,
    )
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    if info.rprelu and info.precision.quantized_input:  # a float-input unit's follows its BN
        y = rprelu(module, y, param_dtype)
    return y


def rprelu(module: nn.Module, y: jax.Array, param_dtype: Any = jnp.float32) -> jax.Array:
    """The layer's RPReLU, under its path as ``rprelu``."""
    return activations.RPReLU(param_dtype=param_dtype, name="rprelu", parent=module)(y)


def _input_norm(
    module: nn.Module,
    info: LayerInfo,
    options: BinaryOptions,
    x: jax.Array,
    update_stats: bool,
    param_dtype: Any,
) -> jax.Array:
    if info.norm:
        return nn.BatchNorm(
            use_running_average=not update_stats,
            momentum=options.bn_momentum,
            epsilon=BN_EPSILON,
            dtype=options.dtype,
            param_dtype=param_dtype,
            name="bn",
            parent=module,
        )(x)
    if info.input_threshold:
        return x - module.param("threshold", nn.initializers.zeros, (x.shape[-1],), param_dtype)
    return x


def k_map(geometry: Geometry, x: jax.Array) -> jax.Array:
    """XNOR-Net's K map: mean ``|x|`` over channels, box-filtered to the layer's window
    (the layer's strides, padding and dilation, one group); for a dense layer the mean
    ``|x|`` itself. It multiplies the binary layer's output."""
    a = jnp.mean(jnp.abs(x), axis=-1, keepdims=True)
    if geometry.kind == "dense":
        return a
    size = 1
    for k in geometry.kernel_size:
        size *= k
    box = jnp.full((*geometry.kernel_size, 1, 1), 1.0 / size, a.dtype)
    return dataclasses.replace(geometry, groups=1).apply(a, box, preferred_element_type=None)
