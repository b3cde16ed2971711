"""Bit-packed export of a planned model, and its exact integer inference path.

Why: the paper's promise is the memory and speed of binarization. This package makes
them real and measured: :func:`export_model` writes binary kernels at one bit per
weight (Larq Compute Engine's packing) with batch norm folded, :func:`load` reads the
file back with every check a deployment needs, and :func:`integer_forward` runs the
exported network with every binary-input, binary-weight layer in exact integer
arithmetic, giving the fake-quantized float model's logits, and :func:`latency` measures
that against the fastest float32 run of the same network.

    >>> import os, tempfile
    >>> import jax.numpy as jnp
    >>> from binflax import export, models
    >>> model = models.create("mini_sketchanet", plan="fbin")
    >>> variables = export.zero_variables(model)
    >>> path = os.path.join(tempfile.mkdtemp(), "mini_sketchanet.npz")
    >>> report = export.export_model(model, variables, path)
    >>> exported = export.load(path)
    >>> export.integer_forward(exported, jnp.zeros((1, *model.default_input_shape))).shape
    (1, 10)

Modules: :mod:`~binflax.export.format` (the file), :mod:`~binflax.export.schema` (its
member names and header entries), :mod:`~binflax.export.fold` (BN folding and packing),
:mod:`~binflax.export.writer` (a whole network written with its programs),
:mod:`~binflax.export.loaded` (a file loaded and run), :mod:`~binflax.export.memory`
(measured memory), :mod:`~binflax.export.inference` (the integer path),
:mod:`~binflax.export.arithmetic` (which arithmetic each XNOR unit runs),
:mod:`~binflax.export.chain` (packed activations between XNOR units),
:mod:`~binflax.export.latency` (measured speed),
:mod:`~binflax.export.latency_table` (each layer's measured time at each precision, a
cost for the selection) and :mod:`~binflax.export.shared` (an export into a multi-host
run's shared workdir); the packed arithmetic itself is
:mod:`binflax.packing`. The design and the file format are in docs/export.md.
"""

from binflax.export.format import FORMAT, VERSION, ExportError
from binflax.export.latency import float_calls, latency, time_calls
from binflax.export.latency_table import LatencyTable, latency_table
from binflax.export.loaded import ARITHMETICS, ExportedModel, integer_forward, load
from binflax.export.memory import memory_report, zero_variables
from binflax.export.shared import export_and_load
from binflax.export.writer import export_model, float32_checkpoint_bytes

__all__ = [
    "ARITHMETICS",
    "FORMAT",
    "VERSION",
    "ExportError",
    "ExportedModel",
    "LatencyTable",
    "export_and_load",
    "export_model",
    "float32_checkpoint_bytes",
    "float_calls",
    "integer_forward",
    "latency",
    "latency_table",
    "load",
    "memory_report",
    "time_calls",
    "zero_variables",
]
