"""Batches from arrays in memory: the datasets that need neither TFDS nor TensorFlow.

Pure NumPy: a training batch is formed by indexing a per-epoch permutation drawn from
``(seed, epoch)``, so a global step maps to exactly one set of examples and a restart at
any step repeats and skips nothing; an evaluation pass goes in order, its last batch
padded and masked. Each process takes its own slice of every global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

from binflax.data.common import DatasetError, per_process_batch


def train_batches(
    images: np.ndarray,
    labels: np.ndarray,
    global_batch: int,
    *,
    seed: int,
    start_step: int,
    process_index: int,
    process_count: int,
) -> Iterator[dict]:
    """This process's share of every global training batch from ``start_step`` on."""
    local_batch = per_process_batch(global_batch, process_count)
    steps_per_epoch = len(labels) // global_batch
    if steps_per_epoch == 0:
        raise DatasetError(
            f"config.batch_size={global_batch} exceeds the {len(labels)} training examples"
        )
    step = start_step
    while True:
        epoch, within = divmod(step, steps_per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(labels))
        start = within * global_batch + process_index * local_batch
        idx = order[start : start + local_batch]
        yield {"image": images[idx], "label": labels[idx]}
        step += 1


def eval_batches(
    images: np.ndarray,
    labels: np.ndarray,
    global_batch: int,
    *,
    process_index: int,
    process_count: int,
) -> Iterator[dict]:
    """One pass in order, this process's share of each batch, the last one padded with
    the first example and masked."""
    local_batch = per_process_batch(global_batch, process_count, "eval_batch_size")
    for start in range(0, len(labels), global_batch):
        lo = start + process_index * local_batch
        idx = np.arange(lo, lo + local_batch)
        mask = idx < len(labels)
        idx = np.where(mask, idx, 0)
        yield {"image": images[idx], "label": labels[idx], "mask": mask}


class Source:
    """A dataset's ``train_batches`` and ``eval_batches`` (binflax.data's interface) from
    ``load(config)``, its splits as ``{"train" | "holdout" | "test": (images, labels)}``."""

    def __init__(self, load: Callable[..., Mapping[str, tuple[np.ndarray, np.ndarray]]]):
        self.load = load

    def train_batches(
        self, config, *, seed: int, start_step: int, process_index: int, process_count: int
    ) -> Iterator[dict]:
        images, labels = self.load(config)["train"]
        return train_batches(
            images,
            labels,
            int(config.batch_size),
            seed=seed,
            start_step=start_step,
            process_index=process_index,
            process_count=process_count,
        )

    def eval_batches(
        self, config, split: str, *, process_index: int, process_count: int
    ) -> Iterator[dict]:
        images, labels = self.load(config)[split]
        return eval_batches(
            images,
            labels,
            int(config.eval_batch_size),
            process_index=process_index,
            process_count=process_count,
        )
