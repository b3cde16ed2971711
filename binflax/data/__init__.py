"""Input pipelines, one entry point for every dataset binflax trains on.

Why one interface: the training loop, ``select`` and ``eval`` must not care whether the
images come from scikit-learn's embedded digits or from ImageNet through TFDS. Every
dataset answers the same three calls:

- :func:`get_info` - classes, image shape, split sizes, eval crops;
- :func:`train_batches` - an endless, deterministic stream of this process's share of
  each global batch, resumable at any step (the checkpoint stores the step);
- :func:`eval_batches` - one pass over ``"holdout"`` (a slice carved from the training
  split, used by ``select``) or ``"test"``, the last batch padded and masked.

Batches are dicts of NumPy arrays: ``image`` float32 NHWC (or ``(B, crops, H, W, C)``
for multi-crop evaluation), ``label`` int32, and ``mask`` bool for eval.

``config.dataset`` is ``digits`` (embedded), any TFDS image-classification dataset by
name (binflax's own ``tu_berlin`` and ``sketchy``, registered with TFDS by
:mod:`binflax.data.tfds_metadata`, or TFDS's ``mnist``, ``fashion_mnist``, ``cifar10``,
...),
``folder:PATH`` (``PATH/<split>/<class>/<image>``) or ``idx:DIR`` (MNIST-format files,
read with NumPy: :mod:`binflax.data.idx_files`). ``python -m binflax.data.prepare
NAME --manual_dir DIR`` prepares a TFDS dataset from files you have (docs/data.md).
TFDS is imported only where a TFDS dataset is used, and TensorFlow only when such a
pipeline runs, quiet and with every accelerator hidden from it: a digits or ``idx:``
run loads neither (so it runs where they are not installed).
"""

from __future__ import annotations

from collections.abc import Iterator

import ml_collections

# Neither TFDS nor TensorFlow at import: binflax's TFDS builders (sketchy, tu_berlin) are
# registered by binflax.data.tfds_metadata, which every TFDS path imports.
from binflax.data import digits, idx_files
from binflax.data.common import DatasetError, DatasetInfo, process_slice
from binflax.data.recipes import AUGMENTS, FOLDER_PREFIX, RECIPES

__all__ = [
    "AUGMENTS",
    "DATASETS",
    "EMBEDDED",
    "FOLDER_PREFIX",
    "DatasetError",
    "DatasetInfo",
    "eval_batches",
    "get_info",
    "train_batches",
]

EMBEDDED = {"digits": digits}  # datasets that need neither TFDS nor TensorFlow
# The datasets binflax has a recipe for; any other TFDS name and folder:PATH work too.
DATASETS = (*EMBEDDED, *RECIPES)


def _source(config: ml_collections.ConfigDict):
    if config.dataset in EMBEDDED:
        return EMBEDDED[config.dataset]
    if idx_files.directory(config.dataset) is not None:
        return idx_files
    from binflax.data import pipelines  # TensorFlow is imported only when needed

    return pipelines


def get_info(config: ml_collections.ConfigDict) -> DatasetInfo:
    """What the model and the loop need to know about ``config.dataset``."""
    return _source(config).get_info(config)


def train_batches(
    config: ml_collections.ConfigDict,
    *,
    seed: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict]:
    """This process's share of every global training batch from ``start_step`` on."""
    index, count = process_slice(process_index, process_count)
    return _source(config).train_batches(
        config, seed=seed, start_step=start_step, process_index=index, process_count=count
    )


def eval_batches(
    config: ml_collections.ConfigDict,
    split: str = "test",
    *,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict]:
    """One pass over ``split`` (``"holdout"`` or ``"test"``), padded and masked."""
    if split not in ("holdout", "test"):
        raise ValueError(f"eval split must be 'holdout' or 'test', got {split!r}")
    index, count = process_slice(process_index, process_count)
    return _source(config).eval_batches(config, split, process_index=index, process_count=count)
