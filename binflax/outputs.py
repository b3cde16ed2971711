"""What a run prints and writes, from one process only.

Why one helper: in a multi-process run every process executes the same code, but only
process 0 may print progress or write the run's files (results, plans, reports, the
evaluation history); the others would repeat every line and race on every file. Paths
go through ``etils.epath``, so a ``gs://`` workdir works as a local one.

    log("[fbin] step 100/315 ...")
    write_json(workdir / "results.json", results)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jax
from etils import epath


def main_process() -> bool:
    """True in the process that prints and writes (process 0; the only one on one host)."""
    return jax.process_index() == 0


def log(message: str) -> None:
    """A console line, from the main process only."""
    if main_process():
        print(message, flush=True)


def write(path: epath.PathLike, writer: Callable[[epath.Path], Any]) -> None:
    """``writer(path)`` from the main process only, ``path``'s directory created: the one
    way a run writes a file, so a writer (``Plan.save``, a plot) never checks the
    process itself."""
    if main_process():
        path = epath.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer(path)


def write_bytes(path: epath.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` from the main process, creating its directory."""
    write(path, lambda p: p.write_bytes(data))


def write_text(path: epath.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` from the main process, creating its directory."""
    write_bytes(path, text.encode())


def write_json(path: epath.PathLike, data: Any) -> None:
    """``data`` as indented JSON (with a final newline), from the main process."""
    write_text(path, json.dumps(data, indent=2) + "\n")
