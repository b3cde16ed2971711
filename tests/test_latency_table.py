"""binflax.export.latency_table: each layer timed at each precision, saved, and taken by
the mixed-precision selection as its cost (config.hbn.cost_table)."""

import json

import pytest

from binflax import config_check, export, mixed_selection, models, select
from binflax.errors import ConfigError
from binflax.select.sensitivity import PrecisionMeasurement
from configs import quickstart

SHAPE = (16, 16, 1)
CANDIDATES = ("conv2", "conv3", "conv4", "conv5")


@pytest.fixture(scope="module")
def table():
    model = models.create("mini_sketchanet", plan="fbin")
    return export.latency_table(model, precisions=(1, 2, 8, 32), input_shape=SHAPE, repeats=1)


def test_every_layer_is_timed_at_each_precision_it_can_take(table):
    """The candidates (fbin's binary inputs) at every bit-width; the first and last layer
    at 8 bits and their own float; the file reads back equal."""
    assert {name: sorted(row) for name, row in table.ms.items()} == {
        "conv1": [8, 32],
        **{name: [1, 2, 8, 32] for name in CANDIDATES},
        "fc": [8, 32],
    }
    assert all(t > 0 for row in table.ms.values() for t in row.values())
    assert table.plan_bits == {"conv1": 32, **dict.fromkeys(CANDIDATES, 1), "fc": 32}
    assert table.network == "MiniSketchANet" and table.batch == 1
    assert table.machine["backend"] == "cpu" and table.machine["cpu"]


def test_a_saved_table_reads_back_and_other_files_are_refused(table, tmp_path):
    table.save(tmp_path / "t.json")
    assert export.LatencyTable.load(tmp_path / "t.json") == table
    data = json.loads((tmp_path / "t.json").read_text())
    for change, match in (
        ({"format": "other"}, "not a binflax latency table"),
        ({"version": 9}, "version 9"),
        ({"ms": None}, "incomplete"),
    ):
        (tmp_path / "bad.json").write_text(json.dumps(data | change))
        with pytest.raises(export.ExportError, match=match):
            export.LatencyTable.load(tmp_path / "bad.json")
    with pytest.raises(export.ExportError, match="no latency table"):
        export.LatencyTable.load(tmp_path / "absent.json")


def measurement(precisions=(1, 2, 8, 32)):
    macs = dict.fromkeys(CANDIDATES, 1000)
    scores = {"error": {n: {b: 1.0 / b for b in precisions} for n in CANDIDATES}}
    return PrecisionMeasurement(
        precisions=precisions,
        scores=scores,
        macs=macs,
        fixed_macs=500,
        total_macs=4500,
        layer_names=("conv1", *CANDIDATES, "fc"),
        num_samples=4,
    )


def test_the_pipeline_takes_the_table_as_its_cost(table, tmp_path):
    """config.hbn.cost_table: the table's times as the selection's costs, its fbin the
    summed layer times; a table of another network, or one without a searched bit-width,
    named in a ConfigError."""
    table.save(tmp_path / "t.json")
    config = quickstart.get_config()
    config.hbn.update(precisions=(1, 2, 8, 32), cost_table=str(tmp_path / "t.json"))
    config_check.checked(config)
    model = models.create("mini_sketchanet", plan="fbin")
    costs = mixed_selection.cost_table(config, model, measurement())
    assert costs.unit == "ms" and costs.layers["conv3"] == table.ms["conv3"]
    assert costs.fbin == pytest.approx(sum(table.ms[n][table.plan_bits[n]] for n in table.ms))
    picked = select.select_precisions(measurement(), 1.5, costs=costs)
    assert picked.cost <= 1.5 * costs.fbin * (1 + 1e-6)
    with pytest.raises(ConfigError, match="measured on MiniSketchANet, not on LeNet5"):
        mixed_selection.cost_table(config, models.create("lenet5", plan="fbin"), measurement())
    with pytest.raises(ConfigError, match=r"no \[4\] bits"):
        mixed_selection.cost_table(config, model, measurement((1, 4, 32)))


def test_a_bad_cost_table_setting_names_the_field(tmp_path):
    config = quickstart.get_config()
    config.hbn.cost_table = str(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="applies to the mixed-precision study"):
        config_check.checked(config)
    config.hbn.precisions = (1, 2, 32)
    with pytest.raises(ConfigError, match="cost_table=.*does not exist"):
        config_check.checked(config)


def test_time_calls_rotates_the_order_so_no_call_always_follows_the_same_one():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    ms = export.time_calls(calls, repeats=4)
    assert set(ms) == set("abc") and all(v >= 0 for v in ms.values())
    assert order[3:] == list("abcbcacababc")  # after one warm-up call each
