"""``binflax.binarize`` for a ``flax.nnx`` network: an ``nnx.Module`` whose ``nnx.Conv``
and ``nnx.Linear`` layers are planned, over a ``flax.linen`` face that binflax's own code
runs.

What the user gets, :class:`BinarizedModule` (``Binarized<YourClass>``), is an NNX module:
called as ``model(x)``, switched with ``model.train()`` / ``model.eval()``, trained with
``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``nnx.value_and_grad``. Its state is one
NNX variable per value of its linen face: ``model.params`` (``nnx.Param``) and
``model.batch_stats`` (``nnx.BatchStat``), nested by attribute path. A call runs the face
on those values (``apply(..., train=not model.use_running_average)``) and, in training
mode, writes the updated statistics back in place and draws dropout's key from the
module's own stream (``model.rngs``).

Why a linen face underneath: everything downstream of ``binarize`` - the cost model,
``binflax.select``, the training loop, checkpoints, the export - takes a model with
``init``/``apply`` and a ``.plan``. Those public entry points unwrap a binarized module
with :func:`linen_view` (``(model.linen, its current variables)``), the one place that
does; the command line's ``config.model`` builds the face itself (:func:`linen_face`),
which the training loop trains. :meth:`BinarizedModule.with_plan` is the module's
``clone(plan=...)``, from its current values. Why not ``nnx.bridge.ToNNX`` around the
face: it does not follow ``train()``/``eval()``, passes no ``mutable`` or dropout rng
unless told on every call, sets the linen variables' top-level names as attributes of
the wrapper (where ``plan`` or ``train`` could collide), replaces its dicts on update
rather than updating variables in place, and ``binarize`` treats a ``ToNNX`` as a linen
module (refused, or left float inside a network).

The face, :class:`BinarizedNNX`, holds the NNX network as its graph definition and its
initial state, in the spirit of Flax's own ``nnx.bridge.ToLinen`` (which builds the
module from its class on every call, where binarize has an instance):

1. the network is cloned (``nnx.clone``: yours stays untouched), and every ``nnx.Conv``
   and ``nnx.Linear`` in its graph - exactly these types - is replaced by a
   :class:`PlannedLayer` that keeps the original's ``kernel`` and ``bias`` variables and
   its graph definition (a float/float layer runs the original's own code on them);
2. a layer's name is its attribute path (``blocks/0/conv1``, ``head``), and its variables
   keep it: ``params/blocks/0/conv1/kernel``; what binarization adds (the input batch
   norm, threshold, k-bit step, RPReLU) lives under the same path, as for linen networks;
3. on every call the face merges the network from its variables, sets NNX's own mode
   (``model.train()`` for ``train=True``, ``model.eval()`` otherwise: ``nnx.BatchNorm``'s
   ``use_running_average`` and ``nnx.Dropout``'s ``deterministic``, and the planned
   layers' input batch norms alike), reseeds its dropout streams from the ``"dropout"``
   rng when given, runs it, and writes the updated ``batch_stats`` back when they are
   mutable;
4. each planned layer computes through :func:`binflax.planned.forward` (applied in a
   one-layer linen module, :class:`_Core`, on the layer's variables) and hands the call to
   :func:`binflax.tracing.run`, so that the cost model, selection and export see it; the
   tensor ``sign`` receives is sown into the face's ``"binarized_inputs"`` under the
   layer's path, and ``"input_probes"`` reach the layer as on the linen path.

``params`` and ``batch_stats`` (``nnx.Param``, ``nnx.BatchStat``) are the linen
collections; every other state (the dropout streams' keys and counts) stays as the network
was built. The face's ``init`` returns the network's own values: an NNX network is
initialised when it is built, so ``init``'s key only draws what binarization adds.

One module past ~450 lines on purpose: the planned layer, the face, the NNX module and
the graph surgery share one private call context (:class:`_Call`), which a split would
make public.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import nnx, traverse_util
from jax import lax

from binflax import plan as plan_lib
from binflax import planned, tracing
from binflax.binarized import BinarizeError, layer_geometry
from binflax.geometry import Geometry
from binflax.plan import Plan, precision_of

# The layer types binarize plans in an NNX network: exactly these, not their subclasses.
PLANNED_TYPES = (nnx.Conv, nnx.Linear)
# The collections of the linen face, by NNX variable type.
COLLECTIONS = {nnx.Param: "params", nnx.BatchStat: "batch_stats"}
# The planned layer's own variables; what the core adds sits beside them.
_OWN = ("kernel", "bias")


# -- the planned layer ------------------------------------------------------------------


@dataclasses.dataclass
class _Call:
    """What one call of the wrapper hands its planned layers (a context variable)."""

    plan: Plan | None
    options: planned.BinaryOptions
    extras: dict[str, dict]  # layer -> {collection: variables the core added}
    probes: dict[str, jax.Array]  # layer -> its input probe (binflax.select)
    key: jax.Array | None  # draws what the core adds, while the wrapper initialises
    sow: bool
    updates: dict[str, dict] = dataclasses.field(default_factory=dict)


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "binflax_nnx_call", default=None
)


@contextlib.contextmanager
def _calling(call: _Call) -> Iterator[_Call]:
    token = _CALL.set(call)
    try:
        yield call
    finally:
        _CALL.reset(token)


class _Core(nn.Module):
    """One planned layer as a linen module: :func:`binflax.planned.forward`, its variables
    the planned layer's ``kernel``/``bias`` and what the core adds (``bn``, ...)."""

    info: Any
    options: planned.BinaryOptions
    update_stats: bool
    kernel_init: Any
    bias_init: Any
    param_dtype: Any
    precision: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return planned.forward(
            self,
            self.info,
            self.options,
            x,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            param_dtype=self.param_dtype,
            update_stats=self.update_stats,
            precision=self.precision,
        )


