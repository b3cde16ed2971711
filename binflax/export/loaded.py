"""A loaded export and how it runs: :func:`load`, :class:`ExportedModel`, :func:`integer_forward`.

Why nothing here knows the network: a deployment has neither the network's Python class
nor binflax's model registry, so the file carries every way the network runs as a
``jax.export`` program (:mod:`~binflax.export.writer`). Loading validates the file and
reads its header; a program is deserialized, and its packed weights prepared and put on
the device, on its first run and kept for the next. Nothing is pickled and no model is
rebuilt (except by :func:`rebuild_registered`, for ``latency``'s ``model.apply``
baseline only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from binflax import models, native
from binflax.export import arithmetic as arithmetic_lib
from binflax.export import inference
from binflax.export.format import ExportError, read_archive
from binflax.export.schema import (
    FLOAT_BASELINE,
    NETWORK_PREFIX,
    PROGRAM_PREFIX,
    grouped,
    layer_from_dict,
    link_from_dict,
)
from binflax.plan import Plan, PlanError
from binflax.tracing import LayerInfo

ARITHMETICS = arithmetic_lib.ARITHMETICS


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """A loaded export: its header, its arrays, its layers and its programs."""

    header: dict
    arrays: dict[str, np.ndarray]
    layers: tuple[LayerInfo, ...]
    path: str | None = None
    # Deserialized programs and the device arrays each takes, kept so that repeated
    # forwards neither convert nor re-transfer anything.
    cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def plan(self) -> Plan:
        return Plan.from_dict(self.header["plan"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.header["input_shape"])

    @property
    def program_bytes(self) -> int:
        """Bytes of the serialized programs (code, which the cost model does not count)."""
        return sum(a.nbytes for k, a in self.arrays.items() if k.startswith(PROGRAM_PREFIX))

    def layer_arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """``{layer path: {field: array}}``."""
        return grouped(
            {
                k: a
                for k, a in self.arrays.items()
                if not k.startswith((PROGRAM_PREFIX, NETWORK_PREFIX))
            }
        )

    def network_variables(self) -> dict:
        """What the network keeps outside its planned layers (its own batch norms, ...)."""
        flat = {
            key[len(NETWORK_PREFIX) :]: array
            for key, array in self.arrays.items()
            if key.startswith(NETWORK_PREFIX)
        }
        return flax.traverse_util.unflatten_dict(flat, sep="/") if flat else {}

    def program(self, name: str) -> jax.export.Exported:
        """The deserialized program of variant ``name`` (or :data:`FLOAT_BASELINE`)."""
        key = ("program", name)
        if key not in self.cache:
            member = (
                self.header["float_baseline"]
                if name == FLOAT_BASELINE
                else self.header["variants"][name]["program"]
            )
            try:
                self.cache[key] = jax.export.deserialize(bytearray(self.arrays[member].tobytes()))
            except Exception as e:  # a program this jax cannot read
                raise ExportError(f"{self.path}: cannot read program {member!r}: {e}") from None
        return self.cache[key]

    def variant(self, name: str) -> inference.Variant:
        """How variant ``name`` computes every layer, and its packed links."""
        entry = self.header["variants"][name]
        return inference.Variant(
            tuple((n, c) for n, c in entry["computations"]),
            tuple(link_from_dict(link) for link in entry["links"]),
        )

    def run(self, name: str, images: jax.Array) -> jax.Array:
        """Variant ``name``'s logits for ``images`` (N, *input_shape)."""
        if tuple(images.shape[1:]) != self.input_shape:
            raise ExportError(
                f"{self.path or 'the export'} was exported for inputs of "
                f"{self.input_shape} per example, got {tuple(images.shape[1:])}"
            )
        if self.header["variants"].get(name, {}).get("native") and not native.available():
            raise ExportError(
                f"{self.path or 'the export'}: variant {name!r} needs binflax's native "
                "kernel, which did not build here (see the warning above); run it with "
                "arithmetic='popcount' instead"
            )
        # 64-bit words for the popcount (binflax.packing.conv_xnor); only inside this call.
        with jax.enable_x64(True):
            call, prepared, variables = self._callable(name)
            return call(prepared, variables, jnp.asarray(images, jnp.float32))

    def _callable(self, name: str) -> tuple[Callable, Any, Any]:
        key = ("call", name)
        if key not in self.cache:
            program = self.program(name)
            if name == FLOAT_BASELINE:  # zero weights: a float32 conv's time ignores values
                (prepared, variables, _), _ = jax.tree.unflatten(
                    program.in_tree,
                    [np.zeros([int(d) for d in a.shape], a.dtype) for a in program.in_avals[:-1]]
                    + [None],
                )
            else:
                prepared = inference.prepare(self.layers, self.layer_arrays(), self.variant(name))
                _as_recorded(program, prepared)
                variables = self.network_variables()
            with jax.ensure_compile_time_eval():  # arrays for the cache even under a trace
                self.cache[key] = (
                    jax.jit(program.call),
                    jax.device_put(prepared),
                    jax.device_put(variables),
                )
        return self.cache[key]


