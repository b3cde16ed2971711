"""Two-stage training (ReActNet's, after Martinez et al.'s Real-to-Binary): binary inputs
first, then binary weights.

Why: binarizing activations and weights at once makes the optimisation hardest at the
start. ReActNet (Liu et al., ECCV 2020, "two steps") first trains the network with the
plan's binary inputs and float weights, then starts from those parameters with the
weights binarized too, a fresh optimizer and a fresh schedule. With
``config.two_stage.enabled`` the training budget (``num_train_steps``, else
``num_epochs``) is split at ``config.two_stage.first_fraction``; each stage is a
complete run of its own (``WORKDIR/<variant>/stage1`` and ``WORKDIR/<variant>``), so a
run killed in either stage resumes there.
"""

from __future__ import annotations

import ml_collections

from binflax.plan import LayerPrecision, Plan


def applies(config: ml_collections.ConfigDict, plan: Plan) -> bool:
    """Two stages when enabled and the plan binarizes some weights (else one is all)."""
    return bool(config.two_stage.enabled) and any(layer.binary_weight for layer in plan)


def first_stage_plan(plan: Plan) -> Plan:
    """The plan's input precisions with every weight float."""
    layers = [LayerPrecision(layer.name, layer.input, "float") for layer in plan]
    return Plan(layers, name=f"{plan.name}.stage1")


def stage_configs(
    config: ml_collections.ConfigDict,
) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
    """The configs of the two stages: the training budget split at ``first_fraction``."""
    fraction = float(config.two_stage.first_fraction)
    first, second = config.copy_and_resolve_references(), config.copy_and_resolve_references()
    if config.num_train_steps > 0:
        steps = int(config.num_train_steps)
        first.num_train_steps = max(1, round(fraction * steps))
        second.num_train_steps = max(1, steps - first.num_train_steps)
    else:
        with first.ignore_type(), second.ignore_type():  # 15 epochs split into 7.5 and 7.5
            first.num_epochs = fraction * config.num_epochs
            second.num_epochs = config.num_epochs - first.num_epochs
    return first, second
