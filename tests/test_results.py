"""binflax.results and binflax.over_seeds: each row's provenance, the tables over seeds
(spread per variant, paired differences with their Student t interval against scipy)."""

import json
import statistics

import numpy as np
import pytest
import scipy.stats

from binflax import networks, over_seeds, results, train
from configs import quickstart


def _entry(top1, eq_flops, float_inputs=("conv1", "fc"), binary_inputs=2, **more):
    return {
        "top1": top1,
        "float_inputs": list(float_inputs),
        "binary_inputs": binary_inputs,
        "eq_flops": eq_flops,
    } | more


def _run(seed: int, fbin: float, hybrid: float, hybrid_layers: list[str]) -> dict:
    """A ``results.json`` of version 2: no recipe recorded."""
    return {
        "model": "m",
        "dataset": "d",
        "seed": seed,
        "variants": {
            "float": _entry(90.0 + seed, 40.0, ["conv1", "conv2", "conv3", "fc"], 0),
            "hybrid": _entry(hybrid, 3.0, ["conv1", *hybrid_layers, "fc"]),
            "fbin": _entry(fbin, 2.0),
        },
    }


def test_over_seeds_gives_every_seed_n_the_mean_and_the_sample_std(tmp_path, capsys):
    runs = [_run(1, 80.0, 85.0, ["conv3"]), _run(0, 78.0, 86.5, ["conv2"])]
    text = results.format_over_seeds(runs)
    table = text.splitlines()
    assert "## m on d, unrecorded recipe" in table  # a file older than version 3
    assert "| variant | n | top-1, seeds 0 / 1 | mean ± std | x fbin (mean) |" in text
    hybrid = next(line for line in table if line.startswith("| hybrid "))
    std = statistics.stdev([86.5, 85.0])  # 1.06
    assert hybrid == f"| hybrid | 2 | 86.50 / 85.00 | 85.75 ± {std:.2f} | 1.50 | conv2 / conv3 |"
    assert "| float | 2 | 90.00 / 91.00 | 90.50 ± 0.71 | 20.00 | all |" in table
    for seed, run in enumerate(reversed(runs)):
        (tmp_path / f"s{seed}.json").write_text(json.dumps(run))
    results.main([str(tmp_path / "s0.json"), str(tmp_path / "s1.json")])
    assert capsys.readouterr().out.strip() == text


# -- the statistics ------------------------------------------------------------------------

A = np.array([81.3, 79.9, 82.4, 80.2, 83.0])
B = np.array([79.1, 80.3, 80.0, 78.6, 80.9])


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_the_interval_is_scipys_paired_t_interval(n, confidence):
    a, b = A[:n], B[:n]
    d = over_seeds.paired_difference(list(a), list(b), confidence)
    low, high = scipy.stats.ttest_rel(a, b).confidence_interval(confidence)
    assert (d.low, d.high) == pytest.approx((low, high), rel=1e-12)
    diff = a - b
    same = scipy.stats.t.interval(confidence, n - 1, loc=diff.mean(), scale=scipy.stats.sem(diff))
    assert (d.low, d.high) == pytest.approx(same, rel=1e-12)
    assert d.mean == pytest.approx(diff.mean()) and d.n == n and d.confidence == confidence


def test_positives_are_counted_strictly_and_one_pair_has_no_interval():
    d = over_seeds.paired_difference([1.0, 2.0, 3.0, 5.0], [0.0, 2.0, 4.0, 4.5])
    assert (d.positive, d.n) == (2, 4)  # +1, 0, -1, +0.5: a tie is not positive
    assert not d.shown  # the interval straddles zero
    one = over_seeds.paired_difference([80.0], [78.5])
    assert (one.n, one.mean, one.low, one.high, one.positive) == (1, 1.5, None, None, 1)
    assert not one.shown
    with pytest.raises(ValueError, match="pairs"):
        over_seeds.paired_difference([1.0, 2.0], [1.0])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_an_interval_that_excludes_zero_on_either_side_is_shown(sign):
    d = over_seeds.paired_difference(list(sign * (A + 5.0)), list(sign * A - 0.3))
    assert d.shown and (d.low > 0 if sign > 0 else d.high < 0)


