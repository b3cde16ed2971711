"""Mixed-precision HBN: an input bit-width per layer under an equivalent-FLOPs budget.

Why: HBN asks of each candidate layer "binary or float input?"; mixed precision asks
"how many bits?" among ``precisions`` (1, 2, 4, 8 and 32 for float). From a
:class:`~binflax.select.sensitivity.PrecisionMeasurement` of a trained fbin network this
module prices every choice (:func:`precision_costs`: the layer's equivalent FLOPs at
that input precision on its binary weights, :func:`binflax.cost.eq_flops_of`), solves the
multi-choice knapsack exactly under the budget
(:func:`~binflax.select.precisions.solve_precisions`) and builds the plan
(:func:`mixed_plan`). The budget is a multiple of the fbin network's equivalent FLOPs,
as for the binary/float hybrids, so both searches answer at the same cost.

Its controls (:func:`mixed_controls`), each at the same budget, say which score and
which search space win:

- ``uniform``: every candidate at the same bit-width, the largest the budget allows;
- ``binary_float``: the paper's search space, binary or float inputs only, solved
  exactly with the same score;
- ``error``, ``fisher``, ``hessian``: the pick of each sensitivity score other than the
  one the hybrid used;
- ``random0``, ``random1``, ...: random bit-widths within the budget, each costing at
  least :data:`~binflax.select.controls.RANDOM_FLOOR` of the hybrid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import flax.linen as nn
import numpy as np

from binflax.cost import XNOR_SPEEDUP, eq_flops_of
from binflax.plan import Plan, precision_name
from binflax.select.controls import MAX_TRIES, RANDOM_FLOOR, ControlError
from binflax.select.precisions import PrecisionError, solve_precisions
from binflax.select.sensitivity import FLOAT_BITS, SENSITIVITIES, PrecisionMeasurement
from binflax.select.solvers import BUDGET_RTOL

MIXED_CONTROLS = ("random", "uniform", "binary_float", *SENSITIVITIES)
# The paper's search space: a binary or a float input.
BINARY_FLOAT = (1, FLOAT_BITS)


def is_mixed(precisions: Sequence[int]) -> bool:
    """The search space is more than the paper's binary or float."""
    return set(precisions) != set(BINARY_FLOAT)


@dataclasses.dataclass(frozen=True)
class MixedSelection:
    """One mixed-precision pick: each candidate's input bit-width, and what it cost."""

    score: str
    budget: float  # a multiple of the fbin network's equivalent FLOPs
    bits: dict[str, int]  # candidate layer -> input bit-width, network order
    eq_flops: float  # the network's, with this pick
    fbin_eq_flops: float
    sensitivity: float  # the summed sensitivity of the pick, by ``score``
    # What the budget was held to, in the cost table's unit (eq_flops unless a measured
    # latency table priced the choices: "ms")
    cost: float = 0.0
    fbin_cost: float = 0.0
    cost_unit: str = "eq_flops"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        chosen = ", ".join(f"{name} {bits}" for name, bits in self.bits.items())
        unit = "" if self.cost_unit == "eq_flops" else f" in {self.cost_unit}"
        return (
            f"bits per layer ({self.score}, budget {self.budget:g} x fbin{unit}, "
            f"{self.cost / self.fbin_cost:.3f} x fbin{unit}): {chosen}"
        )


@dataclasses.dataclass(frozen=True)
class CostTable:
    """What every choice costs, in one unit: ``layers[layer][bits]`` for the candidates
    and ``fixed`` for the rest of the network. The budget is a multiple of the fbin
    network's cost in the same unit (every candidate at 1 bit).

    The default is the equivalent FLOPs (:func:`eq_flops_costs`); a latency table measured
    on the export's own kernels (:func:`binflax.export.latency_table`) gives one in
    milliseconds (:meth:`from_latency`)."""

    unit: str
    layers: dict[str, dict[int, float]]
    fixed: float

    @property
    def fbin(self) -> float:
        return self.fixed + sum(costs[1] for costs in self.layers.values())

    def of(self, bits: Mapping[str, int]) -> float:
        """The network's cost with the candidates at ``bits``."""
        return self.fixed + sum(self.layers[name][b] for name, b in bits.items())

    @classmethod
    def from_latency(
        cls,
        measured: Mapping[str, Mapping[int, float]],
        plan_bits: Mapping[str, int],
        measurement: PrecisionMeasurement,
        unit: str = "ms",
    ) -> CostTable:
        """From a latency table's per-layer times (``measured[layer][bits]``) and the bits
        each layer has in the measured plan (``plan_bits``): the candidates at every
        measured precision, the other layers fixed at their own. A layer or precision the
        table lacks is named in a ``ValueError``."""
        missing = [name for name in measurement.layer_names if name not in measured]
        if missing:
            raise ValueError(f"the latency table has no layer(s) {', '.join(missing)}")
        layers = {}
        for name in measurement.macs:
            absent = [b for b in measurement.precisions if b not in measured[name]]
            if absent:
                raise ValueError(f"the latency table has no {absent} bits for layer {name!r}")
            layers[name] = {b: float(measured[name][b]) for b in measurement.precisions}
        others = [n for n in measurement.layer_names if n not in measurement.macs]
        for name in others:
            if plan_bits[name] not in measured[name]:
                raise ValueError(f"the latency table has no {plan_bits[name]} bits for {name!r}")
        fixed = sum(float(measured[name][plan_bits[name]]) for name in others)
        return cls(unit, layers, fixed)


