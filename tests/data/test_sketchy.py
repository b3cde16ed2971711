"""The ``sketchy`` TFDS builder, run on a tiny tree in the official extracted layout."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds
from data_fakes import SKETCHY_CLASSES, SKETCHY_INVALID

from binflax.data import DatasetError, sketchy


def test_official_split_from_the_test_list(sketchy_data):
    config, grays, test_photos, _ = sketchy_data
    builder = tfds.builder("sketchy", data_dir=config.data_dir)
    names = builder.info.features["label"].names
    assert names == sorted(SKETCHY_CLASSES)
    seen = {}
    for split in ("train", "test"):
        for ex in builder.as_dataset(split=split).as_numpy_iterator():
            file_name = ex["file_name"].decode()
            seen[file_name] = split
            assert names[ex["label"]] == file_name.split("/")[0]
            values, counts = np.unique(ex["image"], return_counts=True)
            assert values[np.argmax(counts)] == grays[file_name]
    # Independent expectation: a sketch <class>/<photo>-<n>.png is a test sketch iff
    # <class>/<photo>.jpg is listed; the sketches flagged invalid are in neither split.
    expected = {}
    for file_name in grays:
        photo = file_name.rsplit("-", 1)[0] + ".jpg"
        if file_name.split("/")[1][:-4] not in SKETCHY_INVALID:
            expected[file_name] = "test" if photo in test_photos else "train"
    assert seen == expected
    assert builder.info.splits["test"].num_examples == 5  # 3 photos x 2 sketches - 1 invalid
    assert builder.info.splits["train"].num_examples == 17  # 9 photos x 2 sketches - 1


def test_archive_folder_layout_is_found(tmp_path):
    (tmp_path / "rendered_256x256" / sketchy.SKETCH_DIRS[0]).mkdir(parents=True)
    (tmp_path / "info-06-04" / "info").mkdir(parents=True)
    (tmp_path / "info-06-04" / "info" / "testset.txt").write_text("ant/n1.jpg\n")
    root, info = sketchy.find_source(tmp_path)
    assert root == tmp_path / "rendered_256x256" / "256x256" / "sketch" / "tx_000000000000"
    assert info == tmp_path / "info-06-04" / "info"


def test_missing_test_list_says_what_and_where(tmp_path):
    (tmp_path / sketchy.SKETCH_DIRS[0]).mkdir(parents=True)
    with pytest.raises(DatasetError) as err:
        sketchy.find_source(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "info" / "testset.txt") in message and sketchy.URL in message
    assert "sketch tree" not in message  # that part is present


def test_missing_everything_names_both(tmp_path):
    with pytest.raises(DatasetError, match="sketch tree .* and the test list"):
        sketchy.find_source(tmp_path)
