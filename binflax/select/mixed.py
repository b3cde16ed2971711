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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        chosen = ", ".join(f"{name} {bits}" for name, bits in self.bits.items())
        return (
            f"bits per layer ({self.score}, budget {self.budget:g} x fbin, "
            f"{self.eq_flops / self.fbin_eq_flops:.3f} x fbin): {chosen}"
        )


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
    return measurement.fixed_macs + sum(measurement.macs.values()) / speedup


def select_precisions(
    measurement: PrecisionMeasurement,
    budget: float,
    *,
    score: str = "error",
    speedup: float = XNOR_SPEEDUP,
    precisions: Sequence[int] | None = None,
    ties: Sequence[Sequence[str]] = (),
) -> MixedSelection:
    """The bit-widths that minimise the summed ``score`` within ``budget`` x fbin's
    equivalent FLOPs; ``precisions`` restricts the choices to a subset of the measured."""
    choices = tuple(measurement.precisions if precisions is None else precisions)
    missing = [b for b in choices if b not in measurement.precisions]
    if missing:
        raise ValueError(
            f"precisions {missing} were not measured (measured: {measurement.precisions})"
        )
    table = measurement.sensitivity(score)
    costs = precision_costs(measurement, speedup)
    sensitivity = {n: {b: table[n][b] for b in choices} for n in table}
    costs = {n: {b: costs[n][b] for b in choices} for n in costs}
    fbin = fbin_eq_flops(measurement, speedup)
    cheapest = measurement.fixed_macs + sum(min(c.values()) for c in costs.values())
    if budget * fbin < cheapest * (1 - 1e-9):
        raise PrecisionError(
            f"budget {budget:g} x fbin is below the cheapest assignment of "
            f"{', '.join(map(str, choices))} bits, {cheapest / fbin:.4g} x fbin"
        )
    bits = solve_precisions(sensitivity, costs, budget * fbin - measurement.fixed_macs, ties)
    return _selection(measurement, bits, score, budget, speedup)


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
) -> dict[str, dict[str, int]]:
    """The bit-widths of each control of ``hybrid``, by label (module docstring)."""
    unknown = [c for c in controls if c not in MIXED_CONTROLS]
    if unknown:
        raise ControlError(
            f"unknown mixed-precision control(s) {unknown}; controls: {', '.join(MIXED_CONTROLS)}"
        )
    costs = precision_costs(measurement, speedup)
    capacity = hybrid.budget * hybrid.fbin_eq_flops - measurement.fixed_macs
    out: dict[str, dict[str, int]] = {}
    for control in controls:
        if control == "uniform":
            out[control] = _uniform(costs, capacity, measurement.precisions)
        elif control == "binary_float":
            out[control] = select_precisions(
                measurement, hybrid.budget, score=hybrid.score, speedup=speedup,
                precisions=BINARY_FLOAT,
            ).bits  # fmt: skip
        elif control == "random":
            floor = RANDOM_FLOOR * (hybrid.eq_flops - measurement.fixed_macs)
            drawn = _random(costs, capacity, floor, num_random, seed)
            out |= {f"random{i}": bits for i, bits in enumerate(drawn)}
        elif control != hybrid.score and control in measurement.scores:
            out[control] = select_precisions(
                measurement, hybrid.budget, score=control, speedup=speedup
            ).bits
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
) -> MixedSelection:
    """What ``bits`` (a control's, say) costs and how sensitive it is by ``score``."""
    return _selection(measurement, dict(bits), score, budget, speedup)


def _selection(measurement, bits, score, budget, speedup) -> MixedSelection:
    costs = precision_costs(measurement, speedup)
    table = measurement.sensitivity(score)
    return MixedSelection(
        score=score,
        budget=budget,
        bits=dict(bits),
        eq_flops=measurement.fixed_macs + sum(costs[n][b] for n, b in bits.items()),
        fbin_eq_flops=fbin_eq_flops(measurement, speedup),
        sensitivity=float(sum(table[n][b] for n, b in bits.items())),
    )


def _uniform(costs, capacity, precisions) -> dict[str, int]:
    """Every layer at the largest bit-width whose summed cost fits."""
    for bits in sorted(precisions, reverse=True):
        if sum(c[bits] for c in costs.values()) <= capacity * (1 + BUDGET_RTOL):
            return {name: bits for name in costs}
    raise ControlError(f"no uniform bit-width fits {capacity:g} eq. FLOPs")


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
                f"random draw {draw} found no bit-widths within the budget, of at least "
                f"{floor / 1e6:.4g} M eq. FLOPs and unlike the earlier draws, in {MAX_TRIES} tries"
            )
    return draws
