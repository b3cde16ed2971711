"""A precision per layer under a cost budget: the exact multi-choice knapsack.

Why: :func:`~binflax.select.solvers.solve` chooses between two precisions per layer
(binary or float input). Mixed-precision networks offer more (1, 2, 4, 8 or 32 bits, or
any named options), each with its own damage and compute, and layers joined by a residual
shortcut must share one. Choosing one option per layer that minimises the summed
sensitivity under a cost budget is the multi-choice knapsack; this module solves it
exactly for one budget (:func:`solve_precisions`, a mixed-integer program) and traces its
whole trade-off curve (:func:`precision_frontier`).

A layer's ``sensitivity`` and ``costs`` map each of its choices to a number: the damage
of running the layer at that choice (any finite real >= 0, e.g. an error metric), and its
cost in any unit (MACs, bits, equivalent FLOPs; finite, >= 0). The budget is in the
costs' own unit. With two choices, ``"binary"`` (sensitivity ``E_l``, cost
``C_l / speedup``) and ``"float"`` (0, ``C_l``), and the budget ``budget * fbin - fixed``,
it is the exact solver of :mod:`~binflax.select.solvers` again.

    >>> sensitivity = {"conv1": {1: 0.9, 4: 0.2, 32: 0.0}, "conv2": {1: 0.5, 4: 0.1, 32: 0.0}}
    >>> costs = {"conv1": {1: 1.0, 4: 4.0, 32: 32.0}, "conv2": {1: 2.0, 4: 8.0, 32: 64.0}}
    >>> solve_precisions(sensitivity, costs, budget=12.0)
    {'conv1': 4, 'conv2': 4}
    >>> solve_precisions(sensitivity, costs, budget=10.0)
    {'conv1': 4, 'conv2': 1}
    >>> solve_precisions(sensitivity, costs, budget=10.0, ties=[("conv1", "conv2")])
    {'conv1': 1, 'conv2': 1}
    >>> [(p.cost, round(p.sensitivity, 6)) for p in precision_frontier(sensitivity, costs)]
    [(3.0, 1.4), (6.0, 0.7), (12.0, 0.3), (40.0, 0.1), (96.0, 0.0)]

Layers that must take the same choice are passed as ``ties`` groups; a group's
sensitivity and cost are the sums over its members. Between equally sensitive
assignments both functions keep the cheaper, and then prefer earlier choices (the order
of each layer's ``sensitivity`` mapping); their docstrings say how far each goes.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import NamedTuple, TypeAlias

import numpy as np
from scipy import optimize, sparse

from binflax.errors import UserError
from binflax.select.solvers import BUDGET_RTOL

Choice: TypeAlias = Hashable

# The milp objective is OBJECTIVE_SCALE * (sensitivity / spread + TIE_WEIGHT * cost /
# spread). HiGHS stops at an absolute gap of 1e-6 that scipy's milp cannot lower, so the
# sensitivity term spans 1e9 and is resolved to ~1e-15 of its spread; the cost term spans
# 1 and breaks ties to ~1e-6 of the cost spread.
OBJECTIVE_SCALE = 1e9
TIE_WEIGHT = 1e-9
# Points precision_frontier keeps at most before it asks for a max_budget.
FRONTIER_MAX = 2**20


class PrecisionError(UserError, ValueError):
    """A precision problem that cannot be solved as given; the message says what to change."""


class PrecisionPoint(NamedTuple):
    """One Pareto-optimal assignment: no cheaper assignment is as little sensitive."""

    cost: float  # the summed cost of the chosen choices
    sensitivity: float  # the summed sensitivity of the chosen choices
    assignment: dict[str, Choice]  # layer -> choice, in the layers' order


class _Instance(NamedTuple):
    """A validated problem: one entry per group (a tie group, or a layer of its own)."""

    layers: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]  # ordered by each group's first layer
    choices: tuple[tuple[Choice, ...], ...]  # the first member's order
    sensitivity: tuple[np.ndarray, ...]  # group g, choice j: summed over the members
    costs: tuple[np.ndarray, ...]

    def total(self, values: tuple[np.ndarray, ...], picks) -> float | np.ndarray:
        """The summed ``values`` of ``picks`` (one choice index per group, or a column of
        them per group), added from the last group to the first: the order the frontier
        accumulates in, so that both report the same float for the same assignment."""
        total = 0.0
        for g in reversed(range(len(self.groups))):
            total = total + values[g][picks[g]]
        return total

    def cheapest(self) -> float:
        """The smallest feasible budget: every group at its cheapest choice."""
        return float(self.total(self.costs, [int(np.argmin(c)) for c in self.costs]))

    def assignment(self, picks) -> dict[str, Choice]:
        chosen = {}
        for members, options, j in zip(self.groups, self.choices, picks, strict=True):
            chosen |= dict.fromkeys(members, options[int(j)])
        return {name: chosen[name] for name in self.layers}


def solve_precisions(
    sensitivity: Mapping[str, Mapping[Choice, float]],
    costs: Mapping[str, Mapping[Choice, float]],
    budget: float,
    ties: Iterable[Iterable[str]] = (),
) -> dict[str, Choice]:
    """The choice of each layer that minimises the summed sensitivity within ``budget``.

    ``sensitivity`` and ``costs`` map each layer to ``{choice: number}`` over the same
    choices; ``budget`` bounds the summed cost of the chosen choices (``inf``: unbounded)
    with a relative tolerance of ``BUDGET_RTOL`` (1e-9), so that a frontier point's cost,
    read back as a budget, selects that point. Layers of one ``ties`` group take one
    choice. Returns ``{layer: choice}`` in the order of ``sensitivity``. Raises
    :class:`PrecisionError` for bad input, or a budget below the cheapest assignment (the
    message gives that smallest feasible budget).

    Exact, by ``scipy.optimize.milp`` (HiGHS): a binary variable per group and choice,
    one equality per group (exactly one choice), one budget inequality. Three things keep
    its floating point honest:

    - each group's cheapest cost and smallest sensitivity are subtracted first, and the
      budget row is what remains of the budget, normalised to 1; choices that alone
      exceed it are fixed to 0 and an infeasible budget is refused before any solve;
    - the objective is scaled so that HiGHS's fixed absolute gap (1e-6) resolves the
      summed sensitivity to ~1e-15 of its spread (the sum over groups of max - min);
    - the cost enters the objective with weight ``TIE_WEIGHT`` (1e-9) of the
      sensitivity's, so among equally sensitive assignments the cheaper wins (to ~1e-6
      of the cost spread) in the same one solve. The price: an assignment up to 1e-9 of
      the sensitivity spread worse than the optimum can win by being cheaper.

    The solution is rounded per group (argmax), checked to be within the budget, and each
    group moved to the earliest of its choices with exactly the same cost and
    sensitivity. Ties across groups that remain go to HiGHS's pick, the same for the same
    input.
    """
    inst = _instance(sensitivity, costs, ties)
    capacity = _capacity(inst, budget, "budget")
    return inst.assignment(_milp(inst, capacity))


def precision_frontier(
    sensitivity: Mapping[str, Mapping[Choice, float]],
    costs: Mapping[str, Mapping[Choice, float]],
    ties: Iterable[Iterable[str]] = (),
    *,
    max_budget: float | None = None,
) -> list[PrecisionPoint]:
    """Every budget's optimum: the assignments no cheaper assignment beats on sensitivity.

    Sorted by cost, increasing, with sensitivity strictly decreasing: the first point is
    the cheapest assignment (the least sensitive of those), the last the least sensitive
    (the cheapest of those). For any budget, :func:`solve_precisions`'s answer is as
    sensitive as the last point within it (to its tolerance). ``max_budget`` drops the
    points above it (with the same tolerance) and speeds the search up. Raises
    :class:`PrecisionError` when more than ``FRONTIER_MAX`` points would be kept.

    Nemhauser-Ullmann, exact in floating point (it only adds and compares): the Pareto
    set of the groups seen so far, merged with one more group's choices at a time and
    pruned to the non-dominated points; points that cannot stay within ``max_budget`` on
    the cheapest completion are pruned too. Groups are merged from the last to the first,
    choice by choice, so that among assignments of equal cost and sensitivity the one
    with the earlier choice in the earlier group is kept.
    """
    inst = _instance(sensitivity, costs, ties)
    capacity = math.inf if max_budget is None else _capacity(inst, max_budget, "max_budget")
    num = len(inst.groups)
    dtype = np.min_scalar_type(max(len(c) for c in inst.choices))
    # rest[g]: the cheapest cost of groups 0..g-1, those still to merge after group g.
    cheapest = [float(c.min()) for c in inst.costs]
    rest = [math.fsum(cheapest[:g]) for g in range(num)]
    cost, sens = np.zeros(1), np.zeros(1)
    picks = np.zeros((0, 1), dtype)  # each merged group's choice index, one row per group
    for g in reversed(range(num)):
        k, m = len(inst.choices[g]), cost.size
        all_cost = (cost[None, :] + inst.costs[g][:, None]).ravel()  # choice-major
        all_sens = (sens[None, :] + inst.sensitivity[g][:, None]).ravel()
        all_picks = np.concatenate(
            [np.repeat(np.arange(k, dtype=dtype), m)[None], np.tile(picks, k)]
        )
        # Prune what cannot fit on the cheapest completion; slack for the other order of
        # the sum, then the last merge (rest 0) checks the budget exactly.
        fits = all_cost + rest[g] <= (capacity if g == 0 else capacity * (1 + 1e-12))
        order = np.lexsort((all_sens, all_cost))  # stable: cost, then sensitivity
        order = order[fits[order]]
        s = all_sens[order]
        best_cheaper = np.concatenate([[math.inf], np.minimum.accumulate(s)[:-1]])
        keep = order[s < best_cheaper]
        if keep.size > FRONTIER_MAX:
            raise PrecisionError(
                f"the precision frontier exceeds {FRONTIER_MAX} points; give a max_budget "
                "or solve single budgets with solve_precisions"
            )
        cost, sens, picks = all_cost[keep], all_sens[keep], all_picks[:, keep]
    return [
        PrecisionPoint(float(c), float(s), inst.assignment(p))
        for c, s, p in zip(cost, sens, picks.T, strict=True)
    ]


# -- input -------------------------------------------------------------------------------


def _capacity(inst: _Instance, budget: float, name: str) -> float:
    """The largest summed cost ``budget`` admits; refuses a budget nothing fits."""
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise PrecisionError(f"{name} must be a number, got {budget!r}") from None
    if math.isnan(value):
        raise PrecisionError(f"{name} must be a number, got {budget!r}")
    capacity = value + BUDGET_RTOL * abs(value)
    floor = inst.cheapest()
    if not floor <= capacity:
        raise PrecisionError(
            f"{name}={value!r} is infeasible: the cheapest assignment costs {floor!r}, "
            f"the smallest feasible {name}"
        )
    return capacity


def _numbers(table: Mapping[Choice, float], layer: str, what: str) -> np.ndarray:
    values = []
    for choice, value in table.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise PrecisionError(
                f"layer {layer!r}, choice {choice!r}: {what} must be finite and >= 0, got {value!r}"
            )
        values.append(number)
    return np.array(values, np.float64)


def _instance(
    sensitivity: Mapping[str, Mapping[Choice, float]],
    costs: Mapping[str, Mapping[Choice, float]],
    ties: Iterable[Iterable[str]],
) -> _Instance:
    """Checks every input, naming the layer, choice or group at fault, and sums groups."""
    layers = tuple(sensitivity)
    if not layers:
        raise PrecisionError("no layers: sensitivity is empty")
    if set(layers) != set(costs):
        missing = [n for n in layers if n not in costs]
        extra = [n for n in costs if n not in sensitivity]
        raise PrecisionError(
            f"sensitivity and costs name different layers: no costs for {missing}, "
            f"costs without a sensitivity for {extra}"
        )
    choices, sens, cost = {}, {}, {}
    for name in layers:
        options = tuple(sensitivity[name])
        if not options:
            raise PrecisionError(f"layer {name!r} has no choices")
        if set(options) != set(costs[name]):
            raise PrecisionError(
                f"layer {name!r}: sensitivity names choices {list(options)} but costs "
                f"names {list(costs[name])}"
            )
        choices[name] = options
        sens[name] = _numbers(sensitivity[name], name, "sensitivity")
        cost[name] = _numbers({c: costs[name][c] for c in options}, name, "cost")
    groups = _groups(layers, ties, choices)
    grouped = []
    for members in groups:
        order = choices[members[0]]

        def summed(table, members=members, order=order):
            rows = [table[n][[choices[n].index(c) for c in order]] for n in members]
            return np.sum(rows, axis=0) if len(rows) > 1 else rows[0]

        grouped.append((order, summed(sens), summed(cost)))
    return _Instance(
        layers,
        tuple(groups),
        tuple(o for o, _, _ in grouped),
        tuple(s for _, s, _ in grouped),
        tuple(c for _, _, c in grouped),
    )


def _groups(layers, ties, choices) -> list[tuple[str, ...]]:
    """Every layer's group in layer order: the ``ties`` groups, the rest one by one."""
    if isinstance(ties, str | Mapping):
        raise PrecisionError(f"ties must be an iterable of layer groups, got {ties!r}")
    position = {name: i for i, name in enumerate(layers)}
    group_of: dict[str, int] = {}
    tied = []
    for index, group in enumerate(ties):
        if isinstance(group, str | Mapping) or not isinstance(group, Iterable):
            raise PrecisionError(
                f"tie group {index} must be an iterable of layer names, got {group!r}"
            )
        members = list(group)
        if not members:
            raise PrecisionError(f"tie group {index} is empty")
        for name in members:
            if name not in position:
                raise PrecisionError(f"tie group {index} names an unknown layer {name!r}")
            if name in group_of:
                where = (
                    "twice" if group_of[name] == index else f"also in tie group {group_of[name]}"
                )
                raise PrecisionError(f"layer {name!r} of tie group {index} is {where}")
            group_of[name] = index
            if set(choices[name]) != set(choices[members[0]]):
                raise PrecisionError(
                    f"tie group {index}: layer {name!r} has choices {list(choices[name])} "
                    f"but {members[0]!r} has {list(choices[members[0]])}"
                )
        tied.append(tuple(sorted(members, key=position.__getitem__)))
    alone = [(name,) for name in layers if name not in group_of]
    return sorted([*tied, *alone], key=lambda members: position[members[0]])


