"""Each layer's measured time at each input precision, on this machine's export kernels.

Why measured: the paper's cost, equivalent FLOPs, prices a binary MAC at 1/58 of a float
one and a k-bit input at k binary planes; what a layer costs on a given CPU depends on
its shape, its kernel and its memory traffic (docs/benchmarks.md: the same XNOR layer runs
at 1.0x to 4.4x XLA's popcount depending on its shape). :func:`latency_table` runs every
planned layer of a network alone, as the exported program computes it (``auto``'s
arithmetic for each: the native kernel's bit planes, int8 or exact float32 for 8-bit
layers, float32 for float inputs), at each input precision of the mixed-precision search,
and :class:`LatencyTable` saves it as a JSON file that ``config.hbn.cost_table`` hands to
the selection as its cost (:meth:`binflax.select.CostTable.from_latency`): the budget is
then a multiple of the fbin network's summed layer times.

    >>> table = latency_table(model, precisions=(1, 2, 4, 8, 32))   # doctest: +SKIP
    >>> table.save("latency.json")                                  # doctest: +SKIP

What a layer's time leaves out: the packed links between binary layers (each layer here
reads and writes its float map) and the pools, activations and shortcuts around the
layers. Times are medians of calls interleaved across every layer and precision, after a
warm-up call of each, so that load on a shared machine affects every cell alike; each is
net of an empty jitted call (its dispatch).
"""

from __future__ import annotations

import dataclasses
import json
import platform
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import numpy as np
from etils import epath

from binflax import native, provenance, tracing
from binflax.binarized_nnx import linen_view
from binflax.export import inference
from binflax.export.fold import fold_variables
from binflax.export.format import ExportError
from binflax.export.latency import time_calls
from binflax.export.schema import grouped
from binflax.plan import BITS, EDGE_INPUT_PRECISIONS, LayerPrecision, Plan, precision_name
from binflax.testing import random_variables