class PlannedLayer(nnx.Module):
    """An ``nnx.Conv`` or ``nnx.Linear`` whose precision the plan sets.

    Keeps the original layer's ``kernel`` and ``bias`` variables (same values, same
    attribute names) and its graph definition, with which a float/float layer runs the
    original's own code. ``use_running_average`` follows NNX's ``train()``/``eval()``:
    a binary-input layer's batch norm updates its statistics in training mode.
    """

    def __init__(self, name: str, layer: nnx.Conv | nnx.Linear):
        self.layer_name = name
        self.layer_type = type(layer).__name__
        self.template = nnx.graphdef(layer)
        self.kernel = layer.kernel
        self.bias = layer.bias if layer.use_bias else None
        self.use_bias = layer.use_bias
        self.features = layer.out_features
        self.param_dtype = layer.param_dtype
        self.precision = getattr(layer, "precision", None)
        self.custom = _custom_ops(layer)
        self.geometry = _geometry(layer)
        self.use_running_average = False

    def __call__(self, x: jax.Array) -> jax.Array:
        call = _CALL.get()
        if call is None:
            raise BinarizeError(
                f"planned layer {self.layer_name!r} was called outside its binarized "
                "network: call the network through model.apply(variables, x)"
            )
        name = self.layer_name
        precision = precision_of(call.plan, name)
        try:
            info = planned.layer_info(
                name,
                precision,
                self.geometry,
                x,
                self.features,
                use_bias=self.use_bias,
                options=call.options,
            )
        except ValueError as e:  # channels that do not split into groups, CAUSAL in 2-D
            raise BinarizeError(f"layer {name!r}: {e}") from None
        if precision.input == precision.weight == "float":
            return tracing.run(tracing.PlannedCall(info, self, x, self._float))
        if self.custom:
            raise BinarizeError(
                f"layer {name!r} sets {', '.join(self.custom)}; binarize computes the "
                "layer itself and would ignore it: keep the layer float with a rule"
            )
        return tracing.run(
            tracing.PlannedCall(info, self, x, functools.partial(self._planned, call, info))
        )

    def _float(self, x: jax.Array) -> jax.Array:
        """The original layer's own code on this layer's variables."""
        return nnx.merge(self.template, nnx.state(self))(x)

    def _planned(self, call: _Call, info: tracing.LayerInfo, x: jax.Array) -> jax.Array:
        name = self.layer_name
        extras = call.extras.get(name, {})
        own = {"kernel": self.kernel.get_value()}
        if self.bias is not None:
            own["bias"] = self.bias.get_value()
        variables = {
            "params": {**extras.get("params", {}), **own},
            "batch_stats": extras.get("batch_stats", {}),
        }
        if name in call.probes:
            variables[planned.INPUT_PROBES] = {planned.SIGN_INPUT: call.probes[name]}
        update_stats = not self.use_running_average
        mutable = ["batch_stats"] if update_stats or call.key is not None else []
        rngs = {}
        if call.key is not None:  # the wrapper initialises: the core adds its variables
            mutable.append("params")
            rngs = {"params": jax.random.fold_in(call.key, len(call.updates))}
        if call.sow:
            mutable.append(planned.BINARIZED_INPUTS)
        core = _Core(
            info,
            call.options,
            update_stats,
            # never drawn: the layer hands the core its kernel and bias
            nn.initializers.zeros,
            nn.initializers.zeros,
            self.param_dtype,
            self.precision,
        )
        y, updates = core.apply(variables, x, rngs=rngs, mutable=mutable)
        updates = dict(updates)
        if "params" in updates:
            added = {k: v for k, v in updates["params"].items() if k not in _OWN}
            updates["params"] = added
        call.updates[name] = updates
        return y