# -- the printed tables on synthetic runs ----------------------------------------------------

SEEDS = (0, 1, 2)
# top-1 by recipe, variant and seed; hybrid1.cost_only is missing from seed 1's run (in
# the middle: pairing by position instead of by seed would pair the wrong runs)
TOP1 = {
    "xnor": {
        "float": [86.4, 85.5, 87.3],
        "hybrid1": [77.1, 79.6, 81.2],
        "hybrid1.random0": [77.8, 77.4, 79.6],
        "hybrid1.cost_only": [76.9, None, 77.8],
        "fbin": [67.1, 69.7, 66.0],
    },
    "reactnet": {
        "float": [86.4, 85.5, 87.3],
        "hybrid1": [84.0, 85.2, 84.9],
        "hybrid1.random0": [82.2, 84.9, 83.1],
        "hybrid1.cost_only": [84.0, None, 84.1],
        "fbin": [74.8, 75.9, 73.5],
    },
}


def _synthetic_runs():
    runs = []
    for recipe, by_variant in TOP1.items():
        for i, seed in enumerate(SEEDS):
            entries = {
                name: _entry(top1[i], 2.0 if name == "fbin" else 6.0)
                for name, top1 in by_variant.items()
                if top1[i] is not None
            }
            runs.append(
                {"recipe": recipe, "model": "vgg", "dataset": "fm", "seed": seed}
                | {"version": 3, "variants": entries}
            )
    return runs


