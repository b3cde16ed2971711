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

from binflax import cost, data, export, parallel, plots, select, train
from binflax.plan import Plan

RESULTS_VERSION = 1


def variant_entry(result: train.TrainResult, config: ml_collections.ConfigDict) -> dict:
    """One row of ``results.json`` (format in ARCHITECTURE.md)."""
    info = data.get_info(config)
    costs = cost.layer_costs(result.model, info.image_shape, speedup=config.hbn.speedup)
    total = cost.totals(costs)
    return {
        "top1": result.metrics["top1"],
        "top5": result.metrics["top5"] if info.num_classes > 5 else None,
        "test_loss": result.metrics["loss"],
        "eq_flops": total["eq_flops"],
        "macs": float(total["macs"]),
        "memory_bytes": int(round(total["memory_bytes"])),
        "plan": result.model.plan.name,
        "float_inputs": list(result.model.plan.float_inputs),
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1),
    }


def run_train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the config's plan and writes its ``results.json`` entry to ``metrics.json``."""
    result = train.train_and_evaluate(config, workdir, name=str(config.plan))
    entry = variant_entry(result, config)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(entry, f, indent=2)
    return entry


def run_select(
    config: ml_collections.ConfigDict,
    workdir: str,
    fbin: train.TrainResult | None = None,
) -> Plan:
    """Measures a trained fbin network and writes the selection, the plan and the plots."""
    if fbin is None:
        model, state = train.restore_state(config, os.path.join(workdir, "fbin"), plan="fbin")
    else:
        model, state = fbin.model, fbin.state
    if model.plan.name != "fbin" and not model.plan.binary_inputs:
        raise ValueError("select needs a network with binary inputs (train plan 'fbin' first)")
    mesh = parallel.make_mesh()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    hold = itertools.islice(data.eval_batches(config, "holdout"), config.hbn.measure_batches)
    batches = (parallel.global_batch(b, mesh) for b in hold)
    plan, report = select.select(
        model,
        variables,
        batches,
        budget=config.hbn.budget,
        num_float=config.hbn.num_float,
        method=config.hbn.method,
        score=config.hbn.score,
        metric=config.hbn.error_metric,
        speedup=config.hbn.speedup,
    )
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        report.to_json(os.path.join(workdir, "select.json"))
        plan.to_json(os.path.join(workdir, "plan.json"))
        plots.plot_scores(report, os.path.join(workdir, "scores.png"))
        plots.plot_frontier(report, os.path.join(workdir, "frontier.png"))
    train.log(str(report))
    train.log(f"[select] float inputs kept for: {', '.join(plan.float_inputs[1:-1]) or 'none'}")
    return plan


