"""binflax.select: where to keep a float input - the paper's contribution, as a library.

Why: HBN binarizes weights almost everywhere and inputs almost everywhere, keeping float
inputs in the few layers whose input suffers most from binarization at the least
compute (docs/method.md section 7). This package measures that damage on a trained
fbin network, scores and selects layers under an equivalent-FLOPs budget, and traces the
whole accuracy-proxy/compute trade-off:

- :func:`measure` - per-layer input-binarization error (``rmse``, ``relative``,
  ``one_minus_x2``) and MACs, one jit-compiled pass over held-out batches;
- :func:`solve` - the float-input layers: ``greedy`` (the paper's ranking), ``exact``
  (0/1 knapsack), ``partition`` (largest score gap), or ``num_float=k``;
- :func:`pareto_frontier` - every budget's optimum;
- :func:`select` - all of it in one call, returning a :class:`~binflax.plan.Plan` and a
  printable :class:`SelectionReport`;
- :func:`measure_precisions` - each candidate's sensitivity to each input bit-width
  (1, 2, 4, 8, float): the paper's error generalised, a Fisher and a Hessian-trace
  score, in one jit-compiled pass;
- :func:`select_precisions` - each candidate's input bit-width under a budget (the
  mixed-precision hybrid), :func:`mixed_plan` its plan, :func:`mixed_controls` its
  uniform, binary/float, per-score and random controls at the same budget;
- :func:`control_sets` - the float-input sets of control hybrids chosen without the
  metric (``random``, ``cost_only``, ``error_only``) at a hybrid's budget, the direct
  test that the metric picks the right layers;
- :func:`solve_precisions` and :func:`precision_frontier` - beyond binary or float: one
  of any number of precisions per layer (tied layers sharing one) that minimises the
  summed sensitivity under a cost budget, an exact multi-choice knapsack, and every
  budget's optimum (:class:`PrecisionError` for input they cannot take).

    >>> from binflax import select
    >>> select.solve({"a": 0.6, "b": 0.9}, {"a": 1e8, "b": 1e5}, fixed_macs=1e7, budget=1.02)
    ('b',)

The walkthrough is docs/select.md.
"""

from binflax.select.controls import (
    CONTROLS,
    RANDOM_FLOOR,
    ControlError,
    control_sets,
    cost_only,
    error_only,
    random_sets,
)
from binflax.select.metrics import METRICS, Measurement, measure
from binflax.select.mixed import (
    MIXED_CONTROLS,
    CostTable,
    MixedSelection,
    eq_flops_costs,
    is_mixed,
    mixed_controls,
    mixed_plan,
    precision_costs,
    select_precisions,
    selection_of,
)
from binflax.select.precisions import (
    PrecisionError,
    PrecisionPoint,
    precision_frontier,
    solve_precisions,
)
from binflax.select.report import LayerRow, SelectionReport, hybrid_plan, select
from binflax.select.scores import SCORES, get_score
from binflax.select.sensitivity import (
    SENSITIVITIES,
    LayerStatistics,
    PrecisionMeasurement,
    Sensitivity,
    SensitivityError,
    measure_precisions,
)
from binflax.select.solvers import (
    METHODS,
    FrontierPoint,
    Problem,
    layer_scores,
    pareto_frontier,
    problem,
    solve,
)

__all__ = [
    "MIXED_CONTROLS",
    "MixedSelection",
    "CostTable",
    "eq_flops_costs",
    "is_mixed",
    "mixed_controls",
    "mixed_plan",
    "precision_costs",
    "select_precisions",
    "selection_of",
    "SENSITIVITIES",
    "LayerStatistics",
    "Sensitivity",
    "PrecisionMeasurement",
    "SensitivityError",
    "measure_precisions",
    "CONTROLS",
    "METHODS",
    "METRICS",
    "RANDOM_FLOOR",
    "SCORES",
    "ControlError",
    "FrontierPoint",
    "LayerRow",
    "Measurement",
    "PrecisionError",
    "PrecisionPoint",
    "Problem",
    "SelectionReport",
    "control_sets",
    "cost_only",
    "error_only",
    "get_score",
    "hybrid_plan",
    "layer_scores",
    "measure",
    "pareto_frontier",
    "precision_frontier",
    "problem",
    "random_sets",
    "select",
    "solve",
    "solve_precisions",
]
