"""binflax.select: the spec's Sketch-A-Net sanity check, solver properties against brute
force and plain-Python references, and the measurement against NumPy formulas."""

import itertools
import json
import math
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from binflax import cost, models, select
from binflax.plan import Plan
from binflax.planned import BINARIZED_INPUTS
from binflax.select import solvers
from binflax.testing import random_variables
from tests import runner
from tests.selection_instances import SPEEDUP, costs_of, fbin_of, random_instance

# -- the spec's sanity check --------------------------------------------------------------


def test_sketchanet_macs_match_the_spec(authors_sketchanet):
    errors, macs, fixed, total = authors_sketchanet
    assert sorted(macs) == sorted(errors)
    assert total == pytest.approx(608e6, rel=2e-3)
    assert fixed == total - sum(macs.values())


@pytest.mark.parametrize("method", ["greedy", "exact"])
@pytest.mark.parametrize("budget, expected", [(1.1, ("conv6", "conv7")), (1.02, ("conv7",))])
def test_sketchanet_budgets_choose_the_authors_hybrids(
    authors_sketchanet, method, budget, expected
):
    errors, macs, fixed, _ = authors_sketchanet
    chosen = select.solve(errors, macs, fixed_macs=fixed, budget=budget, method=method)
    assert chosen == expected


def test_log_ratio_score_is_the_spec_formula(authors_sketchanet):
    errors, macs, fixed, total = authors_sketchanet
    scores = select.layer_scores(errors, macs, fixed_macs=fixed)
    for name, e in errors.items():
        assert scores[name] == pytest.approx(e * math.log(total / macs[name]), rel=1e-12)


def test_eq_flops_match_the_cost_model(authors_sketchanet):
    errors, macs, fixed, _ = authors_sketchanet
    chosen = ("conv6", "conv7")
    prob = solvers.problem(errors, macs, fixed_macs=fixed)
    model = models.create(
        "sketchanet", plan=Plan.hybrid(models.layer_names(models.create("sketchanet")), chosen)
    )
    assert prob.eq_flops(chosen) == pytest.approx(
        cost.totals(cost.layer_costs(model))["eq_flops"], rel=1e-12
    )


# -- references ---------------------------------------------------------------------------


def greedy_reference(errors, macs, fixed, budget, num_float=None):
    """The greedy rule in plain Python: rank by E ln(C_total/C), stop at the first misfit."""
    total = sum(macs.values()) + fixed
    score = {n: errors[n] * math.log(total / macs[n]) for n in errors}
    ranked = sorted(errors, key=lambda n: -score[n])
    room = math.inf if budget is None else (budget - 1) * fbin_of(macs, fixed)
    chosen, spent = [], 0.0
    for name in ranked[: len(ranked) if num_float is None else num_float]:
        spent += costs_of(macs, [name])
        if spent > room:
            break
        chosen.append(name)
    return tuple(n for n in errors if n in chosen)


def brute_force(errors, macs, fixed, budget):
    """Max error removed over every subset within the budget."""
    room = (budget - 1) * fbin_of(macs, fixed)
    best = 0.0
    for k in range(len(errors) + 1):
        for subset in itertools.combinations(errors, k):
            if costs_of(macs, subset) <= room:
                best = max(best, sum(errors[n] for n in subset))
    return best


def brute_frontier(errors, macs):
    """(cost, error removed) of every non-dominated subset, by cost."""
    points = sorted(
        (
            (costs_of(macs, s), sum(errors[n] for n in s))
            for k in range(len(errors) + 1)
            for s in itertools.combinations(errors, k)
        ),
        key=lambda p: (p[0], -p[1]),
    )
    frontier, best = [], -1.0
    for c, v in points:
        if v > best:
            frontier.append((c, v))
            best = v
    return frontier


BUDGETS = (1.0, 1.05, 1.3, 2.0, 4.0)