def run_hbn(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """fbin -> select -> hybrid, plus baselines; returns and writes the results."""
    fbin = train.train_and_evaluate(config, os.path.join(workdir, "fbin"), plan="fbin", name="fbin")
    plan = run_select(config, workdir, fbin)
    init = fbin.state if config.hbn.init_hybrid_from_fbin else None
    hybrid = train.train_and_evaluate(
        config, os.path.join(workdir, "hybrid"), plan=plan, init_from=init, name="hybrid"
    )
    variants = {"fbin": fbin, "hybrid": hybrid}
    for baseline in config.hbn.baselines:
        variants[baseline] = train.train_and_evaluate(
            config, os.path.join(workdir, baseline), plan=baseline, name=baseline
        )
    order = ["float", "wbin", "hybrid", "fbin"]
    results = {
        "version": RESULTS_VERSION,
        "model": config.model,
        "dataset": config.dataset,
        "seed": config.seed,
        "variants": {
            name: variant_entry(variants[name], config) for name in order if name in variants
        },
        "selection": {
            "budget": config.hbn.budget,
            "method": config.hbn.method,
            "metric": config.hbn.error_metric,
            "float_inputs": list(plan.float_inputs),
        },
    }
    if jax.process_index() == 0:
        write_results(results, workdir)
    train.log(format_results(results))
    return results


def write_results(results: dict, workdir: str) -> None:
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(format_results(results) + "\n")


def format_results(results: dict) -> str:
    """``results.md``: a Markdown table, one row per variant."""
    variants = results["variants"]
    fbin_flops = variants.get("fbin", {}).get("eq_flops")
    lines = [
        f"# HBN results: {results['model']} on {results['dataset']} (seed {results['seed']})",
        "",
        "| variant | top-1 | top-5 | eq. FLOPs (M) | x fbin | MACs (M) | memory (MiB) "
        "| float inputs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in variants.items():
        top5 = f"{v['top5']:.2f}" if v["top5"] is not None else "-"
        ratio = f"{v['eq_flops'] / fbin_flops:.2f}" if fbin_flops else "-"
        lines.append(
            f"| {name} | {v['top1']:.2f} | {top5} | {v['eq_flops'] / 1e6:.2f} | {ratio} | "
            f"{v['macs'] / 1e6:.2f} | {v['memory_bytes'] / 2**20:.3f} | "
            f"{', '.join(v['float_inputs'])} |"
        )
    return "\n".join(lines)


def run_summary(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The cost table of the config's model and plan, from shapes only (no data needed).

    ``summary.json`` also holds the *measured* memory: the size of the bit-packed export
    file (``binflax.export``) against the float32 checkpoint, written from zero weights.
    """
    num_classes, image_shape = summary_shapes(config)
    model = train.build_model(config, num_classes)
    summary = cost.summary(model, image_shape, speedup=config.hbn.speedup)
    measured = export.memory_report(model, input_shape=image_shape)
    summary["export"] = {
        key: measured[key]
        for key in ("file_bytes", "float32_bytes", "predicted_bytes", "compression")
    }
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    train.log(cost.format_summary(summary))
    train.log(
        f"exported file {measured['file_bytes'] / 2**20:.3f} MiB vs float32 checkpoint "
        f"{measured['float32_bytes'] / 2**20:.3f} MiB ({measured['compression']:.1f}x smaller)"
    )
    return summary


def summary_shapes(config: ml_collections.ConfigDict) -> tuple[int, tuple[int, int, int]]:
    """Classes and input shape from the config alone, so ``summary`` needs no dataset."""
    return int(config.num_classes), (config.image_size, config.image_size, config.channels)


def trained_runs(config: ml_collections.ConfigDict, workdir: str) -> list[tuple[str, Any]]:
    """``(directory, plan)`` of every trained variant in ``workdir``.

    A ``train`` workdir is one run with ``config.plan``; an ``hbn`` workdir holds fbin,
    hybrid (with its ``plan.json``), float and wbin, each where it was trained.
    """
    if os.path.isdir(os.path.join(workdir, "checkpoints")):
        return [(workdir, config.plan)]
    plans = {
        "fbin": "fbin",
        "hybrid": os.path.join(workdir, "plan.json"),
        "float": "float",
        "wbin": "wbin",
    }
    runs = [
        (os.path.join(workdir, name), plan)
        for name, plan in plans.items()
        if os.path.isdir(os.path.join(workdir, name, "checkpoints"))
    ]
    if not runs:
        raise FileNotFoundError(f"no trained checkpoints under {workdir}; train first")
    return runs


def run_eval(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Test metrics of the best checkpoint of every trained variant in ``workdir``."""
    mesh = parallel.make_mesh()
    results = {}
    for run_dir, plan in trained_runs(config, workdir):
        model, state = train.restore_state(config, run_dir, plan=plan)
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
    to ``model.npz`` beside its checkpoints; the file is loaded back, its integer
    forward compared with the float model's on one test batch, and its latency at batch 1
    measured against the float32 model's (``export.latency``).
    """
    runs = trained_runs(config, workdir)
    _, image_shape = summary_shapes(config)
    batch = next(iter(train.eval_batches(config, "test")))
    reports = []
    for run_dir, plan in runs:
        model, state = train.restore_state(config, run_dir, plan=plan)
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
        report["latency"] = latency = export.latency(export.load(path), images[:1])
        train.log(
            f"[export] {path}: {report['file_bytes'] / 2**20:.3f} MiB "
            f"(float32 {report['float32_bytes'] / 2**20:.3f} MiB); integer path vs float "
            f"model on {len(images)} images: max |logit diff| "
            f"{report['max_abs_logit_diff']:.2e}, top-1 agreement "
            f"{100 * report['top1_agreement']:.1f}%; batch 1: {latency['ms']:.2f} ms vs "
            f"float32 {latency['float_ms']:.2f} ms ({latency['speedup']:.2f}x)"
        )
        reports.append(report)
    return reports


def _fmt(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )
