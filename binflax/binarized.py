"""Hybrid Binary Networks for a ``flax.linen`` network you wrote: ``binflax.binarize``.

Why: binflax's own models are built from :class:`~binflax.layers.HBNConv`, but a
researcher's network is written with plain ``nn.Conv``, ``nn.Dense``, ``nn.BatchNorm`` and
nested blocks. :func:`binarize` wraps such a network without rewriting it: while the
network runs, every ``nn.Conv`` and ``nn.Dense`` it calls is intercepted
(``flax.linen.intercept_methods``) and computed with the precisions that the plan gives
its module path - the path of its parameters in the network's own ``variables["params"]``
(``Block_0/Conv_1``). The parameter tree stays the network's own, plus what binarization
adds, so trained float weights load as they are (:func:`load_float_variables`).

    >>> import flax.linen as nn
    >>> class Net(nn.Module):
    ...     num_classes: int = 10
    ...     @nn.compact
    ...     def __call__(self, x, train=False):
    ...         x = nn.relu(nn.Conv(8, (3, 3))(x))
    ...         x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
    ...         return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))
    >>> model = binarize(Net(), [("Conv_0|Dense_0", "float", "float"),
    ...                          (".*", "binary", "binary")], input_shape=(8, 8, 1))
    >>> model.plan.binary_inputs
    ('Conv_1',)

What a planned layer computes (docs/method.md sections 3-4):

- binary weights: ``alpha * sign(W)`` with ``alpha = mean |W|`` per output channel, the
  gradient reaching the latent ``W`` through the STE (alpha constant by default);
- binary input: the paper's binary-input block, ``norm(x) -> sign -> layer``. In a
  network not designed for binary inputs a conv often reads a ReLU output, whose sign is
  +1 everywhere, so the input is first normalised (``input_norm``): ``"batchnorm"`` (a
  batch norm of the layer's input, under the layer's path as ``bn``, as the authors'
  block), ``"shift"`` (a learned per-channel ``threshold``, ReActNet's RSign) or
  ``"none"``. The tensor ``sign`` receives is sown into ``"binarized_inputs"``, so
  ``binflax.select.measure`` works unchanged;
- biases stay float; a layer with float input and float weights runs the network's own
  code untouched.

Geometry follows the replaced layer exactly - every ``padding`` (``SAME``, ``VALID``,
``CIRCULAR``, ``REFLECT``, ``CAUSAL``, integers, pairs), ``strides``, ``input_dilation``,
``kernel_dilation`` and ``feature_group_count`` that ``nn.Conv`` takes, 1-D to 3-D,
extra batch dimensions - computed in ``dtype`` with float32 accumulation. What it cannot
do is in docs/byom.md.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.linear import canonicalize_padding
from jax import lax

from binflax import plan as plan_lib
from binflax import quantizers, tracing
from binflax.errors import UserError
from binflax.layers import BINARIZED_INPUTS, BN_EPSILON, SIGN_INPUT
from binflax.plan import LayerPrecision, Plan, precision_of

INPUT_NORMS = ("batchnorm", "shift", "none")
# The layer types binarize plans: exactly these, not their subclasses, whose own
# __call__ would be bypassed (docs/byom.md).
PLANNED_TYPES = (nn.Conv, nn.Dense)
# nn.Conv's and nn.Dense's hooks for a custom operation: binarize computes the planned
# layers itself, so it refuses a layer that sets one rather than ignore it.
_CUSTOM_OPS = (
    "mask",
    "conv_general_dilated",
    "conv_general_dilated_cls",
    "dot_general",
    "dot_general_cls",
)


class BinarizeError(UserError, ValueError):
    """A network or an option that ``binarize`` cannot apply the plan to."""


class Binarized(nn.Module):
    """A network of your own with its ``nn.Conv`` and ``nn.Dense`` layers planned.

    Build it with :func:`binarize`, which resolves the plan against the network's layers.
    Calls forward every argument to the network (``model(x, train=True)``), whose
    variables stay at the root of the tree: this module shares its scope.

    Attributes:
      model: the network, an unbound ``flax.linen`` module.
      plan: one entry per planned layer, by module path (``None``: every layer float).
      default_input_shape: one example's shape, for the cost model and ``select``.
      input_norm: what a binary-input layer applies before ``sign``: ``"batchnorm"``,
        ``"shift"`` or ``"none"``.
      input_quantizer: a name in :data:`binflax.quantizers.QUANTIZERS`.
      stop_alpha_gradient: alpha is a constant in the backward pass (the authors').
      bn_momentum: of the batch norms binarization adds (PyTorch's 0.1 is Flax's 0.9).
      dtype: compute dtype of the binarized layers (bfloat16: ``config.half_precision``);
        they accumulate in float32 and their parameters keep the layer's own
        ``param_dtype``.
    """

    model: nn.Module
    plan: Plan | None = None
    default_input_shape: tuple[int, ...] = ()
    input_norm: str = "batchnorm"
    input_quantizer: str = "ste_sign"
    stop_alpha_gradient: bool = True
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32

    def setup(self) -> None:
        nn.share_scope(self, self.model)

    def __call__(self, x: jax.Array, *args, **kwargs) -> Any:
        with nn.intercept_methods(_interceptor(self, self.scope.path)):
            return self.model(x, *args, **kwargs)


def binarize(
    model: nn.Module,
    plan: str | Plan | plan_lib.Rules = "fbin",
    *,
    input_shape: Sequence[int],
    binarize_last_weights: bool = False,
    input_norm: str = "batchnorm",
    input_quantizer: str = "ste_sign",
    stop_alpha_gradient: bool = True,
    dtype: Any = jnp.float32,
) -> Binarized:
    """``model`` with ``plan`` applied to every ``nn.Conv`` and ``nn.Dense`` it calls.

    ``plan`` is a preset (``"float"``, ``"wbin"``, ``"fbin"``; first and last layer in call
    order as docs/method.md section 3 says), a :class:`~binflax.plan.Plan`, the path of a
    plan JSON file, or ordered ``(regex, input, weight)`` rules matched with
    ``re.fullmatch`` against each layer's module path, the first match winning. Every
    form is expanded, by tracing the network at ``input_shape`` (one example, e.g.
    ``(32, 32, 3)``), into the exhaustive plan over its layers in call order and
    validated: a layer no rule covers, a rule that decides nothing, or a binary input
    in the first or last layer is a :class:`~binflax.plan.PlanError`; a layer that
    cannot be binarized as planned (a masked conv, a custom ``dot_general``) is a
    :class:`BinarizeError`.

    The other options are :class:`Binarized`'s fields.
    """
    if not isinstance(model, nn.Module) or isinstance(model, Binarized):
        raise BinarizeError(
            f"binarize takes a flax.linen Module that is not binarized yet, got "
            f"{type(model).__name__}"
        )
    if model.scope is not None:
        raise BinarizeError("binarize takes an unbound module (the class instance, not .bind())")
    if input_norm not in INPUT_NORMS:
        raise BinarizeError(f"input_norm={input_norm!r}; choose one of {', '.join(INPUT_NORMS)}")
    if input_quantizer not in quantizers.QUANTIZERS:
        raise BinarizeError(
            f"input_quantizer={input_quantizer!r}; known: {', '.join(quantizers.QUANTIZERS)}"
        )
    wrapper = _wrapper_class(type(model))(
        model=model,
        default_input_shape=tuple(input_shape),
        input_norm=input_norm,
        input_quantizer=input_quantizer,
        stop_alpha_gradient=stop_alpha_gradient,
        dtype=dtype,
    )
    names = tracing.layer_names(wrapper)
    if not names:
        raise BinarizeError(
            f"{type(model).__name__} calls no flax.linen Conv or Dense layer: nothing to plan"
        )
    resolved = plan_lib.resolve(plan, names, binarize_last_weights=binarize_last_weights)
    model = wrapper.clone(plan=resolved)
    # Traced once more with the plan, so that a layer binarize cannot compute fails here.
    tracing.trace_layers(model)
    return model


@functools.cache
def _wrapper_class(cls: type[nn.Module]) -> type[Binarized]:
    """``Binarized`` named after the network (``BinarizedVGG``), so that summaries, reports
    and logs name the network; one class per network class, so equal wrappers compare
    (and hash, as a ``jax.jit`` static argument) equal."""
    name = f"Binarized{cls.__name__}"
    return type(name, (Binarized,), {"__module__": __name__, "__qualname__": name})


def load_float_variables(variables: Mapping, float_variables: Mapping) -> dict:
    """A binarized model's ``variables`` with every leaf of the float network's copied in.

    The binarized tree is the float network's plus what binarization adds (the input
    batch norms and thresholds of binary-input layers), which keeps its initial values.
    A float leaf that the binarized model lacks, or has with another shape, is an error:
    the variables belong to another network.
    """
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables), sep="/")
    for path, value in flax.traverse_util.flatten_dict(
        flax.core.unfreeze(float_variables), sep="/"
    ).items():
        if path not in flat:
            raise BinarizeError(
                f"the float variables have {path!r}, which the binarized model lacks: "
                "they belong to another network"
            )
        if jnp.shape(flat[path]) != jnp.shape(value):
            raise BinarizeError(
                f"{path!r} has shape {jnp.shape(value)} in the float variables and "
                f"{jnp.shape(flat[path])} in the binarized model"
            )
        flat[path] = value
    return flax.traverse_util.unflatten_dict(flat, sep="/")


# -- the planned layers ----------------------------------------------------------------


def _interceptor(options: Binarized, root: tuple[str, ...]):
    """The method interceptor that plans every ``nn.Conv``/``nn.Dense`` under ``root``."""

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or type(module) not in PLANNED_TYPES:
            return next_fun(*args, **kwargs)
        name = "/".join(module.scope.path[len(root) :])
        precision = precision_of(options.plan, name)
        x = args[0] if args else kwargs["inputs"]
        if precision.binary_input or precision.binary_weight:
            y = _binarized_layer(options, module, precision, x)
        else:
            y = next_fun(*args, **kwargs)
        tracing.record(
            tracing.LayerInfo(
                name=name,
                precision=precision,
                kernel_shape=_kernel_shape(module, x),
                input_shape=tuple(x.shape),
                output_shape=tuple(y.shape),
                use_bias=module.use_bias,
                norm=precision.binary_input and options.input_norm == "batchnorm",
                input_threshold=precision.binary_input and options.input_norm == "shift",
            )
        )
        return y

    return intercept


def _kernel_shape(module: nn.Module, x: jax.Array) -> tuple[int, ...]:
    """The kernel parameter's shape, as ``nn.Conv``/``nn.Dense`` create it."""
    in_features = x.shape[-1]
    if isinstance(module, nn.Dense):
        return (in_features, module.features)
    groups = module.feature_group_count
    if in_features % groups:
        raise BinarizeError(
            f"layer {'/'.join(module.scope.path)!r}: {in_features} input channels do not "
            f"split into feature_group_count={groups} groups"
        )
    return (*_kernel_size(module), in_features // groups, module.features)


def _binarized_layer(
    options: Binarized, module: nn.Module, precision: LayerPrecision, x: jax.Array
) -> jax.Array:
    """The layer with the plan's precisions, its parameters where the layer keeps them."""
    custom = [op for op in _CUSTOM_OPS if getattr(module, op, None) is not None]
    if custom:
        raise BinarizeError(
            f"layer {precision.name!r} sets {', '.join(custom)}; binarize computes the "
            "layer itself and would ignore it: keep the layer float with a rule"
        )
    # Created as the layer creates them (same names, shapes, initializers and order), so
    # that the tree and the initial values are the network's own.
    kernel = module.param(
        "kernel", module.kernel_init, _kernel_shape(module, x), module.param_dtype
    )
    bias = (
        module.param("bias", module.bias_init, (module.features,), module.param_dtype)
        if module.use_bias
        else None
    )
    if precision.binary_input:
        x = _binary_input(options, module, x)
    if precision.binary_weight:
        kernel = quantizers.binarize_weights(
            kernel, stop_alpha_gradient=options.stop_alpha_gradient
        )
    x = lax.convert_element_type(x, options.dtype)
    kernel = lax.convert_element_type(kernel, options.dtype)
    y = _dense(module, x, kernel) if isinstance(module, nn.Dense) else _conv(module, x, kernel)
    return y if bias is None else y + bias


def _binary_input(options: Binarized, module: nn.Module, x: jax.Array) -> jax.Array:
    """``norm(x) -> sign``; what ``sign`` receives is sown for ``binflax.select``."""
    if options.input_norm == "batchnorm":
        # Statistics update exactly when the caller lets batch_stats change (training),
        # as the network's own batch norms do, whatever its train flag is called.
        x = nn.BatchNorm(
            use_running_average=not module.is_mutable_collection("batch_stats"),
            momentum=options.bn_momentum,
            epsilon=BN_EPSILON,
            dtype=options.dtype,
            param_dtype=module.param_dtype,
            name="bn",
            parent=module,
        )(x)
    elif options.input_norm == "shift":
        threshold = module.param(
            "threshold", nn.initializers.zeros, (x.shape[-1],), module.param_dtype
        )
        x = x - threshold
    x = lax.convert_element_type(x, options.dtype)
    module.sow(BINARIZED_INPUTS, SIGN_INPUT, x)
    return quantizers.get_quantizer(options.input_quantizer).fn(x)


def _dense(module: nn.Dense, x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.dot_general(
        x,
        kernel,
        (((x.ndim - 1,), (0,)), ((), ())),
        precision=module.precision,
        preferred_element_type=jnp.float32,
    )


def _kernel_size(module: nn.Conv) -> tuple[int, ...]:
    size = module.kernel_size
    return (size,) if isinstance(size, int) else tuple(size)


def _conv(module: nn.Conv, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``nn.Conv``'s computation (flax/linen/linear.py, ``_Conv.__call__``) on the given
    input and kernel, accumulating in float32."""
    kernel_size = _kernel_size(module)
    spatial = len(kernel_size)

    def per_dim(value: None | int | Sequence[int]) -> tuple[int, ...]:
        value = 1 if value is None else value
        return (value,) * spatial if isinstance(value, int) else tuple(value)

    strides = per_dim(module.strides)
    input_dilation = per_dim(module.input_dilation)
    kernel_dilation = per_dim(module.kernel_dilation)
    batch_shape = x.shape[: x.ndim - spatial - 1]
    x = x.reshape((-1, *x.shape[x.ndim - spatial - 1 :]))
    padding = canonicalize_padding(module.padding, spatial)
    if padding in ("CIRCULAR", "REFLECT"):
        dilated = [(k - 1) * d + 1 for k, d in zip(kernel_size, kernel_dilation, strict=True)]
        pads = [(0, 0), *(((k - 1) // 2, k // 2) for k in dilated), (0, 0)]
        x = jnp.pad(x, pads, mode={"CIRCULAR": "wrap", "REFLECT": "reflect"}[padding])
        padding = "VALID"
    elif padding == "CAUSAL":
        if spatial != 1:
            raise BinarizeError("CAUSAL padding is only defined for 1-D convolutions")
        x = jnp.pad(x, [(0, 0), (kernel_dilation[0] * (kernel_size[0] - 1), 0), (0, 0)])
        padding = "VALID"
    # channels last, as nn.Conv: inputs (N, spatial..., C), kernels (spatial..., I, O)
    lhs = (0, x.ndim - 1, *range(1, x.ndim - 1))
    rhs = (x.ndim - 1, x.ndim - 2, *range(x.ndim - 2))
    y = lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        lhs_dilation=input_dilation,
        rhs_dilation=kernel_dilation,
        dimension_numbers=lax.ConvDimensionNumbers(lhs, rhs, lhs),
        feature_group_count=module.feature_group_count,
        precision=module.precision,
        preferred_element_type=jnp.float32,
    )
    return y.reshape((*batch_shape, *y.shape[1:]))
