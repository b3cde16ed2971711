"""One call from a trained fbin network to a hybrid plan, with a report a person can read.

Why: in a notebook the question is "which layers, and why?". :func:`select` measures,
scores, solves and traces the frontier, and returns the :class:`~binflax.plan.Plan` to
train plus a :class:`SelectionReport` that prints as a table and saves as JSON (the
``select.json`` that ``main.py --mode=select`` writes next to ``plan.json``).

    plan, report = select(model, variables, batches, budget=1.1)
    print(report)
    report.save("select.json"); plan.save("plan.json")

:meth:`SelectionReport.from_measurement` builds the same report from measured (or
published) errors without running a model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence

import flax.linen as nn
from etils import epath

from binflax.binarized_nnx import linen_view
from binflax.cost import XNOR_SPEEDUP
from binflax.plan import Plan
from binflax.select.metrics import Measurement, measure
from binflax.select.mixed import MixedSelection, mixed_plan, select_precisions
from binflax.select.scores import ScoreFn, score_name
from binflax.select.sensitivity import measure_precisions
from binflax.select.solvers import FrontierPoint, layer_scores, pareto_frontier, problem, solve


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One candidate layer: its MACs, error (the selected metric), score and the verdict."""

    name: str
    macs: int
    error: float
    score: float
    rank: int  # 1 = highest score
    chosen: bool  # keeps a float input in the hybrid
    metrics: dict[str, float]  # every metric measured, when known


@dataclasses.dataclass(frozen=True)
class SelectionReport:
    """What :func:`select` decided and the numbers it decided on."""

    model: str
    metric: str
    score: str
    method: str
    budget: float | None
    num_float: int | None
    speedup: float
    layers: tuple[LayerRow, ...]
    float_layers: tuple[str, ...]
    fixed_macs: int
    total_macs: int
    eq_flops: dict[str, float]  # "fbin", "hybrid", "wbin"
    error_left: float  # summed error of the candidates left binarized in the hybrid
    frontier: tuple[FrontierPoint, ...]
    num_samples: int | None

    @classmethod
    def from_measurement(
        cls,
        measurement: Measurement,
        *,
        budget: float | None = None,
        num_float: int | None = None,
        method: str = "greedy",
        score: str | ScoreFn = "log_ratio",
        speedup: float = XNOR_SPEEDUP,
        model: str = "",
    ) -> SelectionReport:
        """Solves, scores and traces the frontier for an existing measurement."""
        common = dict(total_macs=measurement.total_macs, fixed_macs=measurement.fixed_macs)
        errors, macs = measurement.errors, measurement.macs
        chosen = solve(
            errors,
            macs,
            **common,
            budget=budget,
            num_float=num_float,
            speedup=speedup,
            score=score,
            method=method,
        )
        scores = layer_scores(errors, macs, **common, score=score)
        ranks = {n: r for r, n in enumerate(sorted(scores, key=lambda n: -scores[n]), start=1)}
        rows = tuple(
            LayerRow(
                name=n,
                macs=int(macs[n]),
                error=float(errors[n]),
                score=scores[n],
                rank=ranks[n],
                chosen=n in chosen,
                metrics={m: v[n] for m, v in measurement.metrics.items()},
            )
            for n in errors
        )
        prob = problem(errors, macs, fixed_macs=measurement.fixed_macs, speedup=speedup)
        return cls(
            model=model,
            metric=measurement.metric,
            score=score_name(score),
            method=method,
            budget=budget,
            num_float=num_float,
            speedup=speedup,
            layers=rows,
            float_layers=chosen,
            fixed_macs=int(measurement.fixed_macs),
            total_macs=int(measurement.total_macs),
            eq_flops={
                "fbin": prob.fbin_eq_flops,
                "hybrid": prob.eq_flops(chosen),
                "wbin": prob.eq_flops(prob.names),
            },
            error_left=sum(r.error for r in rows if not r.chosen),
            frontier=pareto_frontier(
                errors, macs, fixed_macs=measurement.fixed_macs, speedup=speedup
            ),
            num_samples=measurement.num_samples,
        )

    # -- text ------------------------------------------------------------------------
    def table(self) -> str:
        header = ("layer", "MACs", self.metric, "score", "rank", "chosen")
        rows = [
            (
                r.name,
                f"{r.macs / 1e6:.2f} M",
                f"{r.error:.4f}",
                f"{r.score:.4f}",
                str(r.rank),
                "float" if r.chosen else "-",
            )
            for r in self.layers
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(row):
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )

        rule = "-" * len(line(header))
        fbin, hybrid = self.eq_flops["fbin"], self.eq_flops["hybrid"]
        budget = "unbounded" if self.budget is None else f"{self.budget:g} x fbin"
        limits = f"budget {budget}" + (
            "" if self.num_float is None else f", num_float {self.num_float}"
        )
        total_error = sum(r.error for r in self.layers)
        notes = [
            f"{self.model or 'model'}: method {self.method}, score {self.score}, "
            f"metric {self.metric}, {limits}",
            f"float inputs: {', '.join(self.float_layers) or '(none)'}",
            f"eq. FLOPs: fbin {fbin / 1e6:.2f} M, hybrid {hybrid / 1e6:.2f} M "
            f"({hybrid / fbin:.3f} x fbin), wbin {self.eq_flops['wbin'] / 1e6:.2f} M "
            f"(speedup {self.speedup:g})",
            f"error left binarized: {self.error_left:.4f} of {total_error:.4f}",
        ]
        return "\n".join([rule, line(header), rule, *map(line, rows), rule, *notes])

    def __str__(self) -> str:
        return self.table()

    # -- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["layers"] = [dataclasses.asdict(r) for r in self.layers]
        data["float_layers"] = list(self.float_layers)
        data["frontier"] = [
            {**p._asdict(), "float_layers": list(p.float_layers)} for p in self.frontier
        ]
        return data

    def save(self, path: epath.PathLike) -> None:
        """Writes :meth:`to_dict` as JSON to ``path`` (the ``select.json`` of a run)."""
        epath.Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: Mapping) -> SelectionReport:
        """The report :meth:`to_dict` described."""
        fields = dict(data)
        fields["layers"] = tuple(LayerRow(**row) for row in data["layers"])
        fields["float_layers"] = tuple(data["float_layers"])
        fields["frontier"] = tuple(
            FrontierPoint(**{**p, "float_layers": tuple(p["float_layers"])})
            for p in data["frontier"]
        )
        return cls(**fields)

    @classmethod
    def load(cls, path: epath.PathLike) -> SelectionReport:
        """Reads a report that :meth:`save` wrote."""
        return cls.from_dict(json.loads(epath.Path(path).read_text()))


