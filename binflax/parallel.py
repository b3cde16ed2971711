"""Data parallelism over every device of every process, with ``jax.jit`` on a device Mesh.

Why this shape: binflax's step is written for one global batch. The Mesh has a single
``data`` axis over all devices; the batch is sharded along it and the train state is
replicated, and XLA's SPMD partitioner inserts the gradient all-reduce. Batch-norm
statistics are means over the *global* batch for the same reason, so one device and
eight give the same step (tests/test_parallel.py). This is the supported successor of
``jax.pmap``; no per-device code is needed.

Multi-host: each process feeds only its own slice of every global batch
(``binflax.data.train_batches`` yields it) and :func:`global_batch` stitches the slices
into one ``jax.Array`` with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from binflax.errors import ConfigError

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-process job; on CPU the collectives go through gloo.

    With no arguments JAX auto-detects the cluster (Cloud TPU, SLURM, ...). Must run
    before anything touches a JAX backend. The gloo setting only affects CPU devices.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh, axis ``data``, over ``devices`` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, what: str = "batch_size") -> None:
    """A global batch must split evenly over the devices; the error names the field."""
    if global_batch % mesh.size:
        raise ConfigError(
            f"config.{what}={global_batch} is not divisible by the {mesh.size} devices"
        )


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of a batch -> global arrays sharded over ``data``."""
    sharding = batch_sharded(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in local.items()
    }


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree on every device of the mesh (the train state)."""
    return jax.device_put(tree, replicated(mesh))


def fetch(tree: Any) -> Any:
    """A replicated pytree back on the host as NumPy (every process gets the same)."""
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
