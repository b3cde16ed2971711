"""TensorBoard event files written without TensorFlow: the scalars a training run logs.

    writer = ScalarWriter(epath.Path(workdir) / "tensorboard")
    writer.write_scalars(100, {"train_loss": 0.7, "train_accuracy": 0.81})
    writer.close()

Why not clu's ``metric_writers`` or ``tf.summary``: both import TensorFlow, which costs
a process about 4 s and prints TensorFlow's start-up lines, and binflax needs TensorFlow
only for its TFDS pipelines (a digits run never loads it). An event file is a TFRecord
file of ``Event`` protocol buffers; TensorBoard's own protos and record framing write
it here, so ``tensorboard --logdir`` reads it as any other. The file is opened through
``etils.epath``, so a ``gs://`` workdir works as a local one.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from etils import epath
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


class ScalarWriter:
    """Appends scalar summaries to one new event file in ``logdir``; inert if disabled.

    ``enabled=False`` (every process but process 0 of a multi-process run) writes
    nothing, so callers need no guard of their own.
    """

    def __init__(self, logdir: epath.PathLike, *, enabled: bool = True):
        self._records: RecordWriter | None = None
        if not enabled:
            return
        directory = epath.Path(logdir)
        directory.mkdir(parents=True, exist_ok=True)
        # TensorBoard finds event files by the "tfevents" in their names; the time, host
        # and process make each run's file name unique, as TensorFlow's writer does.
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
        self._records = RecordWriter((directory / name).open("wb"))
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """One event at ``step`` holding every scalar; flushed so a live TensorBoard sees it."""
        if self._records is None:
            return
        values = [
            summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in scalars.items()
        ]
        self._write(
            event_pb2.Event(
                wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)
            )
        )

    def close(self) -> None:
        if self._records is not None:
            self._records.close()
            self._records = None

    def _write(self, event: event_pb2.Event) -> None:
        self._records.write(event.SerializeToString())
        self._records.flush()
