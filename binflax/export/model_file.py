"""Whole models in and out of an export file, and their measured memory.

Why the model's name, fields and plan travel in the file: the integer path runs the
model's own topology (binflax.export.inference), so a loaded export must rebuild exactly
the network it came from with ``models.create`` - no Python object is pickled.

    >>> report = export_model(model, variables, "model.npz")   # doctest: +SKIP
    >>> exported = load("model.npz")                            # doctest: +SKIP
    >>> logits = integer_forward(exported, images)              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from binflax import cost, models, packing
from binflax.export.fold import fold_variables, subtree
from binflax.export.format import ExportError, read_archive, write_archive
from binflax.plan import Plan, PlanError

# Not recorded: the plan has its own entry, and the exported network runs in float32 and
# integers whatever dtype it was trained in (config.half_precision).
_NOT_FIELDS = ("parent", "name", "plan", "dtype")


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """A loaded export: its header, its arrays and the rebuilt (variable-free) model."""

    header: dict
    arrays: dict[str, np.ndarray]
    model: models.BinaryNet
    path: str | None = None
    # What binflax.export.inference.prepare derives per input size, arithmetic and chain
    # setting, kept so that repeated forwards neither convert nor re-transfer anything.
    cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def plan(self) -> Plan:
        return self.model.plan

    @property
    def layers(self) -> list[dict]:
        return self.header["layers"]

    def layer_arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """``{layer path: {field: array}}``."""
        grouped: dict[str, dict[str, np.ndarray]] = {}
        for key, array in self.arrays.items():
            layer, field = key.rsplit("/", 1)
            grouped.setdefault(layer, {})[field] = array
        return grouped


def export_model(
    model: models.BinaryNet,
    variables: Mapping,
    path: epath.PathLike,
    *,
    input_shape: Sequence[int] | None = None,
) -> dict:
    """Writes ``model`` with ``variables`` (``params`` and ``batch_stats``) to ``path``.

    ``input_shape`` (H, W, C) is the size the model runs at; it matters where a kernel's
    size follows the input (MiniSketchANet's conv4). By default it is the model's
    ``default_input_shape`` with the input channels of the variables' first kernel.

    Returns a report: ``path``, ``file_bytes`` (measured), ``float32_bytes`` (the same
    variables serialized as a float32 Flax msgpack checkpoint, measured),
    ``predicted_bytes`` (``binflax.cost``'s memory model), ``payload_bytes`` (the arrays
    alone; the rest is the header and ~300 bytes of zip and npy headers per array),
    ``channel_padding_bytes`` (the part of the packed kernels that pads input channels
    to a multiple of 32) and per-layer ``layers`` with exported and predicted bytes.
    """
    model_name, fields = _model_spec(model)
    input_shape, layers = _trace(model, variables, input_shape)
    arrays = fold_variables(layers, variables, scale_inputs=model.scale_inputs)
    costs = {info.name: cost.layer_cost(info) for info in layers}
    layer_meta = [
        {
            "name": info.name,
            "input": info.precision.input,
            "weight": info.precision.weight,
            "kernel_shape": list(info.kernel_shape),
            "use_bias": info.use_bias,
            "norm": info.norm,
        }
        for info in layers
    ]
    header = {
        "model": model_name,
        "fields": fields,
        "plan": model.plan.to_dict(),
        "input_shape": list(input_shape),
        "layers": layer_meta,
    }
    file_bytes = write_archive(path, header, arrays)
    layer_bytes = {info.name: 0 for info in layers}
    for key, array in arrays.items():
        layer_bytes[key.rsplit("/", 1)[0]] += array.nbytes
    return {
        "path": str(path),
        "model": model_name,
        "plan": model.plan.name,
        "file_bytes": file_bytes,
        "payload_bytes": sum(layer_bytes.values()),
        "channel_padding_bytes": sum(_padding_bytes(info) for info in layers),
        "predicted_bytes": cost.totals(tuple(costs.values()))["memory_bytes"],
        "float32_bytes": float32_checkpoint_bytes(variables),
        "layers": [
            {
                **meta,
                "bytes": layer_bytes[meta["name"]],
                "predicted_bytes": costs[meta["name"]].memory_bytes,
            }
            for meta in layer_meta
        ],
    }


def load(path: epath.PathLike) -> ExportedModel:
    """Reads, validates and rebuilds an export (a local or ``gs://`` path); any defect is
    an :class:`ExportError`."""
    header, arrays = read_archive(path)
    try:
        plan = Plan.from_dict(header["plan"])
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in header["fields"].items()}
        model = models.create(header["model"], plan=plan, **fields)
        input_shape = tuple(header["input_shape"])
        traced = models.trace_layers(model, input_shape)
        found = [(m["name"], m["input"], m["weight"], m["kernel_shape"]) for m in header["layers"]]
    except (KeyError, TypeError, ValueError, PlanError) as e:
        raise ExportError(f"{path}: cannot rebuild the exported model: {e!r}") from None
    expected = [
        (i.name, i.precision.input, i.precision.weight, list(i.kernel_shape)) for i in traced
    ]
    if expected != found:
        diff = next(
            (e, f) for e, f in zip(expected + [None], found + [None], strict=False) if e != f
        )
        raise ExportError(
            f"{path}: the header's layers do not match the rebuilt {header['model']}: "
            f"first difference rebuilt {diff[0]} vs file {diff[1]}"
        )
    return ExportedModel(header=header, arrays=arrays, model=model, path=path)


def float32_checkpoint_bytes(variables: Mapping) -> int:
    """Bytes of ``params`` and ``batch_stats`` as a float32 Flax msgpack checkpoint."""
    state = {
        k: jax.tree.map(lambda a: np.asarray(a, np.float32), variables[k])
        for k in ("params", "batch_stats")
        if k in variables
    }
    return len(flax.serialization.msgpack_serialize(state))


def zero_variables(model: nn.Module, input_shape: Sequence[int] | None = None) -> dict:
    """Zero ``params`` and ``batch_stats`` of the right shapes, from ``jax.eval_shape`` only.

    Sizes do not depend on values, so this measures an export without initialising
    (AlexNet's 62 M parameters are never drawn).
    """
    shape = tuple(input_shape or model.default_input_shape)
    abstract = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape), jnp.float32))
    )
    return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), dict(abstract))


def memory_report(
    model: models.BinaryNet,
    variables: Mapping | None = None,
    *,
    input_shape: Sequence[int] | None = None,
) -> dict:
    """Measured export size vs float32 checkpoint vs the cost model, for ``summary``.

    Exports to a temporary file (with :func:`zero_variables` when ``variables`` is
    None) and returns :func:`export_model`'s report without ``path``, plus
    ``compression`` (float32 bytes / file bytes) and ``prediction_error`` (file bytes /
    predicted bytes - 1).
    """
    if variables is None:
        variables = zero_variables(model, input_shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = epath.Path(tmp) / "model.npz"
        report = export_model(model, variables, path, input_shape=input_shape)
    del report["path"]
    report["compression"] = report["float32_bytes"] / report["file_bytes"]
    report["prediction_error"] = report["file_bytes"] / report["predicted_bytes"] - 1.0
    return report


def _padding_bytes(info: models.LayerInfo) -> int:
    if not info.precision.binary_weight:
        return 0
    kh, kw, cin, cout = info.kernel_shape
    return (packing.packed_words(cin) * packing.BITS - cin) * kh * kw * cout // 8


def _model_spec(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """The registry name and JSON-able fields that rebuild ``model`` with ``models.create``."""
    names = [n for n, cls in models.MODELS.items() if type(model) is cls]
    if not names:
        raise ExportError(
            f"cannot export a {type(model).__name__}: only registered models can be rebuilt "
            f"({', '.join(sorted(models.MODELS))})"
        )
    if model.plan is None:
        raise ExportError("the model has no plan; build it with models.create(name, plan=...)")
    fields = {}
    for field in dataclasses.fields(model):
        if field.name in _NOT_FIELDS:
            continue
        value = getattr(model, field.name)
        fields[field.name] = list(value) if isinstance(value, tuple) else value
    return names[0], fields


def _trace(
    model: models.BinaryNet, variables: Mapping, input_shape: Sequence[int] | None
) -> tuple[tuple[int, ...], tuple[models.LayerInfo, ...]]:
    """The model's layers at ``input_shape``, checked against the variables' kernels.

    Without ``input_shape``: the default size, with the input channels of the variables
    (a SqueezeNet trained on RGB has a 3-channel conv1)."""
    params = variables.get("params") if isinstance(variables, Mapping) else None
    if not isinstance(params, Mapping):
        raise ExportError("variables need a 'params' collection (and 'batch_stats')")
    shape = tuple(input_shape or model.default_input_shape)
    layers = models.trace_layers(model, shape)
    if input_shape is None:
        first = np.shape(subtree(params, layers[0].name, "params").get("kernel"))
        if len(first) == 4 and first[2] != shape[2]:
            shape = (*shape[:2], int(first[2]))
            layers = models.trace_layers(model, shape)
    for info in layers:
        kernel = np.shape(subtree(params, info.name, "params").get("kernel"))
        if kernel != info.kernel_shape:
            raise ExportError(
                f"layer {info.name!r}: the variables' kernel is {kernel}, the model at input "
                f"{shape} has {info.kernel_shape}; pass the input_shape the model was "
                "trained at"
            )
    return shape, layers
