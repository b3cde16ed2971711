"""Small pieces every input pipeline shares: dataset facts, errors, process sharding."""

from __future__ import annotations

import dataclasses
import functools
import os

import jax

from binflax.errors import ConfigError, UserError


class DatasetError(UserError, RuntimeError):
    """A dataset that is missing, incomplete or unreadable; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # (H, W, C) that the model receives
    num_examples: dict  # split name -> examples: "train", "holdout", "test"
    eval_crops: int = 1  # 10 for the sketch datasets' 10-crop evaluation


def process_slice(index: int | None, count: int | None) -> tuple[int, int]:
    """``(process_index, process_count)``, defaulting to this JAX process's."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    if not 0 <= index < count:
        raise ValueError(f"process_index {index} is not in [0, {count})")
    return index, count


def per_process_batch(global_batch: int, process_count: int, what: str = "batch_size") -> int:
    if global_batch % process_count:
        raise ConfigError(
            f"config.{what}={global_batch} does not split evenly over {process_count} processes"
        )
    return global_batch // process_count


# Read by TensorFlow when it loads; a value the user set is kept ([choice] 96).
QUIET_TENSORFLOW = {
    # TensorFlow's C++ INFO and WARNING lines (the CPU-feature notice on every x86 CPU).
    # JAX, imported before TensorFlow, sets its own default of 1 (INFO off), which stays.
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # oneDNN's custom CPU kernels, on by default on AVX-512 CPUs, announce themselves
    # through absl before any log level applies; binflax runs only tf.data image ops,
    # which gain nothing from them, and with them off every CPU runs the same kernels.
    "TF_ENABLE_ONEDNN_OPTS": "0",
}


@functools.cache
def tensorflow():
    """TensorFlow for tf.data and TFDS only: quiet, and with every accelerator hidden.

    JAX owns the GPUs and TPUs; a TensorFlow that initialised them would reserve their
    memory. TensorFlow's start-up lines would come before binflax's own output, so the
    environment in :data:`QUIET_TENSORFLOW` is set first. Call this before anything
    imports TensorFlow in the process: it is the one place binflax imports it.
    """
    for name, value in QUIET_TENSORFLOW.items():
        os.environ.setdefault(name, value)
    import tensorflow as tf

    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except RuntimeError as err:  # devices already initialised by someone else
            if tf.config.get_visible_devices(kind):
                raise RuntimeError(
                    f"TensorFlow already uses a {kind}; import binflax.data before running "
                    "any TensorFlow op so that it stays on the CPU"
                ) from err
    return tf
