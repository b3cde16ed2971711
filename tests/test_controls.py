"""Control hybrids (config.hbn.controls): float inputs chosen at a hybrid's budget without
the paper's metric - their rules against plain Python, their bounds, their seeds, their
rows in the results, and one hbn run that trains them."""

import json
import pathlib

import numpy as np
import pytest

from binflax import checkpointing, cli, provenance, results, select, variants
from configs import quickstart
from tests.selection_instances import SPEEDUP, costs_of, fbin_of, random_instance


def room_of(macs, fixed, budget):
    """The added cost a budget allows, with the solvers' rounding slack."""
    return (budget - 1 + 1e-9 * budget) * fbin_of(macs, fixed)


def cost_only_reference(macs, fixed, budget):
    """Plain Python: the k cheapest layers, for the largest k that fits."""
    cheapest = sorted(macs, key=lambda n: macs[n])
    room = room_of(macs, fixed, budget)
    k = max(k for k in range(len(macs) + 1) if costs_of(macs, cheapest[:k]) <= room)
    return tuple(n for n in macs if n in cheapest[:k])


def fill_reference(macs, fixed, budget, ranked):
    """Plain Python: the layers of ``ranked`` in turn, each that still fits."""
    room, chosen = room_of(macs, fixed, budget), []
    for name in ranked:
        if costs_of(macs, [*chosen, name]) <= room:
            chosen.append(name)
    return tuple(n for n in macs if n in chosen)


def error_only_reference(errors, macs, fixed, budget):
    """Plain Python: the layers by decreasing error, each that still fits."""
    return fill_reference(macs, fixed, budget, sorted(errors, key=lambda n: -errors[n]))


def budgets_of(macs, fixed):
    """Budgets that admit a fifth to a half of the candidates' added cost."""
    fbin = fbin_of(macs, fixed)
    return [1 + f * costs_of(macs, macs) / fbin for f in (0.2, 0.35, 0.5)]


# -- the rules ----------------------------------------------------------------------------


def test_cost_only_and_error_only_on_a_hand_made_instance():
    """Costs (speedup 2: half the MACs) a 45, b 5, c 20, d 15; the budget leaves 50.
    Cheapest first: b, d, c (40), and a no longer fits. Largest error first: a (45),
    then d and c do not fit and are skipped, b (50) still does."""
    errors = {"a": 0.9, "b": 0.2, "c": 0.5, "d": 0.7}
    macs = {"a": 90, "b": 10, "c": 40, "d": 30}
    prob = select.problem(errors, macs, fixed_macs=1000, speedup=2.0)
    budget = 1 + 50 / prob.fbin_eq_flops
    assert select.cost_only(prob, budget) == ("b", "c", "d")
    assert select.error_only(prob, budget) == ("a", "b")


@pytest.mark.parametrize("seed", range(4))
def test_cost_only_and_error_only_equal_their_plain_python_rules(seed):
    errors, macs, fixed = random_instance(np.random.default_rng(seed), 10)
    prob = select.problem(errors, macs, fixed_macs=fixed, speedup=SPEEDUP)
    for budget in (1.0, *budgets_of(macs, fixed), 1e9):
        assert select.cost_only(prob, budget) == cost_only_reference(macs, fixed, budget)
        assert select.error_only(prob, budget) == error_only_reference(errors, macs, fixed, budget)
    assert select.cost_only(prob, 1.0) == select.error_only(prob, 1.0) == ()
    assert select.cost_only(prob, 1e9) == select.error_only(prob, 1e9) == tuple(macs)


