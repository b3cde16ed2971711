"""Batches from arrays in memory: the datasets that need neither TFDS nor TensorFlow.

Pure NumPy: a training batch is formed by indexing a per-epoch permutation drawn from
``(seed, epoch)``, so a global step maps to exactly one set of examples and a restart at
any step repeats and skips nothing; an evaluation pass goes in order, its last batch
padded and masked. Each process takes its own slice of every global batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from binflax.data.common import DatasetError, per_process_batch


class Source:
    """A dataset's ``train_batches`` and ``eval_batches`` (binflax.data's interface) from
    ``load(config)``, its splits as ``{"train" | "holdout" | "test": (images, labels)}``."""

    def __init__(self, load: Callable[..., Mapping[str, tuple[np.ndarray, np.ndarray]]]):
        self.load = load

    def train_batches(
        self, config, *, seed: int, start_step: int, process_index: int, process_count: int
    ) -> Iterator[dict]:
        """This process's share of every global training batch from ``start_step`` on.
        The data are loaded and the batch checked when it is called, not at the first
        batch."""
        images, labels = self.load(config)["train"]
        global_batch = int(config.batch_size)
        local_batch = per_process_batch(global_batch, process_count)
        steps_per_epoch = len(labels) // global_batch
        if steps_per_epoch == 0:
            raise DatasetError(
                f"config.batch_size={global_batch} exceeds the {len(labels)} training examples"
            )

        def batches() -> Iterator[dict]:
            for step in itertools.count(start_step):
                epoch, within = divmod(step, steps_per_epoch)
                order = np.random.default_rng([seed, epoch]).permutation(len(labels))
                start = within * global_batch + process_index * local_batch
                idx = order[start : start + local_batch]
                yield {"image": images[idx], "label": labels[idx]}

        return batches()

    def eval_batches(
        self, config, split: str, *, process_index: int, process_count: int
    ) -> Iterator[dict]:
        """One pass over ``split`` in order, this process's share of each batch, the last
        one padded with the first example and masked."""
        images, labels = self.load(config)[split]
        global_batch = int(config.eval_batch_size)
        local_batch = per_process_batch(global_batch, process_count, "eval_batch_size")

        def batches() -> Iterator[dict]:
            for start in range(0, len(labels), global_batch):
                lo = start + process_index * local_batch
                idx = np.arange(lo, lo + local_batch)
                mask = idx < len(labels)
                idx = np.where(mask, idx, 0)
                yield {"image": images[idx], "label": labels[idx], "mask": mask}

        return batches()
