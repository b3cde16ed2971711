"""Writing a whole network to an export file, self-contained: :func:`export_model`.

Why programs travel in the file: the integer path runs the network's own topology
(:mod:`binflax.export.inference`), and a deployment has neither the network's Python class
nor binflax's model registry. At export, every way the network can run is recorded with
``jax.export`` as a StableHLO program with a symbolic batch size - one per XNOR
arithmetic (``int8``, ``int8_dot``, ``popcount``, ``popcount`` with packed links, and
where binflax's native kernel builds, for the CPU only, ``native`` with and without them
and ``auto_chain``, the kernel on convolutions and XLA's popcount on dense layers; one
for all when there is no XNOR layer) and the float32 network of the same shape for the
latency baseline - beside the packed weights, which stay arrays of their own (one bit per
binary weight, readable with ``numpy.load``). :mod:`~binflax.export.loaded` reads the
file back and runs it. The format is docs/export.md's, version
:data:`~binflax.export.format.VERSION`.

    >>> report = export_model(model, variables, "model.npz")   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from binflax import cost, models, native, packing, planned, tracing
from binflax.binarized_nnx import linen_view
from binflax.export import chain as chain_lib
from binflax.export import inference
from binflax.export.fold import fold_variables, subtree
from binflax.export.format import ExportError, write_archive
from binflax.export.schema import (
    FLOAT_BASELINE,
    NETWORK_PREFIX,
    PROGRAM_PREFIX,
    grouped,
    layer_to_dict,
    link_to_dict,
)
from binflax.plan import Plan
from binflax.tracing import LayerInfo

# What jax.export lowers the programs for: the platforms binflax runs on.
PLATFORMS = ("cpu", "cuda", "tpu")
# Variant -> (XNOR arithmetic, packed links).
VARIANTS = {
    "int8": ("int8", False),
    "int8_dot": ("int8_dot", False),
    "popcount": ("popcount", False),
    "popcount_chain": ("popcount", True),
}
# Recorded where binflax.native's kernel is built, for the CPU only (its custom calls have
# no GPU or TPU implementation). "auto_chain": each layer by binflax.export.arithmetic's
# rules (every XNOR layer on the kernel; where no integer unit differs from "native", the
# program is native_chain's, stored once), with packed links.
NATIVE_VARIANTS = {
    "native": ("native", False),
    "native_chain": ("native", True),
    "auto_chain": ("auto", True),
}
# Not recorded for a registered model: the plan has its own entry, and the exported
# network runs in float32 and integers whatever dtype it was trained in.
_NOT_FIELDS = ("parent", "name", "plan", "dtype")
# Collections a forward pass writes and never reads.
_SOWN = (planned.BINARIZED_INPUTS, "intermediates")


def export_model(
    model: nn.Module,
    variables: Mapping,
    path: epath.PathLike,
    *,
    input_shape: Sequence[int] | None = None,
    programs: bool = True,
) -> dict:
    """Writes ``model`` (a registered model with a plan, or a ``binflax.binarize`` network)
    with ``variables`` (``params`` and ``batch_stats``) to ``path``.

    ``input_shape`` (H, W, C) is the size the model runs at; it matters where a kernel's
    size follows the input (MiniSketchANet's conv4). By default it is the model's
    ``default_input_shape`` with the input channels of the variables' first kernel.

    Returns a report: ``path``, ``file_bytes`` (measured), ``float32_bytes`` (the same
    variables serialized as a float32 Flax msgpack checkpoint, measured),
    ``predicted_bytes`` (``binflax.cost``'s memory model), ``payload_bytes`` (the layers'
    arrays), ``program_bytes`` (the serialized programs) and ``network_bytes`` (the
    network's own variables outside its planned layers); the rest is the header and ~300
    bytes of zip and npy headers per array. ``channel_padding_bytes`` is the part of the
    packed kernels that pads input channels to a multiple of 32, and ``layers`` has
    per-layer exported and predicted bytes.

    ``model`` may be a binarized NNX module (``binflax.binarize(nnx_module, ...)``), with
    ``variables`` ``None``: its own current values.

    ``programs=False`` writes the weights and the header without a single program: a file
    that only measures the network's memory (``memory_report``, ``--mode=summary``),
    because tracing and serializing the programs is most of an export's time (the
    quickstart's VGG-Small: 2.0 s with them, 0.3 s without, on a 2-core Zen 3) and the
    programs are code that does not grow with the weights.
    :func:`~binflax.export.load` refuses such a file.
    """
    model, variables = linen_view(model, variables)
    if getattr(model, "plan", None) is None:
        raise ExportError(
            "the model has no plan; build it with models.create(name, plan=...) or "
            "binflax.binarize(network, plan, ...)"
        )
    input_shape, layers = _trace(model, variables, input_shape)
    for info in layers:
        inference.geometry_2d(info)  # an ExportError names a layer the path cannot run
    arrays = fold_variables(layers, variables)
    network = _network_variables(variables, layers)
    variants, recorded_programs, memo = {}, {}, {}
    recorded = {**VARIANTS, **(NATIVE_VARIANTS if native.available() else {})} if programs else {}
    links = chain_lib.find_links(model, input_shape, network) if recorded else ()
    for name, (arithmetic, chain) in recorded.items():
        plan = inference.variant(layers, links, arithmetic, chain)
        member = next((m for m, p in recorded_programs.items() if p[0] == plan), None)
        uses_native = plan.uses_native
        if member is None:
            member = f"{PROGRAM_PREFIX}{name}"
            prepared = inference.prepare(layers, grouped(arrays), plan, memo)
            fn = inference.program(model, layers, plan)
            recorded_programs[member] = (
                plan,
                _serialize(fn, prepared, network, input_shape, native_calls=uses_native),
            )
        variants[name] = {
            "program": member,
            "computations": [list(c) for c in plan.computations],
            "links": [link_to_dict(link) for link in plan.links],
            "native": uses_native,
        }
    baseline = (
        _float_baseline(
            model, layers, input_shape, network, recorded_programs, variants["int8"]["program"]
        )
        if programs
        else None
    )
    costs = {info.name: cost.layer_cost(info) for info in layers}
    header = {
        "network": type(model).__name__,
        "registered": _registered(model),
        "plan": model.plan.to_dict(),
        "input_shape": list(input_shape),
        "layers": [layer_to_dict(info) for info in layers],
        "variants": variants,
        "float_baseline": baseline,
        "platforms": list(PLATFORMS),
    }
    program_arrays = {m: np.frombuffer(bytes(p[1]), np.uint8) for m, p in recorded_programs.items()}
    network_arrays = {
        f"{NETWORK_PREFIX}{key}": np.asarray(value)
        for key, value in flax.traverse_util.flatten_dict(network, sep="/").items()
    }
    file_bytes = write_archive(path, header, {**arrays, **network_arrays, **program_arrays})
    layer_bytes = {info.name: 0 for info in layers}
    for key, array in arrays.items():
        layer_bytes[key.rsplit("/", 1)[0]] += array.nbytes
    return {
        "path": str(path),
        "model": type(model).__name__,
        "plan": model.plan.name,
        "file_bytes": file_bytes,
        "payload_bytes": sum(layer_bytes.values()),
        "program_bytes": sum(a.nbytes for a in program_arrays.values()),
        "network_bytes": sum(a.nbytes for a in network_arrays.values()),
        "channel_padding_bytes": sum(_padding_bytes(info) for info in layers),
        "predicted_bytes": cost.totals(tuple(costs.values()))["memory_bytes"],
        "float32_bytes": float32_checkpoint_bytes(variables),
        "layers": [
            {
                "name": info.name,
                "input": info.precision.input,
                "weight": info.precision.weight,
                "kernel_shape": list(info.kernel_shape),
                "bytes": layer_bytes[info.name],
                "predicted_bytes": costs[info.name].memory_bytes,
            }
            for info in layers
        ],
    }


def float32_checkpoint_bytes(variables: Mapping) -> int:
    """Bytes of ``params`` and ``batch_stats`` as a float32 Flax msgpack checkpoint: the
    ``float32_bytes`` that :func:`export_model`'s report measures the file against."""
    state = {
        k: jax.tree.map(lambda a: np.asarray(a, np.float32), variables[k])
        for k in ("params", "batch_stats")
        if k in variables
    }
    return len(flax.serialization.msgpack_serialize(state))


def _padding_bytes(info: LayerInfo) -> int:
    if not info.precision.binary_weight:
        return 0
    *taps, cin, cout = info.kernel_shape
    return (packing.packed_words(cin) * packing.BITS - cin) * int(np.prod(taps)) * cout // 8


def _registered(model: nn.Module) -> dict | None:
    """The registry name and JSON-able fields of a registered model, else None; its
    :class:`~binflax.planned.BinaryOptions` field by field, as ``models.create`` takes them."""
    names = [n for n, cls in models.MODELS.items() if type(model) is cls]
    if not names:
        return None
    values = {field.name: getattr(model, field.name) for field in dataclasses.fields(model)}
    options = values.pop("options")
    values.update({name: getattr(options, name) for name in planned.OPTION_NAMES})
    return {
        "model": names[0],
        "fields": {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in values.items()
            if name not in _NOT_FIELDS
        },
    }


def _network_variables(variables: Mapping, layers: Sequence[LayerInfo]) -> dict:
    """``variables`` without the planned layers' own (they are folded) and without what a
    forward pass only writes."""
    prefixes = tuple(f"{info.name}/" for info in layers)
    kept = {}
    for collection, tree in variables.items():
        if collection in _SOWN or not isinstance(tree, Mapping):
            continue
        flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")
        for key, value in flat.items():
            if not key.startswith(prefixes):
                kept[f"{collection}/{key}"] = np.asarray(value, np.float32)
    return flax.traverse_util.unflatten_dict(kept, sep="/") if kept else {}


def _serialize(
    fn: Callable,
    prepared: Any,
    network: Any,
    input_shape: Sequence[int],
    *,
    native_calls: bool = False,
) -> bytes:
    """``fn(prepared, network, images)`` as a serialized ``jax.export`` program, the batch
    size symbolic. ``native_calls``: it calls binflax's native kernel, which jax.export
    must be told to allow (a custom call has no compatibility guarantee; the kernel is
    registered again by whoever loads the file) and which runs on the CPU only."""
    (batch,) = jax.export.symbolic_shape("batch")
    specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype),
                         (prepared, network))  # fmt: skip
    images = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    with jax.enable_x64(True):
        exported = jax.export.export(
            jax.jit(fn),
            platforms=("cpu",) if native_calls else PLATFORMS,
            disabled_checks=[
                jax.export.DisabledSafetyCheck.custom_call(target)
                for target in (native.TARGETS if native_calls else ())
            ],
        )(*specs, images)
    return exported.serialize()


