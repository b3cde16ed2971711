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
  ``binflax.select.measure`` works unchanged. With ``activation="rprelu"`` the layer's
  output then passes through ReActNet's RPReLU (``rprelu/{gamma,beta,zeta}`` under the
  layer's path); the network's own activation after the layer still applies, as
  binarize changes only the planned layers;
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
from flax import nnx

from binflax import plan as plan_lib
from binflax import planned, tracing
from binflax.errors import UserError
from binflax.geometry import Geometry
from binflax.plan import Plan, precision_of

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
      options: how every planned layer binarizes (:class:`binflax.planned.BinaryOptions`),
        as binflax's own units take it; parameters keep the layer's own ``param_dtype``.
    """

    model: nn.Module
    plan: Plan | None = None
    default_input_shape: tuple[int, ...] = ()
    options: planned.BinaryOptions = planned.BinaryOptions()

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
    **options: Any,
) -> nn.Module | nnx.Module:
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

    ``model`` may also be a ``flax.nnx`` Module instance: its ``nnx.Conv`` and
    ``nnx.Linear`` layers are planned, named by attribute path (``blocks/0/conv1``), and
    the result is an ``nnx.Module`` (:class:`binflax.binarized_nnx.BinarizedModule`),
    called as ``model(x)``, trained with ``nnx.Optimizer``, and taken as it is by the
    cost model, ``binflax.select`` and the export (:mod:`binflax.binarized_nnx`).

    ``options`` are how the planned layers binarize, as ``options=``
    :class:`~binflax.planned.BinaryOptions` or field by field (``input_norm="shift"``,
    ``scale_inputs=True``, ``dtype=jnp.bfloat16``, ...); a bad value is a
    :class:`BinarizeError`.
    """
    from binflax import binarized_nnx  # imports this module

    if isinstance(model, nnx.bridge.ToNNX):
        raise BinarizeError(
            "binarize takes the linen module that nnx.bridge.ToNNX wraps, not the wrapper: "
            f"binflax.binarize({type(model.to_nnx__module).__name__}(...), ...)"
        )
    if isinstance(model, binarized_nnx.BinarizedModule):
        raise BinarizeError(
            f"binarize takes a network that is not binarized yet, got {type(model).__name__}: "
            "model.with_plan(plan) gives it another plan (from its current values)"
        )
    if isinstance(model, nnx.Module):
        return binarized_nnx.binarize_nnx(
            model,
            plan,
            input_shape=input_shape,
            binarize_last_weights=binarize_last_weights,
            options=_options(options),
        )
    if not isinstance(model, nn.Module) or isinstance(
        model, Binarized | binarized_nnx.BinarizedNNX
    ):
        raise BinarizeError(
            f"binarize takes a flax.linen or flax.nnx Module that is not binarized yet, "
            f"got {type(model).__name__}"
        )
    if model.scope is not None:
        raise BinarizeError("binarize takes an unbound module (the class instance, not .bind())")
    binary_options = _options(options)
    wrapper = _wrapper_class(type(model))(
        model=model, default_input_shape=tuple(input_shape), options=binary_options
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


def _options(options: dict[str, Any]) -> planned.BinaryOptions:
    try:
        binary_options = planned.take_options(options)
    except planned.OptionError as e:
        raise BinarizeError(str(e)) from None
    if options:  # what take_options left is no option
        raise TypeError(f"binarize() got an unexpected keyword argument {next(iter(options))!r}")
    return binary_options


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
    batch norms, thresholds and RPReLUs of binary-input layers), which keeps its initial
    values.
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


def _interceptor(wrapper: Binarized, root: tuple[str, ...]):
    """The method interceptor that plans every ``nn.Conv``/``nn.Dense`` under ``root``."""
    options = wrapper.options

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, nnx.bridge.ToLinen):
            raise BinarizeError(
                f"{'/'.join(module.scope.path[len(root) :])!r} is a flax.nnx module inside "
                "the linen network (nnx.bridge.to_linen), whose layers binarize cannot "
                "plan: write the network in one API (binarize takes an nnx.Module as it is)"
            )
        if context.method_name != "__call__" or type(module) not in PLANNED_TYPES:
            return next_fun(*args, **kwargs)
        name = "/".join(module.scope.path[len(root) :])
        precision = precision_of(wrapper.plan, name)
        x = args[0] if args else kwargs["inputs"]
        try:
            info = planned.layer_info(
                name,
                precision,
                _geometry(module),
                x,
                module.features,
                use_bias=module.use_bias,
                options=options,
            )
        except ValueError as e:  # channels that do not split into groups, CAUSAL in 2-D
            raise BinarizeError(f"layer {'/'.join(module.scope.path)!r}: {e}") from None
        if precision.input == precision.weight == "float":
            # A float layer runs the network's own code untouched.
            rest = args[1:] if args else ()
            kwargs = {k: v for k, v in kwargs.items() if k != "inputs"}
            return tracing.run(
                tracing.PlannedCall(info, module, x, lambda x: next_fun(x, *rest, **kwargs))
            )
        custom = [op for op in _CUSTOM_OPS if getattr(module, op, None) is not None]
        if custom:
            raise BinarizeError(
                f"layer {name!r} sets {', '.join(custom)}; binarize computes the "
                "layer itself and would ignore it: keep the layer float with a rule"
            )

        def compute(x: jax.Array) -> jax.Array:
            # Statistics update exactly when the caller lets batch_stats change
            # (training), as the network's own batch norms do, whatever its train flag.
            return planned.forward(
                module,
                info,
                options,
                x,
                kernel_init=module.kernel_init,
                bias_init=module.bias_init,
                param_dtype=module.param_dtype,
                update_stats=module.is_mutable_collection("batch_stats"),
                precision=module.precision,
            )

        return tracing.run(tracing.PlannedCall(info, module, x, compute))

    return intercept


def _geometry(module: nn.Module) -> Geometry:
    return layer_geometry(module, dense=isinstance(module, nn.Dense))


def layer_geometry(module: Any, *, dense: bool) -> Geometry:
    """The geometry of a Flax conv or dense layer, linen's or NNX's: both name their
    fields alike (``kernel_size``, ``strides``, ``padding``, the dilations, the groups)."""
    if dense:
        return Geometry.dense()
    return Geometry.conv(
        module.kernel_size,
        module.strides,
        module.padding,
        module.input_dilation,
        module.kernel_dilation,
        module.feature_group_count,
    )