def _custom_ops(layer: nnx.Module) -> tuple[str, ...]:
    """The custom operations ``layer`` sets, which a computed layer would ignore."""
    custom = []
    if getattr(layer, "mask", None) is not None:
        custom.append("mask")
    if isinstance(layer, nnx.Conv) and layer.conv_general_dilated is not lax.conv_general_dilated:
        custom.append("conv_general_dilated")
    if isinstance(layer, nnx.Linear) and layer.dot_general is not lax.dot_general:
        custom.append("dot_general")
    return tuple(custom)


def _geometry(layer: nnx.Module) -> Geometry:
    return layer_geometry(layer, dense=isinstance(layer, nnx.Linear))


# -- the linen face ---------------------------------------------------------------------


class _Initial:
    """The network's graph and initial state, as one ``flax.linen`` field, hashable (by
    its graph and paths) and compared by value (its graph, then its values), so that a
    model is a ``jax.jit`` static argument and equal builds are one (a build compared
    with itself never reads its values)."""

    def __init__(self, module: nnx.Module):
        self.name = type(module).__name__
        self.graphdef, state = nnx.split(module)
        self.flat = dict(nnx.to_flat_state(state))  # path parts -> Variable
        self.keys = {path: _key(path) for path in self.flat}
        self.layers = tuple(
            _key(path) for path, node in nnx.iter_graph(module) if isinstance(node, PlannedLayer)
        )

    def __hash__(self) -> int:
        return hash((self.graphdef, tuple(self.keys.values())))

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, _Initial) or (self.graphdef, self.keys) != (
            other.graphdef,
            other.keys,
        ):
            return False
        return all(
            _same(v.get_value(), other.flat[path].get_value()) for path, v in self.flat.items()
        )

    def collection(self, variable: Any) -> str | None:
        return next((c for t, c in COLLECTIONS.items() if isinstance(variable, t)), None)

    def __repr__(self) -> str:
        return f"<{self.name}: {len(self.flat)} variables>"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        if not (isinstance(b, jax.Array) and b.dtype == a.dtype):
            return False
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def _key(path: Sequence[Any]) -> str:
    return "/".join(str(part) for part in path)