@pytest.mark.parametrize("seed", range(4))
def test_every_control_stays_within_its_bounds_and_fills_its_budget(seed):
    errors, macs, fixed = random_instance(np.random.default_rng(10 + seed), 10)
    prob = select.problem(errors, macs, fixed_macs=fixed, speedup=SPEEDUP)
    fbin = fbin_of(macs, fixed)
    for budget in budgets_of(macs, fixed):
        hybrid = select.solve(errors, macs, fixed_macs=fixed, budget=budget)
        sets = select.control_sets(
            prob,
            hybrid,
            budget,
            controls=("error_only", "random", "cost_only"),
            num_random=3,
            seed=seed,
        )
        assert list(sets) == ["error_only", "random0", "random1", "random2", "cost_only"]
        floor = 0.95 * (fbin + costs_of(macs, hybrid))
        for label, chosen in sets.items():
            eq_flops = fbin + costs_of(macs, chosen)
            assert eq_flops == pytest.approx(prob.eq_flops(chosen), rel=1e-12)
            assert eq_flops <= budget * fbin * (1 + 1e-9), label
            if label.startswith("random"):
                assert eq_flops >= floor, label
            # nothing left out would still fit: the control spends its budget
            for name in set(macs) - set(chosen):
                assert eq_flops + costs_of(macs, [name]) > budget * fbin, (label, name)


# -- the random draws ---------------------------------------------------------------------


def test_random_draws_are_reproducible_from_the_seed_and_differ_between_draws_and_seeds():
    errors, macs, fixed = random_instance(np.random.default_rng(20), 12)
    prob = select.problem(errors, macs, fixed_macs=fixed, speedup=SPEEDUP)
    budget = budgets_of(macs, fixed)[1]

    def draws(seed, num=4):
        return select.random_sets(prob, budget, min_eq_flops=0.0, num=num, seed=seed)

    first = draws(0)
    assert len(set(first)) == 4  # all distinct
    assert draws(0, num=2) == first[:2]  # draw i depends on the seed and i, not on num
    assert draws(1) != first and draws(-1) != first
    # draw i is the first ranking of numpy's generator seeded with (seed, i), unless that
    # fills to an earlier draw's set; numpy refuses a negative seed, so -1 is 2**64 - 1
    for seed, numpy_seed in ((0, 0), (7, 7), (-1, 2**64 - 1)):
        drawn, pinned = draws(seed), 0
        for i in range(4):
            ranking = np.random.default_rng((numpy_seed, i)).permutation(len(macs))
            expected = fill_reference(macs, fixed, budget, [f"l{j}" for j in ranking])
            if expected not in drawn[:i]:
                assert drawn[i] == expected, (seed, i)
                pinned += 1
        assert pinned >= 3


