"""The two pictures of a layer selection, as PNG files.

Why these two: the paper's metric figure shows, layer by layer, the score that decided
which inputs stay float; the Pareto frontier shows what the chosen hybrid gave up
against every other budget. Both read a :class:`~binflax.select.SelectionReport` or its
``to_dict()`` (so ``select.json`` can be re-plotted without re-measuring).

    plot_scores(report, "scores.png")
    plot_frontier(report, "frontier.png")

Matplotlib's object API with the Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

BINARY_COLOR = "#8c8c8c"
FLOAT_COLOR = "#d62728"
ERROR_COLOR = "#1f77b4"


def _data(report: Any) -> Mapping:
    data = report if isinstance(report, Mapping) else report.to_dict()
    if not data.get("layers"):
        raise ValueError("the selection report has no candidate layers to plot")
    return data


def _save(fig: Figure, path: str | os.PathLike) -> str:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=120)
    return os.fspath(path)


def plot_scores(report: Any, path: str | os.PathLike, *, title: str | None = None) -> str:
    """Per-layer scores as bars (float-input layers in red, binary in grey), errors as dots.

    Layers are in network order; the right axis carries the input-binarization error.
    Returns ``path``.
    """
    data = _data(report)
    layers = data["layers"]
    names = [row["name"] for row in layers]
    xs = range(len(names))
    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 2.0), 4.0), layout="constrained")
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
    return _save(fig, path)


def plot_frontier(report: Any, path: str | os.PathLike, *, title: str | None = None) -> str:
    """Error left binarized vs equivalent FLOPs over every budget, the chosen hybrid starred.

    The frontier is a staircase (a budget between two points buys the cheaper one); the
    budget, when there is one, is a dashed vertical line. Returns ``path``.
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
        label="chosen: " + (", ".join(data["float_layers"]) or "fbin"),
        zorder=3,
    )
    ax.set_xscale("log")
    ax.set_xlabel("equivalent MFLOPs (log scale)")
    ax.set_ylabel(f"error left binarized (sum of {data['metric']})")
    ax.legend(fontsize=8)
    ax.set_title(title or f"{data['model'] or 'model'}: selection frontier")
    return _save(fig, path)