def _expected_row(label, a, b):
    """The row a paired t interval gives, computed with scipy from the raw numbers."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    x, y = np.array(pairs).T
    low, high = scipy.stats.ttest_rel(x, y).confidence_interval(0.95)
    verdict = "shown" if low > 0 or high < 0 else "not shown"
    positive = int(np.sum(x - y > 0))
    return (
        f"| {label} | {len(x)} | {np.mean(x - y):+.2f} | [{low:+.2f}, {high:+.2f}] "
        f"| {positive}/{len(x)} | {verdict} |"
    )


def test_the_tables_give_each_group_its_rows_and_paired_differences(tmp_path, capsys):
    runs = _synthetic_runs()
    text = results.format_over_seeds(runs)
    lines = text.splitlines()
    assert "the 95% interval is Student t over the paired seeds" in text
    header = "| difference in top-1 | n | mean | 95% interval (paired Student t) | positive |"
    assert sum(line.startswith(header) for line in lines) == 3  # two recipes, and across
    xnor = lines.index("## vgg on fm, xnor recipe")
    reactnet = lines.index("## vgg on fm, reactnet recipe")
    across = lines.index("## vgg on fm, recipes against xnor")
    assert xnor < reactnet < across
    for recipe, start, end in (("xnor", xnor, reactnet), ("reactnet", reactnet, across)):
        top1, section = TOP1[recipe], lines[start:end]
        hybrid = top1["hybrid1"]
        for label, a, b in (
            ("hybrid1 - fbin", hybrid, top1["fbin"]),
            ("hybrid1 - float", hybrid, top1["float"]),
            ("hybrid1.random0 - hybrid1", top1["hybrid1.random0"], hybrid),
            ("hybrid1.cost_only - hybrid1", top1["hybrid1.cost_only"], hybrid),
        ):
            assert _expected_row(label, a, b) in section, (recipe, label)
        cost_only = next(line for line in section if line.startswith("| hybrid1.cost_only |"))
        assert cost_only.startswith("| hybrid1.cost_only | 2 | ")  # seeds 0 and 2 only
        assert " / n/a / " in cost_only
    for name in TOP1["xnor"]:
        expected = _expected_row(
            f"{name}: reactnet - xnor", TOP1["reactnet"][name], TOP1["xnor"][name]
        )
        assert expected in lines[across:], name
    # spot checks of the verdicts the data were built for
    assert "| hybrid1 - fbin | 3 | +11.70 |" in text
    same = "| float: reactnet - xnor | 3 | +0.00 | [+0.00, +0.00] | 0/3 | not shown |"
    assert same in lines[across:]  # the same float runs in both recipes: no difference
    paths = []
    for i, run in enumerate(runs):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(run))
    results.main([*map(str, paths), "--plot", str(tmp_path / "seeds.png")])
    assert capsys.readouterr().out.strip() == text
    assert (tmp_path / "seeds.png").read_bytes()[:4] == b"\x89PNG"


def test_one_seed_prints_its_difference_without_an_interval():
    runs = [run for run in _synthetic_runs() if run["seed"] == 1 and run["recipe"] == "xnor"]
    text = results.format_over_seeds(runs)
    assert "| hybrid1 - fbin | 1 | +9.90 | - | 1/1 | not shown |" in text
    assert "| hybrid1 | 1 | 79.60 | 79.60 | 3.00 | - |" in text
    assert "recipes against" not in text


def test_two_results_of_one_seed_in_one_group_are_refused(tmp_path, capsys):
    run = _synthetic_runs()[0]
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit):
        results.main([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "two results of seed 0 for vgg on fm with the xnor recipe" in capsys.readouterr().err


# -- a row's provenance ------------------------------------------------------------------------


def _train_result(model, seconds, record, first_stage=None):
    metrics = {"top1": 80.0, "top5": 95.0, "loss": 0.5}
    return train.TrainResult(
        model=model,
        state=None,
        metrics=metrics,
        steps=10,
        seconds=seconds,
        chosen_step=10,
        holdout=None,
        final=metrics,
        best_test=(10, metrics),
        first_stage=first_stage,
        provenance=record,
    )


def test_a_row_carries_its_runs_provenance_and_none_without_a_record():
    config = networks.resolved(quickstart.get_config())
    model = networks.build_model(config, config.num_classes, "fbin")
    record = {"commit": "abc1234", "train_seconds": 12.34, "sittings": []}
    entry = results.variant_entry(_train_result(model, 12.34, record), config)
    assert entry["provenance"] == record and entry["train_seconds"] == 12.3
    old = results.variant_entry(_train_result(model, None, None), config)
    assert "provenance" not in old and old["train_seconds"] is None
    first_record = record | {"commit": "0000000"}
    two = _train_result(model, 5.0, record, first_stage=_train_result(model, 2.0, first_record))
    entry = results.variant_entry(two, config)
    assert entry["provenance"] == record and entry["train_seconds"] == 7.0
    assert entry["stages"]["stage1"]["provenance"] == first_record
    assert entry["stages"]["stage2"]["provenance"] == record
    unknown = _train_result(model, 5.0, record, first_stage=_train_result(model, None, None))
    entry = results.variant_entry(unknown, config)
    assert entry["train_seconds"] is None and "provenance" not in entry["stages"]["stage1"]


def test_a_mixed_precision_row_shows_its_bops_and_its_wider_inputs():
    row = {
        "top1": 90.0,
        "top5": None,
        "final_top1": 89.0,
        "best_test_top1_optimistic": 91.0,
        "eq_flops": 2e6,
        "bops": 3.5e9,
        "macs": 4e6,
        "memory_bytes": 2**20,
        "binary_inputs": 1,
        "float_inputs": ["conv1", "fc"],
        "input_bits": {"conv1": 32, "conv2": 4, "conv3": 1, "conv4": 8, "fc": 32},
    }
    run = {"model": "m", "dataset": "d", "seed": 0, "variants": {"hybrid": row}}
    table = results.format_table(run)
    assert "| 2.00 | - | 3.500 | 4.00 | 1.000 | conv2 4, conv4 8 |" in table
    assert "Mixed precision:" in table
