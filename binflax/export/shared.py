"""An export into a workdir that every process of a multi-host run shares:
:func:`export_and_load`.

Why not :func:`~binflax.export.writer.export_model` straight to the workdir: every
process of a multi-host run checks the export (``--mode=export`` loads the file back and
runs it), but only the main one may write the shared workdir (:mod:`binflax.outputs`:
the others would race on the file). So each process exports into a local temporary
directory and loads that file, and the main process alone copies its bytes to the
workdir, local or ``gs://`` alike (``etils.epath``).
"""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Mapping, Sequence

import flax.linen as nn
from etils import epath

from binflax import outputs
from binflax.export.loaded import ExportedModel, load
from binflax.export.writer import export_model


def export_and_load(
    model: nn.Module,
    variables: Mapping,
    path: epath.PathLike,
    *,
    input_shape: Sequence[int] | None = None,
) -> tuple[dict, ExportedModel]:
    """Exports ``model`` with ``variables`` to ``path`` (a ``gs://`` one too) from the main
    process, and returns :func:`export_model`'s report (its ``path`` this one) and the
    file loaded back, in every process."""
    path = epath.Path(path)
    with tempfile.TemporaryDirectory(prefix="binflax-export-") as tmp:
        local = pathlib.Path(tmp) / path.name
        report = export_model(model, variables, local, input_shape=input_shape)
        exported = load(local)
        outputs.write_bytes(path, local.read_bytes())
    report["path"] = str(path)
    return report, exported
