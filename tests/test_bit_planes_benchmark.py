"""benchmarks/bit_planes.py: one small convolution and one fully-connected layer run every
plane count and the int8 route exactly (time_layer raises otherwise); the summary splits
them by kind. No timing is asserted (the machine may be shared)."""

import argparse

import numpy as np
import pytest

from benchmarks import bit_planes
from binflax import native
from tests.test_binary_layers_benchmark import DENSE, LAYER

pytestmark = pytest.mark.skipif(not native.available(), reason="needs the native kernel")


@pytest.mark.parametrize("layer", [LAYER, DENSE], ids=lambda layer: layer["name"])
def test_a_layer_runs_every_plane_count_and_the_int8_route_exactly(layer):
    row = bit_planes.time_layer(layer, 1, np.random.default_rng(0))
    planes = [f"planes_{k}" for k in bit_planes.PLANES]
    assert set(row["ms"]) == {*planes, "int8_8bit", "float32"}
    assert row["over_one_plane"][1] == 1.0
    assert row["fully_connected"] is layer["fully_connected"]


def test_the_summary_splits_convolutions_from_fully_connected_layers(monkeypatch):
    rows = [
        {"fully_connected": dense, "planes_8_over_int8": ratio, "planes_4_over_int8": 0.5,
         "over_one_plane": {k: float(k) for k in bit_planes.PLANES}}
        for dense, ratio in ((False, 0.5), (False, 2.0), (True, 0.25))
    ]  # fmt: skip
    monkeypatch.setattr(bit_planes, "time_layer", lambda *args: rows.pop(0))
    monkeypatch.setattr(bit_planes, "unique_shapes", lambda layers: [None] * 3)
    monkeypatch.setattr(bit_planes, "binary_input_layers", lambda name: [])
    result = bit_planes.run(argparse.Namespace(models=["m"], repeats=1))
    kinds = result["planes_8_over_int8_by_kind"]
    assert kinds["convolutions"] == {
        "layers": 2, "min": 0.5, "max": 2.0, "geomean": 1.0, "under_1x": 1
    }  # fmt: skip
    assert kinds["fully_connected"]["geomean"] == 0.25
    assert result["layers_where_8_planes_beat_int8"] == 2
    assert "fully_connected (n=1): 0.25-0.25x" in bit_planes.markdown({**result, "layers": []})
