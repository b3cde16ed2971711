"""What differs between datasets: how each is split, which transforms it gets by default,
and the statistics it is normalized with. The pipelines (:mod:`binflax.data.pipelines`)
are the same for all of them. Nothing here imports TensorFlow: a config can be checked,
and the digits trained, without it.

Splits (``holdout`` is always the first ``config.holdout_fraction`` of the source's
``train``, ``train`` the rest, [choice] as in the digits):

- ``tu_berlin``, ``sketchy`` and any other TFDS dataset: ``test`` is the builder's
  ``test`` split, else its ``validation`` split;
- ``imagenet2012``: [choice] ``test`` is ILSVRC's validation set (TFDS ``validation``),
  the one every ImageNet paper reports; TFDS's unlabeled ``test`` is not used;
- ``quickdraw_bitmap``: TFDS has only ``train``; [choice] its last 1% (504,263 bitmaps)
  is carved out as ``test``;
- ``folder:PATH``: the folders ``train`` and ``test`` (else ``val``).

Transforms (``config.augment``; an unset field takes the dataset's own, :data:`AUGMENTS`
says what each does). Normalization: the authors' sketch statistics (TU-Berlin mean 0.06
std 0.93, Sketchy 0.0465 / 0.9, of the inverted image); the published per-channel
statistics of ImageNet, MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100; [choice] QuickDraw
bitmaps (already white strokes on black) are mapped from [0, 1] to [-1, 1]. Any other
dataset is normalized with its training split's own per-channel mean and std, computed
once (:mod:`binflax.data.statistics`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from etils import epath

from binflax.data.common import DatasetError

IMAGENET_URL = "https://image-net.org/download-images"
IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
FOLDER_PREFIX = "folder:"

# config.augment: what the training transform does (evaluation only decodes, resizes to
# config.image_size and normalizes, except where said).
AUGMENTS = {
    "none": "decode, resize to config.image_size, normalize",
    "flip": "as none, plus a random horizontal flip",
    "crop_flip": "as flip, after a zero padding of 4 and a random crop back to size "
    "(the CIFAR standard)",
    "sketch": "the authors' sketch recipe: resize to 256/225 of the size, random-resized "
    "crop, rotation within 10 degrees, inversion; evaluation on ten crops",
    "sketch_flip": "sketch with a random horizontal flip (the authors' TU-Berlin recipe)",
    "imagenet": "random-resized crop and flip; evaluation resizes the shorter side to "
    "256/224 of the size and takes the centre",
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one dataset is read; ``None`` fields are taken from the data themselves."""

    augment: str = "none"  # the default of config.augment
    mean: tuple[float, ...] | None = None  # per channel (one value: every channel)
    std: tuple[float, ...] | None = None  # None: computed from the training split
    channels: int | None = None  # None: the builder's
    test_split: str | None = "test"  # None: carved from the end of train
    carved_test_fraction: float = 0.0
    check_manual: Callable[[str], object] | None = None  # raises when files are missing

    def channels_of(self, stored: int | None) -> int | None:
        """The channels images are decoded to: the recipe's, else the stored images'."""
        return self.channels or stored


def _find_source(module: str) -> Callable[[str], object]:
    """``binflax.data.<module>.find_source``, imported when the check runs: that module
    defines a TFDS builder, and TFDS is imported only where a TFDS dataset is used (an
    ``idx:`` or digits run goes without it)."""

    def check(manual_dir: str) -> object:
        return importlib.import_module(f"binflax.data.{module}").find_source(manual_dir)

    return check


def _check_imagenet(manual_dir: str) -> None:
    missing = [f for f in IMAGENET_ARCHIVES if not (epath.Path(manual_dir) / f).exists()]
    if missing:
        raise DatasetError(
            f"ImageNet archives not found: expected {' and '.join(missing)} in {manual_dir}. "
            f"Download them from {IMAGENET_URL} (registration needed) into config.manual_dir "
            "(--config.manual_dir=DIR)."
        )


RECIPES = {
    "tu_berlin": Recipe(
        "sketch_flip", (0.06,), (0.93,), channels=1, check_manual=_find_source("tu_berlin")
    ),
    "sketchy": Recipe(
        "sketch", (0.0465,), (0.9,), channels=1, check_manual=_find_source("sketchy")
    ),
    "imagenet2012": Recipe(
        "imagenet",
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        channels=3,
        test_split="validation",
        check_manual=_check_imagenet,
    ),
    "quickdraw_bitmap": Recipe(
        "flip", (0.5,), (0.5,), channels=1, test_split=None, carved_test_fraction=0.01
    ),
    # The statistics every paper on these uses (torchvision's examples, BinaryNet's code).
    "mnist": Recipe("none", (0.1307,), (0.3081,)),
    "fashion_mnist": Recipe("none", (0.2860,), (0.3530,)),
    "cifar10": Recipe("crop_flip", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": Recipe("crop_flip", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def recipe(dataset: str) -> Recipe:
    """The recipe of a TFDS dataset or image folder: its own if binflax has one, else the
    generic one (no augmentation, the training split's statistics)."""
    return RECIPES.get(dataset, Recipe())


def folder_path(dataset: str) -> str | None:
    """``PATH`` of ``config.dataset = "folder:PATH"``, else None."""
    return dataset[len(FOLDER_PREFIX) :] if dataset.startswith(FOLDER_PREFIX) else None


def augment_of(config) -> str:
    """``config.augment``, or the dataset's own transform when it is unset."""
    name = config.get("augment") or recipe(config.dataset).augment
    if name not in AUGMENTS:
        raise DatasetError(
            f"config.augment={name!r} is not one of: {', '.join(AUGMENTS)} "
            "(unset: the dataset's own)"
        )
    return name