def test_a_random_control_costs_at_least_95_percent_of_its_hybrid():
    """Costs a 45, b 5, c 20 (speedup 2), fbin 370, room for 50: every random ranking
    fills to {a, b} (420 eq. FLOPs) or {b, c} (395). Beside the hybrid {a, b}, {b, c}
    is 94% of it and refused; beside the hybrid {a} (415), it is 95.2% and drawn."""
    prob = select.problem(
        {"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 90, "b": 10, "c": 40}, fixed_macs=300, speedup=2.0
    )
    budget = 1 + 50 / prob.fbin_eq_flops

    def random(hybrid, num, seed):
        kwargs = dict(controls=("random",), num_random=num, seed=seed)
        return select.control_sets(prob, hybrid, budget, **kwargs)

    for seed in range(8):
        assert random(("a", "b"), 1, seed) == {"random0": ("a", "b")}
    with pytest.raises(select.ControlError, match="random draw 1 .* at least 0.000399 M"):
        random(("a", "b"), 2, 0)
    assert sorted(random(("a",), 2, 0).values()) == [("a", "b"), ("b", "c")]


def test_random_says_which_draw_and_budget_cannot_be_met():
    """Costs a 45, b 5, c 20 with room for 50: every random ranking fills to {a, b}
    or {b, c}, so a third distinct draw does not exist; and no set reaches a floor
    above the budget."""
    prob = select.problem(
        {"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 90, "b": 10, "c": 40}, fixed_macs=1000, speedup=2.0
    )
    budget = 1 + 50 / prob.fbin_eq_flops
    two = select.random_sets(prob, budget, min_eq_flops=0.0, num=2, seed=0)
    assert sorted(two) == [("a", "b"), ("b", "c")]
    with pytest.raises(select.ControlError, match=r"budget 1\.04\d* x fbin: random draw 2"):
        select.random_sets(prob, budget, min_eq_flops=0.0, num=3, seed=0)
    with pytest.raises(select.ControlError, match="random draw 0 .* at least"):
        select.random_sets(
            prob, budget, min_eq_flops=2 * budget * prob.fbin_eq_flops, num=1, seed=0
        )
    with pytest.raises(ValueError, match="unknown control.*'metric'"):
        select.control_sets(prob, (), budget, controls=("metric",), num_random=1, seed=0)


# -- names, order, config -----------------------------------------------------------------


def test_controls_follow_their_hybrid_in_the_report_order():
    trained = [
        "fbin",
        "hybrid2.cost_only",
        "hybrid2",
        "hybrid1.random1",
        "hybrid1",
        "hybrid1.random0",
        "float",
    ]
    assert variants.report_order(trained) == (
        "float",
        "hybrid1",
        "hybrid1.random1",
        "hybrid1.random0",
        "hybrid2",
        "hybrid2.cost_only",
        "fbin",
    )
    config = quickstart.get_config()
    config.variants.hybrid = {"dropout_rate": 0.2}  # a control trains with the hybrid's recipe
    assert variants.variant_config(config, "hybrid1.random0").dropout_rate == 0.2


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("controls", ("random", "metric"), "'metric'; controls: random, cost_only, error_only"),
        ("controls", ("cost_only", "cost_only"), "names a control twice"),
        ("num_random", 0, "config.hbn.num_random=0 must be an integer >= 1"),
    ],
)
def test_a_bad_control_setting_names_its_field(field, value, message, tmp_path, capsys):
    config = quickstart.get_config()
    config.hbn[field] = value
    assert cli.run(config, mode="summary", workdir=str(tmp_path)) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"config.hbn.{field}" in err and message in err


def test_the_table_lists_controls_after_their_hybrid_and_says_what_they_are():
    row = {
        "top1": 90.0,
        "top5": None,
        "final_top1": 89.0,
        "best_test_top1_optimistic": 91.0,
        "eq_flops": 2e6,
        "macs": 4e6,
        "memory_bytes": 2**20,
        "binary_inputs": 2,
    }
    run = {
        "model": "m",
        "dataset": "d",
        "seed": 0,
        "variants": {
            "hybrid": row | {"float_inputs": ["conv1", "conv4", "fc"]},
            "hybrid.random0": row | {"eq_flops": 1.9e6, "float_inputs": ["conv1", "conv2", "fc"]},
            "fbin": row | {"eq_flops": 1e6, "float_inputs": ["conv1", "fc"]},
        },
    }
    table = results.format_table(run)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "variant" not in line]
    assert [r.split(" | ")[0] for r in rows] == ["| hybrid", "| hybrid.random0", "| fbin"]
    assert rows[1].endswith("| 1.90 | 1.900 | - | 4.00 | 1.000 | conv2 |")  # no BOPs: v3 row
    assert "without the metric" in table
    del run["variants"]["hybrid.random0"]
    assert "without the metric" not in results.format_table(run)


# -- end to end ---------------------------------------------------------------------------


