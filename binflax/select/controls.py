"""Control hybrids: float-input sets chosen at a hybrid's budget *without* the paper's metric.

Why: the paper's claim is that its joint score of error and cost picks the right layers
(docs/method.md section 7). The direct test trains, beside each HBN hybrid, hybrids of
the same budget whose float inputs come from a rule that ignores the metric, or keeps
only one of its halves:

- ``random``: a random ranking in place of the score, filled as far as the budget goes
  (a layer that no longer fits is skipped), redrawn until the set costs at least
  :data:`RANDOM_FLOOR` of the HBN hybrid's equivalent FLOPs, so that a control is not
  handicapped by spending less. Draw ``i`` comes from ``numpy`` seeded with
  ``(seed, i)``: reproducible, and the same random ranking at every budget of a run, as
  the score's one ranking is. The draws of one hybrid are distinct sets (two equal sets
  with one seed would train to the same numbers);
- ``cost_only``: the cheapest layers first, as many as the budget admits (the metric's
  cost half alone);
- ``error_only``: the largest input-binarization errors first, skipping any layer that
  no longer fits (the metric's error half alone).

Costs are the :class:`~binflax.select.solvers.Problem`'s, the solvers' own, so a control
and its hybrid are measured against one budget in one currency.

    >>> from binflax.select import solvers
    >>> prob = solvers.problem({"a": 0.9, "b": 0.2, "c": 0.5}, {"a": 90, "b": 10, "c": 40},
    ...                        fixed_macs=1000, speedup=2.0)
    >>> cost_only(prob, budget=1.05), error_only(prob, budget=1.05)
    (('b', 'c'), ('a', 'b'))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from binflax.select.solvers import Problem

CONTROLS = ("random", "cost_only", "error_only")
# A random control costs at least this fraction of its HBN hybrid's equivalent FLOPs.
RANDOM_FLOOR = 0.95
# Random rankings tried per draw before giving up on finding a set within its bounds.
MAX_TRIES = 1000


class ControlError(ValueError):
    """No control set satisfies its bounds (the message says which and why)."""


def cost_only(prob: Problem, budget: float) -> tuple[str, ...]:
    """The cheapest candidates first, as many as ``budget`` (x fbin) admits.

    Ties keep network order. Filling in increasing cost, the first layer that does not
    fit means no later one does: the set is the longest cheap prefix.
    """
    return _fill(prob, np.argsort(prob.costs, stable=True), budget)


def error_only(prob: Problem, budget: float) -> tuple[str, ...]:
    """The largest errors first, skipping any candidate that no longer fits ``budget``.

    Ties keep network order.
    """
    return _fill(prob, np.argsort(-prob.errors, stable=True), budget)


def random_sets(
    prob: Problem, budget: float, *, min_eq_flops: float, num: int, seed: int
) -> tuple[tuple[str, ...], ...]:
    """``num`` distinct random candidate sets within ``budget``, each of at least
    ``min_eq_flops`` equivalent FLOPs.

    Draw ``i`` tries up to :data:`MAX_TRIES` random rankings from
    ``np.random.default_rng((seed, i))`` (a negative ``seed`` is taken modulo 2**64),
    filling each as far as the budget goes, and keeps the first set that is not below
    ``min_eq_flops`` and not an earlier draw's. Raises :class:`ControlError` when a draw
    finds none.
    """
    draws: list[tuple[str, ...]] = []
    for draw in range(num):
        rng = np.random.default_rng((seed % 2**64, draw))
        for _ in range(MAX_TRIES):
            chosen = _fill(prob, rng.permutation(len(prob.names)), budget)
            if prob.eq_flops(chosen) >= min_eq_flops and chosen not in draws:
                draws.append(chosen)
                break
        else:
            raise ControlError(
                f"budget {budget:g} x fbin: random draw {draw} found no candidate set "
                f"within the budget, of at least {min_eq_flops / 1e6:.4g} M eq. FLOPs and "
                f"unlike the {len(draws)} earlier draw(s), in {MAX_TRIES} random rankings"
            )
    return tuple(draws)


def control_sets(
    prob: Problem,
    hybrid_layers: Iterable[str],
    budget: float,
    *,
    controls: Sequence[str],
    num_random: int,
    seed: int,
) -> dict[str, tuple[str, ...]]:
    """Every control of the HBN hybrid that keeps ``hybrid_layers`` float, by label.

    Labels follow ``controls``: ``random0``, ..., ``random{num_random - 1}`` for
    ``random`` (each of at least :data:`RANDOM_FLOOR` of the hybrid's equivalent FLOPs),
    ``cost_only``, ``error_only``. Sets are in network order.
    """
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown control(s) {unknown}; controls: {', '.join(CONTROLS)}")
    sets: dict[str, tuple[str, ...]] = {}
    for control in controls:
        if control == "random":
            floor = RANDOM_FLOOR * prob.eq_flops(hybrid_layers)
            drawn = random_sets(prob, budget, min_eq_flops=floor, num=num_random, seed=seed)
            sets |= {f"random{i}": chosen for i, chosen in enumerate(drawn)}
        else:
            sets[control] = _RULES[control](prob, budget)
    return sets


def _fill(prob: Problem, order: Iterable[int], budget: float) -> tuple[str, ...]:
    """Takes candidates in ``order``, each that still fits ``budget``; network order out."""
    costs, capacity, spent = prob.costs, prob.capacity(budget), 0.0
    chosen = np.zeros(len(prob.names), bool)
    for index in order:
        if spent + costs[index] <= capacity:
            spent += costs[index]
            chosen[index] = True
    return tuple(n for n, c in zip(prob.names, chosen, strict=True) if c)


_RULES = {"cost_only": cost_only, "error_only": error_only}