def eq_flops_costs(measurement: PrecisionMeasurement, speedup: float = XNOR_SPEEDUP) -> CostTable:
    """The equivalent-FLOPs cost table: :func:`precision_costs` and the fixed MACs."""
    return CostTable("eq_flops", precision_costs(measurement, speedup), measurement.fixed_macs)


def precision_costs(
    measurement: PrecisionMeasurement, speedup: float = XNOR_SPEEDUP
) -> dict[str, dict[int, float]]:
    """Each candidate's equivalent FLOPs at each measured input bit-width, its weights
    binary."""
    return {
        name: {
            bits: eq_flops_of(macs, precision_name(bits), "binary", speedup)
            for bits in measurement.precisions
        }
        for name, macs in measurement.macs.items()
    }


def fbin_eq_flops(measurement: PrecisionMeasurement, speedup: float = XNOR_SPEEDUP) -> float:
    """The fbin network's equivalent FLOPs: the candidates binary, the rest in full."""
    return eq_flops_costs(measurement, speedup).fbin


def select_precisions(
    measurement: PrecisionMeasurement,
    budget: float,
    *,
    score: str = "error",
    speedup: float = XNOR_SPEEDUP,
    precisions: Sequence[int] | None = None,
    ties: Sequence[Sequence[str]] = (),
    costs: CostTable | None = None,
) -> MixedSelection:
    """The bit-widths that minimise the summed ``score`` within ``budget`` x fbin's cost:
    its equivalent FLOPs, or ``costs`` (e.g. a measured latency table,
    :meth:`CostTable.from_latency`); ``precisions`` restricts the choices to a subset of
    the measured."""
    choices = tuple(measurement.precisions if precisions is None else precisions)
    missing = [b for b in choices if b not in measurement.precisions]
    if missing:
        raise ValueError(
            f"precisions {missing} were not measured (measured: {measurement.precisions})"
        )
    priced = costs or eq_flops_costs(measurement, speedup)
    table = measurement.sensitivity(score)
    sensitivity = {n: {b: table[n][b] for b in choices} for n in table}
    layer_costs = {n: {b: priced.layers[n][b] for b in choices} for n in priced.layers}
    fbin = priced.fbin
    cheapest = priced.fixed + sum(min(c.values()) for c in layer_costs.values())
    if budget * fbin < cheapest * (1 - 1e-9):
        raise PrecisionError(
            f"budget {budget:g} x fbin is below the cheapest assignment of "
            f"{', '.join(map(str, choices))} bits, {cheapest / fbin:.4g} x fbin"
        )
    bits = solve_precisions(sensitivity, layer_costs, budget * fbin - priced.fixed, ties)
    return _selection(measurement, bits, score, budget, speedup, priced)


def mixed_plan(
    model: nn.Module, measurement: PrecisionMeasurement, bits: Mapping[str, int], name: str
) -> Plan:
    """The measured model's plan with each candidate's input at ``bits``; every other
    layer, and every weight, as the measured (fbin) plan has it."""
    layers = [
        (layer.name, precision_name(bits[layer.name]) if layer.name in bits else layer.input)
        for layer in model.plan
    ]
    return Plan(((n, inp, model.plan[n].weight) for n, inp in layers), name=name).validate(
        measurement.layer_names
    )


