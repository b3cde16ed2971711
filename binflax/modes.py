"""The command line's modes: what ``main.py --mode=MODE`` runs, on top of training.

:data:`MODES` is the one list of modes (the CLI, the config check and the docs read it):

- ``summary``: the cost table of a config's model and plan, and what each selection
  budget admits, from shapes alone (no data);
- ``train``: the config's plan, with its variant's recipe;
- ``select``: measure a trained fbin network once and select one hybrid per budget;
- ``hbn``: the paper end to end (docs/method.md section 7): train fbin, select, train
  every hybrid (from scratch, as the authors, or from the fbin checkpoint) and the
  controls the config lists beside it (``config.hbn.controls``: the same budget, float
  inputs chosen without the metric), train the baselines the config lists, and write
  the results (:mod:`binflax.results`);
- ``eval``: test metrics of every trained variant of a workdir;
- ``export``: bit-pack every trained variant and check its integer path.

``eval`` and ``export`` find the variants in the workdir (``RunDir.trained_runs``), not
in the config: each one the run trained, whatever ``config.hbn`` now lists.

Each variant trains in its own sub-directory of the workdir and resumes from its own
checkpoint, and a finished variant is not trained again: rerunning the same command
after an interruption picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from functools import partial
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from binflax import (
    budgets,
    cost,
    data,
    distill,
    export,
    mixed_selection,
    networks,
    parallel,
    plots,
    results,
    select,
    train,
    two_stage,
    variants,
)
from binflax.errors import ConfigError
from binflax.outputs import log
from binflax.plan import Plan
from binflax.run_dir import RunDir


@networks.takes_config
def train_variant(
    config: ml_collections.ConfigDict,
    workdir: str,
    variant: str,
    plan: str | Plan,
    init_from: train.TrainState | None = None,
    teacher: distill.Teacher | None = None,
) -> train.TrainResult:
    """Trains ``variant`` with its own recipe (``config.variants``) in ``workdir``, against
    ``teacher`` when the config distills, in two stages when the config says so (the
    first in ``RunDir.first_stage``, the second from its parameters)."""
    config = variants.variant_config(config, variant)
    resolved = networks.build_model(config, config.num_classes, plan).plan
    if not two_stage.applies(config, resolved):
        return train.train_and_evaluate(
            config, workdir, plan=plan, init_from=init_from, teacher=teacher, name=variant
        )
    first_config, second_config = two_stage.stage_configs(config)
    first = train.train_and_evaluate(
        first_config,
        str(RunDir.of(workdir).first_stage),
        plan=two_stage.first_stage_plan(resolved),
        init_from=init_from,
        teacher=teacher,
        name=f"{variant}.stage1",
    )
    second = train.train_and_evaluate(
        second_config, workdir, plan=resolved, init_from=first.state, teacher=teacher, name=variant
    )
    return dataclasses.replace(second, first_stage=first)


def load_teacher(config: ml_collections.ConfigDict, workdir: str) -> distill.Teacher:
    """The float network trained in ``workdir`` (its checkpoint chosen on the holdout)."""
    model, state = train.restore_state(variants.variant_config(config, "float"), workdir, "float")
    return distill.Teacher(model, state.variables)


def _teacher_of_path(config: ml_collections.ConfigDict) -> distill.Teacher | None:
    """The teacher ``config.distill.teacher`` names when it is a workdir, None when the
    config does not distill."""
    if not config.distill.weight:
        return None
    if config.distill.teacher == distill.FLOAT_TEACHER:
        raise ConfigError(
            "config.distill.teacher='float' is the hbn pipeline's float variant; with "
            "--mode=train give the workdir of a trained float run"
        )
    return load_teacher(config, config.distill.teacher)


@networks.takes_config
def run_train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the config's plan and writes its ``results.json`` entry to ``metrics.json``."""
    variant = variants.of_plan(config.plan)
    result = train_variant(config, workdir, variant, config.plan, teacher=_teacher_of_path(config))
    entry = results.variant_entry(result, config)
    run = RunDir.of(workdir)
    run.write_json(run.metrics_json, entry)
    return entry


