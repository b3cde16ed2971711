"""Orbax checkpoints for a training run: resume from the latest, keep the best, survive damage.

Why two managers: resuming needs the *latest* state (kept ``keep`` deep), while the
HBN pipeline measures, exports and reports the *best* state on held-out data. The
training loop decides which evaluation is the best (``binflax.eval_history`` holds every
one) and saves that state into a keep-1 manager of its own:

    WORKDIR/checkpoints/<step>/      latest K, with the step (the data position is the step)
    WORKDIR/best/<step>/             the best holdout top-1 so far (the reported checkpoint)
    WORKDIR/damaged/<kind>/<step>/   checkpoints that could not be restored, moved aside

Saves are synchronous and Orbax writes each one atomically (a temporary directory
renamed, or on Cloud Storage a commit marker), so a run killed with SIGKILL mid-save
resumes from the previous checkpoint.

**A damaged checkpoint does not end the run.** On spot TPUs and shared buckets the
newest checkpoint can be unreadable (a file truncated or garbled after its save). A
restore tries the checkpoints newest first and takes the first that restores; each
newer one that did not is reported in one line (step, path, reason) and moved to
``WORKDIR/damaged/`` - never deleted. A damaged *best* checkpoint falls back to the
latest intact one, saying so. When none restores, nothing is moved and the run stops
with a :class:`CheckpointError` naming the directory, rather than starting from
scratch. A checkpoint that reads fine but whose arrays do not fit the model (a config
changed under the same workdir) is not damage: it stops the run with a
:class:`CheckpointError` and is left where it is.

Every path goes through ``etils.epath``, so ``gs://`` workdirs work as local ones.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from binflax import outputs
from binflax.errors import UserError

# The layout of a run's checkpoints, owned here: WORKDIR/LATEST/<step>/, WORKDIR/BEST/<step>/,
# and WORKDIR/DAMAGED/<LATEST or BEST>/<step>/ for those set aside.
LATEST = "checkpoints"
BEST = "best"
DAMAGED = "damaged"


class CheckpointError(UserError):
    """A run directory without a usable checkpoint; the message names the directory."""


def has_checkpoints(directory: epath.PathLike) -> bool:
    """Whether ``directory`` is a training run with checkpoints (its ``LATEST`` folder)."""
    return (epath.Path(directory) / LATEST).is_dir()


def absolute(directory: epath.PathLike) -> epath.Path:
    """``directory`` as an absolute path: a URI (``gs://...``) as it is, a local path
    resolved against the working directory (Orbax's TensorStore needs absolute paths)."""
    path = epath.Path(directory)
    return path if "://" in str(directory) else path.resolve()


class Checkpoints:
    """The latest-K and best-1 checkpoints of one training run in ``directory``."""

    def __init__(self, directory: epath.PathLike, keep: int = 2):
        self.directory = absolute(directory)
        with _quiet():  # Orbax logs a damaged step's metadata here; restores report it
            self._latest = self._manager(LATEST, keep)
            self._best = self._manager(BEST, 1)

    def _manager(self, kind: str, keep: int) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self.directory / kind,
            item_handlers=ocp.StandardCheckpointHandler(),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
        )

    @property
    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    @property
    def best_step(self) -> int | None:
        return self._best.latest_step()

    def save(self, step: int, state: Any) -> None:
        if self._latest.latest_step() != step:
            self._latest.save(step, args=ocp.args.StandardSave(state), force=True)

    def save_best(self, step: int, state: Any) -> None:
        """Keeps ``state`` as the run's best (the previous best is dropped)."""
        if self._best.latest_step() != step:
            self._best.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore_latest(self, target: Any) -> tuple[int, Any] | None:
        """``(step, state)`` of the newest checkpoint that restores, shaped and sharded like
        ``target``; None when there is no checkpoint. Newer damaged ones are moved aside."""
        found, damaged = self._newest_restorable(self._latest, target)
        if found is None and damaged:
            raise self._none_restores(self._latest, damaged)
        self._set_aside(self._latest, LATEST, damaged)
        return found

    def restore_best(self, target: Any) -> tuple[int, Any] | None:
        """``(step, state)`` of the best checkpoint; the latest intact one when the best is
        damaged or was never saved; None when there is no checkpoint at all."""
        found, damaged = self._newest_restorable(self._best, target)
        if found is None:
            found = self.restore_latest(target)
            if found is None and damaged:
                raise self._none_restores(self._best, damaged)
            if damaged:
                outputs.log(
                    f"the best checkpoint is damaged; using the latest intact one, step "
                    f"{found[0]} in {self._latest.directory} (not chosen on the holdout)"
                )
        self._set_aside(self._best, BEST, damaged)
        return found

    def _newest_restorable(
        self, manager: ocp.CheckpointManager, target: Any
    ) -> tuple[tuple[int, Any] | None, list[tuple[int, Exception]]]:
        """The newest ``(step, state)`` that restores, and the newer steps that did not."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        damaged = []
        for step in sorted(manager.all_steps(), reverse=True):
            self._check_fits(manager, step, abstract)
            try:
                with _quiet(), _LEFTOVERS.watching(str(manager.directory)):
                    state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as err:  # noqa: BLE001 - it fits the model: damage
                damaged.append((step, err))
                continue
            return (step, state), damaged
        return None, damaged

    def _check_fits(self, manager: ocp.CheckpointManager, step: int, abstract: Any) -> None:
        """Raises :class:`CheckpointError` when checkpoint ``step``'s metadata is readable but
        its arrays are not the model's (not damage: the run's config changed); returns when
        they are, or when the metadata cannot be read (damage, which the restore finds).

        Checked before restoring, from the metadata alone: a restore into other shapes
        fails inside Orbax's asynchronous reads, whose threads then print hundreds of
        lines of tracebacks ("Event loop is closed") around binflax's one line."""
        try:
            with _quiet(), _LEFTOVERS.watching(str(manager.directory)):
                stored = manager.item_metadata(step)
        except Exception:  # noqa: BLE001 - unreadable metadata is damage
            return
        if stored is None:
            return
        have, want = _shapes(stored), _shapes(abstract)
        if have == want:
            return
        if len(have) != len(want):
            differ = f"{len(have)} arrays where this model has {len(want)}"
        else:
            a, b = next((a, b) for a, b in zip(have, want, strict=True) if a != b)
            differ = f"one is {a} where this model's is {b}"
        raise CheckpointError(
            f"the checkpoint at step {step} in {manager.directory} does not fit this "
            f"config's model (its arrays have other shapes: {differ}); was the workdir "
            "trained with another config? Use a fresh --workdir or that config."
        )

    def _none_restores(
        self, manager: ocp.CheckpointManager, damaged: list[tuple[int, Exception]]
    ) -> CheckpointError:
        steps = "; ".join(f"step {step}: {_first_line(err)}" for step, err in damaged)
        return CheckpointError(
            f"no checkpoint in {manager.directory} restores ({steps}). Nothing was moved or "
            "deleted; to start this run from scratch, move that directory away."
        )

    def _set_aside(
        self, manager: ocp.CheckpointManager, kind: str, damaged: list[tuple[int, Exception]]
    ) -> None:
        """Moves each damaged step to ``DAMAGED/kind/`` (process 0; the others wait), reports
        it in one line, and makes the manager forget it."""
        if not damaged:
            return
        name_format = ocp.path.step.standard_name_format()
        for step, err in damaged:
            source = name_format.find_step(manager.directory, step).path
            target = self.directory / DAMAGED / kind / source.name
            suffix = 1
            while target.exists():  # a step damaged before, in an earlier run
                suffix += 1
                target = target.with_name(f"{source.name}-{suffix}")
            if outputs.main_process():
                target.parent.mkdir(parents=True, exist_ok=True)
                source.rename(target)
            outputs.log(
                f"checkpoint step {step} at {source} is damaged ({_first_line(err)}); "
                f"moved to {target}"
            )
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"binflax set aside {manager.directory}")
        manager.reload()

    def close(self) -> None:
        self._latest.close()
        self._best.close()


