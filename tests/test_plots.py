"""binflax.plots: both charts render to readable PNGs from a report or its JSON."""

import json

import matplotlib.image
import pytest

from binflax import plots, select

ERRORS = {
    "conv2": 0.608,
    "conv3": 0.620,
    "conv4": 0.782,
    "conv5": 0.791,
    "conv6": 0.684,
    "conv7": 0.943,
}
MACS = {
    "conv2": 196812800,
    "conv3": 66355200,
    "conv4": 132710400,
    "conv5": 132710400,
    "conv6": 6422528,
    "conv7": 262144,
}
FIXED = 72718400


@pytest.fixture(scope="module")
def report():
    measurement = select.Measurement(
        "rmse",
        ERRORS,
        {"rmse": ERRORS},
        MACS,
        FIXED,
        FIXED + sum(MACS.values()),
        ("conv1", *ERRORS, "conv8"),
        0,
    )
    return select.SelectionReport.from_measurement(measurement, budget=1.1, model="SketchANet")


@pytest.mark.parametrize("plot", [plots.plot_scores, plots.plot_frontier])
def test_plots_write_pngs_from_a_report_and_from_its_json(report, plot, tmp_path):
    for source in (report, json.loads(report.to_json())):
        path = tmp_path / f"{plot.__name__}.png"
        assert plot(source, path) == str(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(path).shape
        assert height >= 300 and width >= 500
        path.unlink()


def test_unbounded_report_plots_without_a_budget_line(report, tmp_path):
    data = json.loads(report.to_json()) | {"budget": None}
    assert plots.plot_frontier(data, tmp_path / "f.png")


def test_a_report_without_layers_is_refused(report, tmp_path):
    with pytest.raises(ValueError, match="no candidate layers"):
        plots.plot_scores(json.loads(report.to_json()) | {"layers": []}, tmp_path / "s.png")
