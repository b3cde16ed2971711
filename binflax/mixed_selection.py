"""The hbn pipeline's mixed-precision selection: a bit-width per layer for every budget.

Why a step of its own: with ``config.hbn.precisions`` beyond the paper's binary or float
(e.g. ``(1, 2, 4, 8, 32)``), ``--mode=hbn`` (and ``--mode=select``) measures the trained
fbin network's sensitivity to every bit-width once
(:func:`binflax.select.measure_precisions`), then per budget solves for the bit-widths
that minimise the summed ``config.hbn.sensitivity`` score (the hybrid,
:func:`binflax.select.select_precisions`) and draws its controls at the same budget
(``config.hbn.precision_controls`` among :data:`binflax.select.MIXED_CONTROLS`). It writes what the
binary/float selection writes - each hybrid's and control's plan under the names the
rest of the pipeline reads - and a ``select`` JSON per hybrid with the measurement and
every pick's bit-widths, cost and sensitivity. With ``config.hbn.cost_table`` (a latency
table measured on the export's kernels, :func:`binflax.export.latency_table`) the budgets
are multiples of fbin's summed layer times instead of its equivalent FLOPs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import flax.linen as nn
import ml_collections

from binflax import export, select, variants
from binflax.errors import ConfigError
from binflax.outputs import log
from binflax.plan import Plan
from binflax.run_dir import RunDir


def run(
    config: ml_collections.ConfigDict,
    run_dir: RunDir,
    model: nn.Module,
    variables: Mapping,
    batches: Iterable,
) -> dict[str, Plan]:
    """The plans of every mixed-precision hybrid and its controls, by variant name, in
    the order of ``config.hbn.budgets``, each hybrid followed by its controls."""
    hbn = config.hbn
    measurement = select.measure_precisions(
        model,
        variables,
        batches,
        precisions=hbn.precisions,
        hutchinson_samples=hbn.hutchinson_samples,
        seed=config.seed,
    )
    log(
        f"[select] sensitivity of {len(measurement.macs)} layers to "
        f"{', '.join(map(str, measurement.precisions))} bits on {measurement.num_samples} "
        f"images: {', '.join(measurement.scores)}"
    )
    costs = cost_table(config, model, measurement)
    plans: dict[str, Plan] = {}
    for variant, budget in zip(variants.hybrid_names(hbn.budgets), hbn.budgets, strict=True):
        hybrid = select.select_precisions(
            measurement, budget, score=hbn.sensitivity, speedup=hbn.speedup, costs=costs
        )
        plans[variant] = select.mixed_plan(model, measurement, hybrid.bits, variant)
        log(f"[select] {variant}: {hybrid}")
        try:
            controls = select.mixed_controls(
                measurement,
                hybrid,
                controls=hbn.precision_controls,
                num_random=hbn.num_random,
                seed=config.seed,
                speedup=hbn.speedup,
                costs=costs,
            )
        except select.ControlError as e:
            raise ConfigError(
                f"config.hbn.precision_controls: a control of {variant}: {e}; lower "
                "config.hbn.num_random or drop the control"
            ) from None
        picks = {}
        for label, bits in controls.items():
            name = variants.parse(variant).control_of(label).name
            plans[name] = select.mixed_plan(model, measurement, bits, name)
            picks[label] = select.selection_of(
                measurement, bits, hbn.sensitivity, budget, hbn.speedup, costs
            )
            log(f"[select] {name} (control of {variant}): {picks[label]}")
        report = {
            "hybrid": hybrid.to_dict(),
            "controls": {label: pick.to_dict() for label, pick in picks.items()},
            "measurement": measurement.to_dict(),
        }
        run_dir.write_json(run_dir.selection("select", variant), report)
        for name in (variant, *(variants.parse(variant).control_of(c).name for c in controls)):
            run_dir.write(run_dir.selection("plan", name), plans[name].save)
    return plans


def cost_table(
    config: ml_collections.ConfigDict, model: nn.Module, measurement: select.PrecisionMeasurement
) -> select.CostTable | None:
    """``config.hbn.cost_table``'s measured latencies as the selection's cost (None: the
    equivalent FLOPs); a table of another network, or one that lacks a layer or a
    bit-width of the search, is a ConfigError naming it."""
    path = config.hbn.get("cost_table", "")
    if not path:
        return None
    try:
        table = export.LatencyTable.load(path)
    except export.ExportError as e:
        raise ConfigError(f"config.hbn.cost_table: {e}") from None
    if table.network != type(model).__name__:
        raise ConfigError(
            f"config.hbn.cost_table={path!r} was measured on {table.network}, not on "
            f"{type(model).__name__}"
        )
    try:
        costs = select.CostTable.from_latency(table.ms, table.plan_bits, measurement)
    except ValueError as e:
        raise ConfigError(f"config.hbn.cost_table={path!r}: {e}") from None
    log(
        f"[select] costs: latency table {path} (batch {table.batch}, "
        f"{table.machine.get('cpu')}); fbin {costs.fbin:.3f} ms"
    )
    return costs