def _shapes(tree: Any) -> list[tuple[int, ...]]:
    """The sorted shapes of every leaf (a Python scalar has shape ``()``): what must match
    for a checkpoint to fit a model. Dtypes are left out: Orbax casts on restore."""
    return sorted(tuple(getattr(x, "shape", ())) for x in jax.tree.leaves(tree))


def _first_line(err: Exception, limit: int = 160) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= limit else line[: limit - 3] + "..."
    return f"{type(err).__name__}: {line}"


class _RestoreLeftovers(logging.Filter):
    """Drops what a failed restore reports beside binflax's one line about the damage.
    TensorStore reads the damaged files on its own threads, and those that finish after
    Orbax closed their event loop report "Event loop is closed" through
    ``sys.unraisablehook`` (a bare traceback on stderr each), during the restore and for
    a while after it; the read futures, when collected, log "exception was never
    retrieved" through the ``asyncio`` logger. Measured: a resume past a checkpoint with
    garbled data files printed its one line and 6 to 390 lines of such tracebacks.

    Active around each restore; kept for the rest of the process once one has failed,
    and removed after a restore that succeeded where none had failed (nothing is then
    left over). It drops only those two reports (the logged ones only when they name a
    checkpoint directory being restored), and passes everything else on."""

    def __init__(self):
        super().__init__()
        self.directories: set[str] = set()
        self.failed = False
        self._previous_hook: Any = sys.unraisablehook

    @contextlib.contextmanager
    def watching(self, directory: str) -> Iterator[None]:
        """Around a restore from ``directory``. (Installed again where another hook
        replaced this one meanwhile, as pytest does around each test.)"""
        installed_here = sys.unraisablehook != self._unraisable
        if installed_here:
            self._previous_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
        logging.getLogger("asyncio").addFilter(self)  # once: a logger keeps no duplicates
        new = directory not in self.directories
        self.directories.add(directory)
        try:
            yield
        except BaseException:
            self.failed = True
            raise
        if not self.failed:
            if new:
                self.directories.discard(directory)
            if installed_here:
                sys.unraisablehook = self._previous_hook
                logging.getLogger("asyncio").removeFilter(self)

    def _unraisable(self, unraisable: Any) -> None:
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        self._previous_hook(unraisable)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "exception was never retrieved" in message
            and any(directory in message for directory in self.directories)
        )


_LEFTOVERS = _RestoreLeftovers()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences what Orbax and TensorStore log about an unreadable checkpoint (a traceback
    per array, through ``asyncio`` and ``absl``): binflax reports it in one line instead."""
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    except BaseException:
        # A failed restore's tasks log "exception never retrieved" when they are collected:
        # collect them while the loggers are quiet. Only then: a full collection takes
        # ~0.5 s with JAX loaded, and an intact checkpoint leaves nothing to log.
        gc.collect()
        raise
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


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