def select(
    model: nn.Module,
    variables: Mapping,
    batches: Iterable,
    *,
    budget: float | None = None,
    num_float: int | None = None,
    method: str = "greedy",
    score: str | ScoreFn = "log_ratio",
    metric: str = "rmse",
    speedup: float = XNOR_SPEEDUP,
    max_batches: int | None = None,
    precisions: Sequence[int] | None = None,
    sensitivity: str = "error",
) -> tuple[Plan, SelectionReport | MixedSelection]:
    """Measures ``model`` (an fbin network) on ``batches`` and returns the hybrid plan.

    Candidates are the model's binary-input layers; every other layer keeps a float input.
    The plan is ``Plan.hybrid`` over the model's layers, with the last layer's weights
    binary exactly when the model's plan has them binary. ``budget=None`` with no
    ``num_float`` is unbounded (every candidate float: wbin).

    With ``precisions`` (input bit-widths, e.g. ``(1, 2, 4, 8, 32)``) it is the
    mixed-precision selection instead (:mod:`binflax.select.mixed`): each candidate's
    bit-width minimising the summed ``sensitivity`` score (``error``, ``fisher`` or
    ``hessian``; the last two need batches with labels) within ``budget`` x fbin's
    equivalent FLOPs, solved exactly; the report is then a :class:`MixedSelection`.

    ``model`` may be a binarized NNX module, with ``variables`` ``None`` (its own values).
    """
    model, variables = linen_view(model, variables)
    if precisions is not None:
        if budget is None or num_float is not None:
            raise ValueError("a mixed-precision selection takes a budget (and no num_float)")
        measured = measure_precisions(
            model, variables, batches, precisions=precisions, max_batches=max_batches
        )
        chosen = select_precisions(measured, budget, score=sensitivity, speedup=speedup)
        return mixed_plan(model, measured, chosen.bits, "mixed"), chosen
    measurement = measure(model, variables, batches, metric=metric, max_batches=max_batches)
    report = SelectionReport.from_measurement(
        measurement,
        budget=budget,
        num_float=num_float,
        method=method,
        score=score,
        speedup=speedup,
        model=type(model).__name__,
    )
    return hybrid_plan(model, measurement, report.float_layers), report


def hybrid_plan(
    model: nn.Module,
    measurement: Measurement,
    float_layers: Iterable[str],
    *,
    name: str = "hybrid",
) -> Plan:
    """The plan that keeps ``float_layers`` (candidates of ``measurement``) float.

    Layers that were not candidates (their input was float in the measured model) stay
    float; the last layer's weights stay as binary as in the measured model's plan.
    """
    names = measurement.layer_names
    fixed_float = [n for n in names if n not in measurement.macs]
    return Plan.hybrid(
        names,
        [*fixed_float, *float_layers],
        binarize_last_weights=model.plan[names[-1]].binary_weight,
        name=name,
    )
