"""Measured memory of an export, without a trained model: :func:`memory_report`.

Why measured and not predicted: ``binflax.cost`` predicts a binary network's memory, and
``--mode=summary`` checks that prediction against the size of a real export file's
weights, written without its programs to a temporary directory from
:func:`zero_variables` (sizes do not depend on values), so no network needs training or
even initialising to be measured.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from binflax.binarized_nnx import linen_view
from binflax.export.writer import export_model


def zero_variables(model: nn.Module, input_shape: Sequence[int] | None = None) -> dict:
    """Zero ``params`` and ``batch_stats`` of the right shapes, from ``jax.eval_shape`` only.

    Sizes do not depend on values, so this measures an export without initialising
    (AlexNet's 62 M parameters are never drawn). A binarized NNX module: its linen face's.
    """
    model, _ = linen_view(model)
    shape = tuple(input_shape or model.default_input_shape)
    abstract = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape), jnp.float32))
    )
    return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), dict(abstract))


def memory_report(
    model: nn.Module,
    variables: Mapping | None = None,
    *,
    input_shape: Sequence[int] | None = None,
) -> dict:
    """Measured export size vs float32 checkpoint vs the cost model, for ``summary``.

    Writes the export's weights to a temporary file (``export_model(...,
    programs=False)``, with :func:`zero_variables` when ``variables`` is None): the
    programs are code that does not grow with the weights, and tracing and serializing
    them is most of an export's time. Returns :func:`export_model`'s report without
    ``path``, ``file_bytes`` and ``program_bytes``, plus ``weights_bytes`` (that file's
    measured size: the layers' arrays, the network's own variables, the header and
    ~300 bytes of zip and npy headers per array), ``compression`` (float32 bytes /
    weights bytes) and ``prediction_error`` (weights bytes / predicted bytes - 1). A
    binarized NNX module with ``variables`` ``None`` exports its own values.
    """
    model, variables = linen_view(model, variables)
    if variables is None:
        variables = zero_variables(model, input_shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = epath.Path(tmp) / "model.npz"
        report = export_model(model, variables, path, input_shape=input_shape, programs=False)
    report["weights_bytes"] = weights = report.pop("file_bytes")
    for key in ("path", "program_bytes"):
        del report[key]
    report["compression"] = report["float32_bytes"] / weights
    report["prediction_error"] = weights / report["predicted_bytes"] - 1.0
    return report