def run_select(
    config: ml_collections.ConfigDict,
    workdir: str,
    fbin: train.TrainResult | None = None,
) -> dict[str, Plan]:
    """Measures a trained fbin network once and selects one hybrid per budget.

    Writes each hybrid's selection report, plan and plots (``RunDir.selection``), and
    the plan of each of its controls (``config.hbn.controls``: the same budget, float
    inputs chosen without the metric, :mod:`binflax.select.controls`). Returns the plans
    by variant name, in the order of ``config.hbn.budgets``, each hybrid followed by its
    controls. With ``config.hbn.precisions`` beyond binary and float, the hybrids and
    controls are mixed-precision ones (:mod:`binflax.mixed_selection`).
    """
    run = RunDir.of(workdir)
    if fbin is None:
        fbin_config = variants.variant_config(config, "fbin")
        model, state = train.restore_state(fbin_config, str(run.variant("fbin")), "fbin")
    else:
        model, state = fbin.model, fbin.state
    mesh = parallel.make_mesh()
    variables = state.variables
    hold = itertools.islice(data.eval_batches(config, "holdout"), config.hbn.measure_batches)
    batches = (parallel.global_batch(b, mesh) for b in hold)
    if select.is_mixed(config.hbn.precisions):
        return mixed_selection.run(config, run, model, variables, batches)
    measurement = select.measure(model, variables, batches, metric=config.hbn.error_metric)
    prob = select.problem(
        measurement.errors,
        measurement.macs,
        fixed_macs=measurement.fixed_macs,
        speedup=config.hbn.speedup,
    )
    plans = {}
    hybrids = variants.hybrid_names(config.hbn.budgets)
    for variant, budget in zip(hybrids, config.hbn.budgets, strict=True):
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
        run.write(run.selection("select", variant), report.save)
        run.write(run.selection("plan", variant), plan.save)
        run.write(run.selection("scores", variant, ".png"), partial(plots.plot_scores, report))
        run.write(run.selection("frontier", variant, ".png"), partial(plots.plot_frontier, report))
        log(str(report))
        log(
            f"[select] {variant}: float inputs kept for "
            f"{', '.join(report.float_layers) or 'none'} (budget {budget:g} x fbin)"
        )
        plans[variant] = plan
        try:
            controls = select.control_sets(
                prob,
                report.float_layers,
                budget,
                controls=config.hbn.controls,
                num_random=config.hbn.num_random,
                seed=config.seed,
            )
        except select.ControlError as e:
            raise ConfigError(
                f"config.hbn.controls: the random control of {variant} ({e}); lower "
                "config.hbn.num_random or drop 'random' from config.hbn.controls"
            ) from None
        for label, float_layers in controls.items():
            name = variants.parse(variant).control_of(label).name
            plans[name] = select.hybrid_plan(model, measurement, float_layers, name=name)
            run.write(run.selection("plan", name), plans[name].save)
            same = " - the hybrid's own" if set(float_layers) == set(report.float_layers) else ""
            log(
                f"[select] {name} (control of {variant}, no metric): float inputs kept for "
                f"{', '.join(float_layers) or 'none'}{same} "
                f"({prob.eq_flops(float_layers) / prob.fbin_eq_flops:.3f} x fbin)"
            )
    return plans


