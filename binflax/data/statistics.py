"""Per-channel normalization statistics of a dataset binflax has no published figures for.

Why computed: a TFDS dataset or image folder without published statistics still needs
inputs of zero mean and unit variance, which sign's threshold at 0 relies on. The mean
and standard deviation of every channel over the training split (holdout included:
[choice] the statistics are a property of the data set, and the holdout is part of it)
are computed once, from the images as evaluation sees them (decoded and resized to
``config.image_size``, before augmentation).

For a TFDS dataset they are recorded beside the prepared data, as
``<data_dir>/<name>/<version>/binflax_statistics.json`` keyed by image shape, so every
later run (and every process of a multi-process one) reads the same figures. An image
folder is not binflax's to write into: its statistics are computed once per process.
"""

from __future__ import annotations

import json

import numpy as np
from etils import epath

from binflax import outputs
from binflax.data import augment
from binflax.data.common import tensorflow
from binflax.outputs import log

tf = tensorflow()

STATISTICS_FILE = "binflax_statistics.json"


def compute(records: tf.data.Dataset, *, size: int, channels: int) -> tuple[tuple, tuple]:
    """``(mean, std)``, one value per channel, of the records' decoded images."""

    def pixels(example):
        return augment.decode_resized(example["image"], size=size, channels=channels)

    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    ds = records.map(pixels, num_parallel_calls=tf.data.AUTOTUNE).batch(256)
    for batch in ds.as_numpy_iterator():
        values = batch.astype(np.float64).reshape(-1, channels)
        total += values.sum(0)
        squares += (values**2).sum(0)
        count += len(values)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
    std = np.where(std > 1e-3, std, 1.0)  # a constant channel (up to rounding) is only centred
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def recorded_or_computed(
    directory: epath.Path | None, name: str, records, *, size: int, channels: int
) -> tuple[tuple, tuple]:
    """The statistics recorded in ``directory`` for this image shape, else computed (and
    recorded there by process 0, when ``directory`` is given)."""
    key = f"{size}x{size}x{channels}"
    path = directory / STATISTICS_FILE if directory is not None else None
    recorded = json.loads(path.read_text()) if path is not None and path.exists() else {}
    if key in recorded:
        return tuple(recorded[key]["mean"]), tuple(recorded[key]["std"])
    log(f"[data] computing {name}'s per-channel mean and std at {key} from its training split")
    mean, std = compute(records, size=size, channels=channels)
    if path is not None:
        outputs.write_json(path, {**recorded, key: {"mean": mean, "std": std}})
    return mean, std