@pytest.mark.parametrize("seed", range(6))
def test_greedy_equals_its_plain_python_rule(seed):
    errors, macs, fixed = random_instance(np.random.default_rng(seed), 7)
    for budget in (*BUDGETS, None):
        got = select.solve(errors, macs, fixed_macs=fixed, budget=budget)
        assert got == greedy_reference(errors, macs, fixed, budget), budget
    for k in (0, 2, 7):
        got = select.solve(errors, macs, fixed_macs=fixed, num_float=k)
        assert got == greedy_reference(errors, macs, fixed, None, k)
        assert len(got) == k
        got = select.solve(errors, macs, fixed_macs=fixed, budget=1.3, num_float=k)
        assert got == greedy_reference(errors, macs, fixed, 1.3, k)


@pytest.mark.parametrize("seed", range(6))
def test_exact_is_optimal_within_budget_and_never_worse_than_greedy(seed):
    errors, macs, fixed = random_instance(np.random.default_rng(100 + seed), 7)
    fbin = fbin_of(macs, fixed)
    for budget in BUDGETS:
        exact = select.solve(errors, macs, fixed_macs=fixed, budget=budget, method="exact")
        greedy = select.solve(errors, macs, fixed_macs=fixed, budget=budget)
        removed = sum(errors[n] for n in exact)
        assert removed == pytest.approx(brute_force(errors, macs, fixed, budget), abs=1e-12)
        assert removed >= sum(errors[n] for n in greedy) - 1e-12
        assert fbin + costs_of(macs, exact) <= budget * fbin * (1 + 1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_frontier_is_monotone_and_equals_brute_force(seed):
    errors, macs, fixed = random_instance(np.random.default_rng(200 + seed), 8)
    frontier = select.pareto_frontier(errors, macs, fixed_macs=fixed, speedup=SPEEDUP)
    fbin, total_error = fbin_of(macs, fixed), sum(errors.values())
    assert all(
        a.eq_flops < b.eq_flops and a.error_left > b.error_left
        for a, b in itertools.pairwise(frontier)
    )
    assert frontier[0].float_layers == () and frontier[0].budget == 1.0
    assert frontier[-1].error_left == pytest.approx(0.0, abs=1e-12)
    expected = brute_frontier(errors, macs)
    assert len(frontier) == len(expected)
    for point, (c, v) in zip(frontier, expected, strict=True):
        assert point.eq_flops == pytest.approx(fbin + c, rel=1e-12)
        assert point.error_left == pytest.approx(total_error - v, abs=1e-12)
        assert point.eq_flops == pytest.approx(fbin + costs_of(macs, point.float_layers))
        # A frontier point's own budget selects that point.
        exact = select.solve(errors, macs, fixed_macs=fixed, budget=point.budget, method="exact")
        assert sum(errors[n] for n in exact) == pytest.approx(v, abs=1e-12)


def test_frontier_grows_its_buffer_and_says_when_it_is_too_large(monkeypatch):
    # Powers of two: every one of the 2^8 subsets is Pareto-optimal (value ~ cost).
    names = [f"l{i}" for i in range(8)]
    errors = {n: 2.0**i for i, n in enumerate(names)}
    macs = {n: 1000 * 2**i for i, n in enumerate(names)}
    frontier = select.pareto_frontier(errors, macs, fixed_macs=1e6)
    assert len(frontier) == 256 > solvers.FRONTIER_START
    assert [p.error_left for p in frontier] == [255.0 - k for k in range(256)]
    monkeypatch.setattr(solvers, "FRONTIER_MAX", solvers.FRONTIER_START)
    with pytest.raises(RuntimeError, match="exceeds 64 points"):
        select.solve(errors, macs, fixed_macs=1e6, budget=10.0, method="exact")


def test_frontier_max_budget_keeps_the_cheap_end(authors_sketchanet):
    errors, macs, fixed, _ = authors_sketchanet
    full = select.pareto_frontier(errors, macs, fixed_macs=fixed)
    cut = select.pareto_frontier(errors, macs, fixed_macs=fixed, max_budget=1.1)
    assert cut == tuple(p for p in full if p.budget <= 1.1)
    assert [p.float_layers for p in cut] == [(), ("conv7",), ("conv6", "conv7")]


@pytest.mark.parametrize("method", ["greedy", "exact", "partition"])
def test_budget_one_chooses_nothing(method):
    for seed in range(3):
        errors, macs, fixed = random_instance(np.random.default_rng(300 + seed), 6)
        assert select.solve(errors, macs, fixed_macs=fixed, budget=1.0, method=method) == ()


@pytest.mark.parametrize("method", ["greedy", "exact"])
@pytest.mark.parametrize("budget", [None, math.inf, 1e9])
def test_unbounded_budget_chooses_every_candidate(method, budget):
    errors, macs, fixed = random_instance(np.random.default_rng(7), 6)
    assert select.solve(errors, macs, fixed_macs=fixed, budget=budget, method=method) == tuple(
        errors
    )


def test_partition_splits_at_the_largest_gap():
    rng = np.random.default_rng(11)
    for _ in range(5):
        errors, macs, fixed = random_instance(rng, 6)
        scores = select.layer_scores(errors, macs, fixed_macs=fixed)
        ranked = sorted(scores, key=lambda n: -scores[n])
        gaps = [scores[a] - scores[b] for a, b in itertools.pairwise(ranked)]
        top = set(ranked[: int(np.argmax(gaps)) + 1])
        got = select.solve(errors, macs, fixed_macs=fixed, method="partition")
        assert got == tuple(n for n in errors if n in top)


def test_sketchanet_partition_and_num_float(authors_sketchanet):
    errors, macs, fixed, _ = authors_sketchanet
    kw = dict(fixed_macs=fixed)
    assert select.solve(errors, macs, **kw, method="partition") == ("conv7",)
    assert select.solve(errors, macs, **kw, num_float=3) == ("conv3", "conv6", "conv7")


def test_score_is_pluggable(authors_sketchanet):
    errors, macs, fixed, _ = authors_sketchanet

    def cheapest_first(errors, macs, total_macs):
        return -macs

    got = select.solve(errors, macs, fixed_macs=fixed, num_float=2, score=cheapest_first)
    assert got == ("conv6", "conv7")
    got = select.solve(errors, macs, fixed_macs=fixed, num_float=1, score="error")
    assert got == ("conv7",)
    scores = select.layer_scores(errors, macs, fixed_macs=fixed, score="error_per_mac")
    total = sum(macs.values()) + fixed
    assert scores["conv2"] == pytest.approx(0.608 * total / macs["conv2"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(budget=0.9), "below 1.0"),
        (dict(method="lp"), "unknown method"),
        (dict(score="nope"), "unknown score"),
        (dict(score=lambda e, m, t: e[:2]), "one value per layer"),
        (dict(score=lambda e, m, t: e / 0.0 - e / 0.0), "not finite"),
        (dict(method="exact", num_float=2), "num_float"),
        (dict(num_float=-1), "num_float"),
        (dict(num_float=1.5), "num_float"),
        (dict(speedup=0.5), "speedup"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    errors, macs, fixed = random_instance(np.random.default_rng(0), 4)
    with pytest.raises(ValueError, match=message):
        select.solve(errors, macs, fixed_macs=fixed, **kwargs)


def test_bad_layers_are_named():
    with pytest.raises(ValueError, match="'b'"):
        select.solve({"a": 0.1, "b": -0.2}, {"a": 10, "b": 10})
    with pytest.raises(ValueError, match=r"missing MACs for \['b'\]"):
        select.solve({"a": 0.1, "b": 0.2}, {"a": 10})
    with pytest.raises(ValueError, match="at least 2"):
        select.solve({"a": 0.1}, {"a": 10}, method="partition")


# -- measure ------------------------------------------------------------------------------

TINY = models.create("mini_sketchanet", plan="fbin")
SHAPE = TINY.default_input_shape


@pytest.fixture(scope="module")
def tiny():
    variables = random_variables(TINY, SHAPE)
    images = np.asarray(jax.random.normal(jax.random.key(1), (8, *SHAPE)))
    return TINY, variables, images


def numpy_metrics(model, variables, images):
    """The three metrics from the sown tensors, with NumPy (sign(0) = +1)."""
    params = {k: v for k, v in variables.items() if k != BINARIZED_INPUTS}
    _, state = jax.jit(lambda v, x: model.apply(v, x, mutable=[BINARIZED_INPUTS]))(params, images)
    out = {m: {} for m in select.METRICS}
    for name, tree in state[BINARIZED_INPUTS].items():
        x = np.asarray(tree["sign_input"][0], np.float64)
        err2 = (np.where(x >= 0, 1.0, -1.0) - x) ** 2
        out["rmse"][name] = math.sqrt(err2.mean())
        out["relative"][name] = math.sqrt(err2.mean() / (x**2).mean())
        out["one_minus_x2"][name] = np.abs(1 - np.clip(x, -1, 1) ** 2).mean()
    return out


def assert_metrics_close(got, expected, rtol=1e-5):
    for metric, layers in expected.items():
        assert set(got[metric]) == set(layers)
        for name, value in layers.items():
            assert got[metric][name] == pytest.approx(value, rel=rtol), (metric, name)


def test_measure_matches_numpy_and_the_cost_model(tiny):
    model, variables, images = tiny
    m = select.measure(model, variables, [images], metric="relative")
    assert_metrics_close(m.metrics, numpy_metrics(model, variables, images))
    assert m.errors == m.metrics["relative"]
    assert m.errors != m.metrics["rmse"]
    infos = models.trace_layers(model, SHAPE)
    assert m.macs == {i.name: i.macs for i in infos if i.precision.binary_input}
    assert m.fixed_macs + sum(m.macs.values()) == m.total_macs == sum(i.macs for i in infos)
    assert m.layer_names == tuple(i.name for i in infos)
    assert m.num_samples == 8


@pytest.fixture(scope="module")
def one(tiny):
    """One batch of 8, no mask: the reference the other measurements must equal."""
    return select.measure(*tiny[:2], [tiny[2]])


def test_measure_one_batch_equals_four_batches(tiny, one):
    model, variables, images = tiny
    four = select.measure(model, variables, np.split(images, 4))
    assert_metrics_close(four.metrics, one.metrics)
    assert four.num_samples == one.num_samples


def test_measure_ignores_masked_examples_and_folds_crops(tiny, one):
    model, variables, images = tiny
    junk = 100 * images[::-1]
    mask = np.array([True] * 5 + [False] * 3)
    padded = [
        {"image": np.concatenate([images[:5], junk[:3]]), "mask": mask, "label": 0},
        {"image": np.concatenate([junk[:5], images[5:]]), "mask": ~mask},
    ]
    masked = select.measure(model, variables, padded)
    assert masked.num_samples == 8
    assert_metrics_close(masked.metrics, one.metrics)
    crops = select.measure(model, variables, [{"image": images.reshape(4, 2, *SHAPE)}])
    assert_metrics_close(crops.metrics, one.metrics)
    assert crops.num_samples == 8
    first = select.measure(model, variables, iter([images, junk]), max_batches=1)
    assert_metrics_close(first.metrics, one.metrics)


def test_measure_errors_are_clear(tiny):
    model, variables, images = tiny
    with pytest.raises(ValueError, match="unknown metric"):
        select.measure(model, variables, [images], metric="mse")
    with pytest.raises(ValueError, match="no batches"):
        select.measure(model, variables, [])
    with pytest.raises(ValueError, match="has no 'image'"):
        select.measure(model, variables, [{"x": images}])
    with pytest.raises(ValueError, match="masked out"):
        select.measure(model, variables, [{"image": images, "mask": np.zeros(8, bool)}])
    with pytest.raises(ValueError, match="binarizes no input"):
        select.measure(model.clone(plan=Plan.preset("wbin", model.plan.names)), variables, [images])


MULTI_DEVICE = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from binflax import models, select

    model = models.create("mini_sketchanet", plan="fbin")
    shape = model.default_input_shape
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *shape)))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(s.dtype),
                             dict(abstract))
    images = np.asarray(jax.random.normal(jax.random.key(1), (3, 16, *shape)))
    masks = np.ones((3, 16), bool)
    masks[2, 11:] = False
    batches = [{"image": x, "mask": m} for x, m in zip(images, masks)]
    one = select.measure(model, variables, batches)
    mesh = jax.make_mesh((8,), ("data",))
    shard = NamedSharding(mesh, P("data"))
    sharded = [{k: jax.device_put(v, shard) for k, v in b.items()} for b in batches]
    many = select.measure(model, variables, sharded)
    print(json.dumps({"devices": jax.device_count(), "one": one.metrics,
                      "many": many.metrics, "n": [one.num_samples, many.num_samples]}))
    """
)


def test_measure_on_eight_devices_equals_one_device():
    out = subprocess.run(
        [sys.executable, "-c", MULTI_DEVICE],
        env={**runner.env(devices=8), "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8
    assert result["n"] == [43, 43]
    assert_metrics_close(result["many"], result["one"])


# -- select -------------------------------------------------------------------------------


def test_select_returns_the_hybrid_plan_and_a_report(tiny, tmp_path):
    model, variables, images = tiny
    model = model.clone(plan=Plan.preset("fbin", model.plan.names, binarize_last_weights=True))
    plan, report = select.select(model, variables, [images], num_float=2, metric="one_minus_x2")
    m = select.measure(model, variables, [images], metric="one_minus_x2")
    expected = select.solve(m.errors, m.macs, fixed_macs=m.fixed_macs, num_float=2)
    assert plan == Plan.hybrid(m.layer_names, expected, binarize_last_weights=True)
    assert report.float_layers == expected == tuple(r.name for r in report.layers if r.chosen)
    hybrid = model.clone(plan=plan)
    assert report.eq_flops["hybrid"] == pytest.approx(
        cost.totals(cost.layer_costs(hybrid, SHAPE))["eq_flops"], rel=1e-12
    )
    assert report.eq_flops["fbin"] == pytest.approx(
        cost.totals(cost.layer_costs(model, SHAPE))["eq_flops"], rel=1e-12
    )
    assert report.error_left == pytest.approx(
        sum(v for n, v in m.errors.items() if n not in expected)
    )
    report.save(tmp_path / "select.json")
    data = json.loads((tmp_path / "select.json").read_text())
    assert data == report.to_dict()
    assert select.SelectionReport.load(tmp_path / "select.json") == report
    for key in ("budget", "method", "metric", "score", "eq_flops", "frontier", "layers"):
        assert key in data
    assert data["frontier"][0]["float_layers"] == []
    text = str(report)
    for word in ("layer", "MACs", "one_minus_x2", "score", "chosen", *m.errors):
        assert word in text


def test_report_from_published_errors(authors_sketchanet):
    errors, macs, fixed, total = authors_sketchanet
    measurement = select.Measurement(
        "rmse",
        errors,
        {"rmse": errors},
        macs,
        fixed,
        total,
        ("conv1", *errors, "conv8"),
        0,
    )
    report = select.SelectionReport.from_measurement(measurement, budget=1.1, method="exact")
    assert report.float_layers == ("conv6", "conv7")
    assert [r.rank for r in report.layers] == [6, 3, 5, 4, 2, 1]
    assert report.eq_flops["wbin"] == pytest.approx(total)
    assert report.eq_flops["hybrid"] / report.eq_flops["fbin"] == pytest.approx(1.0802, abs=1e-4)


REPORT_SNAPSHOT = """\
---------------------------------------------
layer      MACs    rmse   score  rank  chosen
---------------------------------------------
conv2  196.81 M  0.6080  0.6858     6       -
conv3   66.36 M  0.6200  1.3734     3       -
conv4  132.71 M  0.7820  1.1902     5       -
conv5  132.71 M  0.7910  1.2039     4       -
conv6    6.42 M  0.6840  3.1124     2   float
conv7    0.26 M  0.9430  7.3073     1   float
---------------------------------------------
SketchANet: method greedy, score log_ratio, metric rmse, budget 1.1 x fbin
float inputs: conv6, conv7
eq. FLOPs: fbin 81.95 M, hybrid 88.52 M (1.080 x fbin), wbin 607.99 M (speedup 58)
error left binarized: 2.8010 of 4.4280"""


def test_report_table_text_is_stable(authors_sketchanet):
    errors, macs, fixed, total = authors_sketchanet
    names = ("conv1", *errors, "conv8")
    measurement = select.Measurement("rmse", errors, {"rmse": errors}, macs, fixed, total, names, 0)
    report = select.SelectionReport.from_measurement(measurement, budget=1.1, model="SketchANet")
    assert str(report) == REPORT_SNAPSHOT
