"""binflax.plots: the three charts render to readable PNGs from a report, its JSON or results."""

import matplotlib.image
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from binflax import plots, select


@pytest.fixture(scope="module")
def report(authors_sketchanet):
    errors, macs, fixed, total = authors_sketchanet
    measurement = select.Measurement(
        "rmse", errors, {"rmse": errors}, macs, fixed, total, ("conv1", *errors, "conv8"), 0
    )
    return select.SelectionReport.from_measurement(measurement, budget=1.1, model="SketchANet")


@pytest.mark.parametrize("plot", [plots.plot_scores, plots.plot_frontier])
def test_plots_write_pngs_from_a_report_and_from_its_json(report, plot, tmp_path):
    for source in (report, report.to_dict()):
        path = tmp_path / f"{plot.__name__}.png"
        assert plot(source, path) == str(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(path).shape
        assert height >= 300 and width >= 500
        path.unlink()


def dashed_vertical_lines(figure):
    return [
        line
        for line in figure.axes[0].lines
        if line.get_linestyle() == "--" and len(set(line.get_xdata())) == 1
    ]


def test_the_budget_is_a_dashed_line_and_an_unbounded_report_has_none(report):
    (budget,) = dashed_vertical_lines(plots.frontier_figure(report))
    assert budget.get_xdata()[0] == pytest.approx(1.1 * report.eq_flops["fbin"] / 1e6)
    assert dashed_vertical_lines(plots.frontier_figure(report.to_dict() | {"budget": None})) == []


def test_many_chosen_layers_are_counted_in_the_legend_and_the_axes_keep_their_size(report):
    """ResNet-18's Hybrid1 keeps ten inputs float: naming them all in the legend squeezed
    the frontier's axes to nothing (Matplotlib's constrained layout gave up)."""
    ten = [f"layer{i}_0/downsample" for i in range(10)]
    figure = plots.frontier_figure(report.to_dict() | {"float_layers": ten})
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "chosen: 10 float-input layers" in labels
    FigureCanvasAgg(figure).draw()  # runs the constrained layout
    width, height = figure.axes[0].get_window_extent().size  # pixels of a 720 x 480 figure
    assert width > 300 and height > 200
    few = plots.frontier_figure(report.to_dict() | {"float_layers": ["conv4", "conv5"]})
    assert "chosen: conv4, conv5" in [t.get_text() for t in few.axes[0].get_legend().get_texts()]


def test_a_report_without_layers_is_refused(report, tmp_path):
    with pytest.raises(ValueError, match="no candidate layers"):
        plots.plot_scores(report.to_dict() | {"layers": []}, tmp_path / "s.png")


def test_results_figure_places_every_variant_at_its_cost_and_accuracy(tmp_path):
    entry = {"eq_flops": 2e6, "memory_bytes": 2**20, "top1": 90.0}
    hybrid = entry | {"eq_flops": 3e6, "top1": 95.0}
    results = {"model": "m", "dataset": "d", "variants": {"fbin": entry, "hybrid": hybrid}}
    compute, memory = plots.results_figure(results).axes
    points = sorted(tuple(line.get_xydata()[0]) for line in compute.lines)
    assert points == [(2.0, 90.0), (3.0, 95.0)]
    assert compute.get_xscale() == "log" and memory.lines[0].get_xydata()[0][0] == 1.0
    assert plots.plot_results(results, tmp_path / "r.png") == str(tmp_path / "r.png")


def test_controls_are_hollow_diamonds_beside_the_filled_hybrids_with_a_legend():
    entry = {"eq_flops": 2e6, "memory_bytes": 2**20, "top1": 90.0}
    results = {
        "model": "m",
        "dataset": "d",
        "variants": {
            "hybrid1": entry,
            "hybrid1.random0": entry | {"top1": 80.0},
            "hybrid1.cost_only": entry | {"top1": 85.0},
            "hybrid1.error_only": entry,  # the hybrid's own set: its point, its label
            "fbin": entry | {"eq_flops": 1e6},
        },
    }
    compute, memory = plots.results_figure(results).axes
    hollow = {
        tuple(line.get_xydata()[0])
        for line in compute.lines
        if line.get_marker() == "D" and line.get_markerfacecolor() == "none"
    }
    assert hollow == {(2.0, 80.0), (2.0, 85.0), (2.0, 90.0)}
    at_hybrid = [line for line in compute.lines if tuple(line.get_xydata()[0]) == (2.0, 90.0)]
    assert [line.get_marker() for line in at_hybrid] == ["o", "D"]
    assert at_hybrid[0].get_markerfacecolor() == plots.FLOAT_COLOR
    texts = sorted(text.get_text() for text in compute.texts)
    assert texts == ["fbin", "hybrid1\nhybrid1.error_only", "hybrid1.cost_only", "hybrid1.random0"]
    labels = [text.get_text() for text in compute.get_legend().get_texts()]
    assert labels == ["HBN hybrid (metric)", "control (no metric)"]
    labelled = "\n".join(text.get_text() for text in memory.texts).split("\n")
    assert sorted(labelled) == ["fbin", "hybrid1"]  # no control: their memory is their hybrid's
    for name in ("hybrid1.random0", "hybrid1.cost_only", "hybrid1.error_only"):
        del results["variants"][name]
    assert plots.results_figure(results).axes[0].get_legend() is None


def test_over_seeds_the_error_bars_are_one_sample_std_per_kind_and_recipe():
    def run(recipe, seed, hybrid, control, fbin):
        entries = {
            "float": {"top1": 90.0 + seed, "eq_flops": 40.0},
            "hybrid1": {"top1": hybrid, "eq_flops": 6.0},
            "hybrid1.random0": {"top1": control, "eq_flops": 5.0 + seed},  # cost varies
            "fbin": {"top1": fbin, "eq_flops": 2.0},
        }
        return {"recipe": recipe, "model": "m", "dataset": "d", "seed": seed} | {
            "variants": entries
        }

    hybrid = {"xnor": [80.0, 82.5, 79.1], "reactnet": [85.0, 86.2, 84.4]}
    control = {"xnor": [78.0, 80.0, 80.5], "reactnet": [84.0, 83.1, 85.0]}
    fbin = {"xnor": [70.0, 71.0, 69.5], "reactnet": [75.0, 75.3, 74.0]}
    runs = [
        run(recipe, seed, hybrid[recipe][seed], control[recipe][seed], fbin[recipe][seed])
        for recipe in ("xnor", "reactnet")
        for seed in range(3)
    ]
    figure = plots.results_over_seeds_figure(runs)
    (ax,) = figure.axes
    assert "± 1 sample std" in ax.get_ylabel() and ax.get_xscale() == "log"
    bars = {}
    for container in ax.containers:
        line, _, (bar_lines,) = container.lines
        for (x, y), segment in zip(line.get_xydata(), bar_lines.get_segments(), strict=True):
            (x0, low), (x1, high) = segment
            assert x0 == x1 == x and (low + high) / 2 == pytest.approx(y)
            bars[container.get_label(), round(x, 6)] = (y, high - low, line.get_marker())
    for recipe in ("xnor", "reactnet"):
        for label, x, top1, marker in (
            (f"{recipe}: hybrids", 3.0, hybrid[recipe], "o"),
            (f"{recipe}: controls", 3.0, control[recipe], "D"),  # (5 + 6 + 7) / 3 / 2
            (f"{recipe}: baselines", 1.0, fbin[recipe], "s"),
            (f"{recipe}: baselines", 20.0, [90.0, 91.0, 92.0], "s"),
        ):
            y, length, drawn = bars[label, x]
            assert y == pytest.approx(np.mean(top1)) and drawn == marker
            assert length == pytest.approx(2 * np.std(top1, ddof=1)), label
    colors = {c.get_label(): c.lines[0].get_color() for c in ax.containers}
    assert colors["xnor: hybrids"] == colors["xnor: controls"] != colors["reactnet: hybrids"]
