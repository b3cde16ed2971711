"""Which layers keep a float input: the greedy rule, the exact knapsack, the Pareto frontier.

Why these three: the paper ranks layers by a joint score and keeps float inputs for the
top of the ranking while the hybrid stays within a compute budget (docs/method.md
section 7). That rule is fast and explainable but not optimal, so binflax also solves the
underlying problem exactly - choose the float-input set that minimises the error left
binarized under the budget, a 0/1 knapsack - and traces the whole trade-off curve.

The cost model (section 5): the fbin network costs ``fixed + sum(C_l) / speedup``
equivalent FLOPs, where ``fixed`` counts the layers that are never candidates (the first
and the last); switching layer ``l`` to a float input adds ``C_l * (1 - 1 / speedup)``. A
``budget`` is a multiple of the fbin cost, so ``budget=1.1`` allows
``0.1 * fbin`` of added cost.

    >>> errors = {"conv2": 0.608, "conv3": 0.620, "conv4": 0.782, "conv5": 0.791,
    ...           "conv6": 0.684, "conv7": 0.943}
    >>> macs = {"conv2": 196812800, "conv3": 66355200, "conv4": 132710400,
    ...         "conv5": 132710400, "conv6": 6422528, "conv7": 262144}
    >>> solve(errors, macs, fixed_macs=72718400, budget=1.1)
    ('conv6', 'conv7')

Every kernel runs under ``jax.jit`` in float64 ([choice]: MAC counts are integers below
2**53, so costs and budget comparisons are exact up to one rounding, where float32 would
lose ~100 MACs on a ResNet). Python only validates input and maps names to positions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from binflax.cost import XNOR_SPEEDUP
from binflax.select.scores import ScoreFn, get_score

METHODS = ("greedy", "exact", "partition")
# A hybrid within BUDGET_RTOL of the budget counts as within it, so that a budget read off
# a frontier point (eq_flops / fbin) selects that point despite float rounding.
BUDGET_RTOL = 1e-9
# Frontier buffer sizes the exact solver tries before giving up (each x4 the last).
FRONTIER_START = 64
FRONTIER_MAX = 2**18


class FrontierPoint(NamedTuple):
    """One Pareto-optimal hybrid: no cheaper hybrid leaves less error binarized."""

    eq_flops: float  # the hybrid's equivalent FLOPs
    budget: float  # eq_flops as a multiple of the fbin network's
    error_left: float  # sum of the errors of the candidates whose input stays binary
    float_layers: tuple[str, ...]  # network order


class Problem(NamedTuple):
    """A validated selection problem: candidate names, errors and MACs as float64 arrays."""

    names: tuple[str, ...]
    errors: np.ndarray
    macs: np.ndarray
    fixed_macs: float
    total_macs: float
    speedup: float

    @property
    def costs(self) -> np.ndarray:
        """Equivalent FLOPs added by switching each candidate to a float input."""
        return self.macs * (1.0 - 1.0 / self.speedup)

    @property
    def fbin_eq_flops(self) -> float:
        return self.fixed_macs + float(self.macs.sum()) / self.speedup

    def eq_flops(self, float_layers: Iterable[str]) -> float:
        chosen = set(float_layers)
        mask = np.array([n in chosen for n in self.names], bool)
        return self.fbin_eq_flops + float(self.costs[mask].sum())

    def capacity(self, budget: float | None) -> float:
        """The equivalent FLOPs a budget allows on top of fbin (``inf`` when unbounded)."""
        if budget is None or math.isinf(budget):
            return math.inf
        fbin = self.fbin_eq_flops
        return (budget - 1.0) * fbin + BUDGET_RTOL * budget * fbin


def problem(
    errors: Mapping[str, float],
    macs: Mapping[str, float],
    *,
    total_macs: float | None = None,
    fixed_macs: float = 0.0,
    speedup: float = XNOR_SPEEDUP,
) -> Problem:
    """Checks the inputs of :func:`solve` and returns them as a :class:`Problem`."""
    names = tuple(errors)
    if not names:
        raise ValueError("no candidate layers: errors is empty")
    if set(names) != set(macs):
        missing = sorted(set(names) - set(macs))
        extra = sorted(set(macs) - set(names))
        raise ValueError(
            f"errors and macs name different layers: missing MACs for {missing}, "
            f"MACs without an error for {extra}"
        )
    err = np.array([float(errors[n]) for n in names], np.float64)
    mac = np.array([float(macs[n]) for n in names], np.float64)
    for name, e, c in zip(names, err, mac, strict=True):
        if not (math.isfinite(e) and e >= 0):
            raise ValueError(f"layer {name!r}: error must be finite and >= 0, got {e}")
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"layer {name!r}: MACs must be finite and > 0, got {c}")
    if not (math.isfinite(fixed_macs) and fixed_macs >= 0):
        raise ValueError(f"fixed_macs must be finite and >= 0, got {fixed_macs}")
    if not (math.isfinite(speedup) and speedup >= 1):
        raise ValueError(f"speedup must be finite and >= 1, got {speedup}")
    total = float(mac.sum()) + float(fixed_macs) if total_macs is None else float(total_macs)
    if not total >= mac.max():
        raise ValueError(f"total_macs={total} is smaller than a candidate layer's MACs")
    return Problem(names, err, mac, float(fixed_macs), total, float(speedup))


def solve(
    errors: Mapping[str, float],
    macs: Mapping[str, float],
    *,
    total_macs: float | None = None,
    fixed_macs: float = 0.0,
    budget: float | None = None,
    num_float: int | None = None,
    speedup: float = XNOR_SPEEDUP,
    score: str | ScoreFn = "log_ratio",
    method: str = "greedy",
) -> tuple[str, ...]:
    """The candidate layers that keep a float input, in the order of ``errors``.

    ``errors`` and ``macs`` map candidate layer names to numbers; ``fixed_macs`` is the
    cost of the never-candidate layers; ``total_macs`` (the score's ``C_total``) defaults
    to ``sum(macs) + fixed_macs``. ``budget`` is a multiple of the fbin network's
    equivalent FLOPs; ``None`` (or ``inf``) means unbounded.

    Methods:
      - ``greedy``: rank by ``score``, descending (ties in input order), and keep float
        inputs for the longest top-ranked prefix that fits the budget. [choice] It stops
        at the first layer that does not fit rather than skipping it: the paper's rule
        keeps "the top-ranked layers", and a cheap low-ranked layer should not overtake an
        expensive high-ranked one; ``exact`` is the way to fill a budget optimally.
        ``num_float=k`` caps the prefix at ``k`` layers (with ``budget=None``: exactly the
        top ``k``).
      - ``partition``: the prefix above the largest gap in the sorted scores (a budget
        or ``num_float``, when given, caps it as for greedy).
      - ``exact``: the set that minimises the summed error of the layers left binarized
        under the budget (scores are not used; ``num_float`` is refused).
    """
    prob = problem(errors, macs, total_macs=total_macs, fixed_macs=fixed_macs, speedup=speedup)
    _check_budget(budget)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; methods: {', '.join(METHODS)}")
    if num_float is not None and (
        isinstance(num_float, bool) or not isinstance(num_float, int | np.integer) or num_float < 0
    ):
        raise ValueError(f"num_float must be an integer >= 0, got {num_float!r}")
    capacity = prob.capacity(budget)
    if method == "exact":
        if num_float is not None:
            raise ValueError(
                "method='exact' minimises error under a budget; num_float is "
                "a ranking rule: use method='greedy' with num_float"
            )
        chosen = _exact(prob, capacity)
    else:
        if method == "partition" and len(prob.names) < 2:
            raise ValueError("method='partition' needs at least 2 candidate layers to split")
        limit = len(prob.names) if num_float is None else int(num_float)
        chosen, _ = _ranked(prob, score, capacity, limit, method == "partition")
    return tuple(n for n, c in zip(prob.names, chosen, strict=True) if c)


def layer_scores(
    errors: Mapping[str, float],
    macs: Mapping[str, float],
    *,
    total_macs: float | None = None,
    fixed_macs: float = 0.0,
    score: str | ScoreFn = "log_ratio",
) -> dict[str, float]:
    """Each candidate's score, as the greedy solver ranks them."""
    prob = problem(errors, macs, total_macs=total_macs, fixed_macs=fixed_macs)
    _, values = _ranked(prob, score, 0.0, 0, False)
    return dict(zip(prob.names, map(float, values), strict=True))


def pareto_frontier(
    errors: Mapping[str, float],
    macs: Mapping[str, float],
    *,
    fixed_macs: float = 0.0,
    speedup: float = XNOR_SPEEDUP,
    max_budget: float | None = None,
) -> tuple[FrontierPoint, ...]:
    """Every budget's optimum: the hybrids that no cheaper hybrid beats on error left.

    Sorted by ``eq_flops``, increasing, with ``error_left`` strictly decreasing; the
    first point is fbin (nothing float), the last leaves no error binarized. For any
    budget, the exact solver's answer is the last point whose ``budget`` is within it.
    ``max_budget`` drops the points above it (and speeds the search up).
    """
    prob = problem(errors, macs, fixed_macs=fixed_macs, speedup=speedup)
    _check_budget(max_budget)
    cost, value, member = _frontier_arrays(prob, prob.capacity(max_budget))
    fbin, total_error = prob.fbin_eq_flops, float(prob.errors.sum())
    points = []
    for c, v, m in zip(cost, value, member, strict=True):
        eq = fbin + float(c)
        float_layers = tuple(n for n, f in zip(prob.names, m, strict=True) if f)
        points.append(FrontierPoint(eq, eq / fbin, max(total_error - float(v), 0.0), float_layers))
    return tuple(points)


def _check_budget(budget: float | None) -> None:
    if budget is None:
        return
    if not budget >= 1.0:  # also catches nan
        raise ValueError(
            f"budget={budget} is below 1.0: even the fbin network exceeds it (budget is a "
            "multiple of the fbin network's equivalent FLOPs)"
        )


# -- greedy and partition --------------------------------------------------------------


def _ranked(prob: Problem, score, capacity: float, limit: int, partition: bool):
    score_fn = get_score(score)
    with jax.enable_x64(True):
        chosen, values = _ranked_kernel(
            jnp.asarray(prob.errors),
            jnp.asarray(prob.macs),
            jnp.asarray(prob.costs),
            jnp.float64(prob.total_macs),
            jnp.float64(capacity),
            jnp.int32(limit),
            score_fn=score_fn,
            partition=partition,
        )
        chosen, values = np.asarray(chosen), np.asarray(values)
    bad = [n for n, v in zip(prob.names, values, strict=True) if not np.isfinite(v)]
    if bad:
        raise ValueError(f"score {score!r} is not finite for layer(s) {', '.join(bad)}")
    return chosen, values


@functools.partial(jax.jit, static_argnames=("score_fn", "partition"))
def _ranked_kernel(errors, macs, costs, total_macs, capacity, limit, *, score_fn, partition):
    n = errors.shape[0]
    values = jnp.asarray(score_fn(errors, macs, total_macs), errors.dtype)
    if values.shape != (n,):
        raise ValueError(
            f"a score must return one value per layer, shape ({n},); got shape {values.shape}"
        )
    order = jnp.argsort(-values, stable=True)
    rank = jnp.arange(n)
    fits = jnp.cumsum(costs[order]) <= capacity
    prefix = (jnp.cumprod(fits) > 0) & (rank < limit)
    if partition:
        ranked = values[order]
        cut = jnp.argmax(ranked[:-1] - ranked[1:])  # the top group is ranks 0..cut
        prefix &= rank <= cut
    chosen = jnp.zeros(n, bool).at[order].set(prefix)
    return chosen, values


# -- exact: the Pareto frontier of the knapsack ------------------------------------------


def _exact(prob: Problem, capacity: float) -> np.ndarray:
    *_, member = _frontier_arrays(prob, capacity)
    # Points are sorted by cost with strictly increasing value: the last is the optimum.
    return member[-1]


def _frontier_arrays(prob: Problem, capacity: float):
    """Nemhauser-Ullmann: the non-dominated (cost, error removed) subsets within capacity.

    Exact, unlike a DP over discretised costs: the list holds every subset that no
    cheaper-or-equal subset beats on error removed. Its size is data dependent (in the
    worst case exponential, in practice small: layers of equal MACs collapse, and real
    networks give tens to a few thousand points), so the jitted kernel runs with a fixed
    buffer and Python retries with a 4x larger one when the buffer overflowed.
    """
    size = FRONTIER_START
    with jax.enable_x64(True):
        args = (jnp.asarray(prob.costs), jnp.asarray(prob.errors), jnp.float64(capacity))
        while True:
            cost, value, member, needed = _frontier_kernel(*args, size=size)
            if int(needed) <= size:
                break
            if size >= FRONTIER_MAX:
                raise RuntimeError(
                    f"the Pareto frontier of {len(prob.names)} layers exceeds "
                    f"{FRONTIER_MAX} points; give a budget (exact) or use method='greedy'"
                )
            size *= 4
        live = np.isfinite(np.asarray(cost))
        return np.asarray(cost)[live], np.asarray(value)[live], np.asarray(member)[live]


@functools.partial(jax.jit, static_argnames=("size",))
def _frontier_kernel(costs, values, capacity, *, size):
    n = costs.shape[0]
    inf = jnp.inf
    cost = jnp.full(size, inf, costs.dtype).at[0].set(0.0)
    value = jnp.full(size, -inf, values.dtype).at[0].set(0.0)
    member = jnp.zeros((size, n), bool)

    def add_item(i, state):
        cost, value, member, needed = state
        grown = cost + costs[i]
        ok = jnp.isfinite(cost) & (grown <= capacity)
        all_cost = jnp.concatenate([cost, jnp.where(ok, grown, inf)])
        all_value = jnp.concatenate([value, jnp.where(ok, value + values[i], -inf)])
        all_member = jnp.concatenate([member, member.at[:, i].set(True)])
        order = jnp.lexsort((-all_value, all_cost))  # cost ascending, then value descending
        c, v, m = all_cost[order], all_value[order], all_member[order]
        best_cheaper = jnp.concatenate([jnp.full(1, -inf, v.dtype), jax.lax.cummax(v)[:-1]])
        keep = jnp.isfinite(c) & (v > best_cheaper)
        needed = jnp.maximum(needed, jnp.sum(keep, dtype=needed.dtype))
        pick = jnp.argsort(~keep, stable=True)[:size]  # kept points first, still sorted
        kept = keep[pick]
        return (
            jnp.where(kept, c[pick], inf),
            jnp.where(kept, v[pick], -inf),
            m[pick] & kept[:, None],
            needed,
        )

    return jax.lax.fori_loop(0, n, add_item, (cost, value, member, jnp.int32(1)))
