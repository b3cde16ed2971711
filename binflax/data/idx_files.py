"""MNIST-format (IDX) files read with NumPy: ``config.dataset = "idx:DIR"``.

MNIST, Fashion-MNIST, KMNIST and their kin ship as four IDX files, which ``DIR`` holds
as their authors name them, gzipped or not: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``
(Debian's ``dataset-fashion-mnist`` installs Fashion-MNIST's in
``/usr/share/datasets/fashion-mnist``). Why beside TFDS's builders for the same data:
they need neither TFDS nor TensorFlow, so the data runs where those are not installed
(an accelerator machine's image, whose TensorFlow wheel would not fit what travels to
it), from the files themselves, with nothing to prepare.

[choice] Like the TFDS pipelines: the holdout is the first ``config.holdout_fraction``
of the training file, pixels are scaled to [0, 1] and standardised with the training
examples' own mean and standard deviation (Fashion-MNIST: 0.286 and 0.353, the TFDS
recipe's), and there is no augmentation. Which examples form the holdout, and the
order in which training sees the rest, differ from the TFDS pipeline's (TFDS orders
its records by a hash of their keys): a run on these files is not the same run as one
through TFDS, only the same data. Batches come from :mod:`binflax.data.arrays`.
"""

from __future__ import annotations

import functools
import gzip
import zlib

import numpy as np
from etils import epath

from binflax.data import arrays
from binflax.data.common import DatasetError, DatasetInfo

PREFIX = "idx:"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX magic numbers: 0x0000 0x08 (unsigned bytes) then the number of dimensions
MAGIC = {3: 0x00000803, 1: 0x00000801}


def directory(dataset: str) -> str | None:
    """``DIR`` of ``config.dataset = "idx:DIR"``, else None."""
    return dataset[len(PREFIX) :] if dataset.startswith(PREFIX) else None


def read_idx(path: epath.Path, dims: int) -> np.ndarray:
    """One IDX file (gzipped where its name ends in .gz) as a uint8 array of ``dims``
    dimensions; a file of another kind, or cut short, is a :class:`DatasetError` naming it."""
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DatasetError(f"{path} is not a readable gzip file ({err})") from None
    header = 4 + 4 * dims
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != MAGIC[dims] or len(raw) < header:
        raise DatasetError(
            f"{path} is not an IDX file of {dims}-D unsigned bytes "
            f"(magic {magic!r}, want {MAGIC[dims]:#010x})"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise DatasetError(
            f"{path} holds {len(raw) - header} bytes of data where its header says {shape} "
            f"({size}): the file is cut short or damaged"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _find(root: epath.Path, name: str) -> epath.Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise DatasetError(
        f"{root} has no {name} (or {name}.gz): config.dataset='idx:DIR' needs the four "
        f"MNIST-format files {', '.join(n for pair in FILES.values() for n in pair)} in DIR "
        "(for Fashion-MNIST: apt-get install dataset-fashion-mnist, then "
        "idx:/usr/share/datasets/fashion-mnist)"
    )


@functools.lru_cache(maxsize=2)
def _splits(root: str, holdout_fraction: float) -> dict:
    path = epath.Path(root)
    if not path.is_dir():
        raise DatasetError(f"config.dataset='idx:{root}': {root} is not a directory")
    loaded = {}
    for split, (images_name, labels_name) in FILES.items():
        images = read_idx(_find(path, images_name), 3)
        labels = read_idx(_find(path, labels_name), 1)
        if len(images) != len(labels):
            raise DatasetError(f"{path}: {split} has {len(images)} images but {len(labels)} labels")
        loaded[split] = (images, labels.astype(np.int32))
    if not 0.0 <= holdout_fraction < 1.0:
        raise DatasetError(f"config.holdout_fraction={holdout_fraction} must be in [0, 1)")
    images, labels = loaded["train"]
    num_holdout = round(holdout_fraction * len(labels))
    loaded["holdout"] = (images[:num_holdout], labels[:num_holdout])
    loaded["train"] = (images[num_holdout:], labels[num_holdout:])
    scaled = loaded["train"][0].astype(np.float32) / 255.0
    mean, std = float(scaled.mean()), float(scaled.std())
    return {
        split: (((x.astype(np.float32) / 255.0 - mean) / std)[..., None], y)
        for split, (x, y) in loaded.items()
    }


def _load(config) -> dict:
    splits = _splits(directory(config.dataset), float(config.holdout_fraction))
    height, width = splits["test"][0].shape[1:3]
    if (config.image_size, config.channels) != (height, 1) or height != width:
        raise DatasetError(
            f"{config.dataset} holds {height}x{width}x1 images: set config.image_size="
            f"{height} and config.channels=1 (got {config.image_size} and {config.channels})"
        )
    return splits


def get_info(config) -> DatasetInfo:
    splits = _load(config)
    return DatasetInfo(
        name=config.dataset,
        num_classes=int(max(labels.max() for _, labels in splits.values() if len(labels))) + 1,
        image_shape=(config.image_size, config.image_size, 1),
        num_examples={split: len(labels) for split, (_, labels) in splits.items()},
    )


_SOURCE = arrays.Source(_load)
train_batches = _SOURCE.train_batches
eval_batches = _SOURCE.eval_batches
