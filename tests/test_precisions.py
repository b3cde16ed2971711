"""binflax.select.precisions: the multi-choice solver and its frontier against brute force
over every assignment, the two-choice case against the 0/1 solver, and every bad input
named in one line."""

import itertools
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from binflax import select
from binflax.errors import UserError
from binflax.select import precisions, solvers
from tests.selection_instances import SPEEDUP, random_instance

RTOL = solvers.BUDGET_RTOL
POOL = (1, 2, 4, 8, 32, "fp16", "int8")

# -- random instances and brute force ----------------------------------------------------


def random_problem(seed: int):
    """``(sensitivity, costs, ties)``: 2-5 layers of 2-5 shared choices, each layer listing
    them in its own order. Seeds 2, 3 mod 4 draw small integers (exact ties in both sums),
    the others uniform reals; odd seeds tie one or two groups of layers together."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    options = [POOL[i] for i in rng.choice(len(POOL), k, replace=False)]
    integer = seed % 4 >= 2
    sensitivity, costs = {}, {}
    for i in range(n):
        order = [options[j] for j in rng.permutation(k)]
        if integer:
            s, c = rng.integers(0, 5, k).astype(float), rng.integers(0, 7, k).astype(float)
        else:
            s, c = rng.uniform(0, 1, k), rng.uniform(0, 100, k)
        sensitivity[f"l{i}"] = dict(zip(order, s.tolist(), strict=True))
        costs[f"l{i}"] = dict(zip(order, c.tolist(), strict=True))
    ties = []
    if seed % 2:
        names = [str(x) for x in rng.permutation(list(sensitivity))]
        ties.append(names[:2])
        if n >= 4 and rng.random() < 0.5:
            ties.append(names[2 : int(rng.integers(4, n + 1))])
    return sensitivity, costs, ties


def groups_of(sensitivity, ties):
    """Every layer's group in layer order, as the solver forms them."""
    position = {n: i for i, n in enumerate(sensitivity)}
    tied = [tuple(sorted(g, key=position.get)) for g in ties]
    alone = [(n,) for n in sensitivity if not any(n in g for g in tied)]
    return sorted([*tied, *alone], key=lambda g: position[g[0]])


def every_assignment(sensitivity, costs, ties):
    """``(cost, sensitivity, assignment)`` of every assignment, in lexicographic order of
    the groups' choices (each group's choices in the order of its first layer)."""
    groups = groups_of(sensitivity, ties)
    out = []
    for picks in itertools.product(*(list(sensitivity[g[0]]) for g in groups)):
        chosen = {n: c for g, c in zip(groups, picks, strict=True) for n in g}
        chosen = {n: chosen[n] for n in sensitivity}
        out.append(
            (
                sum(costs[n][c] for n, c in chosen.items()),
                sum(sensitivity[n][c] for n, c in chosen.items()),
                chosen,
            )
        )
    return out


def brute_pareto(assignments):
    """The non-dominated assignments by cost, the lexicographically first of equals."""
    frontier, best = [], math.inf
    for c, s, a in sorted(assignments, key=lambda p: (p[0], p[1])):  # stable
        if s < best:
            frontier.append((c, s, a))
            best = s
    return frontier


def spread(sensitivity, ties):
    """The objective's range, the unit of the solver's tie tolerance."""
    return sum(
        max(sum(sensitivity[n][c] for n in g) for c in sensitivity[g[0]])
        - min(sum(sensitivity[n][c] for n in g) for c in sensitivity[g[0]])
        for g in groups_of(sensitivity, ties)
    )


def totals(sensitivity, costs, chosen):
    cost = sum(costs[n][c] for n, c in chosen.items())
    return cost, sum(sensitivity[n][c] for n, c in chosen.items())