def _float_baseline(
    model: nn.Module,
    layers: Sequence[LayerInfo],
    input_shape: Sequence[int],
    network: Mapping,
    programs: dict,
    int8_member: str,
) -> str:
    """The program of the float32 network of the same shape (every layer float), for
    ``latency``; a float plan's own program when the export is already float.

    Its weights are never stored (``latency`` runs it on zeros): it is traced on zero
    arrays of the shapes a float layer folds to - a kernel, and a bias where the layer has
    one or a batch norm to fold."""
    if all(info.precision[1:] == ("float", "float") for info in layers):
        return int8_member
    float_model = model.clone(plan=Plan.preset("float", [info.name for info in layers]))
    float_layers = tracing.trace_layers(float_model, input_shape)
    stored = {}
    for info in float_layers:
        kernel_2d = inference.geometry_2d(info).kernel_size + tuple(info.kernel_shape[-2:])
        ohwi = (kernel_2d[-1], *kernel_2d[:-1])
        stored[info.name] = {"kernel": np.broadcast_to(np.float32(0), ohwi)}
        if info.use_bias or info.norm:
            stored[info.name]["bias"] = np.zeros(info.features, np.float32)
    plan = inference.variant(float_layers, (), "int8", False)
    prepared = inference.prepare(float_layers, stored, plan)
    fn = inference.program(float_model, float_layers, plan)
    programs[f"{PROGRAM_PREFIX}{FLOAT_BASELINE}"] = (
        plan,
        _serialize(fn, prepared, network, input_shape),
    )
    return f"{PROGRAM_PREFIX}{FLOAT_BASELINE}"


