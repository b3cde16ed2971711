"""Orbax checkpoints for a training run: resume from the latest, keep the best, save on SIGTERM.

Why two managers: resuming needs the *latest* state (kept ``keep`` deep), while the
HBN pipeline measures, exports and reports the *best* state on held-out data. Orbax's
``best_fn`` keeps the top checkpoints by a metric, which is a different policy from
keep-the-latest, so each lives in its own directory:

    WORKDIR/checkpoints/<step>/   latest K, with the step (the data position is the step)
    WORKDIR/best/<step>/          the best holdout top-1 so far (the reported checkpoint)

Saves are synchronous and Orbax writes each one atomically (temporary directory, then
rename), so a run killed with SIGKILL mid-save resumes from the previous checkpoint.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from binflax.errors import UserError

# The layout of a run's checkpoints, owned here: WORKDIR/LATEST/<step>/, WORKDIR/BEST/<step>/.
LATEST = "checkpoints"
BEST = "best"


class CheckpointError(UserError):
    """A run directory without a usable checkpoint; the message names the directory."""


def has_checkpoints(directory: epath.PathLike) -> bool:
    """Whether ``directory`` is a training run with checkpoints (its ``LATEST`` folder)."""
    return (epath.Path(directory) / LATEST).is_dir()


class Checkpoints:
    """The latest-K and best-1 checkpoints of one training run in ``directory``."""

    def __init__(self, directory: str, keep: int = 2):
        directory = os.path.abspath(directory)
        self.directory = directory
        self._latest = ocp.CheckpointManager(
            os.path.join(directory, LATEST),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
        )
        self._best = ocp.CheckpointManager(
            os.path.join(directory, BEST),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                best_fn=lambda metrics: metrics["top1"],
                best_mode="max",
                create=True,
                enable_async_checkpointing=False,
            ),
        )

    @property
    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    @property
    def best_step(self) -> int | None:
        return self._best.best_step()

    def save(self, step: int, state: Any) -> None:
        if self._latest.latest_step() != step:
            self._latest.save(step, args=ocp.args.StandardSave(state), force=True)

    def save_if_best(self, step: int, state: Any, metrics: dict) -> None:
        metrics = {k: float(v) for k, v in metrics.items() if v is not None}
        self._best.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)

    def restore_latest(self, target: Any) -> Any:
        """The latest state shaped and sharded like ``target``, or None when there is none."""
        return self._restore(self._latest, self._latest.latest_step(), target)

    def restore_best(self, target: Any) -> Any:
        """The best-evaluated state (falls back to the latest), or None."""
        step = self._best.best_step()
        if step is None:
            return self.restore_latest(target)
        return self._restore(self._best, step, target)

    @staticmethod
    def _restore(manager: ocp.CheckpointManager, step: int | None, target: Any) -> Any:
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._latest.close()
        self._best.close()


class PreemptionGuard:
    """Turns SIGTERM into a flag the loop polls, so it can save and exit cleanly.

    Used as a context manager; the previous handler is restored on exit.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __enter__(self) -> PreemptionGuard:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