# -- against brute force -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(200))
def test_the_optimum_equals_brute_force_and_fits_the_budget(seed):
    sensitivity, costs, ties = random_problem(seed)
    assignments = every_assignment(sensitivity, costs, ties)
    pareto = brute_pareto(assignments)
    rng = np.random.default_rng(10_000 + seed)
    low, high = pareto[0][0], pareto[-1][0]
    budgets = [pareto[int(i)][0] for i in rng.integers(len(pareto), size=2)]
    budgets += [low + rng.random() * (high - low), high + 1.0, math.inf]
    tolerance = 1e-9 * spread(sensitivity, ties) + 1e-12
    for budget in budgets:
        got = select.solve_precisions(sensitivity, costs, budget, ties)
        assert list(got) == list(sensitivity)
        for group in ties:
            assert len({got[n] for n in group}) == 1, (group, got)
        cost, sens = totals(sensitivity, costs, got)
        capacity = budget + RTOL * abs(budget)
        assert cost <= capacity
        feasible = [(c, s) for c, s, _ in assignments if c <= capacity]
        best = min(s for _, s in feasible)
        assert best - 1e-12 <= sens <= best + tolerance, budget
        if seed % 4 >= 2:  # exact ties: the cheapest of the least sensitive
            assert cost == min(c for c, s in feasible if s == best), budget


@pytest.mark.parametrize("seed", range(200))
def test_the_frontier_equals_brute_forces_pareto_set(seed):
    sensitivity, costs, ties = random_problem(seed)
    expected = brute_pareto(every_assignment(sensitivity, costs, ties))
    frontier = select.precision_frontier(sensitivity, costs, ties)
    assert len(frontier) == len(expected)
    for point, (c, s, a) in zip(frontier, expected, strict=True):
        assert point.cost == pytest.approx(c, rel=1e-12, abs=1e-12)
        assert point.sensitivity == pytest.approx(s, rel=1e-12, abs=1e-12)
        assert (point.cost, point.sensitivity) == pytest.approx(
            totals(sensitivity, costs, point.assignment), rel=1e-12, abs=1e-12
        )
        # With exact ties (integer seeds), the earliest choices in the earliest groups.
        assert point.assignment == a


@pytest.mark.parametrize("seed", range(20))
def test_a_frontier_points_cost_as_budget_selects_that_point(seed):
    sensitivity, costs, ties = random_problem(seed)
    tolerance = 1e-9 * spread(sensitivity, ties) + 1e-12
    for point in select.precision_frontier(sensitivity, costs, ties):
        got = select.solve_precisions(sensitivity, costs, point.cost, ties)
        cost, sens = totals(sensitivity, costs, got)
        assert sens == pytest.approx(point.sensitivity, abs=tolerance)
        assert cost <= point.cost * (1 + RTOL)


def near_tie_problem(seed):
    """Small integers plus 1e-6 noise: many assignments within 1e-6 of the optimum, which
    HiGHS's absolute gap would not tell apart on an unscaled objective."""
    sensitivity, costs, ties = random_problem(4 * seed + 2)
    rng = np.random.default_rng(seed)
    for table in sensitivity.values():
        for choice in table:
            table[choice] += 1e-6 * rng.random()
    return sensitivity, costs, ties


@pytest.mark.parametrize("seed", range(30))
def test_near_ties_are_resolved_beyond_the_solvers_gap(seed):
    sensitivity, costs, ties = near_tie_problem(seed)
    assignments = every_assignment(sensitivity, costs, ties)
    tolerance = 1e-9 * spread(sensitivity, ties)
    for _, budget in zip(range(4), (c for c, _, _ in brute_pareto(assignments)), strict=False):
        got = select.solve_precisions(sensitivity, costs, budget, ties)
        best = min(s for c, s, _ in assignments if c <= budget * (1 + RTOL))
        assert totals(sensitivity, costs, got)[1] <= best + tolerance


def big_problem(seed, n=20, k=5):
    """``n`` layers of ``k`` bit widths: costs grow with the width, sensitivity falls."""
    rng = np.random.default_rng(seed)
    bits = (1, 2, 4, 8, 32)[:k]
    sensitivity = {
        f"l{i}": dict(zip(bits, np.sort(rng.uniform(0, 1, k))[::-1].tolist(), strict=True))
        for i in range(n)
    }
    costs = {
        f"l{i}": dict(zip(bits, np.sort(rng.integers(1_000, 10**7, k)).tolist(), strict=True))
        for i in range(n)
    }
    return sensitivity, costs