def _as_recorded(program: jax.export.Exported, prepared: dict) -> None:
    """Drops the load-time kernel layouts (``kernel_laid``) a program does not take: a file
    written before binflax laid the native kernel's weights out at load, whose programs
    lay them out in every call (as exactly)."""
    (recorded, _, _), _ = jax.tree.unflatten(program.in_tree, [0] * program.in_tree.num_leaves)
    for name, arrays in prepared.items():
        if "kernel_laid" in arrays and "kernel_laid" not in recorded.get(name, {}):
            del arrays["kernel_laid"]


def integer_forward(
    exported: ExportedModel,
    images: jax.Array,
    *,
    arithmetic: str = "auto",
    chain: bool = True,
) -> jax.Array:
    """Logits of the exported network for ``images``, XNOR layers in integer arithmetic.

    ``arithmetic`` is ``"auto"`` (on a CPU where the native kernel is built and the file
    has its programs, with ``chain``: every XNOR layer on the kernel, a fully-connected
    one on its own layout, :func:`binflax.export.arithmetic.xnor_arithmetic`; otherwise
    :func:`binflax.export.arithmetic.choose` for the default backend) or one of
    ``"int8"``, ``"int8_dot"``, ``"popcount"``, ``"native"`` for every XNOR layer;
    ``chain`` passes packed words between XNOR layers where that is exact (popcount and
    native only). ``"native"`` on a file without native programs, or where the kernel
    does not build, is an :class:`ExportError`. Equals
    ``model.apply(variables, images, train=False)`` of the fake-quantized model up to
    float rounding (tests/test_export.py). Call it eagerly: it compiles the file's
    program itself.
    """
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"unknown arithmetic {arithmetic!r}; choose one of {ARITHMETICS}")
    variants = exported.header["variants"]
    if arithmetic == "auto":
        backend = jax.default_backend()
        if chain and backend == "cpu" and "auto_chain" in variants and native.available():
            return exported.run("auto_chain", jnp.asarray(images))
        arithmetic = arithmetic_lib.choose(backend)
    if arithmetic not in variants:
        raise ExportError(
            f"{exported.path or 'the export'} has no {arithmetic!r} programs: binflax's "
            "native kernel did not build where it was exported; export it again where it "
            "builds, or use arithmetic='popcount'"
        )
    name = f"{arithmetic}_chain" if arithmetic in inference.PACKED and chain else arithmetic
    return exported.run(name, jnp.asarray(images))


def load(path: epath.PathLike) -> ExportedModel:
    """Reads and validates an export (a local or ``gs://`` path); any defect is an
    :class:`ExportError`. Needs neither the network's class nor binflax's registry."""
    header, arrays = read_archive(path)
    if header.get("float_baseline", "") is None:
        raise ExportError(
            f"{path}: a weights-only file (export_model(..., programs=False)) has no program "
            "to run; export the network with its programs"
        )
    try:
        plan = Plan.from_dict(header["plan"])
        layers = tuple(layer_from_dict(entry) for entry in header["layers"])
        for entry in header["variants"].values():
            _ = [link_from_dict(link) for link in entry["links"]]
            if entry["program"] not in arrays:
                raise KeyError(entry["program"])
        if header["float_baseline"] not in arrays:
            raise KeyError(header["float_baseline"])
    except (KeyError, TypeError, ValueError, PlanError) as e:
        raise ExportError(f"{path}: the export header is incomplete or invalid: {e!r}") from None
    if [info.name for info in layers] != list(plan.names):
        raise ExportError(f"{path}: the header's layers do not match its plan")
    return ExportedModel(header=header, arrays=arrays, layers=layers, path=str(path))


def rebuild_registered(exported: ExportedModel) -> nn.Module | None:
    """The registered model an export came from (None for a network of your own), rebuilt
    with ``models.create``: only for the ``model.apply`` float baseline of ``latency``."""
    registered = exported.header.get("registered")
    if registered is None or registered["model"] not in models.MODELS:
        return None
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in registered["fields"].items()}
    return models.create(registered["model"], plan=exported.plan, **fields)
