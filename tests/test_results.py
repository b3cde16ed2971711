"""binflax.results: each row's provenance; over seeds, each row's per-seed figures, mean and
sample std."""

import json
import statistics

from binflax import networks, results, train
from configs import quickstart


def _run(seed: int, fbin: float, hybrid: float, hybrid_layers: list[str]) -> dict:
    def entry(top1, float_inputs, binary_inputs, eq_flops):
        return {
            "top1": top1,
            "float_inputs": float_inputs,
            "binary_inputs": binary_inputs,
            "eq_flops": eq_flops,
        }

    return {
        "seed": seed,
        "variants": {
            "float": entry(90.0 + seed, ["conv1", "conv2", "conv3", "fc"], 0, 40.0),
            "hybrid": entry(hybrid, ["conv1", *hybrid_layers, "fc"], 2, 3.0),
            "fbin": entry(fbin, ["conv1", "fc"], 2, 2.0),
        },
    }


def test_over_seeds_gives_every_seed_the_mean_and_the_sample_std(tmp_path, capsys):
    runs = [_run(1, 80.0, 85.0, ["conv3"]), _run(0, 78.0, 86.5, ["conv2"])]
    table = results.format_over_seeds(runs).splitlines()
    assert table[0].startswith("| variant | top-1, seeds 0 / 1 | mean | std |")
    hybrid = next(line for line in table if line.startswith("| hybrid "))
    std = statistics.stdev([86.5, 85.0])  # 1.06
    assert f"| 86.50 / 85.00 | 85.75 | {std:.2f} | 1.50 | conv2 / conv3 |" in hybrid
    assert "| float | 90.00 / 91.00 | 90.50 | 0.71 | 20.00 | all |" in table
    for seed, run in enumerate(reversed(runs)):
        (tmp_path / f"s{seed}.json").write_text(json.dumps(run))
    results.main([str(tmp_path / "s0.json"), str(tmp_path / "s1.json")])
    assert capsys.readouterr().out.strip() == "\n".join(table)


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
    config = networks.with_recipe(quickstart.get_config())
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