@pytest.mark.parametrize("seed", range(3))
def test_twenty_layers_of_five_choices_agree_with_the_frontier(seed):
    sensitivity, costs = big_problem(seed)
    ties = [("l3", "l4"), ("l10", "l11", "l12")] if seed else []
    frontier = select.precision_frontier(sensitivity, costs, ties)
    assert len(frontier) > 100
    assert all(
        a.cost < b.cost and a.sensitivity > b.sensitivity for a, b in itertools.pairwise(frontier)
    )
    rng = np.random.default_rng(seed)
    tolerance = 1e-9 * spread(sensitivity, ties) + 1e-12
    for budget in [frontier[int(i)].cost for i in rng.integers(len(frontier), size=3)] + [
        frontier[0].cost + rng.random() * (frontier[-1].cost - frontier[0].cost)
    ]:
        got = select.solve_precisions(sensitivity, costs, budget, ties)
        best = [p for p in frontier if p.cost <= budget * (1 + RTOL)][-1]
        cost, sens = totals(sensitivity, costs, got)
        assert cost <= budget * (1 + RTOL)
        assert best.sensitivity - 1e-12 <= sens <= best.sensitivity + tolerance


def test_the_frontier_max_budget_keeps_the_cheap_end():
    sensitivity, costs = big_problem(7, n=8)
    full = select.precision_frontier(sensitivity, costs)
    budget = full[len(full) // 2].cost
    cut = select.precision_frontier(sensitivity, costs, max_budget=budget)
    assert cut == [p for p in full if p.cost <= budget]
    assert cut[-1] == full[len(full) // 2]


def test_the_frontier_says_when_it_is_too_large(monkeypatch):
    sensitivity, costs = big_problem(0, n=8)
    monkeypatch.setattr(precisions, "FRONTIER_MAX", 16)
    with pytest.raises(precisions.PrecisionError, match="exceeds 16 points; give a max_budget"):
        select.precision_frontier(sensitivity, costs)


# -- the two-choice case is the 0/1 solver -----------------------------------------------


def two_choice(errors, macs, fixed, budget):
    """The 0/1 problem as a precision problem: binary (error, C/speedup) or float (0, C),
    and the budget as the summed costs it allows, ``budget * fbin - fixed``."""
    sensitivity = {n: {"binary": e, "float": 0.0} for n, e in errors.items()}
    costs = {n: {"binary": macs[n] / SPEEDUP, "float": float(macs[n])} for n in macs}
    fbin = solvers.problem(errors, macs, fixed_macs=fixed, speedup=SPEEDUP).fbin_eq_flops
    chosen = select.solve_precisions(sensitivity, costs, budget * fbin - fixed)
    return tuple(n for n, c in chosen.items() if c == "float")


@pytest.mark.parametrize("seed", range(12))
def test_two_choices_give_the_exact_solvers_float_layers(seed):
    errors, macs, fixed = random_instance(np.random.default_rng(500 + seed), 7)
    frontier = select.pareto_frontier(errors, macs, fixed_macs=fixed, speedup=SPEEDUP)
    rng = np.random.default_rng(seed)
    budgets = (1.0, 1.05, 1.3, 2.0, 4.0)
    budgets += tuple(frontier[int(i)].budget for i in rng.integers(len(frontier), size=4))
    for budget in budgets:
        expected = select.solve(
            errors, macs, fixed_macs=fixed, speedup=SPEEDUP, budget=budget, method="exact"
        )
        assert two_choice(errors, macs, fixed, budget) == expected, budget


# -- ties, choices and the unbounded budget ----------------------------------------------


def test_tied_layers_share_a_choice_named_in_their_own_order():
    sensitivity = {"a": {"lo": 1.0, "hi": 0.0}, "b": {"hi": 0.0, "lo": 3.0}, "c": {"lo": 1.0}}
    costs = {"a": {"lo": 1.0, "hi": 5.0}, "b": {"hi": 2.0, "lo": 1.0}, "c": {"lo": 0.0}}
    assert select.solve_precisions(sensitivity, costs, 4.0) == {"a": "lo", "b": "hi", "c": "lo"}
    # Tied, "hi" costs 7 for both: over the budget, so both stay "lo".
    tied = select.solve_precisions(sensitivity, costs, 4.0, ties=[{"b", "a"}])
    assert tied == {"a": "lo", "b": "lo", "c": "lo"}
    assert select.solve_precisions(sensitivity, costs, 7.0, ties=iter([["b", "a"]])) == {
        "a": "hi",
        "b": "hi",
        "c": "lo",
    }


def test_equal_assignments_go_to_the_cheaper_then_the_earlier_choice():
    sensitivity = {"a": {8: 0.5, 4: 0.5, 2: 0.5, 1: 0.9}, "b": {2: 0.1, 1: 0.1}}
    costs = {"a": {8: 3.0, 4: 2.0, 2: 2.0, 1: 1.0}, "b": {2: 1.0, 1: 1.0}}
    assert select.solve_precisions(sensitivity, costs, 10.0) == {"a": 4, "b": 2}
    frontier = select.precision_frontier(sensitivity, costs)
    assert [p.assignment for p in frontier] == [{"a": 1, "b": 2}, {"a": 4, "b": 2}]
    # The one optimum up to a's equal choices "x" and "y"; HiGHS alone answers "y".
    sensitivity = {
        "a": {"w": 2.0, "v": 2.0, "x": 0.0, "y": 0.0},
        "b": {"w": 2.0, "v": 1.0, "x": 0.0, "y": 2.0},
        "c": {"w": 0.0, "v": 0.0, "x": 2.0, "y": 2.0},
    }
    costs = {
        "a": {"w": 2.0, "v": 2.0, "x": 0.0, "y": 0.0},
        "b": {"w": 0.0, "v": 1.0, "x": 1.0, "y": 1.0},
        "c": {"w": 2.0, "v": 1.0, "x": 2.0, "y": 0.0},
    }
    assert select.solve_precisions(sensitivity, costs, 4.0) == {"a": "x", "b": "x", "c": "v"}


def test_an_unbounded_budget_takes_each_layers_least_sensitive_choice():
    sensitivity, costs = big_problem(3, n=6)
    got = select.solve_precisions(sensitivity, costs, math.inf)
    assert got == {n: 32 for n in sensitivity}
    frontier = select.precision_frontier(sensitivity, costs)
    assert frontier[-1].assignment == got
    assert frontier[0].assignment == {n: 1 for n in sensitivity}


# -- infeasible budgets and bad input ----------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_an_infeasible_budget_names_the_smallest_feasible_one(seed):
    sensitivity, costs, ties = random_problem(seed)
    cheapest = min(c for c, _, _ in every_assignment(sensitivity, costs, ties))
    with pytest.raises(select.PrecisionError, match="infeasible") as info:
        select.solve_precisions(sensitivity, costs, cheapest * 0.99 - 1.0, ties)
    message = str(info.value)
    assert "\n" not in message
    floor = float(re.search(r"cheapest assignment costs (\S+),", message).group(1))
    assert floor == pytest.approx(cheapest, rel=1e-12, abs=1e-12)
    got = select.solve_precisions(sensitivity, costs, floor, ties)
    assert totals(sensitivity, costs, got)[0] == pytest.approx(cheapest, rel=1e-12, abs=1e-12)
    with pytest.raises(select.PrecisionError, match="max_budget=.* is infeasible"):
        select.precision_frontier(sensitivity, costs, ties, max_budget=cheapest * 0.99 - 1.0)


S2 = {"a": {1: 0.5, 32: 0.0}, "b": {1: 0.4, 32: 0.0}}
C2 = {"a": {1: 1.0, 32: 32.0}, "b": {1: 2.0, 32: 64.0}}


def changed(table, layer, entries):
    return {**table, layer: entries}


BAD_INPUT = {
    "layers differ": (dict(costs={"a": C2["a"]}), r"no costs for \['b'\]"),
    "choices differ": (
        dict(costs=changed(C2, "b", {1: 2.0, 8: 9.0})),
        r"layer 'b': sensitivity names choices \[1, 32\] but costs names \[1, 8\]",
    ),
    "no layers": (dict(sensitivity={}, costs={}), "no layers"),
    "no choices": (
        dict(sensitivity=changed(S2, "b", {}), costs=changed(C2, "b", {})),
        "layer 'b' has no choices",
    ),
    "nan sensitivity": (
        dict(sensitivity=changed(S2, "a", {1: math.nan, 32: 0.0})),
        "layer 'a', choice 1: sensitivity must be finite",
    ),
    "inf sensitivity": (
        dict(sensitivity=changed(S2, "a", {1: math.inf, 32: 0.0})),
        "layer 'a', choice 1: sensitivity must be finite",
    ),
    "negative sensitivity": (
        dict(sensitivity=changed(S2, "b", {1: 0.4, 32: -0.1})),
        "layer 'b', choice 32: sensitivity must be finite and >= 0",
    ),
    "text sensitivity": (
        dict(sensitivity=changed(S2, "b", {1: "big", 32: 0.0})),
        "layer 'b', choice 1: sensitivity must be finite and >= 0, got 'big'",
    ),
    "negative cost": (
        dict(costs=changed(C2, "a", {1: -1.0, 32: 32.0})),
        "layer 'a', choice 1: cost must be finite and >= 0",
    ),
    "inf cost": (
        dict(costs=changed(C2, "b", {1: 2.0, 32: math.inf})),
        "layer 'b', choice 32: cost must be finite",
    ),
    "nan budget": (dict(budget=math.nan), "budget must be a number"),
    "text budget": (dict(budget="lots"), "budget must be a number, got 'lots'"),
    "unknown tied layer": (dict(ties=[("a", "z")]), "tie group 0 names an unknown layer 'z'"),
    "layer in two groups": (
        dict(ties=[("a",), ("b", "a")]),
        "layer 'a' of tie group 1 is also in tie group 0",
    ),
    "layer twice in a group": (dict(ties=[("a", "a")]), "layer 'a' of tie group 0 is twice"),
    "groups of different choices": (
        dict(
            sensitivity=changed(S2, "b", {1: 0.4, 8: 0.0}),
            costs=changed(C2, "b", {1: 2.0, 8: 9.0}),
            ties=[("a", "b")],
        ),
        r"tie group 0: layer 'b' has choices \[1, 8\] but 'a' has \[1, 32\]",
    ),
    "empty group": (dict(ties=[("a", "b"), ()]), "tie group 1 is empty"),
    "group as a string": (dict(ties=["ab"]), "tie group 0 must be an iterable of layer names"),
    "ties as a string": (dict(ties="ab"), "ties must be an iterable of layer groups"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_named_in_one_line(case):
    changes, message = BAD_INPUT[case]
    kwargs = dict(sensitivity=S2, costs=C2, budget=40.0, ties=()) | changes
    with pytest.raises(select.PrecisionError, match=message) as info:
        select.solve_precisions(**kwargs)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    if "budget" not in case:
        del kwargs["budget"]
        with pytest.raises(select.PrecisionError, match=message):
            select.precision_frontier(**kwargs)


def test_a_failed_or_wrong_milp_answer_is_an_error_not_an_assignment(monkeypatch):
    def failing(*args, **kwargs):
        return SimpleNamespace(status=1, x=None, message="Time limit reached.")

    monkeypatch.setattr(precisions.optimize, "milp", failing)
    with pytest.raises(RuntimeError, match=r"did not solve .*\(status 1: Time limit reached"):
        select.solve_precisions(S2, C2, 40.0)

    def over_budget(c, **kwargs):  # every layer at 32 bits: 96, over 40
        return SimpleNamespace(status=0, x=np.array([0.0, 1.0, 0.0, 1.0]), message="")

    monkeypatch.setattr(precisions.optimize, "milp", over_budget)
    with pytest.raises(RuntimeError, match="costs 96.0, over the budget"):
        select.solve_precisions(S2, C2, 40.0)

    def fractional(c, **kwargs):
        return SimpleNamespace(status=0, x=np.array([0.4, 0.4, 1.0, 0.0]), message="")

    monkeypatch.setattr(precisions.optimize, "milp", fractional)
    with pytest.raises(RuntimeError, match="fractional"):
        select.solve_precisions(S2, C2, 40.0)
