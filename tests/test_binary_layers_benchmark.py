"""benchmarks/binary_layers.py: every candidate of one small layer checked exact against
float32 (the 2-bit planes included) and timed; the 2-bit over 1-bit summary. No timing is
asserted (the machine may be shared)."""

import numpy as np
import pytest

from benchmarks import binary_layers
from binflax import native

LAYER = {
    "model": "tiny",
    "name": "conv",
    "input_shape": (6, 6, 40),
    "kernel": (3, 3, 40, 24),
    "strides": (1, 1),
    "padding": ((1, 1), (1, 1)),
    "output_shape": (6, 6, 24),
    "fully_connected": False,
    "same_shape": ["conv"],
}
# A fully-connected layer as a conv over its whole input: the native kernel's weights are
# laid out for the dense path (avx2_packed on an AVX2 CPU), as a loaded export's are.
DENSE = {
    **LAYER,
    "name": "dense",
    "input_shape": (3, 3, 40),
    "padding": ((0, 0), (0, 0)),
    "output_shape": (1, 1, 24),
    "fully_connected": True,
    "same_shape": ["dense"],
}


@pytest.mark.parametrize("layer", [LAYER, DENSE], ids=lambda layer: layer["name"])
def test_a_layer_runs_every_candidate_exactly_with_its_2_bit_twin(layer):
    row = binary_layers.time_layer(layer, 2, 1, np.random.default_rng(0))
    twins = binary_layers.TWO_BIT_TWINS if native.available() else {"popcount": ()}
    assert set(row["two_bit_over_one_bit"]) == set(twins)
    assert all(row["ms"][k] > 0 for k in row["ms"])
    (out_h, out_w), (kh, kw, cin, cout) = layer["output_shape"][:2], layer["kernel"]
    assert row["macs"] == 2 * out_h * out_w * kh * kw * cin * cout


def test_the_2_bit_summary_names_the_slowest_layer_against_the_target():
    rows = [
        {"model": "m", "name": "a", "two_bit_over_one_bit": {"popcount": 1.5}},
        {"model": "m", "name": "b", "two_bit_over_one_bit": {"popcount": 2.4}},
    ]
    (summary,) = binary_layers.two_bit_ratios(rows).values()
    assert summary == {
        "max": 2.4,
        "slowest": "m b",
        "geomean": pytest.approx(np.sqrt(1.5 * 2.4), abs=1e-3),
        "met": False,
    }
