"""What differs between the TFDS datasets: where the data comes from, how it is split and
which transforms it gets. The pipelines (:mod:`binflax.data.pipelines`) are the same for
all of them.

Splits (``holdout`` is always the first ``config.holdout_fraction`` of TFDS's ``train``,
``train`` the rest, [choice] as in the digits):

- ``tu_berlin``, ``sketchy``: ``test`` is the builder's ``test`` split;
- ``imagenet2012``: [choice] ``test`` is ILSVRC's validation set (TFDS ``validation``),
  the one every ImageNet paper reports; TFDS's unlabeled ``test`` is not used;
- ``quickdraw_bitmap``: TFDS has only ``train``; [choice] its last 1% (504,263 bitmaps)
  is carved out as ``test``.

Normalization: the authors' sketch statistics (TU-Berlin mean 0.06 std 0.93, Sketchy
0.0465 / 0.9, of the inverted image); ImageNet's usual per-channel statistics; [choice]
QuickDraw bitmaps (already white strokes on black) are mapped from [0, 1] to [-1, 1],
with a random horizontal flip for training.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from etils import epath

from binflax.data import augment, sketchy, tu_berlin
from binflax.data.common import DatasetError

IMAGENET_URL = "https://image-net.org/download-images"
IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


@dataclasses.dataclass(frozen=True)
class Recipe:
    tfds_name: str
    channels: int
    eval_crops: int
    train: Callable  # (encoded, seed, *, size) -> image
    evaluate: Callable  # (encoded, *, size) -> image, or (crops, ...) image
    test_split: str | None = "test"  # None: carved from the end of TFDS's train
    carved_test_fraction: float = 0.0
    check_manual: Callable[[str], object] | None = None  # None: TFDS downloads it


def _check_imagenet(manual_dir: str) -> None:
    missing = [f for f in IMAGENET_ARCHIVES if not (epath.Path(manual_dir) / f).exists()]
    if missing:
        raise DatasetError(
            f"ImageNet archives not found: expected {' and '.join(missing)} in {manual_dir}. "
            f"Download them from {IMAGENET_URL} (registration needed) into config.manual_dir "
            "(--config.manual_dir=DIR)."
        )


def _sketch(name: str, mean: float, std: float, flip: bool, check) -> Recipe:
    return Recipe(
        tfds_name=name,
        channels=1,
        eval_crops=10,
        train=functools.partial(augment.sketch_train, mean=mean, std=std, flip=flip),
        evaluate=functools.partial(augment.sketch_eval, mean=mean, std=std),
        check_manual=check,
    )


def _bitmap_train(encoded, seed, *, size):
    return augment.bitmap_train(encoded, seed, size=size, mean=0.5, std=0.5)


def _bitmap_eval(encoded, *, size):
    return augment.bitmap_eval(encoded, size=size, mean=0.5, std=0.5)


RECIPES = {
    "tu_berlin": _sketch("tu_berlin", 0.06, 0.93, True, tu_berlin.find_source),
    "sketchy": _sketch("sketchy", 0.0465, 0.9, False, sketchy.find_source),
    "imagenet2012": Recipe(
        tfds_name="imagenet2012",
        channels=3,
        eval_crops=1,
        train=augment.imagenet_train,
        evaluate=augment.imagenet_eval,
        test_split="validation",
        check_manual=_check_imagenet,
    ),
    "quickdraw_bitmap": Recipe(
        tfds_name="quickdraw_bitmap",
        channels=1,
        eval_crops=1,
        train=_bitmap_train,
        evaluate=_bitmap_eval,
        test_split=None,
        carved_test_fraction=0.01,
    ),
}


def recipe(dataset: str) -> Recipe:
    if dataset not in RECIPES:
        raise DatasetError(
            f"unknown config.dataset={dataset!r}; choose digits or one of {sorted(RECIPES)}"
        )
    return RECIPES[dataset]
