"""Image folders: ``config.dataset = "folder:PATH"``, with ``PATH/<split>/<class>/<image>``.

    photos/train/cat/0001.jpg   photos/train/dog/0002.png   ...
    photos/test/cat/0107.jpg    (or photos/val/...)

The layout of TFDS's ``ImageFolder``: splits are folders, classes are the folders inside
them (sorted by name: label ``i`` is the ``i``-th class), images are ``.png``, ``.jpg``
or ``.jpeg`` files. [choice] binflax lists the folder itself rather than through
``tfds.ImageFolder``, which reads only through ``tf.io.gfile`` (no ``epath``), has no
sub-splits (the holdout and the process shards are ranges of a split) and decodes every
image with three channels; the records it yields are the same (encoded bytes, label).

A folder is checked once per process, when it is first opened, so that a problem is one
line naming its path before training starts: a missing ``train`` or ``test``/``val``
folder, an empty class, a class that one split lacks, an image that cannot be read.
Each split's images are put in a fixed pseudo-random order (seeded by the split's name,
as ImageFolder does), so the holdout, a leading range of ``train``, is a random subset.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib

import numpy as np
from etils import epath
from PIL import Image, UnidentifiedImageError

from binflax.data.common import DatasetError, tensorflow

tf = tensorflow()

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_FOLDERS = ("test", "val")  # the first that exists is the test split


@dataclasses.dataclass(frozen=True)
class Folder:
    """A checked image folder: class names, and each split's files and labels."""

    root: str
    classes: tuple[str, ...]
    files: dict[str, tuple[str, ...]]  # "train" / "test" -> image paths, in a fixed order
    labels: dict[str, np.ndarray]  # int64, aligned with ``files``


def _subfolders(path: epath.Path) -> list[epath.Path]:
    return sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.name)


def _check_image(path: epath.Path) -> None:
    try:
        with path.open("rb") as f, Image.open(f) as image:
            image.verify()  # reads the whole file: catches truncation, not only the header
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DatasetError(f"cannot read image {path}: {err}") from None


@functools.cache
def scan(root: str) -> Folder:
    """Lists and checks ``root``; the result is kept for the rest of the process."""
    base = epath.Path(root)
    if not base.is_dir():
        raise DatasetError(
            f"image folder {root} does not exist; config.dataset='folder:PATH' needs "
            "PATH/train/<class>/<image> and PATH/test/<class>/<image> (or PATH/val/...)"
        )
    test_name = next((n for n in TEST_FOLDERS if (base / n).is_dir()), None)
    if not (base / "train").is_dir() or test_name is None:
        raise DatasetError(
            f"image folder {root} needs a train folder and a test (or val) folder, "
            f"each with one folder per class; it has {[p.name for p in _subfolders(base)]}"
        )
    splits = {"train": base / "train", "test": base / test_name}
    classes = {split: [p.name for p in _subfolders(path)] for split, path in splits.items()}
    names = sorted(set(classes["train"]) | set(classes["test"]))
    for split, path in splits.items():
        lacking = [name for name in names if name not in classes[split]]
        if lacking:
            raise DatasetError(f"image folder {path} has no class folder {lacking[0]!r}")
    files, labels = {}, {}
    for split, path in splits.items():
        paths, split_labels = [], []
        for label, name in enumerate(names):
            images = sorted(
                p for p in (path / name).iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES)
            )
            if not images:
                raise DatasetError(
                    f"class folder {path / name} holds no {'/'.join(IMAGE_SUFFIXES)} image"
                )
            for image in images:
                _check_image(image)
            paths += [str(p) for p in images]
            split_labels += [label] * len(images)
        order = np.random.default_rng(zlib.crc32(split.encode())).permutation(len(paths))
        files[split] = tuple(paths[i] for i in order)
        labels[split] = np.asarray(split_labels, np.int64)[order]
    return Folder(root=root, classes=tuple(names), files=files, labels=labels)


def read_file(path: tf.Tensor) -> tf.Tensor:
    """An image file's bytes (TensorFlow reaches ``gs://`` itself)."""
    return tf.io.read_file(path)


def read(folder: Folder, split: str, start: int, stop: int, shuffle_seed: int | None):
    """Records ``{"image": encoded bytes, "label": int64}`` of ``files[split][start:stop]``,
    in a permutation drawn from ``shuffle_seed`` when it is given."""
    order = np.arange(start, stop)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(order)
    paths = np.array(folder.files[split], dtype=object)[order] if len(order) else []
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "image": tf.constant(list(paths), tf.string),
            "label": tf.constant(folder.labels[split][order], tf.int64),
        }
    )
    return ds.map(lambda ex: {"image": read_file(ex["image"]), "label": ex["label"]})
