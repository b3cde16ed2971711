"""binflax.results over seeds: each row's per-seed figures, mean and sample std."""

import json
import statistics

from binflax import results


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
