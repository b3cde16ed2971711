"""What TFDS knows of a dataset by its name alone: whether it exists, how many channels
its images have, how many classes it has.

Why a module of its own: the config check asks these questions in every mode (``summary``
included, which needs no data) before anything is downloaded or trained, and the
pipelines open the same builders by the same names; :func:`builder` is the one place a
name becomes a TFDS builder or the one-line error with TFDS's closest names. Nothing
here prepares a dataset or imports TensorFlow: TFDS builds a builder's ``info`` from the
features its code declares, or, where the dataset is prepared in ``data_dir``, from the
``dataset_info.json`` beside the data (so ``tu_berlin``'s classes are known once it is
prepared, not before).

[choice] Where TFDS cannot tell without the data (an image feature of unknown channels,
classes named only at preparation, a builder whose ``info`` needs its files, a dataset of
a community namespace such as ``huggingface:``, which TFDS resolves over the network),
:func:`metadata` says ``None`` for that fact and nothing fails here: the fact is checked
when the dataset is opened (:mod:`binflax.data.sources`, ``train.dataset_info``).
"""

from __future__ import annotations

import dataclasses
import difflib

import tensorflow_datasets as tfds

# binflax's own TFDS builders, registered with TFDS wherever binflax asks TFDS for one
# (the pipelines and the preparation reach TFDS through this module)
from binflax.data import recipes, sketchy, tu_berlin  # noqa: F401
from binflax.data.common import DatasetError


@dataclasses.dataclass(frozen=True)
class Metadata:
    """A TFDS dataset as binflax reads it; ``None``: not known before it is opened."""

    channels: int | None  # what the images are decoded to: the recipe's, else the stored
    num_classes: int | None


def unknown_dataset(name: str) -> DatasetError:
    """``name`` is neither binflax's nor TFDS's: the error names TFDS's closest builders."""
    known = tfds.list_builders(with_community_datasets=False)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else " (tfds.list_builders())"
    return DatasetError(
        f"config.dataset={name!r} is neither digits, folder:PATH, idx:DIR nor a TFDS dataset{hint}"
    )


def builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """TFDS's builder of ``name`` over ``data_dir`` (TFDS's default when None), unprepared
    or prepared; an unknown name raises :func:`unknown_dataset`'s error."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise unknown_dataset(name) from None


def metadata(name: str, data_dir: str | None) -> Metadata:
    """The channels and classes of the TFDS dataset ``name``, from its builder's info
    without preparing it; raises :class:`DatasetError` only for a name TFDS does not know."""
    if ":" in name:  # a community namespace: resolving it needs the network
        return Metadata(channels=None, num_classes=None)
    try:
        features = dict(builder(name, data_dir).info.features.items())
    except DatasetError:
        raise
    except Exception:  # noqa: BLE001 - a builder's own code may need what is not there yet
        return Metadata(channels=None, num_classes=None)
    image, label = features.get("image"), features.get("label")
    stored = image.shape[-1] if isinstance(image, tfds.features.Image) else None
    return Metadata(
        channels=recipes.recipe(name).channels_of(stored),
        num_classes=label.num_classes if isinstance(label, tfds.features.ClassLabel) else None,
    )
