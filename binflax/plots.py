"""The pictures of an HBN run, as PNG files.

Why these three: the paper's metric figure shows, layer by layer, the score that decided
which inputs stay float; the Pareto frontier shows what the chosen hybrid gave up
against every other budget; and the paper's headline figure is accuracy against compute,
one point per trained variant. The first two read a
:class:`~binflax.select.SelectionReport` or its ``to_dict()`` (so ``select.json`` can be
re-plotted without re-measuring); the last reads ``results.json``, and its version over
seeds reads several (``python -m binflax.results ... --plot``).

    plot_scores(report, "scores.png")
    plot_frontier(report, "frontier.png")
    plot_results(results, "results.png")
    plot_results_over_seeds([seed0, seed1, seed2], "over_seeds.png")

Each ``plot_*`` writes the PNG of its ``*_figure`` (a Matplotlib ``Figure`` to inspect or
restyle) through ``etils.epath``, so a ``gs://`` path works. Matplotlib's object API with
the Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from binflax import over_seeds, variants

BINARY_COLOR = "#8c8c8c"
FLOAT_COLOR = "#d62728"
ERROR_COLOR = "#1f77b4"


def _data(report: Any) -> Mapping:
    data = report if isinstance(report, Mapping) else report.to_dict()
    if not data.get("layers"):
        raise ValueError("the selection report has no candidate layers to plot")
    return data


def _save(fig: Figure, path: epath.PathLike) -> str:
    """Renders ``fig`` as PNG bytes and writes them through ``epath`` (``gs://`` too)."""
    FigureCanvasAgg(fig)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    epath.Path(path).write_bytes(png.getvalue())
    return str(path)


def scores_figure(report: Any, *, title: str | None = None) -> Figure:
    """Per-layer scores as bars (float-input layers in red, binary in grey), errors as dots.

    Layers are in network order; the right axis carries the input-binarization error.
    """
    data = _data(report)
    layers = data["layers"]
    names = [row["name"] for row in layers]
    xs = range(len(names))
    longest = max(len(name) for name in names)  # rotated labels need height
    height = 4.0 + (0.09 * longest if len(names) > 8 else 0.0)
    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 2.0), height), layout="constrained")
    ax = fig.add_subplot()
    colors = [FLOAT_COLOR if row["chosen"] else BINARY_COLOR for row in layers]
    ax.bar(xs, [row["score"] for row in layers], color=colors)
    ax.set_xticks(
        list(xs),
        names,
        rotation=60 if len(names) > 8 else 0,
        ha="right" if len(names) > 8 else "center",
        fontsize=8,
    )
    ax.set_ylabel(f"score ({data['score']})")
    err_ax = ax.twinx()
    err_ax.plot(list(xs), [row["error"] for row in layers], "o", color=ERROR_COLOR)
    err_ax.set_ylabel(f"input error ({data['metric']})", color=ERROR_COLOR)
    err_ax.set_ylim(bottom=0)
    handles = [
        Patch(color=FLOAT_COLOR, label="float input (chosen)"),
        Patch(color=BINARY_COLOR, label="binary input"),
        *err_ax.plot([], [], "o", color=ERROR_COLOR, label="error"),
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.set_title(title or f"{data['model'] or 'model'}: layer scores ({data['method']})")
    return fig


def frontier_figure(report: Any, *, title: str | None = None) -> Figure:
    """Error left binarized vs equivalent FLOPs over every budget, the chosen hybrid starred.

    The frontier is a staircase (a budget between two points buys the cheaper one); the
    budget, when there is one, is a dashed vertical line.
    """
    data = _data(report)
    frontier = data["frontier"]
    mega = 1e6
    xs = [p["eq_flops"] / mega for p in frontier]
    ys = [p["error_left"] for p in frontier]
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.step(xs, ys, where="post", color=BINARY_COLOR, zorder=1)
    ax.plot(xs, ys, "o", color=BINARY_COLOR, markersize=4, label="Pareto frontier", zorder=2)
    fbin = data["eq_flops"]["fbin"]
    if data.get("budget") is not None:
        ax.axvline(
            data["budget"] * fbin / mega,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"budget {data['budget']:g} x fbin",
        )
    ax.plot(
        [data["eq_flops"]["hybrid"] / mega],
        [data["error_left"]],
        "*",
        color=FLOAT_COLOR,
        markersize=14,
        label=_chosen_label(data["float_layers"]),
        zorder=3,
    )
    ax.set_xscale("log")
    ax.set_xlabel("equivalent MFLOPs (log scale)")
    ax.set_ylabel(f"error left binarized (sum of {data['metric']})")
    ax.legend(fontsize=8)
    ax.set_title(title or f"{data['model'] or 'model'}: selection frontier")
    return fig


def _chosen_label(float_layers: list[str], *, named: int = 3) -> str:
    """The chosen hybrid's legend entry: its float-input layers, or their count when more
    than ``named`` (ResNet-18's Hybrid1 has ten, which squeezed the axes to nothing)."""
    if not float_layers:
        return "chosen: fbin"
    if len(float_layers) > named:
        return f"chosen: {len(float_layers)} float-input layers"
    return "chosen: " + ", ".join(float_layers)


VARIANT_COLORS = {"float": "#2ca02c", "wbin": "#1f77b4", "fbin": BINARY_COLOR}
CONTROL_COLOR = "#ff7f0e"
# How a point is drawn: HBN hybrids and baselines filled circles, the controls (float
# inputs chosen without the metric) hollow diamonds, so the two read apart at a glance.
HYBRID_STYLE = {"marker": "o", "markersize": 8, "linestyle": "none"}
CONTROL_STYLE = {
    "marker": "D",
    "markersize": 7,
    "markerfacecolor": "none",
    "markeredgewidth": 1.5,
    "linestyle": "none",
}


def results_figure(results: Mapping, *, title: str | None = None) -> Figure:
    """Top-1 of every trained variant against its equivalent FLOPs (log axis), its bit
    operations (where results.json has them) and its memory, one panel each: the paper's
    accuracy-vs-compute picture, and the mixed-precision field's.

    ``results`` is ``results.json``'s content; hybrids are drawn in red, each labelled,
    and their controls (``hybrid1.random0``, ...) as hollow orange diamonds, with a
    legend telling the two apart.
    """
    entries = results.get("variants") or {}
    if not entries:
        raise ValueError("the results have no trained variant to plot")
    # (x of an entry, axis label): BOPs only where every row has them (results.json v4)
    panels = [(lambda e: e["eq_flops"] / 1e6, "equivalent MFLOPs (log scale)")]
    if all("bops" in entry for entry in entries.values()):
        panels.append((lambda e: e["bops"] / 1e9, "GBOPs: MACs x input bits x weight bits (log)"))
    panels.append((lambda e: e["memory_bytes"] / 2**20, "memory (MiB, log scale)"))
    fig = Figure(figsize=(5.0 * len(panels), 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True)
    compute = axes[0]
    # Variants at one point (a control that drew its hybrid's own set) share one label.
    # Controls are labelled in the compute panel only: elsewhere they may sit on their
    # hybrid's point.
    names_at: dict[tuple, list[str]] = {}
    for name, entry in entries.items():
        control = variants.parse(name).kind == "control"
        style = (
            {"color": CONTROL_COLOR, **CONTROL_STYLE}
            if control
            else {"color": VARIANT_COLORS.get(name, FLOAT_COLOR), **HYBRID_STYLE}
        )
        for ax, (x_of, _) in zip(axes, panels, strict=True):
            x = x_of(entry)
            ax.plot([x], [entry["top1"]], **style)
            if ax is compute or not control:
                names_at.setdefault((ax, x, entry["top1"]), []).append(name)
    for (ax, x, y), names in names_at.items():
        ax.annotate("\n".join(names), (x, y), textcoords="offset points", xytext=(6, 4))
    if any(variants.parse(name).kind == "control" for name in entries):
        handles = [
            Line2D([], [], color=FLOAT_COLOR, label="HBN hybrid (metric)", **HYBRID_STYLE),
            Line2D([], [], color=CONTROL_COLOR, label="control (no metric)", **CONTROL_STYLE),
        ]
        compute.legend(handles=handles, fontsize=8)
    compute.set_ylabel("test top-1 (%), checkpoint chosen on held-out data")
    for ax, (_, label) in zip(axes, panels, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.2, y=0.12)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        title
        or f"{results.get('model', 'model')} on {results.get('dataset', '?')}: "
        "accuracy vs compute and memory"
    )
    return fig


# Over seeds: one marker per kind of variant, one color per recipe.
KIND_STYLES = {
    "baseline": {"marker": "s", "markersize": 7, "linestyle": "none"},
    "hybrid": HYBRID_STYLE,
    "control": CONTROL_STYLE,
}
RECIPE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def results_over_seeds_figure(runs: Sequence[Mapping], *, title: str | None = None) -> Figure:
    """Mean top-1 over seeds with ±1 sample-std error bars against equivalent FLOPs as x
    fbin (mean over seeds, log axis): one panel per model and dataset, one series per
    recipe and kind (baselines squares, hybrids circles, controls hollow diamonds).

    ``runs`` are ``results.json`` contents (:func:`binflax.over_seeds.by_group`); a
    variant of one seed has no bar, one without fbin in its runs no position.
    """
    groups = over_seeds.by_group(runs)
    panels = list(dict.fromkeys((model, dataset) for _, model, dataset in groups))
    recipes = list(dict.fromkeys(recipe for recipe, _, _ in groups))
    if not panels:
        raise ValueError("no results to plot")
    fig = Figure(figsize=(6.5 * len(panels), 4.5), layout="constrained")
    axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False)[0], strict=True))
    for (recipe, model, dataset), by_seed in groups.items():
        ax, color = axes[model, dataset], RECIPE_COLORS[recipes.index(recipe) % len(RECIPE_COLORS)]
        placed = [r for r in over_seeds.variants_over_seeds(by_seed) if r.x_fbin is not None]
        for kind in variants.KINDS:
            rows = [r for r in placed if variants.parse(r.name).kind == kind]
            if not rows:
                continue
            ax.errorbar(
                [r.x_fbin for r in rows],
                [r.mean for r in rows],
                yerr=[r.std or 0.0 for r in rows],
                color=color,
                capsize=3,
                label=f"{recipe}: {kind}s",
                **KIND_STYLES[kind],
            )
            for r in rows:
                if kind != "control":  # the controls sit at their hybrid's cost
                    ax.annotate(
                        r.name,
                        (r.x_fbin, r.mean),
                        textcoords="offset points",
                        xytext=(6, 4),
                        fontsize=7,
                        color=color,
                    )
    for (model, dataset), ax in axes.items():
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("equivalent FLOPs, x fbin (mean over seeds, log scale)")
        ax.set_ylabel("test top-1 (%), mean over seeds ± 1 sample std")
        ax.set_title(f"{model} on {dataset}")
        ax.margins(x=0.2, y=0.12)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_scores(report: Any, path: epath.PathLike, *, title: str | None = None) -> str:
    """Writes :func:`scores_figure` as a PNG to ``path``; returns ``path``."""
    return _save(scores_figure(report, title=title), path)


def plot_frontier(report: Any, path: epath.PathLike, *, title: str | None = None) -> str:
    """Writes :func:`frontier_figure` as a PNG to ``path``; returns ``path``."""
    return _save(frontier_figure(report, title=title), path)


def plot_results(results: Mapping, path: epath.PathLike, *, title: str | None = None) -> str:
    """Writes :func:`results_figure` as a PNG to ``path``; returns ``path``."""
    return _save(results_figure(results, title=title), path)


def plot_results_over_seeds(
    runs: Sequence[Mapping], path: epath.PathLike, *, title: str | None = None
) -> str:
    """Writes :func:`results_over_seeds_figure` as a PNG to ``path``; returns ``path``."""
    return _save(results_over_seeds_figure(runs, title=title), path)
