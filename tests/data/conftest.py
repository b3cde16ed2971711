"""Tiny sketch datasets, prepared once per session through binflax's own prepare path."""

from __future__ import annotations

import data_fakes
import pytest
from data_fakes import (
    SKETCHY_CLASSES,
    SKETCHY_INVALID,
    TU_CLASSES,
    TU_PER_CLASS,
    sketch_config,
    tiny_sketchy,
    tiny_tu_berlin,
)

import binflax.data


@pytest.fixture(scope="session")
def tu_berlin_data(tmp_path_factory):
    """``(config, {"<class>/<id>.png": background gray}, DatasetInfo)``."""
    root = tmp_path_factory.mktemp("tu_berlin")
    grays = data_fakes.tu_berlin_tree(root / "manual", TU_CLASSES, TU_PER_CLASS)
    config = sketch_config(root, "tu_berlin")
    with tiny_tu_berlin():
        info = binflax.data.get_info(config)  # prepares the dataset from the manual dir
    return config, grays, info


@pytest.fixture(scope="session")
def sketchy_data(tmp_path_factory):
    """``(config, {"<class>/<photo>-<n>.png": background gray}, test photos, DatasetInfo)``."""
    root = tmp_path_factory.mktemp("sketchy")
    grays, test_photos = data_fakes.sketchy_tree(
        root / "manual", SKETCHY_CLASSES, photos=4, sketches_per_photo=2, test_photos=1,
        invalid=SKETCHY_INVALID,
    )  # fmt: skip
    config = sketch_config(root, "sketchy", holdout_fraction=0.0)
    with tiny_sketchy():
        info = binflax.data.get_info(config)
    return config, grays, test_photos, info
