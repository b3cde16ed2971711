"""tf.data pipelines for every dataset but the digits: TFDS datasets and image folders.

The three calls :mod:`binflax.data` dispatches to; :mod:`binflax.data.sources` opens the
dataset (splits, records, transform, normalization), the same way for all of them.

Training stream, per process (``B`` = ``config.batch_size // process_count``):
an epoch is ``S = (len(train) // process_count) // B`` steps. Epoch ``e`` reads this
process's shard of ``train`` with its file order shuffled by a seed derived from
``(seed, e)``, shuffles it through a ``config.shuffle_buffer`` buffer with the same seed,
keeps the first ``S * B`` examples, and batches them. Every example thus appears at most
once per epoch (the ``< B * process_count`` left over are dropped, a different few each
epoch), and each epoch has its own order. The augmentation seed of an example is
``(epoch seed, process offset + position in the epoch)``.

Resuming at step ``s`` = epoch ``s // S``, position ``(s % S) * B``: the epoch's stream
is rebuilt and its first positions are skipped *before decoding* (their bytes are read,
not decoded or augmented), so the batches are exactly those of the uninterrupted run.
The checkpoint needs only the step. With ``config.cache`` the shard is held in memory,
encoded, and read in TFDS order before the buffer shuffle ([choice]: a different,
equally deterministic order than without the cache; set ``config.shuffle_buffer`` to
at least the shard size for a full permutation).

Evaluation: one pass over this process's shard of ``holdout`` or ``test`` in TFDS order;
every process yields the same number of batches (that of the largest shard), the last
ones padded with zero images whose ``mask`` is False.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from binflax.data import sources
from binflax.data.common import DatasetError, DatasetInfo, per_process_batch, tensorflow
from binflax.data.tfds_source import in_memory

tf = tensorflow()
AUTOTUNE = tf.data.AUTOTUNE
_PROCESS_STRIDE = 1 << 40  # per-example seeds of different processes never collide


def get_info(config) -> DatasetInfo:
    source = sources.open_source(config, process_count=1)
    return DatasetInfo(
        name=config.dataset,
        num_classes=source.num_classes,
        image_shape=(config.image_size, config.image_size, source.channels),
        num_examples={name: len(span) for name, span in source.spans.items()},
        eval_crops=source.transform.eval_crops,
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch's file order, shuffle and augmentations."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)[0] >> 1)


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def _normalization(source: sources.Source, size: int) -> dict:
    """The keyword arguments every transform takes besides the image (and seed)."""
    return dict(size=size, channels=source.channels, mean=source.mean, std=source.std)


def _traced_once(source: sources.Source, size: int):
    """The training transform as one traced TensorFlow function, reused by every epoch."""
    options = _normalization(source, size)
    return tf.function(
        lambda encoded, seed: source.transform.train(encoded, seed, **options),
        input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([2], tf.int64)],
        autograph=False,
    )


def train_batches(
    config, *, seed: int, start_step: int, process_index: int, process_count: int
) -> Iterator[dict]:
    source = sources.open_source(config, process_count)
    local = per_process_batch(int(config.batch_size), process_count)
    train = source.spans["train"]
    steps = (len(train) // process_count) // local
    if steps == 0:
        raise DatasetError(
            f"config.batch_size={config.batch_size} exceeds the {len(train)} training examples"
        )
    shard = train.shard(process_index, process_count)
    cached = in_memory(source.read(shard)) if config.cache else None

    def records(key: int) -> tf.data.Dataset:
        if cached is not None:
            return cached
        return source.read(shard, shuffle_seed=key)

    buffer = max(1, min(int(config.shuffle_buffer), len(shard)))
    offset = process_index * _PROCESS_STRIDE
    augment = _traced_once(source, int(config.image_size))

    def epoch_stream(epoch: int, skip: int) -> tf.data.Dataset:
        key = epoch_seed(seed, epoch)

        @tf.autograph.experimental.do_not_convert
        def prepare(position, example):
            image = augment(
                example["image"], tf.stack([tf.constant(key, tf.int64), position + offset])
            )
            return {"image": image, "label": tf.cast(example["label"], tf.int32)}

        ds = records(key).shuffle(buffer, seed=key, reshuffle_each_iteration=False)
        ds = ds.take(steps * local).enumerate().skip(skip)
        ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
        return ds.batch(local, drop_remainder=True).prefetch(AUTOTUNE).with_options(_options())

    def stream() -> Iterator[dict]:
        first_epoch, within = divmod(start_step, steps)
        for epoch in itertools.count(first_epoch):
            skip = within * local if epoch == first_epoch else 0
            yield from epoch_stream(epoch, skip).as_numpy_iterator()

    return stream()


def eval_batches(config, split: str, *, process_index: int, process_count: int) -> Iterator[dict]:
    source = sources.open_source(config, process_count)
    span = source.spans[split]
    local = per_process_batch(int(config.eval_batch_size), process_count, "eval_batch_size")
    largest_shard = math.ceil(len(span) / process_count)
    num_batches = math.ceil(largest_shard / local)
    shard = span.shard(process_index, process_count)
    size = int(config.image_size)
    shape = (size, size, source.channels)
    if source.transform.eval_crops > 1:
        shape = (source.transform.eval_crops, *shape)
    options = _normalization(source, size)

    @tf.autograph.experimental.do_not_convert
    def prepare(example):
        image = source.transform.evaluate(example["image"], **options)
        return {"image": image, "label": tf.cast(example["label"], tf.int32), "mask": True}

    padding = {"image": tf.zeros(shape), "label": tf.constant(0), "mask": tf.constant(False)}
    pad = tf.data.Dataset.from_tensors(padding).repeat(num_batches * local - len(shard))
    ds = source.read(shard).map(prepare, num_parallel_calls=AUTOTUNE)
    ds = ds.concatenate(pad).batch(local).prefetch(AUTOTUNE).with_options(_options())
    return ds.as_numpy_iterator()
