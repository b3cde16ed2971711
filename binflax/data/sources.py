"""Opening a TFDS dataset or an image folder: its facts, splits, transforms and records.

One :class:`Source` answers the same questions for ``config.dataset`` = a TFDS name
(binflax's ``tu_berlin``/``sketchy``, or any image-classification builder TFDS has:
``mnist``, ``fashion_mnist``, ``cifar10``, ...) and ``folder:PATH``: how many classes,
which spans are ``train``, ``holdout`` and ``test`` (:func:`spans`), how to read a span's
encoded records, and which transform and normalization the pipelines apply. The
pipelines (:mod:`binflax.data.pipelines`) are the same for all of them.

Checked against the config when opened: ``config.channels`` against the stored images'
channels (a TFDS builder with a fixed channel count, or a recipe's), and
``config.augment`` against :data:`binflax.data.recipes.AUGMENTS`. ``config.num_classes``
is checked by the training loop against :attr:`Source.num_classes`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from etils import epath

from binflax.data import augment, folder_source, recipes, statistics, tfds_source
from binflax.data.common import DatasetError
from binflax.data.tfds_source import Records, Span


@dataclasses.dataclass(frozen=True)
class Source:
    """An opened dataset: what the pipelines need, whatever it is stored as."""

    name: str
    num_classes: int
    spans: dict[str, Span]  # "train", "holdout", "test"
    read: Callable[..., Records]  # (span, shuffle_seed=None) -> encoded records
    transform: augment.Transform
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def spans(recipe: recipes.Recipe, sizes: dict[str, int], holdout_fraction: float) -> dict:
    """``train``, ``holdout`` and ``test`` as ranges of the source's splits (``sizes``:
    split name -> examples). ``test`` is the recipe's split, else ``validation``."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise DatasetError(f"config.holdout_fraction={holdout_fraction} must be in [0, 1)")
    if "train" not in sizes:
        raise DatasetError(f"the dataset has no 'train' split (it has {sorted(sizes)})")
    size = sizes["train"]
    if recipe.test_split is None:
        size -= round(recipe.carved_test_fraction * size)
        test = Span("train", size, sizes["train"])
    else:
        name = next((s for s in (recipe.test_split, "validation") if s in sizes), None)
        if name is None:
            raise DatasetError(
                f"the dataset has no {recipe.test_split!r} or 'validation' split to test "
                f"on (it has {sorted(sizes)})"
            )
        test = Span(name, 0, sizes[name])
    num_holdout = round(holdout_fraction * size)
    return {
        "train": Span("train", num_holdout, size),
        "holdout": Span("train", 0, num_holdout),
        "test": test,
    }


def _channels(config, recipe: recipes.Recipe, stored: int | None, name: str) -> int:
    channels = recipe.channels_of(stored) or int(config.channels)
    if int(config.channels) != channels:
        raise DatasetError(f"config.channels={config.channels} but {name} has {channels}")
    return channels


def open_source(config, process_count: int) -> Source:
    """Opens ``config.dataset`` (preparing a TFDS dataset on first use, one process only)."""
    recipe = recipes.recipe(config.dataset)
    transform = augment.TRANSFORMS[recipes.augment_of(config)]
    folder = recipes.folder_path(config.dataset)
    if folder is not None:
        scanned = folder_source.scan(folder)
        sizes = {split: len(files) for split, files in scanned.files.items()}
        num_classes = len(scanned.classes)
        channels = _channels(config, recipe, None, config.dataset)

        def read(span: Span, shuffle_seed: int | None = None) -> Records:
            return folder_source.read(scanned, span.split, span.start, span.stop, shuffle_seed)

        statistics_dir = None
    else:
        builder = tfds_source.prepared_builder(
            config, config.dataset, check_manual=recipe.check_manual, process_count=process_count
        )
        sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
        label = builder.info.features["label"]
        num_classes = label.num_classes
        stored = builder.info.features["image"].shape[-1]
        channels = _channels(config, recipe, stored, config.dataset)
        read = functools.partial(tfds_source.read, builder)
        statistics_dir = epath.Path(builder.data_dir)
    split_spans = spans(recipe, sizes, float(config.holdout_fraction))
    if recipe.mean is not None:
        mean, std = recipe.mean, recipe.std
    else:
        whole_train = Span("train", 0, sizes["train"])
        mean, std = _statistics(
            config.dataset,
            statistics_dir,
            lambda: read(whole_train),
            int(config.image_size),
            channels,
        )
    return Source(
        name=config.dataset,
        num_classes=num_classes,
        spans=split_spans,
        read=read,
        transform=transform,
        channels=channels,
        mean=mean,
        std=std,
    )


_STATISTICS: dict[tuple, tuple[tuple, tuple]] = {}  # once per process and dataset


def _statistics(name, directory, records: Callable[[], Records], size: int, channels: int):
    key = (name, str(directory), size, channels)
    if key not in _STATISTICS:
        _STATISTICS[key] = statistics.recorded_or_computed(
            directory, name, records(), size=size, channels=channels
        )
    return _STATISTICS[key]