def mixed_controls(
    measurement: PrecisionMeasurement,
    hybrid: MixedSelection,
    *,
    controls: Sequence[str],
    num_random: int,
    seed: int,
    speedup: float = XNOR_SPEEDUP,
    costs: CostTable | None = None,
) -> dict[str, dict[str, int]]:
    """The bit-widths of each control of ``hybrid``, by label (module docstring), at its
    budget in the same cost table (``costs``, else the equivalent FLOPs)."""
    unknown = [c for c in controls if c not in MIXED_CONTROLS]
    if unknown:
        raise ControlError(
            f"unknown mixed-precision control(s) {unknown}; controls: {', '.join(MIXED_CONTROLS)}"
        )
    priced = costs or eq_flops_costs(measurement, speedup)
    capacity = hybrid.budget * priced.fbin - priced.fixed
    same = {"speedup": speedup, "costs": costs}
    out: dict[str, dict[str, int]] = {}
    for control in controls:
        if control == "uniform":
            out[control] = _uniform(priced, capacity, measurement.precisions)
        elif control == "binary_float":
            out[control] = select_precisions(
                measurement, hybrid.budget, score=hybrid.score, precisions=BINARY_FLOAT, **same
            ).bits
        elif control == "random":
            floor = RANDOM_FLOOR * (priced.of(hybrid.bits) - priced.fixed)
            drawn = _random(priced.layers, capacity, floor, num_random, seed)
            out |= {f"random{i}": bits for i, bits in enumerate(drawn)}
        elif control != hybrid.score and control in measurement.scores:
            out[control] = select_precisions(measurement, hybrid.budget, score=control, **same).bits
        elif control != hybrid.score:
            raise ControlError(
                f"control {control!r} needs the {control} score, which was not measured "
                "(it needs labelled batches)"
            )
    return out


def selection_of(
    measurement: PrecisionMeasurement,
    bits: Mapping[str, int],
    score: str,
    budget: float,
    speedup: float = XNOR_SPEEDUP,
    costs: CostTable | None = None,
) -> MixedSelection:
    """What ``bits`` (a control's, say) costs and how sensitive it is by ``score``."""
    priced = costs or eq_flops_costs(measurement, speedup)
    return _selection(measurement, dict(bits), score, budget, speedup, priced)


def _selection(measurement, bits, score, budget, speedup, priced: CostTable) -> MixedSelection:
    eq_flops = eq_flops_costs(measurement, speedup)
    table = measurement.sensitivity(score)
    return MixedSelection(
        score=score,
        budget=budget,
        bits=dict(bits),
        eq_flops=eq_flops.of(bits),
        fbin_eq_flops=eq_flops.fbin,
        sensitivity=float(sum(table[n][b] for n, b in bits.items())),
        cost=priced.of(bits),
        fbin_cost=priced.fbin,
        cost_unit=priced.unit,
    )


def _uniform(priced: CostTable, capacity: float, precisions) -> dict[str, int]:
    """Every layer at the largest bit-width whose summed cost fits."""
    for bits in sorted(precisions, reverse=True):
        if sum(c[bits] for c in priced.layers.values()) <= capacity * (1 + BUDGET_RTOL):
            return {name: bits for name in priced.layers}
    raise ControlError(f"no uniform bit-width fits {capacity:g} {priced.unit}")


def _random(costs, capacity, floor, num, seed) -> list[dict[str, int]]:
    """``num`` distinct random assignments within ``capacity`` costing at least
    ``floor``: each try visits the layers in a random order and gives each a bit-width
    drawn uniformly among those that still fit (``np.random.default_rng((seed, draw))``)."""
    names = list(costs)
    draws: list[dict[str, int]] = []
    for draw in range(num):
        rng = np.random.default_rng((seed % 2**64, draw))
        for _ in range(MAX_TRIES):
            cheapest = {n: min(costs[n].values()) for n in names}
            left = capacity - sum(cheapest.values())
            bits = {}
            for index in rng.permutation(len(names)):
                name = names[index]
                extra = {b: c - cheapest[name] for b, c in costs[name].items()}
                fitting = sorted(b for b, e in extra.items() if e <= left * (1 + BUDGET_RTOL))
                bits[name] = fitting[rng.integers(len(fitting))]
                left -= extra[bits[name]]
            bits = {n: bits[n] for n in names}
            spent = sum(costs[n][b] for n, b in bits.items())
            if spent >= floor and bits not in draws:
                draws.append(bits)
                break
        else:
            raise ControlError(
                f"random draw {draw} found no bit-widths within the budget, costing at least "
                f"{floor:.4g} and unlike the earlier draws, in {MAX_TRIES} tries"
            )
    return draws