@networks.takes_config
def run_hbn(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """fbin -> select (one hybrid per budget, and its controls) -> hybrids, plus
    baselines; writes results. A float teacher (``config.distill.teacher="float"``) is
    trained first and every other variant distills from it."""
    run = RunDir.of(workdir)
    trained, same_as = {}, {}
    teacher = _teacher_of_path(config) if config.distill.teacher != "float" else None
    if config.distill.weight and config.distill.teacher == distill.FLOAT_TEACHER:
        trained["float"] = train_variant(config, str(run.variant("float")), "float", "float")
        teacher = distill.Teacher(trained["float"].model, trained["float"].state.variables)
    fbin = train_variant(config, str(run.variant("fbin")), "fbin", "fbin", teacher=teacher)
    plans = run_select(config, workdir, fbin)
    init = fbin.state if config.hbn.init_hybrid_from_fbin else None
    for variant, plan in plans.items():
        twin = _trained_twin(variant, plan, plans, trained)
        if twin is not None:
            # Training is deterministic: the twin's run is the run this row would repeat.
            log(f"[{variant}] the plan of {twin}: its trained run stands for this row")
            trained[variant], same_as[variant] = trained[twin], twin
            continue
        trained[variant] = train_variant(
            config, str(run.variant(variant)), variant, plan, init, teacher
        )
    trained["fbin"] = fbin
    for baseline in config.hbn.baselines:
        if baseline not in trained:  # the float teacher is the float baseline
            trained[baseline] = train_variant(
                config,
                str(run.variant(baseline)),
                baseline,
                baseline,
                teacher=None if baseline == "float" else teacher,
            )
    run_results = results.hbn_results(config, trained, plans, same_as)
    results.write(run_results, workdir)
    log(results.format_table(run_results))
    return run_results


def _trained_twin(variant: str, plan: Plan, plans: dict[str, Plan], trained: dict) -> str | None:
    """The already trained hybrid or control with ``variant``'s layer precisions, when
    ``variant`` is a control (a control that lands on its hybrid's set is not retrained)."""
    if variants.parse(variant).kind != "control":
        return None
    return next(
        (name for name in trained if name in plans and plans[name] == plan),
        None,
    )


def run_summary(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The cost table of the config's model and plan, from shapes only (no data needed).

    ``summary.json`` also holds the *measured* memory: the size of the bit-packed export
    file (``binflax.export``) against the float32 checkpoint, written from zero weights;
    and, for each of ``config.hbn.budgets``, the equivalent FLOPs it allows and the
    authors' hybrid it admits (:mod:`binflax.budgets`), so a user sees what an ``hbn`` run
    targets before spending anything.
    """
    num_classes, image_shape = networks.config_shapes(config)
    model = networks.build_model(config, num_classes)
    summary = cost.summary(model, image_shape, speedup=config.hbn.speedup)
    measured = export.memory_report(model, input_shape=image_shape)
    summary["export"] = {
        key: measured[key]
        for key in ("weights_bytes", "float32_bytes", "predicted_bytes", "compression")
    }
    summary["budgets"] = budgets.targets(config)
    run = RunDir.of(workdir)
    run.write_json(run.summary_json, summary)
    log(cost.format_summary(summary))
    log(
        f"exported weights {measured['weights_bytes'] / 2**20:.3f} MiB vs float32 "
        f"checkpoint {measured['float32_bytes'] / 2**20:.3f} MiB "
        f"({measured['compression']:.1f}x smaller; --mode=export adds the programs)"
    )
    log(budgets.format_targets(summary["budgets"], config.model))
    return summary


def run_eval(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Test metrics of the best checkpoint of every trained variant in ``workdir``."""
    mesh = parallel.make_mesh()
    results = {}
    for trained in RunDir.of(workdir).trained_runs(config.plan):
        run_dir = str(trained.run)
        model, state = train.restore_state(
            variants.variant_config(config, trained.variant), run_dir, plan=trained.plan
        )
        metrics = train.evaluate(
            parallel.replicate(state, mesh), train.eval_batches(config, "test"), mesh
        )
        log(f"[eval] {run_dir}: {type(model).__name__} plan={model.plan.name}: {_fmt(metrics)}")
        results[run_dir] = metrics
    return results


def run_export(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
    """Exports the best checkpoint of every trained variant in ``workdir`` and checks it.

    ``workdir`` is a ``train`` or an ``hbn`` run (``RunDir.trained_runs``). Each variant goes
    to ``model.npz`` beside its checkpoints; the file is loaded back, its integer
    forward compared with the float model's on one test batch, and its latency at batch 1
    measured against the float32 model's (``export.latency``).
    """
    runs = RunDir.of(workdir).trained_runs(config.plan)
    _, image_shape = networks.config_shapes(config)
    batch = next(iter(train.eval_batches(config, "test")))
    reports = []
    for trained in runs:
        model, state = train.restore_state(
            variants.variant_config(config, trained.variant), str(trained.run), plan=trained.plan
        )
        variables = parallel.fetch(state.variables)
        path = trained.run.export_file
        report, exported = export.export_and_load(model, variables, path, input_shape=image_shape)
        images = batch["image"].reshape(-1, *batch["image"].shape[-3:])
        exact = np.asarray(export.integer_forward(exported, images))
        # the reference is the float32 model, whatever dtype it trained in (half precision)
        float32 = model.clone(options=dataclasses.replace(model.options, dtype=jnp.float32))
        fake_quant = np.asarray(float32.apply(variables, images))
        report["max_abs_logit_diff"] = float(np.max(np.abs(exact - fake_quant)))
        report["top1_agreement"] = float(np.mean(exact.argmax(-1) == fake_quant.argmax(-1)))
        report["latency"] = latency = export.latency(exported, images[:1])
        log(
            f"[export] {path}: {report['file_bytes'] / 2**20:.3f} MiB (weights "
            f"{(report['file_bytes'] - report['program_bytes']) / 2**20:.3f} MiB vs float32 "
            f"{report['float32_bytes'] / 2**20:.3f} MiB); integer path vs float "
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


MODES: dict[str, Callable[[ml_collections.ConfigDict, str], Any]] = {
    "train": run_train,
    "select": run_select,
    "hbn": run_hbn,
    "summary": run_summary,
    "eval": run_eval,
    "export": run_export,
}