@pytest.mark.slow
def test_hbn_trains_every_control_beside_its_hybrid(tmp_path, capsys):
    """The quickstart net at budget 1.34: conv4 (1.337 x fbin) or conv5 (1.042), not both
    (1.379), so the two random draws are the two maximal sets."""
    config = quickstart.get_config()
    config.update(num_train_steps=6, batch_size=32, eval_batch_size=40)
    config.update(log_every_steps=3, checkpoint_every_steps=3, num_eval_batches=1)
    config.hbn.update(budgets=(1.34,), baselines=(), measure_batches=1)
    config.hbn.update(controls=("random", "cost_only", "error_only"), num_random=2)
    assert cli.run(config, mode="hbn", workdir=str(tmp_path)) == 0, capsys.readouterr().err
    controls = ["hybrid.random0", "hybrid.random1", "hybrid.cost_only", "hybrid.error_only"]
    run = json.loads((tmp_path / "results.json").read_text())
    assert list(run["variants"]) == ["hybrid", *controls, "fbin"]
    assert (run["version"], run["recipe"]) == (results.VERSION, "xnor")
    fbin = run["variants"]["fbin"]["eq_flops"]
    recorded = run["selection"]["controls"]
    assert list(recorded) == controls
    for name in controls:
        plan = json.loads((tmp_path / f"plan_{name}.json").read_text())
        float_inputs = [n for n, layer in plan["layers"].items() if layer["input"] == "float"]
        assert recorded[name] == {
            "hybrid": "hybrid",
            "budget": 1.34,
            "control": name.removeprefix("hybrid."),
            "max_eq_flops": 1.34 * fbin,
            "float_inputs": float_inputs,
            "input_bits": None,
        }
        entry = run["variants"][name]
        assert entry["float_inputs"] == float_inputs and entry["plan"] == name
        assert entry["eq_flops"] <= 1.34 * fbin
        if "same_as" in entry:  # its set is an earlier row's: that run stands for it
            twin = run["variants"][entry["same_as"]]
            assert twin["float_inputs"] == float_inputs and twin["top1"] == entry["top1"]
            assert entry["provenance"] == twin["provenance"]
            assert not (tmp_path / name).exists()
        else:
            assert checkpointing.has_checkpoints(str(tmp_path / name))
            saved = json.loads((tmp_path / name / "provenance.json").read_text())
            assert entry["provenance"] == saved
        assert entry["provenance"]["commit"] == provenance.code_version()
        assert [(s["from_step"], s["to_step"]) for s in entry["provenance"]["sittings"]] == [(0, 6)]
        assert entry["train_seconds"] == entry["provenance"]["train_seconds"]
        assert f"| {name} |" in (tmp_path / "results.md").read_text()
    randoms = {tuple(recorded[f"hybrid.random{i}"]["float_inputs"]) for i in range(2)}
    assert randoms == {("conv1", "conv4", "fc"), ("conv1", "conv5", "fc")}
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"

    capsys.readouterr()
    assert cli.run(config, mode="hbn", workdir=str(tmp_path)) == 0  # resumes, trains nothing
    out = capsys.readouterr().out
    retrained = [name for name in controls if "same_as" not in run["variants"][name]]
    assert len(retrained) < len(controls)  # this budget makes twins: the case is covered
    assert "step 3/6" not in out and out.count("resuming from step 6") == 2 + len(retrained)
    again = json.loads((tmp_path / "results.json").read_text())["variants"]
    for name, entry in run["variants"].items():
        assert again[name]["top1"] == entry["top1"] and again[name]["plan"] == entry["plan"]
        assert again[name]["provenance"] == entry["provenance"]  # no sitting trained it
    # the run, not today's config, says what was trained: with config.hbn.controls
    # emptied after the run, eval still evaluates every trained control
    config.hbn.controls = ()
    assert cli.run(config, mode="eval", workdir=str(tmp_path)) == 0, capsys.readouterr().err
    evaluated = [line for line in capsys.readouterr().out.splitlines() if "[eval]" in line]
    trained = {name: row for name, row in run["variants"].items() if "same_as" not in row}
    assert len(evaluated) == len(trained) == 2 + len(retrained)  # a twin has no run of its own
    for name, row in trained.items():
        assert any(
            f"{tmp_path / name}: " in line and f"plan={name}: top1 {row['top1']:.4g}" in line
            for line in evaluated
        ), name

    # the budget admits two random sets only
    config.hbn.update(controls=("random", "cost_only", "error_only"), num_random=3)
    assert cli.run(config, mode="select", workdir=str(tmp_path)) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "config.hbn.controls: the random control of hybrid (budget 1.34 x fbin" in err
    assert "config.hbn.num_random" in err and "Traceback" not in err
    assert pathlib.Path(tmp_path / "plan_hybrid.random1.json").exists()