def _trace(
    model: nn.Module, variables: Mapping, input_shape: Sequence[int] | None
) -> tuple[tuple[int, ...], tuple[LayerInfo, ...]]:
    """The model's layers at ``input_shape``, checked against the variables' kernels.

    Without ``input_shape``: the default size, with the input channels of the variables
    (a SqueezeNet trained on RGB has a 3-channel conv1)."""
    params = variables.get("params") if isinstance(variables, Mapping) else None
    if not isinstance(params, Mapping):
        raise ExportError("variables need a 'params' collection (and 'batch_stats')")
    shape = tuple(input_shape or model.default_input_shape)
    layers = tracing.trace_layers(model, shape)
    if input_shape is None:
        first = np.shape(subtree(params, layers[0].name, "params").get("kernel"))
        if len(first) == 4 and first[2] != shape[2]:
            shape = (*shape[:2], int(first[2]))
            layers = tracing.trace_layers(model, shape)
    for info in layers:
        kernel = np.shape(subtree(params, info.name, "params").get("kernel"))
        if kernel != info.kernel_shape:
            raise ExportError(
                f"layer {info.name!r}: the variables' kernel is {kernel}, the model at input "
                f"{shape} has {info.kernel_shape}; pass the input_shape the model was "
                "trained at"
            )
    return shape, layers
