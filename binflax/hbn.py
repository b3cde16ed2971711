"""The paper end to end, and the other modes that sit on top of training.

``run_hbn`` is the HBN pipeline of the paper (HBN-METHOD.md sections 6-7):

1. train the fully binarized network (fbin);
2. measure each binary-input layer's input-binarization error on the held-out slice of
   the training split and select the layers whose inputs stay float
   (``binflax.select``), writing ``select.json``, ``plan.json`` and the plots;
3. train that hybrid, from scratch as the authors did or from the fbin checkpoint;
4. train the baselines the config lists (float, wbin) and write ``results.json`` and
   ``results.md``: top-1/top-5, equivalent FLOPs, MACs and memory per variant.

Each variant trains in its own sub-directory of the workdir and resumes from its own
checkpoint, and a finished variant is not trained again: rerunning the same command
after an interruption picks up where it stopped.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from binflax import cost, data, export, models, paper, parallel, plots, select, train, variants
from binflax.plan import Plan

RESULTS_VERSION = 2


def variant_entry(result: train.TrainResult, config: ml_collections.ConfigDict) -> dict:
    """One row of ``results.json`` (format in ARCHITECTURE.md and docs/cli.md).

    ``top1``/``top5`` are the headline: test accuracy at the checkpoint chosen on the
    held-out slice. ``final_*`` is the last step's test accuracy, and
    ``best_test_top1_optimistic`` the best of every test evaluation (the authors' "best
    epoch", optimistic because the test set chose it).
    """
    info = data.get_info(config)
    costs = cost.layer_costs(result.model, info.image_shape, speedup=config.hbn.speedup)
    total = cost.totals(costs)
    plan = result.model.plan
    best_step, best = result.best_test

    def top5(metrics):
        return metrics["top5"] if info.num_classes > 5 else None

    return {
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
        "macs": float(total["macs"]),
        "memory_bytes": int(round(total["memory_bytes"])),
        "plan": plan.name,
        "float_inputs": list(plan.float_inputs),
        "binary_inputs": len(plan.binary_inputs),
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1),
    }


def train_variant(
    config: ml_collections.ConfigDict,
    workdir: str,
    variant: str,
    plan: str | Plan,
    init_from: train.TrainState | None = None,
) -> train.TrainResult:
    """Trains ``variant`` with its own recipe (``config.variants``) in ``workdir``."""
    return train.train_and_evaluate(
        variants.variant_config(config, variant),
        workdir,
        plan=plan,
        init_from=init_from,
        name=variant,
    )


def run_train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the config's plan and writes its ``results.json`` entry to ``metrics.json``."""
    variant = config.plan if config.plan in variants.PRESET_VARIANTS else "hybrid"
    result = train_variant(config, workdir, variant, config.plan)
    entry = variant_entry(result, config)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(entry, f, indent=2)
    return entry


def selection_file(workdir: str, kind: str, variant: str, suffix: str = ".json") -> str:
    """``plan.json``/``select.json``/... for ``hybrid``, ``plan_hybrid2.json``/... for others."""
    tail = "" if variant == "hybrid" else f"_{variant}"
    return os.path.join(workdir, f"{kind}{tail}{suffix}")


def run_select(
    config: ml_collections.ConfigDict,
    workdir: str,
    fbin: train.TrainResult | None = None,
) -> dict[str, Plan]:
    """Measures a trained fbin network once and selects one hybrid per budget.

    Writes each hybrid's selection report, plan and plots (:func:`selection_file`) and
    returns the plans by variant name, in the order of ``config.hbn.budgets``.
    """
    if fbin is None:
        fbin_config = variants.variant_config(config, "fbin")
        model, state = train.restore_state(fbin_config, os.path.join(workdir, "fbin"), "fbin")
    else:
        model, state = fbin.model, fbin.state
    if model.plan.name != "fbin" and not model.plan.binary_inputs:
        raise ValueError("select needs a network with binary inputs (train plan 'fbin' first)")
    mesh = parallel.make_mesh()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    hold = itertools.islice(data.eval_batches(config, "holdout"), config.hbn.measure_batches)
    measurement = select.measure(
        model,
        variables,
        (parallel.global_batch(b, mesh) for b in hold),
        metric=config.hbn.error_metric,
    )
    budgets = config.hbn.budgets
    plans = {}
    for variant, budget in zip(variants.hybrid_names(budgets), budgets, strict=True):
        report = select.SelectionReport.from_measurement(
            measurement,
            budget=budget,
            num_float=config.hbn.num_float,
            method=config.hbn.method,
            score=config.hbn.score,
            speedup=config.hbn.speedup,
            model=type(model).__name__,
        )
        plan = select.hybrid_plan(model, measurement, report.float_layers, name=variant)
        if jax.process_index() == 0:
            os.makedirs(workdir, exist_ok=True)
            report.to_json(selection_file(workdir, "select", variant))
            plan.to_json(selection_file(workdir, "plan", variant))
            plots.plot_scores(report, selection_file(workdir, "scores", variant, ".png"))
            plots.plot_frontier(report, selection_file(workdir, "frontier", variant, ".png"))
        train.log(str(report))
        train.log(
            f"[select] {variant}: float inputs kept for "
            f"{', '.join(report.float_layers) or 'none'} (budget {budget:g} x fbin)"
        )
        plans[variant] = plan
    return plans


def run_hbn(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """fbin -> select (one hybrid per budget) -> hybrids, plus baselines; writes results."""
    fbin = train_variant(config, os.path.join(workdir, "fbin"), "fbin", "fbin")
    plans = run_select(config, workdir, fbin)
    init = fbin.state if config.hbn.init_hybrid_from_fbin else None
    trained = {
        variant: train_variant(config, os.path.join(workdir, variant), variant, plan, init)
        for variant, plan in plans.items()
    }
    trained["fbin"] = fbin
    for baseline in config.hbn.baselines:
        trained[baseline] = train_variant(
            config, os.path.join(workdir, baseline), baseline, baseline
        )
    entries = {
        name: variant_entry(trained[name], config)
        for name in variants.report_order(config.hbn.budgets, list(trained))
    }
    fbin_eq_flops = entries["fbin"]["eq_flops"]
    results = {
        "version": RESULTS_VERSION,
        "model": config.model,
        "dataset": config.dataset,
        "seed": config.seed,
        "variants": entries,
        "selection": {
            "method": config.hbn.method,
            "metric": config.hbn.error_metric,
            "score": str(config.hbn.score),
            "fbin_eq_flops": fbin_eq_flops,
            "hybrids": {
                variant: {
                    "budget": budget,
                    "max_eq_flops": budget * fbin_eq_flops,
                    "float_inputs": list(plans[variant].float_inputs),
                }
                for variant, budget in zip(plans, config.hbn.budgets, strict=True)
            },
        },
    }
    if jax.process_index() == 0:
        write_results(results, workdir)
    train.log(format_results(results))
    return results


def write_results(results: dict, workdir: str) -> None:
    """``results.json``, ``results.md`` and the accuracy-vs-compute plot ``results.png``."""
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(format_results(results) + "\n")
    plots.plot_results(results, os.path.join(workdir, "results.png"))


def format_results(results: dict) -> str:
    """``results.md``: the paper's table, one row per variant (float, wbin, hybrids, fbin)."""
    variants_ = results["variants"]
    fbin_flops = variants_.get("fbin", {}).get("eq_flops")
    lines = [
        f"# HBN results: {results['model']} on {results['dataset']} (seed {results['seed']})",
        "",
        "Top-1/top-5: test accuracy at the checkpoint chosen on the held-out slice of the "
        "training split. Final: the last step's test top-1. Best test: the best of every "
        "test evaluation, the authors' figure - optimistic, since the test set chose it.",
        "",
        "| variant | top-1 | top-5 | final top-1 | best test top-1 (optimistic) "
        "| eq. FLOPs (M) | x fbin | MACs (M) | memory (MiB) | float-input layers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in variants_.items():
        top5 = f"{v['top5']:.2f}" if v["top5"] is not None else "-"
        ratio = f"{v['eq_flops'] / fbin_flops:.3f}" if fbin_flops else "-"
        between = v["float_inputs"][1:-1]
        layers = "all" if v["binary_inputs"] == 0 else (", ".join(between) or "-")
        lines.append(
            f"| {name} | {v['top1']:.2f} | {top5} | {v['final_top1']:.2f} | "
            f"{v['best_test_top1_optimistic']:.2f} | {v['eq_flops'] / 1e6:.2f} | {ratio} | "
            f"{v['macs'] / 1e6:.2f} | {v['memory_bytes'] / 2**20:.3f} | {layers} |"
        )
    return "\n".join(lines)


def run_summary(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The cost table of the config's model and plan, from shapes only (no data needed).

    ``summary.json`` also holds the *measured* memory: the size of the bit-packed export
    file (``binflax.export``) against the float32 checkpoint, written from zero weights;
    and, for each of ``config.hbn.budgets``, the equivalent FLOPs it allows and the
    authors' hybrid it admits (:func:`budget_targets`), so a user sees what an ``hbn``
    run targets before spending anything.
    """
    num_classes, image_shape = summary_shapes(config)
    model = train.build_model(config, num_classes)
    summary = cost.summary(model, image_shape, speedup=config.hbn.speedup)
    measured = export.memory_report(model, input_shape=image_shape)
    summary["export"] = {
        key: measured[key]
        for key in ("file_bytes", "float32_bytes", "predicted_bytes", "compression")
    }
    summary["budgets"] = budget_targets(config)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    train.log(cost.format_summary(summary))
    train.log(
        f"exported file {measured['file_bytes'] / 2**20:.3f} MiB vs float32 checkpoint "
        f"{measured['float32_bytes'] / 2**20:.3f} MiB ({measured['compression']:.1f}x smaller)"
    )
    train.log(format_budget_targets(summary["budgets"], config.model))
    return summary


def summary_shapes(config: ml_collections.ConfigDict) -> tuple[int, tuple[int, int, int]]:
    """Classes and input shape from the config alone, so ``summary`` needs no dataset."""
    return int(config.num_classes), (config.image_size, config.image_size, config.channels)


def budget_targets(config: ml_collections.ConfigDict) -> list[dict]:
    """For each hybrid of ``config.hbn.budgets``: the equivalent FLOPs its budget allows,
    and the most expensive of the authors' hybrids (:mod:`binflax.paper`) within it.

    Costs come from the cost model at the config's own input shape and classes.
    """
    num_classes, image_shape = summary_shapes(config)
    fbin = train.build_model(config, num_classes, "fbin")
    names = models.layer_names(fbin)

    def eq_flops(model):
        return cost.totals(cost.layer_costs(model, image_shape, speedup=config.hbn.speedup))[
            "eq_flops"
        ]

    fbin_eq = eq_flops(fbin)
    authors = []
    for hybrid in paper.AUTHORS_HYBRIDS.get(config.model, ()):
        plan = Plan.hybrid(
            names, hybrid.float_inputs, binarize_last_weights=config.binarize_last_weights
        )
        authors.append((hybrid, eq_flops(fbin.clone(plan=plan))))
    targets = []
    budgets = config.hbn.budgets
    for variant, budget in zip(variants.hybrid_names(budgets), budgets, strict=True):
        bound = budget * fbin_eq
        within = [(h, eq) for h, eq in authors if eq <= bound]
        hybrid, eq = max(within, key=lambda item: item[1]) if within else (None, None)
        targets.append(
            {
                "variant": variant,
                "budget": budget,
                "fbin_eq_flops": fbin_eq,
                "max_eq_flops": bound,
                "authors_hybrid": None
                if hybrid is None
                else {
                    "name": hybrid.name,
                    "float_inputs": list(hybrid.float_inputs),
                    "eq_flops": eq,
                    "x_fbin": eq / fbin_eq,
                    "source": hybrid.source,
                },
            }
        )
    return targets


def format_budget_targets(targets: list[dict], model_name: str) -> str:
    lines = [f"hbn budgets (fbin: {targets[0]['fbin_eq_flops'] / 1e6:.2f} M eq. FLOPs):"]
    for t in targets:
        line = (
            f"  {t['variant']}: budget {t['budget']:g} x fbin -> at most "
            f"{t['max_eq_flops'] / 1e6:.2f} M eq. FLOPs"
        )
        authors = t["authors_hybrid"]
        if authors is not None:
            layers = ", ".join(authors["float_inputs"])
            line += (
                f"; admits the authors' {authors['name']} ({layers}): "
                f"{authors['eq_flops'] / 1e6:.2f} M = {authors['x_fbin']:.3f} x fbin"
            )
        elif model_name in paper.AUTHORS_HYBRIDS:
            line += "; admits none of the authors' hybrids"
        lines.append(line)
    return "\n".join(lines)


def trained_runs(config: ml_collections.ConfigDict, workdir: str) -> list[tuple[str, str, Any]]:
    """``(directory, variant, plan)`` of every trained variant in ``workdir``.

    A ``train`` workdir is one run with ``config.plan``; an ``hbn`` workdir holds fbin,
    the hybrids (each with its plan file) and the baselines, each where it was trained.
    """
    if os.path.isdir(os.path.join(workdir, "checkpoints")):
        variant = config.plan if config.plan in variants.PRESET_VARIANTS else "hybrid"
        return [(workdir, variant, config.plan)]
    plans = {"fbin": "fbin", "float": "float", "wbin": "wbin"}
    for variant in variants.hybrid_names(config.hbn.budgets):
        plans[variant] = selection_file(workdir, "plan", variant)
    runs = [
        (os.path.join(workdir, name), name, plans[name])
        for name in variants.report_order(config.hbn.budgets, list(plans))
        if os.path.isdir(os.path.join(workdir, name, "checkpoints"))
    ]
    if not runs:
        raise FileNotFoundError(f"no trained checkpoints under {workdir}; train first")
    return runs


def run_eval(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Test metrics of the best checkpoint of every trained variant in ``workdir``."""
    mesh = parallel.make_mesh()
    results = {}
    for run_dir, variant, plan in trained_runs(config, workdir):
        model, state = train.restore_state(
            variants.variant_config(config, variant), run_dir, plan=plan
        )
        metrics = train.evaluate(
            parallel.replicate(state, mesh), train.eval_batches(config, "test"), mesh
        )
        train.log(
            f"[eval] {run_dir}: {type(model).__name__} plan={model.plan.name}: {_fmt(metrics)}"
        )
        results[run_dir] = metrics
    return results


def run_export(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
    """Exports the best checkpoint of every trained variant in ``workdir`` and checks it.

    ``workdir`` is a ``train`` or an ``hbn`` run (:func:`trained_runs`). Each variant goes
    to ``model.npz`` beside its checkpoints; the file is loaded back and its integer
    forward compared with the float model's on one test batch.
    """
    runs = trained_runs(config, workdir)
    _, image_shape = summary_shapes(config)
    batch = next(iter(train.eval_batches(config, "test")))
    reports = []
    for run_dir, variant, plan in runs:
        model, state = train.restore_state(
            variants.variant_config(config, variant), run_dir, plan=plan
        )
        variables = {
            "params": parallel.fetch(state.params),
            "batch_stats": parallel.fetch(state.batch_stats),
        }
        path = os.path.join(run_dir, "model.npz")
        report = export.export_model(model, variables, path, input_shape=image_shape)
        images = batch["image"].reshape(-1, *batch["image"].shape[-3:])
        exact = np.asarray(export.integer_forward(export.load(path), images))
        fake_quant = np.asarray(model.apply(variables, images))
        report["max_abs_logit_diff"] = float(np.max(np.abs(exact - fake_quant)))
        report["top1_agreement"] = float(np.mean(exact.argmax(-1) == fake_quant.argmax(-1)))
        train.log(
            f"[export] {path}: {report['file_bytes'] / 2**20:.3f} MiB "
            f"(float32 {report['float32_bytes'] / 2**20:.3f} MiB); integer path vs float "
            f"model on {len(images)} images: max |logit diff| "
            f"{report['max_abs_logit_diff']:.2e}, top-1 agreement "
            f"{100 * report['top1_agreement']:.1f}%"
        )
        reports.append(report)
    return reports


def _fmt(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )
