"""Tiny sketch datasets, prepared once per session through binflax's own prepare path;
ports on 127.0.0.1 that accept or refuse connections, for the download probe."""

from __future__ import annotations

import socket

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


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy_settings(monkeypatch):
    """The test's own environment names no proxy (``requests`` reads either case)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.fixture
def listening_port():
    """A port on 127.0.0.1 that accepts connections (never answers beyond that)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
    return port  # bound and released: nothing listens on it