class BinarizedNNX(nn.Module):
    """A ``flax.nnx`` network of your own with its ``nnx.Conv`` and ``nnx.Linear`` layers
    planned, as a ``flax.linen`` module (``init``/``apply``): the linen face of a
    :class:`BinarizedModule` (``model.linen``), or :func:`linen_face`'s. Called as
    ``model.apply(variables, x, train=...)``.

    Attributes:
      network: the NNX network with planned layers, its graph and initial state.
      plan: one entry per planned layer, by attribute path (``None``: every layer float).
      default_input_shape: one example's shape, for the cost model and ``select``.
      options: how every planned layer binarizes (:class:`binflax.planned.BinaryOptions`).
      unplanned: the layers binflax cannot plan, left float (``"path (Type)"``).
    """

    network: _Initial
    plan: Plan | None = None
    default_input_shape: tuple[int, ...] = ()
    options: planned.BinaryOptions = planned.BinaryOptions()
    unplanned: tuple[str, ...] = ()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> Any:
        network = self.network
        initializing = self.is_initializing()
        stored = {c: {} for c in COLLECTIONS.values()}
        if not initializing:
            for collection in stored:
                tree = self.variables.get(collection, {})
                stored[collection] = traverse_util.flatten_dict(dict(tree), sep="/")
        probes = traverse_util.flatten_dict(
            dict(self.variables.get(planned.INPUT_PROBES, {})), sep="/"
        )
        state = []
        for path, variable in network.flat.items():
            collection, key = network.collection(variable), network.keys[path]
            # A new variable each call, of this trace: the stored ones stay as built.
            value = variable.get_value()
            if collection is not None and not initializing:
                if key in stored[collection]:
                    # an array of JAX's: NumPy's would be read-only to a batch norm's update
                    value = jax.numpy.asarray(stored[collection][key])
                elif key.rpartition("/")[0] not in network.layers:
                    raise BinarizeError(f"the variables have no {collection}/{key}")
                # (a planned layer's own kernel may be absent where a tracing handler
                # replaces the layer's output: the export's probes)
            variable = variable.replace(value)
            state.append((path, variable))
        module = nnx.merge(network.graphdef, nnx.from_flat_state(state))
        module.train() if train else module.eval()
        if self.has_rng("dropout"):
            _reseed(module, self.make_rng("dropout"))
        call = _Call(
            plan=self.plan,
            options=self.options,
            extras=_extras(network.layers, stored),
            probes={
                k.removesuffix("/" + planned.SIGN_INPUT): v
                for k, v in probes.items()
                if k.endswith(planned.SIGN_INPUT)
            },
            key=self.make_rng("params") if initializing else None,
            sow=self.is_mutable_collection(planned.BINARIZED_INPUTS),
        )
        with _calling(call):
            y = module(x)
        # What the call leaves: the network's variables (batch norms update theirs in
        # training mode) and what each planned layer's core added or updated.
        new = {c: {} for c in COLLECTIONS.values()}
        for path, variable in nnx.to_flat_state(nnx.state(module)):
            collection = network.collection(variable)
            if collection is not None:
                new[collection][_key(path)] = variable.get_value()
        for layer, updates in call.updates.items():
            for collection in new:
                for k, v in traverse_util.flatten_dict(
                    dict(updates.get(collection, {})), sep="/"
                ).items():
                    new[collection][f"{layer}/{k}"] = v
        for collection in new:
            if not initializing:  # keep what no call touched (a layer's unused norm)
                new[collection] = {**stored[collection], **new[collection]}
            self._store(collection, new[collection])
        if call.sow:
            sown = {
                f"{layer}/{planned.SIGN_INPUT}": u[planned.BINARIZED_INPUTS][planned.SIGN_INPUT]
                for layer, u in call.updates.items()
                if planned.BINARIZED_INPUTS in u
            }
            for top, tree in _unflatten(sown).items():
                self.put_variable(planned.BINARIZED_INPUTS, top, tree)
        return y

    def _store(self, collection: str, flat: Mapping[str, jax.Array]) -> None:
        """``flat`` as the collection's variables, one per top-level attribute: created
        while initialising, written back where the collection is mutable."""
        for top, tree in _unflatten(flat).items():
            if self.is_initializing() and collection == "params":
                self.param(top, lambda _, tree=tree: tree)
            elif self.is_initializing():
                self.variable(collection, top, lambda tree=tree: tree)
            elif self.is_mutable_collection(collection):
                self.put_variable(collection, top, tree)


