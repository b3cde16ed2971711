"""An HBN run's results: ``results.json``, the paper's table (``results.md``) and its figure.

Why a module of its own: the results are the run's product, read by people (the table,
the accuracy-vs-compute plot) and by tools (the JSON, format in
docs/cli.md). One row per trained variant, in the paper's order - float, wbin, the
hybrids (each followed by its controls, ``hybrid1.random0``, ``hybrid1.cost_only``, ...:
float inputs chosen at its budget without the metric), fbin - with three accuracies, of
which only the first is the headline:

- ``top1``/``top5``: test accuracy at the checkpoint chosen on held-out data;
- ``final_top1``/``final_top5``: the last step's;
- ``best_test_top1_optimistic``: the best of every test evaluation, the authors' figure.

Each row also carries its run's ``provenance`` (:mod:`binflax.provenance`: the code,
CPU and devices that trained it, and the seconds of each sitting), absent for a variant
trained before binflax recorded it. Over seeds, ``python -m binflax.results`` prints each
variant's spread and the paired differences (:mod:`binflax.over_seeds`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import ml_collections
from etils import epath

from binflax import cost, data, over_seeds, plots, train, variants
from binflax.plan import Plan
from binflax.run_dir import RunDir
from binflax.select import RANDOM_FLOOR

# 3: each row's provenance and the run's recipe (older files: neither; still read).
# 4: each row's BOPs and, for a mixed-precision plan, its input bits (older: neither).
VERSION = 4


def hbn_results(
    config: ml_collections.ConfigDict,
    trained: dict[str, train.TrainResult],
    plans: dict[str, Plan],
    same_as: dict[str, str],
) -> dict:
    """``results.json`` of an ``hbn`` run: one row per trained variant in the paper's order
    (a row in ``same_as`` is its twin's run under its own name) and what the selection
    asked of each hybrid and control (``plans``: by variant, as ``modes.run_select``)."""
    entries = {
        name: variant_entry(trained[name], config) for name in variants.report_order(trained)
    }
    for name, twin in same_as.items():
        entries[name] |= {"plan": name, "same_as": twin}
    fbin_eq_flops = entries["fbin"]["eq_flops"]
    budgets = dict(zip(variants.hybrid_names(config.hbn.budgets), config.hbn.budgets, strict=True))
    controls = [v for v in map(variants.parse, plans) if v.kind == "control"]
    return {
        "version": VERSION,
        "recipe": config.recipe,
        "model": config.model,
        "dataset": config.dataset,
        "seed": config.seed,
        "variants": entries,
        "selection": {
            "method": config.hbn.method,
            "metric": config.hbn.error_metric,
            "score": str(config.hbn.score),
            "precisions": list(config.hbn.precisions),
            "sensitivity": config.hbn.sensitivity,
            "fbin_eq_flops": fbin_eq_flops,
            "hybrids": {
                variant: {
                    "budget": budget,
                    "max_eq_flops": budget * fbin_eq_flops,
                    "float_inputs": list(plans[variant].float_inputs),
                    "input_bits": _input_bits(plans[variant]),
                }
                for variant, budget in budgets.items()
            },
            "controls": {
                control.name: {
                    "hybrid": control.hybrid,
                    "budget": budgets[control.hybrid],
                    "control": control.label,
                    "max_eq_flops": budgets[control.hybrid] * fbin_eq_flops,
                    "float_inputs": list(plans[control.name].float_inputs),
                    "input_bits": _input_bits(plans[control.name]),
                }
                for control in controls
            },
        },
    }


def _input_bits(plan: Plan) -> dict[str, int] | None:
    """Each layer's input bits, for a mixed-precision plan (None for binary or float)."""
    return {layer.name: layer.input_bits for layer in plan} if plan.mixed else None


def variant_entry(result: train.TrainResult, config: ml_collections.ConfigDict) -> dict:
    """One row of ``results.json``: accuracies, costs and the plan of a trained variant."""
    info = data.get_info(config)
    costs = cost.layer_costs(result.model, info.image_shape, speedup=config.hbn.speedup)
    total = cost.totals(costs)
    plan = result.model.plan
    best_step, best = result.best_test

    def top5(metrics):
        return metrics["top5"] if info.num_classes > 5 else None

    entry = {
        "top1": result.metrics["top1"],
        "top5": top5(result.metrics),
        "test_loss": result.metrics["loss"],
        "checkpoint_step": result.chosen_step,
        "holdout_top1": result.holdout["top1"] if result.holdout else None,
        "final_top1": result.final["top1"],
        "final_top5": top5(result.final),
        "best_test_top1_optimistic": best["top1"],
        "best_test_step": best_step,
        "eq_flops": total["eq_flops"],
        "bops": float(total["bops"]),
        "macs": float(total["macs"]),
        "memory_bytes": int(round(total["memory_bytes"])),
        "plan": plan.name,
        "float_inputs": list(plan.float_inputs),
        "binary_inputs": len(plan.binary_inputs),
        "input_bits": _input_bits(plan),
        "steps": result.steps,
        "train_seconds": _seconds(result.seconds),
    }
    if result.provenance is not None:
        entry["provenance"] = result.provenance
    if result.first_stage is not None:  # a two-stage run: both stages' chosen figures
        first = result.first_stage
        entry["stages"] = {
            stage: {
                "plan": r.model.plan.name,
                "top1": r.metrics["top1"],
                "holdout_top1": r.holdout["top1"] if r.holdout else None,
                "checkpoint_step": r.chosen_step,
                "steps": r.steps,
                "train_seconds": _seconds(r.seconds),
            }
            | ({"provenance": r.provenance} if r.provenance is not None else {})
            for stage, r in (("stage1", first), ("stage2", result))
        }
        entry["steps"] = first.steps + result.steps
        both = None if None in (first.seconds, result.seconds) else first.seconds + result.seconds
        entry["train_seconds"] = _seconds(both)
    return entry


def _seconds(seconds: float | None) -> float | None:
    """Training seconds as ``results.json`` gives them (``None``: not recorded)."""
    return None if seconds is None else round(seconds, 1)


def write(results: dict, workdir: epath.PathLike) -> None:
    """``results.json``, ``results.md`` and ``results.png`` in ``workdir`` (main process)."""
    run = RunDir.of(workdir)
    run.write_json(run.results_json, results)
    run.write_text(run.results_md, format_table(results) + "\n")
    run.write(run.results_png, lambda path: plots.plot_results(results, path))


def format_table(results: dict) -> str:
    """``results.md``: the paper's table, one row per variant (float, wbin, hybrids, fbin),
    each hybrid followed by its controls and a paragraph saying what they are."""
    entries = results["variants"]
    fbin_flops = entries.get("fbin", {}).get("eq_flops")
    lines = [
        f"# HBN results: {results['model']} on {results['dataset']} (seed {results['seed']})",
        "",
        "Top-1/top-5: test accuracy at the checkpoint chosen on the held-out slice of the "
        "training split. Final: the last step's test top-1. Best test: the best of every "
        "test evaluation, the authors' figure - optimistic, since the test set chose it.",
        "",
    ]
    if any(variants.parse(name).kind == "control" for name in entries):
        lines += [
            "Controls (`HYBRID.random<i>`, `HYBRID.cost_only`, `HYBRID.error_only`): float "
            "inputs chosen at HYBRID's budget without the metric - a random ranking (at "
            f"least {100 * RANDOM_FLOOR:g}% of HYBRID's eq. FLOPs), the cheapest layers "
            "first, the largest errors first. A hybrid that beats its controls is evidence "
            "that the metric picks the right layers.",
            "",
        ]
    if any(v.get("input_bits") for v in entries.values()):
        lines += [
            "Mixed precision: each hybrid's candidate layers take the input bits (1, 2, 4, 8 "
            "or 32 = float) that minimise the summed sensitivity within its budget; its "
            "controls at the same budget: `uniform` (one bit-width everywhere), "
            "`binary_float` (the paper's search space), a score's name (that score's pick), "
            "`random<i>` (random bit-widths).",
            "",
        ]
    lines += [
        "| variant | top-1 | top-5 | final top-1 | best test top-1 (optimistic) "
        "| eq. FLOPs (M) | x fbin | GBOPs | MACs (M) | memory (MiB) | float-input layers "
        "(mixed: input bits > 1) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in entries.items():
        top5 = f"{v['top5']:.2f}" if v["top5"] is not None else "-"
        ratio = f"{v['eq_flops'] / fbin_flops:.3f}" if fbin_flops else "-"
        bops = f"{v['bops'] / 1e9:.3f}" if "bops" in v else "-"
        layers = _float_layers(v) + (f" (= {v['same_as']})" if "same_as" in v else "")
        lines.append(
            f"| {name} | {v['top1']:.2f} | {top5} | {v['final_top1']:.2f} | "
            f"{v['best_test_top1_optimistic']:.2f} | {v['eq_flops'] / 1e6:.2f} | {ratio} | "
            f"{bops} | {v['macs'] / 1e6:.2f} | {v['memory_bytes'] / 2**20:.3f} | {layers} |"
        )
    return "\n".join(lines)


def _float_layers(entry: dict) -> str:
    """A row's float-input layers besides the first and last (always float), for tables;
    a mixed-precision row's inputs of more than one bit instead (``conv3 4, conv5 32``)."""
    if entry.get("input_bits"):
        wide = list(entry["input_bits"].items())[1:-1]
        return ", ".join(f"{name} {bits}" for name, bits in wide if bits > 1) or "-"
    if entry["binary_inputs"] == 0:
        return "all"
    return ", ".join(entry["float_inputs"][1:-1]) or "-"


def format_over_seeds(runs: Sequence[dict], confidence: float = over_seeds.CONFIDENCE) -> str:
    """Runs of several seeds (one ``results.json`` each) as tables, one section per
    ``(recipe, model, dataset)``: each variant's headline top-1 per seed, its number of
    seeds, mean ± sample std, equivalent FLOPs as x fbin (mean over seeds) and the
    float-input layers each seed chose; then the paired differences within a seed
    (hybrid - fbin, hybrid - float, each control - its hybrid), and each other recipe
    minus xnor variant by variant (:mod:`binflax.over_seeds`).

    Each difference row gives the pairs (n), the mean difference, its interval (Student
    t, paired), the pairs where it is positive, and ``shown`` when the interval excludes
    zero (``not shown`` otherwise, and with one pair, which has no interval).
    """
    groups = over_seeds.by_group(runs)
    percent = f"{100 * confidence:g}%"
    sections = [
        "Top-1: test accuracy (%) at the checkpoint chosen on held-out data. Differences "
        f"are in points, paired by seed over the seeds both rows have; the {percent} "
        f"interval is Student t over the paired seeds, mean ± t({0.5 + confidence / 2:g}, "
        "n - 1) · sd / √n of the differences; verdict `shown` when it excludes zero."
    ]
    for (recipe, model, dataset), by_seed in groups.items():
        rows = over_seeds.variants_over_seeds(by_seed)
        section = [f"## {model} on {dataset}, {recipe} recipe", _format_variants(rows, by_seed)]
        if found := over_seeds.comparisons(rows, confidence):
            section.append(_format_differences(found, percent))
        sections.append("\n\n".join(section))
    for (model, dataset), found in over_seeds.recipe_comparisons(groups, confidence).items():
        sections.append(
            f"## {model} on {dataset}, recipes against {over_seeds.BASE_RECIPE}\n\n"
            + _format_differences(found, percent)
        )
    return "\n\n".join(sections)


def _format_variants(rows: Sequence[over_seeds.VariantOverSeeds], runs: dict[int, dict]) -> str:
    """One group's rows: top-1 per seed (``n/a`` where a seed lacks the variant), n,
    mean ± sample std, x fbin and the float-input layers per seed."""
    seeds = list(runs)
    lines = [
        f"| variant | n | top-1, seeds {' / '.join(map(str, seeds))} | mean ± std "
        "| x fbin (mean) | float-input layers (per seed) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        top1 = " / ".join(f"{row.top1[s]:.2f}" if s in row.top1 else "n/a" for s in seeds)
        spread = f"{row.mean:.2f}" + (f" ± {row.std:.2f}" if row.std is not None else "")
        ratio = f"{row.x_fbin:.2f}" if row.x_fbin is not None else "-"
        sets = [_float_layers(runs[s]["variants"][row.name]) for s in seeds if s in row.top1]
        layers = sets[0] if len(set(sets)) == 1 else " / ".join(sets)
        lines.append(f"| {row.name} | {row.n} | {top1} | {spread} | {ratio} | {layers} |")
    return "\n".join(lines)


def _format_differences(found: Sequence[over_seeds.Comparison], percent: str) -> str:
    """Paired differences, one per row, with their interval and verdict."""
    lines = [
        f"| difference in top-1 | n | mean | {percent} interval (paired Student t) "
        "| positive | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for comparison in found:
        d = comparison.difference
        interval = f"[{d.low:+.2f}, {d.high:+.2f}]" if d.low is not None else "-"
        verdict = "shown" if d.shown else "not shown"
        lines.append(
            f"| {comparison.label} | {d.n} | {d.mean:+.2f} | {interval} "
            f"| {d.positive}/{d.n} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m binflax.results RUN/results.json ... [--plot PNG]``: the tables over
    seeds, and with ``--plot`` the figure over seeds."""
    parser = argparse.ArgumentParser(description=format_over_seeds.__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results.json files, one per seed and recipe")
    parser.add_argument(
        "--plot",
        metavar="PNG",
        help="also write mean top-1 ± 1 sample std against x fbin (one series per recipe)",
    )
    args = parser.parse_args(argv)
    runs = [json.loads(epath.Path(path).read_text()) for path in args.results]
    try:
        print(format_over_seeds(runs))
    except ValueError as e:  # two results of one seed in one group
        parser.error(str(e))
    if args.plot:
        plots.plot_results_over_seeds(runs, args.plot)


if __name__ == "__main__":
    main()