FORMAT = "binflax.latency_table"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class LatencyTable:
    """``ms[layer][bits]``: a layer's median time alone at each input bit-width it was
    measured at (its weights as the plan has them), and ``plan_bits[layer]``, the
    bit-width the network's own plan gives it; with where and how it was measured."""

    network: str
    input_shape: tuple[int, ...]
    batch: int
    repeats: int
    ms: dict[str, dict[int, float]]
    plan_bits: dict[str, int]
    machine: dict

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "network": self.network,
            "input_shape": list(self.input_shape),
            "batch": self.batch,
            "repeats": self.repeats,
            "unit": "ms",
            "ms": {name: {str(b): t for b, t in row.items()} for name, row in self.ms.items()},
            "plan_bits": self.plan_bits,
            "machine": self.machine,
        }

    def save(self, path: epath.PathLike) -> None:
        path = epath.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: epath.PathLike) -> LatencyTable:
        """A saved table; a file that is not one names what is wrong."""
        try:
            data = json.loads(epath.Path(path).read_text())
        except FileNotFoundError:
            raise ExportError(f"{path}: no latency table there") from None
        except (OSError, ValueError) as e:
            raise ExportError(f"{path}: not a latency table: {e}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ExportError(f"{path}: not a binflax latency table (format {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ExportError(
                f"{path}: latency table version {data.get('version')!r}; this binflax reads "
                f"version {VERSION}"
            )
        try:
            return cls(
                network=data["network"],
                input_shape=tuple(data["input_shape"]),
                batch=int(data["batch"]),
                repeats=int(data["repeats"]),
                ms={n: {int(b): float(t) for b, t in row.items()} for n, row in data["ms"].items()},
                plan_bits={n: int(b) for n, b in data["plan_bits"].items()},
                machine=dict(data["machine"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{path}: the latency table is incomplete: {e!r}") from None


def latency_table(
    model: nn.Module,
    *,
    precisions: Sequence[int] = (1, 2, 4, 8, 32),
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    repeats: int = 7,
) -> LatencyTable:
    """Every planned layer of ``model`` timed alone at each input bit-width of
    ``precisions`` that it can take, as the export runs it on this machine.

    The plan's binary-input layers (the mixed-precision search's candidates) are timed at
    every bit-width; the others at their own precision and, for the first and last layer,
    at 8 bits where ``precisions`` has it. Weights stay as the plan has them, except that
    an edge layer at 8 bits takes 8-bit weights. The times do not depend on the weights'
    values, so each precision's network runs on random ones (its variables differ from
    the plan's anyway: a k-bit input has a learned step). A binarized NNX module is
    timed as its linen face."""
    model, _ = linen_view(model)
    plan = getattr(model, "plan", None)
    if plan is None:
        raise ExportError("the model has no plan; build it with a plan (e.g. 'fbin')")
    shape = tuple(input_shape or model.default_input_shape)
    unknown = [b for b in precisions if b not in BITS.values()]
    if unknown:
        raise ValueError(f"precisions {unknown}: bit-widths are {sorted(set(BITS.values()))}")
    edges = {plan.names[0], plan.names[-1]}
    wanted = {(name, bits) for bits in precisions for name in _layers_at(plan, bits, edges)}
    wanted |= {(layer.name, BITS[layer.input]) for layer in plan}  # each at its own too
    calls: dict[str, Callable[[], jax.Array]] = {}
    for bits in sorted({b for _, b in wanted}):
        names = [name for name in plan.names if (name, bits) in wanted]
        variant_model = model.clone(plan=Plan(_with_inputs(plan, names, bits), name=f"{bits}"))
        for name, call in _layer_calls(variant_model, names, shape, batch):
            calls[f"{name}@{bits}"] = call
    nothing = jax.jit(lambda x: x + 1)
    one = jax.device_put(np.zeros(8, np.float32))
    timed = time_calls({**calls, "dispatch": lambda: nothing(one)}, repeats)
    dispatch = timed.pop("dispatch")
    ms: dict[str, dict[int, float]] = {name: {} for name in plan.names}
    for key, t in timed.items():
        name, bits = key.rsplit("@", 1)
        ms[name][int(bits)] = round(max(t - dispatch, 1e-4), 5)
    cpu, _, _ = provenance.cpuinfo()
    return LatencyTable(
        network=type(model).__name__,
        input_shape=shape,
        batch=batch,
        repeats=repeats,
        ms={name: dict(sorted(row.items())) for name, row in ms.items()},
        plan_bits={layer.name: BITS[layer.input] for layer in plan},
        machine={
            "cpu": cpu or platform.processor(),
            "native_isa": native.isa() if native.available() else None,
            "backend": jax.default_backend(),
            "jax": jax.__version__,
            "dispatch_ms": round(dispatch, 5),
        },
    )


def _layers_at(plan: Plan, bits: int, edges: set[str]) -> list[str]:
    """The layers timed at ``bits``: the candidates (binary inputs in the plan) at any,
    the first and last at 8 bits or their own, any other at its own."""
    name = precision_name(bits)
    edge_bits = name in EDGE_INPUT_PRECISIONS
    return [
        layer.name
        for layer in plan
        if layer.binary_input or layer.input == name or (layer.name in edges and edge_bits)
    ]


def _with_inputs(plan: Plan, names: Sequence[str], bits: int) -> list[LayerPrecision]:
    """``plan`` with the inputs of ``names`` at ``bits``; an edge at 8 bits takes 8-bit
    weights (the deployment convention), a float edge its plan's."""
    name = precision_name(bits)
    out = []
    for layer in plan:
        if layer.name not in names or layer.input == name:
            out.append(layer)
        elif name == "int8" and not layer.binary_input:
            out.append(LayerPrecision(layer.name, name, "int8"))
        else:
            out.append(LayerPrecision(layer.name, name, layer.weight))
    return out


def _layer_calls(model: nn.Module, names: Sequence[str], shape, batch: int):
    """``(name, call)`` for each of ``names``: the layer alone as ``auto`` runs it."""
    layers = tracing.trace_layers(model, shape)
    traced = {info.name: info for info in layers}
    stored = grouped(fold_variables(layers, random_variables(model, shape)))
    plan = inference.variant(layers, (), "auto", chain=False, backend=jax.default_backend())
    with jax.enable_x64(True):
        prepared = inference.prepare(layers, stored, plan)
    rng = np.random.default_rng(0)
    for name in names:
        info = traced[name]
        x = rng.standard_normal((batch, *info.input_shape[1:])).astype(np.float32)
        computation = plan.computation(name)

        def forward(arrays, x, info=info, computation=computation):
            return inference.layer_forward(info, arrays, x, computation)

        with jax.enable_x64(True):
            jitted = jax.jit(forward)
            arrays, device_x = jax.device_put((prepared[name], x))

        def call(jitted=jitted, arrays=arrays, device_x=device_x):
            with jax.enable_x64(True):
                return jitted(arrays, device_x)

        yield name, call
