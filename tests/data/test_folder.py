"""Image folders (``folder:PATH``): classes from the folders, splits, channels, resizing,
and one clear line for every kind of broken folder."""

from __future__ import annotations

import itertools
import pathlib

import data_fakes
import numpy as np
import pytest
from PIL import Image

import binflax.data
from binflax.data import DatasetError, folder_source

CLASSES = ("cat", "dog", "owl")


def _write_folder(root: pathlib.Path, per_class=(6, 2), test_name="test") -> pathlib.Path:
    """PNGs and JPEGs of varying sizes; class ``c``'s images are gray ``60 * (c + 1)``."""
    for split, count in zip(("train", test_name), per_class, strict=True):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = (10 + i, 12)  # not the training size: every image is resized
                rgb = Image.new("RGB", size, (60 * (c + 1),) * 3)
                suffix = ".png" if i % 2 else ".jpg"
                rgb.save(folder / f"{i}{suffix}", quality=100)
    (root / "train" / "cat" / "notes.txt").write_text("not an image: ignored")
    return root


def _config(root: pathlib.Path, **overrides):
    settings = {
        "dataset": f"folder:{root}",
        "num_classes": len(CLASSES),
        "image_size": 8,
        "channels": 1,
        "batch_size": 3,
        "eval_batch_size": 4,
        "holdout_fraction": 0.0,
    }
    return data_fakes.config(**{**settings, **overrides})


@pytest.fixture
def folder(tmp_path):
    folder_source.scan.cache_clear()
    return _write_folder(tmp_path / "photos")


def test_classes_splits_and_labels_come_from_the_folders(folder):
    config = _config(folder, holdout_fraction=1 / 3)
    info = binflax.data.get_info(config)
    assert info.num_classes == 3 and info.image_shape == (8, 8, 1)
    assert info.num_examples == {"train": 12, "holdout": 6, "test": 6}
    stream = binflax.data.train_batches(config, seed=0, process_index=0, process_count=1)
    source = binflax.data.sources.open_source(config, 1)
    for batch in itertools.islice(stream, 4):
        assert batch["image"].shape == (3, 8, 8, 1)
        grays = batch["image"][:, 4, 4, 0] * source.std[0] + source.mean[0]
        np.testing.assert_allclose(grays * 255, 60 * (batch["label"] + 1), atol=1.5)
    evaluated = list(binflax.data.eval_batches(config, "test", process_index=0, process_count=1))
    labels = sorted(
        int(lab) for b in evaluated for lab, m in zip(b["label"], b["mask"], strict=True) if m
    )
    assert labels == [0, 0, 1, 1, 2, 2]


def test_statistics_of_a_folder_are_its_training_images(folder):
    source = binflax.data.sources.open_source(_config(folder), 1)
    grays = np.repeat([60, 120, 180], 6) / 255
    np.testing.assert_allclose(source.mean, [grays.mean()], atol=2e-3)
    np.testing.assert_allclose(source.std, [grays.std()], atol=2e-3)


def test_val_stands_for_a_missing_test_folder(tmp_path):
    folder_source.scan.cache_clear()
    root = _write_folder(tmp_path / "photos", test_name="val")
    assert binflax.data.get_info(_config(root, channels=3)).num_examples["test"] == 6


@pytest.mark.parametrize("problem", ["empty class", "missing class", "unreadable", "no test"])
def test_a_broken_folder_is_one_line_naming_the_path(folder, problem):
    if problem == "empty class":
        for image in (folder / "test" / "owl").iterdir():
            image.unlink()
        culprit = folder / "test" / "owl"
    elif problem == "missing class":
        for image in (folder / "test" / "dog").iterdir():
            image.unlink()
        (folder / "test" / "dog").rmdir()
        culprit = folder / "test"
    elif problem == "unreadable":
        culprit = folder / "train" / "dog" / "3.png"
        culprit.write_bytes(culprit.read_bytes()[:-20])  # truncated: its header still opens
    else:
        for path in sorted((folder / "test").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        culprit = folder
    with pytest.raises(DatasetError) as err:
        binflax.data.get_info(_config(folder))
    assert str(culprit) in str(err.value) and "\n" not in str(err.value)


def test_a_folder_in_a_bucket(tmp_path, bucket):
    """``gs://`` through epath for the listing and TensorFlow for the bytes."""
    folder_source.scan.cache_clear()
    _write_folder(pathlib.Path(bucket.root) / "bucket" / "photos")
    config = _config("testfs://bucket/photos")
    assert binflax.data.get_info(config).num_examples["train"] == 18
    batch = next(binflax.data.train_batches(config, seed=0, process_index=0, process_count=1))
    assert batch["image"].shape == (3, 8, 8, 1) and np.isfinite(batch["image"]).all()
