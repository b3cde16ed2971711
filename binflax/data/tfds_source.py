"""TFDS access for the pipelines: prepare-or-explain, split ranges, encoded records.

Why records stay encoded here: the pipelines shuffle, shard and (on resume) skip
examples *before* decoding, so skipping the first ``k`` examples of an epoch costs
reading their bytes, never decoding or augmenting them.

A :class:`Span` is a contiguous range of a prepared TFDS split; ``train``, ``holdout``
and a carved ``test`` are spans of TFDS's ``train``. TFDS writes examples in an order
shuffled by key hash at preparation, so a contiguous range is a random subset.
:meth:`Span.shard` cuts a span into ``process_count`` contiguous, disjoint pieces whose
union is the span (sizes differ by at most one).

A dataset that is not prepared is built here when its manual dir holds the files (TFDS
``download_and_prepare``); otherwise the :class:`DatasetError` says which files are
expected where. [choice] With several processes the dataset must be prepared beforehand
(``python -m binflax.data.prepare``, or one single-process run): concurrent writers
would race.
"""

from __future__ import annotations

import dataclasses
import tarfile
from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from binflax.data.common import DatasetError, tensorflow

tf = tensorflow()

Records = tf.data.Dataset  # {"image": encoded bytes (tf.string), "label": tf.int64}


@dataclasses.dataclass(frozen=True)
class Span:
    """Examples ``[start, stop)`` of the TFDS split ``split``."""

    split: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def shard(self, index: int, count: int) -> Span:
        """This process's contiguous piece; the ``count`` pieces partition the span."""
        n = len(self)
        return Span(
            self.split, self.start + index * n // count, self.start + (index + 1) * n // count
        )

    @property
    def tfds_split(self) -> str:
        return f"{self.split}[{self.start}:{self.stop}]"


def _manual_dir(config, builder: tfds.core.DatasetBuilder) -> str:
    """``config.manual_dir``, else TFDS's default ``<data_dir>/downloads/manual``."""
    if config.manual_dir:
        return str(config.manual_dir)
    return str(_data_root(builder) / "downloads" / "manual")


def _data_root(builder: tfds.core.DatasetBuilder) -> epath.Path:
    """The TFDS data dir that holds ``<name>/<version>/`` (``builder.data_dir``)."""
    return epath.Path(builder.data_dir).parent.parent


def prepared_builder(
    config,
    name: str,
    *,
    check_manual: Callable[[str], object] | None,
    process_count: int,
) -> tfds.core.DatasetBuilder:
    """The TFDS builder for ``name``, preparing the dataset first if needed.

    ``check_manual(manual_dir)`` raises :class:`DatasetError` when the manually
    downloaded files are missing; ``None`` means TFDS downloads the data itself.
    """
    try:
        builder = tfds.builder(name, data_dir=config.data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise DatasetError(f"TFDS knows no dataset {name!r}: {err}") from err
    # what builder.is_prepared() checks, without its warning about the empty version folder
    if (epath.Path(builder.data_dir) / "dataset_info.json").exists():
        return builder
    manual_dir = _manual_dir(config, builder)
    if process_count > 1:
        raise DatasetError(
            f"{name} is not prepared in {builder.data_dir}. Prepare it once before a "
            f"multi-process run: python -m binflax.data.prepare {name} "
            f"--data_dir {_data_root(builder)} "
            f"--manual_dir {manual_dir}"
        )
    if check_manual is not None:
        check_manual(manual_dir)
    download_config = tfds.download.DownloadConfig(
        manual_dir=manual_dir, compute_stats=tfds.download.ComputeStatsMode.SKIP
    )
    try:
        builder.download_and_prepare(download_config=download_config)
    except (OSError, AssertionError, ValueError, tarfile.TarError, tf.errors.OpError) as err:
        raise DatasetError(
            f"preparing {name} from {manual_dir} into {builder.data_dir} failed: {err}"
        ) from err
    return builder


def split_size(builder: tfds.core.DatasetBuilder, split: str) -> int:
    if split not in builder.info.splits:
        raise DatasetError(
            f"{builder.name} in {builder.data_dir} has no {split!r} split "
            f"(it has {sorted(builder.info.splits)}); prepare it again with every archive"
        )
    return builder.info.splits[split].num_examples


def _empty() -> Records:
    return tf.data.Dataset.from_tensor_slices(
        {"image": tf.constant([], tf.string), "label": tf.constant([], tf.int64)}
    )


def read(
    builder: tfds.core.DatasetBuilder, span: Span, *, shuffle_seed: int | None = None
) -> Records:
    """The span's records, undecoded; file order shuffled by ``shuffle_seed`` if given."""
    if not len(span):
        return _empty()
    ds = builder.as_dataset(
        split=span.tfds_split,
        shuffle_files=shuffle_seed is not None,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed, try_autocache=False),
    )
    return ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]})


def read_into_memory(builder: tfds.core.DatasetBuilder, span: Span) -> Records:
    """The span's records held in host memory (``config.cache``), in TFDS order."""
    images, labels = [], []
    for example in read(builder, span).as_numpy_iterator():
        images.append(example["image"])
        labels.append(example["label"])
    if not images:
        return _empty()
    return tf.data.Dataset.from_tensor_slices(
        {"image": np.array(images, dtype=object), "label": np.array(labels, np.int64)}
    )
