"""Runs of several seeds, compared: each variant's spread and the paired differences.

Why paired: the seed sets the initialization, the data order, the holdout slice and the
random controls' draws, and it moves every variant of a run together; a difference
taken within each seed (hybrid - fbin, control - hybrid, reactnet - xnor) removes that
shared part, so a one-point effect can show where two rows' spreads overlap.

Why Student t: a study has 3-5 seeds. The interval is ``mean ± t(1 - a/2, n - 1) ·
sd / √n`` over the per-seed differences (the paired t interval, as
``scipy.stats.ttest_rel(a, b).confidence_interval()``), which widens with few seeds as
it should; a bootstrap interval over 3-5 values is too narrow (it resamples only the
values seen, so it cannot reach beyond them), docs/choices.md. The verdict ``shown``
means the interval excludes zero: the sign of the difference is supported at that
confidence, nothing about its size.

Runs are grouped by ``(recipe, model, dataset)``, and within a group paired by seed:
only seeds present in both rows are paired. A ``results.json`` older than version 3
does not record its recipe: its group's recipe is :data:`RECIPE_UNRECORDED`, and it is
never compared with a recipe's.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

from scipy import stats

from binflax import recipe_presets, variants

RECIPE_UNRECORDED = "unrecorded"
BASE_RECIPE = "xnor"  # the paper's: every other recipe is compared with it
CONFIDENCE = 0.95

Group = tuple[str, str, str]  # (recipe, model, dataset)


def group_of(run: Mapping) -> Group:
    """``(recipe, model, dataset)`` of one ``results.json``."""
    return run.get("recipe", RECIPE_UNRECORDED), run["model"], run["dataset"]


def by_group(runs: Iterable[Mapping]) -> dict[Group, dict[int, Mapping]]:
    """The runs by group (in the order first seen), each group's by seed (ascending).

    Two runs of one seed in one group cannot be paired: a ``ValueError`` names them.
    """
    groups: dict[Group, dict[int, Mapping]] = {}
    for run in runs:
        group = groups.setdefault(group_of(run), {})
        if run["seed"] in group:
            recipe, model, dataset = group_of(run)
            raise ValueError(
                f"two results of seed {run['seed']} for {model} on {dataset} with the "
                f"{recipe} recipe: give one results.json per seed"
            )
        group[run["seed"]] = run
    return {key: dict(sorted(group.items())) for key, group in groups.items()}


@dataclasses.dataclass(frozen=True)
class VariantOverSeeds:
    """One variant's headline top-1 by seed, and its cost against fbin's."""

    name: str
    top1: dict[int, float]  # by seed, for the seeds that trained it
    x_fbin: float | None  # equivalent FLOPs over fbin's, mean over seeds (None: no fbin)

    @property
    def n(self) -> int:
        return len(self.top1)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.top1.values())

    @property
    def std(self) -> float | None:
        """The sample standard deviation (n - 1); ``None`` for one seed."""
        return statistics.stdev(self.top1.values()) if self.n > 1 else None


def variants_over_seeds(runs_by_seed: Mapping[int, Mapping]) -> list[VariantOverSeeds]:
    """Every variant of one group's runs, in the order first seen (seed by seed)."""
    names = list(dict.fromkeys(name for run in runs_by_seed.values() for name in run["variants"]))
    rows = []
    for name in names:
        having = {seed: run for seed, run in runs_by_seed.items() if name in run["variants"]}
        ratios = [
            run["variants"][name]["eq_flops"] / run["variants"]["fbin"]["eq_flops"]
            for run in having.values()
            if "fbin" in run["variants"]
        ]
        rows.append(
            VariantOverSeeds(
                name,
                {seed: run["variants"][name]["top1"] for seed, run in having.items()},
                statistics.fmean(ratios) if ratios else None,
            )
        )
    return rows


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over paired seeds: its mean, Student t interval and sign count."""

    n: int
    mean: float
    low: float | None  # the interval; None for one pair (no spread to estimate)
    high: float | None
    positive: int  # pairs with a > b
    confidence: float

    @property
    def shown(self) -> bool:
        """Whether the interval excludes zero."""
        return self.low is not None and (self.low > 0 or self.high < 0)


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> PairedDifference:
    """``a[i] - b[i]`` over pairs ``i``: the mean, the paired Student t interval
    ``mean ± t(1/2 + confidence/2, n - 1) · sd / √n`` (``sd`` the sample standard
    deviation of the differences) and how many are positive."""
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"paired_difference needs pairs: {len(a)} against {len(b)} values")
    differences = [x - y for x, y in zip(a, b, strict=True)]
    n, mean = len(differences), statistics.fmean(differences)
    low = high = None
    if n > 1:
        t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
        half = t * statistics.stdev(differences) / math.sqrt(n)
        low, high = mean - half, mean + half
    return PairedDifference(n, mean, low, high, sum(d > 0 for d in differences), confidence)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One row of differences: ``label`` says what minus what (``hybrid1 - fbin``,
    ``hybrid1.random0 - hybrid1``, ``hybrid1: reactnet - xnor``)."""

    label: str
    difference: PairedDifference


def _compare(
    label: str, a: Mapping[int, float], b: Mapping[int, float], confidence: float
) -> Comparison | None:
    """``a - b`` (top-1 by seed) over the seeds both have; ``None`` when they share none."""
    seeds = sorted(a.keys() & b.keys())
    if not seeds:
        return None
    difference = paired_difference([a[s] for s in seeds], [b[s] for s in seeds], confidence)
    return Comparison(label, difference)


def comparisons(
    rows: Sequence[VariantOverSeeds], confidence: float = CONFIDENCE
) -> list[Comparison]:
    """Within one group, for each hybrid in row order: hybrid - fbin, hybrid - float, then
    each of its controls - the hybrid (does the metric beat choosing without it?)."""
    by_name = {row.name: row for row in rows}
    found = []
    parsed = [(row, variants.parse(row.name)) for row in rows]
    for hybrid in (row for row, variant in parsed if variant.kind == "hybrid"):
        pairs = [(hybrid.name, baseline) for baseline in ("fbin", "float") if baseline in by_name]
        pairs += [
            (row.name, hybrid.name)
            for row, variant in parsed
            if variant.kind == "control" and variant.hybrid == hybrid.name
        ]
        for minuend, subtrahend in pairs:
            a, b = by_name[minuend].top1, by_name[subtrahend].top1
            found.append(_compare(f"{minuend} - {subtrahend}", a, b, confidence))
    return [c for c in found if c is not None]


def recipe_comparisons(
    groups: Mapping[Group, Mapping[int, Mapping]], confidence: float = CONFIDENCE
) -> dict[tuple[str, str], list[Comparison]]:
    """By ``(model, dataset)``: each recorded recipe other than :data:`BASE_RECIPE` minus
    it, variant by variant (same name, same seed), in the base recipe's row order."""
    found: dict[tuple[str, str], list[Comparison]] = {}
    rows = {group: variants_over_seeds(runs) for group, runs in groups.items()}
    for (recipe, model, dataset), other in rows.items():
        base = rows.get((BASE_RECIPE, model, dataset))
        if recipe not in recipe_presets.RECIPES or recipe == BASE_RECIPE or base is None:
            continue
        others = {row.name: row.top1 for row in other}
        for row in base:
            if row.name in others:
                label = f"{row.name}: {recipe} - {BASE_RECIPE}"
                compared = _compare(label, others[row.name], row.top1, confidence)
                if compared is not None:
                    found.setdefault((model, dataset), []).append(compared)
    return found