def _unflatten(flat: Mapping[str, Any]) -> dict:
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def _extras(layers: Sequence[str], stored: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
    """Per planned layer, the stored variables its core added (``bn``, ``threshold``...)."""
    extras: dict[str, dict] = {}
    for collection, flat in stored.items():
        for key, value in flat.items():
            for layer in layers:
                rest = key.removeprefix(layer + "/")
                if rest != key and rest not in _OWN:
                    extras.setdefault(layer, {}).setdefault(collection, {})[rest] = value
    return {
        layer: {c: _unflatten(v) for c, v in collections.items()}
        for layer, collections in extras.items()
    }


def _reseed(module: nnx.Module, key: jax.Array) -> None:
    """Every RNG stream of ``module`` restarted from ``key`` (one per stream tag)."""
    tags = sorted(
        {node.tag for _, node in nnx.iter_graph(module) if isinstance(node, nnx.RngStream)}
    )
    if tags:
        nnx.reseed(module, **{tag: jax.random.fold_in(key, i) for i, tag in enumerate(tags)})


# -- the NNX module ----------------------------------------------------------------------


class BinarizedModule(nnx.Module):
    """A ``flax.nnx`` network of your own with its ``nnx.Conv`` and ``nnx.Linear`` layers
    planned, as an ``nnx.Module``: build it with ``binflax.binarize``.

    Called as ``model(x)``; ``model.train()`` / ``model.eval()`` set its mode as NNX's own
    modules take it (``use_running_average``): in training mode your batch norms and the
    planned layers' input batch norms normalise with batch statistics and update their
    running averages, and dropout draws from the module's own ``rngs`` stream; in
    evaluation mode nothing changes. ``nnx.Optimizer(model, tx, wrt=nnx.Param)``,
    ``nnx.value_and_grad`` and ``nnx.jit`` take it as any NNX module.

    It runs its linen face (:class:`BinarizedNNX`, ``model.linen``) on its own state, one
    NNX variable per linen leaf: ``model.params`` (``nnx.Param``) and
    ``model.batch_stats`` (``nnx.BatchStat``), nested by attribute path
    (``model.params["blocks"]["0"]["conv1"]["kernel"]``). binflax's cost model,
    selection, export and training loop take the face and those values
    (:func:`linen_view`), so the numbers are the face's.

    Attributes:
      linen: the linen face (a static field).
      plan, unplanned, default_input_shape, options: the face's.
      use_running_average: ``False`` in training mode (``model.train()``).
      rngs: the dropout stream, one key per training-mode call.
    """

    def __init__(
        self,
        linen: BinarizedNNX,
        variables: Mapping[str, Any],
        *,
        rngs: nnx.Rngs,
        use_running_average: bool = False,
    ):
        self.linen = linen
        for collection, variable_type in _COLLECTION_TYPES.items():
            tree = jax.tree.map(variable_type, dict(variables.get(collection, {})))
            setattr(self, collection, nnx.data(_plain(tree)))
        self.rngs = rngs
        self.use_running_average = use_running_average

    @property
    def plan(self) -> Plan | None:
        return self.linen.plan

    @property
    def unplanned(self) -> tuple[str, ...]:
        return self.linen.unplanned

    @property
    def default_input_shape(self) -> tuple[int, ...]:
        return self.linen.default_input_shape

    @property
    def options(self) -> planned.BinaryOptions:
        return self.linen.options

    def __call__(self, x: jax.Array) -> jax.Array:
        train = not self.use_running_average
        variables = self.linen_variables()
        if not train:
            return self.linen.apply(variables, x, train=False)
        y, updates = self.linen.apply(
            variables,
            x,
            train=True,
            rngs={"dropout": self.rngs.dropout()},
            mutable=["batch_stats"],
        )
        stored = traverse_util.flatten_dict(self.batch_stats, sep="/")
        for key, value in traverse_util.flatten_dict(
            dict(updates.get("batch_stats", {})), sep="/"
        ).items():
            stored[key].set_value(value)  # in place: nnx.jit and nnx.grad see the update
        return y

    def linen_variables(self) -> dict[str, dict]:
        """The face's variables: ``{"params": ..., "batch_stats": ...}``, this module's
        current values (arrays, nested by attribute path)."""
        return {
            collection: jax.tree.map(
                lambda v: v.get_value(),
                getattr(self, collection),
                is_leaf=lambda v: isinstance(v, nnx.Variable),
            )
            for collection in _COLLECTION_TYPES
        }

    def with_plan(
        self, plan: str | Plan | plan_lib.Rules, *, binarize_last_weights: bool = False
    ) -> BinarizedModule:
        """The same network under another plan (a preset, a ``Plan`` such as
        ``select.select`` returns, or rules), as a new module that starts from this one's
        current values - what the new plan adds (a newly binary-input layer's batch norm)
        at its initial values - in this one's mode. This module is untouched."""
        names = tracing.layer_names(self.linen)
        resolved = plan_lib.resolve(plan, names, binarize_last_weights=binarize_last_weights)
        face = self.linen.clone(plan=resolved)
        tracing.trace_layers(face)
        current = self.linen_variables()
        variables = {}
        for collection, tree in _initial_variables(face).items():
            now = traverse_util.flatten_dict(current[collection])
            fresh = traverse_util.flatten_dict(tree)
            variables[collection] = traverse_util.unflatten_dict(
                {k: now.get(k, v) for k, v in fresh.items()}
            )
        return type(self)(
            face,
            variables,
            rngs=nnx.clone(self.rngs),
            use_running_average=self.use_running_average,
        )


_COLLECTION_TYPES = {c: t for t, c in COLLECTIONS.items()}


def _plain(tree: Any) -> Any:
    """``tree`` with every mapping a plain ``dict`` (NNX nests plain dicts)."""
    if isinstance(tree, Mapping):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


def linen_view(model: Any, variables: Mapping | None = None) -> tuple[Any, Any]:
    """``(linen module, variables)`` for binflax's own code: a :class:`BinarizedModule`
    becomes its linen face and, where ``variables`` is ``None``, its current values;
    any other model and its ``variables`` come back as they are.

    The one place where the public entry points (``cost.summary``, ``select.select``,
    ``export.export_model``, ...) unwrap a binarized NNX module."""
    if isinstance(model, BinarizedModule):
        return model.linen, model.linen_variables() if variables is None else variables
    return model, variables


def _initial_variables(face: BinarizedNNX) -> dict[str, dict]:
    """The face's ``params`` and ``batch_stats`` as ``init`` draws them (the network's own
    values; every initializer of what binarization adds is a constant)."""
    x = jax.numpy.zeros((1, *face.default_input_shape), jax.numpy.float32)
    variables = face.init(jax.random.key(0), x)
    return {c: dict(variables.get(c, {})) for c in _COLLECTION_TYPES}


def _dropout_key(network: nnx.Module) -> jax.Array:
    """The network's first RNG stream's key (its dropout's, as built), else key 0."""
    for _, node in nnx.iter_graph(network):
        if isinstance(node, nnx.RngStream):
            return jax.random.fold_in(node.key.get_value(), node.count.get_value())
    return jax.random.key(0)


def _use_running_average(network: nnx.Module) -> bool:
    """The network's mode as built: its first batch norm's (or dropout's), else NNX's
    default, training."""
    for _, node in nnx.iter_graph(network):
        if isinstance(node, nnx.Module) and isinstance(
            getattr(node, "use_running_average", None), bool
        ):
            return node.use_running_average
    for _, node in nnx.iter_graph(network):
        if isinstance(node, nnx.Module) and isinstance(getattr(node, "deterministic", None), bool):
            return node.deterministic
    return False


@functools.cache
def _module_class(cls: type) -> type[BinarizedModule]:
    """``BinarizedModule`` named after the network (``BinarizedResNet``)."""
    if issubclass(cls, BinarizedModule):
        return cls
    name = f"Binarized{cls.__name__}"
    return type(name, (BinarizedModule,), {"__module__": __name__, "__qualname__": name})


# -- binarize ---------------------------------------------------------------------------


def binarize_nnx(
    module: nnx.Module,
    plan: str | Plan | plan_lib.Rules,
    *,
    input_shape: Sequence[int],
    binarize_last_weights: bool,
    options: planned.BinaryOptions,
) -> BinarizedModule:
    """``binflax.binarize`` for an ``nnx.Module`` instance (see its docstring): the
    :class:`BinarizedModule` over :func:`linen_face`, at the network's values and mode."""
    face = linen_face(
        module,
        plan,
        input_shape=input_shape,
        binarize_last_weights=binarize_last_weights,
        options=options,
    )
    return _module_class(type(module))(
        face,
        _initial_variables(face),
        rngs=nnx.Rngs(dropout=_dropout_key(module)),
        use_running_average=_use_running_average(module),
    )


def linen_face(
    module: nnx.Module,
    plan: str | Plan | plan_lib.Rules,
    *,
    input_shape: Sequence[int],
    binarize_last_weights: bool,
    options: planned.BinaryOptions,
) -> BinarizedNNX:
    """The linen face of ``module`` binarized by ``plan``, uninitialised: what
    :func:`binarize_nnx` wraps, and what the command line's ``config.model`` builds (the
    training loop takes linen modules)."""
    network = nnx.clone(module)
    found, unplanned = _layers(network)
    for path, layer in found:
        _replace(network, path, PlannedLayer(_key(path), layer))
    wrapper = _wrapper_class(type(module))(
        network=_Initial(network),
        default_input_shape=tuple(input_shape),
        options=options,
        unplanned=tuple(f"{name} ({kind})" for name, kind in unplanned),
    )
    if not found:
        listed = f" (binflax cannot plan {', '.join(wrapper.unplanned)})" if unplanned else ""
        raise BinarizeError(
            f"{type(module).__name__} holds no flax.nnx Conv or Linear layer: nothing to "
            f"plan{listed}"
        )
    names = tracing.layer_names(wrapper)
    _refuse_rules_naming(plan, names, unplanned)
    resolved = plan_lib.resolve(plan, names, binarize_last_weights=binarize_last_weights)
    model = wrapper.clone(plan=resolved)
    tracing.trace_layers(model)  # a layer binarize cannot compute fails here
    if unplanned:
        warnings.warn(
            f"binarize leaves {len(unplanned)} layer(s) of {type(module).__name__} float, "
            f"which binflax cannot plan: {', '.join(model.unplanned)}",
            stacklevel=4,
        )
    return model


def _layers(network: nnx.Module):
    """``([(path, layer) to plan], [(name, type name) binflax cannot plan])``: exactly
    ``nnx.Conv``/``nnx.Linear``, and every other module with a ``kernel`` of its own
    (``nnx.LinearGeneral``, ``nnx.Einsum``, ``nnx.ConvTranspose``, a subclass) or a linen
    module wrapped by ``nnx.bridge.ToNNX`` (whose layers stay float)."""
    found, unplanned = [], []
    for path, node in nnx.iter_graph(network):
        if not path or not isinstance(node, nnx.Module):
            continue
        if type(node) in PLANNED_TYPES:
            found.append((path, node))
        elif isinstance(node, nnx.bridge.ToNNX):  # a linen module inside: its layers too
            unplanned.append((_key(path), "a linen module in nnx.bridge.ToNNX"))
        elif isinstance(getattr(node, "kernel", None), nnx.Variable):
            unplanned.append((_key(path), type(node).__name__))
    return found, unplanned


def _replace(network: nnx.Module, path: Sequence[Any], layer: PlannedLayer) -> None:
    parent = network
    for part in path[:-1]:
        parent = parent[part] if isinstance(part, int) else getattr(parent, part)
    if isinstance(path[-1], int):
        parent[path[-1]] = layer
    else:
        setattr(parent, path[-1], layer)


def _refuse_rules_naming(plan: Any, names: Sequence[str], unplanned: Sequence[tuple]) -> None:
    """A rule that matches no planned layer but a layer binflax cannot plan is refused
    with a line that names the layer (rather than "matches no layer")."""
    if not isinstance(plan, list | tuple) or not unplanned:
        return
    for index, rule in enumerate(plan):
        if not isinstance(rule, list | tuple) or not rule or not isinstance(rule[0], str):
            continue
        try:
            pattern = re.compile(rule[0])
        except re.error:
            continue
        if any(pattern.fullmatch(n) for n in names):
            continue
        hits = [f"{n} ({kind})" for n, kind in unplanned if pattern.fullmatch(n)]
        if hits:
            raise BinarizeError(
                f"rule {index} {rule[0]!r} names {', '.join(hits)}, which binflax cannot "
                "plan (only nnx.Conv and nnx.Linear, exactly): it stays float; drop the rule"
            )


@functools.cache
def _wrapper_class(cls: type) -> type[BinarizedNNX]:
    """``BinarizedNNX`` named after the network (``BinarizedResNet``)."""
    name = f"Binarized{cls.__name__}"
    return type(name, (BinarizedNNX,), {"__module__": __name__, "__qualname__": name})