# -- the mixed-integer program -----------------------------------------------------------


def _milp(inst: _Instance, capacity: float) -> list[int]:
    """One choice index per group: see :func:`solve_precisions` for the formulation."""
    base_cost = [c - c.min() for c in inst.costs]
    base_sens = [s - s.min() for s in inst.sensitivity]
    room = capacity - inst.cheapest()
    allowed = [c <= room for c in base_cost]
    spread_sens = sum(float(s[a].max()) for s, a in zip(base_sens, allowed, strict=True))
    spread_cost = sum(float(c[a].max()) for c, a in zip(base_cost, allowed, strict=True))
    upper = np.concatenate(allowed)
    costs = np.where(upper, np.concatenate(base_cost), 0.0)  # the others are fixed to 0
    objective = OBJECTIVE_SCALE * (
        np.where(upper, np.concatenate(base_sens), 0.0) / (spread_sens or 1.0)
        + TIE_WEIGHT * costs / (spread_cost or 1.0)
    )
    sizes = [len(c) for c in inst.choices]
    group_rows = sparse.block_diag([np.ones((1, k)) for k in sizes], format="csr")
    constraints = [optimize.LinearConstraint(group_rows, 1.0, 1.0)]
    if spread_cost > room:  # else every allowed assignment fits: no budget row
        constraints.append(optimize.LinearConstraint(costs[None] / room, -np.inf, 1.0))
    result = optimize.milp(
        objective,
        integrality=np.ones_like(objective),
        bounds=optimize.Bounds(0.0, upper.astype(np.float64)),
        constraints=constraints,
        options={"mip_rel_gap": 0.0},
    )
    if result.status != 0 or result.x is None:
        raise RuntimeError(
            f"scipy.optimize.milp did not solve the precision problem of "
            f"{len(inst.layers)} layers (status {result.status}: {result.message})"
        )
    starts = np.cumsum([0, *sizes[:-1]])
    x = [result.x[s : s + k] for s, k in zip(starts, sizes, strict=True)]
    picks = [int(np.argmax(v)) for v in x]
    if any(v[j] < 0.5 for v, j in zip(x, picks, strict=True)):
        raise RuntimeError("scipy.optimize.milp returned a fractional precision assignment")
    spent = float(inst.total(inst.costs, picks))
    if not spent <= capacity:
        raise RuntimeError(
            f"scipy.optimize.milp's assignment costs {spent!r}, over the budget's {capacity!r}"
        )
    return [_earliest_equal(inst, g, j) for g, j in enumerate(picks)]


def _earliest_equal(inst: _Instance, g: int, j: int) -> int:
    """The first choice of group ``g`` with exactly choice ``j``'s cost and sensitivity."""
    same = (inst.costs[g] == inst.costs[g][j]) & (inst.sensitivity[g] == inst.sensitivity[g][j])
    return int(np.argmax(same))
