"""scikit-learn's handwritten digits: the embedded dataset the quickstart needs no download for.

1,797 8x8 grayscale digits, 10 classes. [choice] A fixed stratified split holds out 360
images as the test set (``random_state=0``), and ``config.holdout_fraction`` of the rest
as the held-out slice ``select`` measures on. Images are upscaled by pixel replication
to ``config.image_size`` (32 by default) and standardized with the training set's mean
and standard deviation.

Pure NumPy, batched by :mod:`binflax.data.arrays`.
"""

from __future__ import annotations

import functools

import numpy as np

from binflax.data import arrays
from binflax.data.common import DatasetError, DatasetInfo

NUM_TEST = 360


@functools.lru_cache(maxsize=4)
def _splits(image_size: int, holdout_fraction: float) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    if image_size % 8:
        raise DatasetError(f"config.image_size={image_size} must be a multiple of 8 for digits")
    factor = image_size // 8
    images = digits.images.astype(np.float32) / 16.0
    images = images.repeat(factor, axis=1).repeat(factor, axis=2)[..., None]
    labels = digits.target.astype(np.int32)
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=NUM_TEST, stratify=labels, random_state=0
    )
    num_holdout = round(holdout_fraction * len(y_rest))
    if num_holdout:
        x_train, x_hold, y_train, y_hold = train_test_split(
            x_rest, y_rest, test_size=num_holdout, stratify=y_rest, random_state=0
        )
    else:
        x_train, y_train = x_rest, y_rest
        x_hold, y_hold = x_rest[:0], y_rest[:0]
    mean, std = x_train.mean(), x_train.std()
    return {
        name: ((x - mean) / std, y)
        for name, (x, y) in {
            "train": (x_train, y_train),
            "holdout": (x_hold, y_hold),
            "test": (x_test, y_test),
        }.items()
    }


def _load(config):
    return _splits(int(config.image_size), float(config.holdout_fraction))


def get_info(config) -> DatasetInfo:
    splits = _load(config)
    return DatasetInfo(
        name="digits",
        num_classes=10,
        image_shape=(config.image_size, config.image_size, 1),
        num_examples={name: len(y) for name, (_, y) in splits.items()},
    )


_SOURCE = arrays.Source(_load)
train_batches = _SOURCE.train_batches
eval_batches = _SOURCE.eval_batches
