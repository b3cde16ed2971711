"""The variants an HBN run trains, their names, and each one's own recipe.

Why a module of its own: the paper compares float, wbin, one or more hybrids and fbin,
and the authors trained them with different recipes: their float Sketch-A-Net has its
own learning rate and weight decay, their binary nets a larger dropout, their float
ResNet-18 a larger batch (docs/method.md section 9). A config states the shared recipe
once and overrides, per variant, only what differs:

    config.variants.float = ml_collections.ConfigDict({"learning_rate": 5e-3})
    config.variants.hybrid = ml_collections.ConfigDict({"dropout_rate": 0.2})

``hybrid`` applies to every hybrid (``hybrid`` with one budget, ``hybrid1``, ``hybrid2``,
... with several, in the order of ``config.hbn.budgets``).

    >>> hybrid_names((1.43, 1.14))
    ('hybrid1', 'hybrid2')
    >>> hybrid_names((1.5,))
    ('hybrid',)

A control hybrid (``config.hbn.controls``: float inputs chosen at a hybrid's budget
without the paper's metric, :mod:`binflax.select.controls`) is named after its hybrid
and trains with the ``hybrid`` recipe:

    >>> control_name("hybrid1", "random0"), controlled_hybrid("hybrid1.random0")
    ('hybrid1.random0', 'hybrid1')

Tables and figures over seeds set each row apart by its :func:`kind`:

    >>> [kind(name) for name in ("float", "hybrid2", "hybrid2.cost_only", "fbin")]
    ['baseline', 'hybrid', 'control', 'baseline']
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections

PRESET_VARIANTS = ("float", "wbin", "fbin")
# What a variant is: a preset (the paper's baselines and fbin), an HBN hybrid, a control.
KINDS = ("baseline", "hybrid", "control")
# The keys of config.variants: the presets, and "hybrid" for every hybrid.
VARIANT_KEYS = (*PRESET_VARIANTS, "hybrid")
# The recipe fields a variant may override.
OVERRIDABLE = ("learning_rate", "weight_decay", "dropout_rate", "batch_size", "num_epochs")


def hybrid_names(budgets: Sequence[float]) -> tuple[str, ...]:
    """``("hybrid",)`` for one budget, ``("hybrid1", "hybrid2", ...)`` for several."""
    if len(budgets) == 1:
        return ("hybrid",)
    return tuple(f"hybrid{i}" for i in range(1, len(budgets) + 1))


def control_name(hybrid: str, label: str) -> str:
    """The row of ``hybrid``'s control ``label`` (``random0``, ``cost_only``, ...)."""
    return f"{hybrid}.{label}"


def controlled_hybrid(variant: str) -> str | None:
    """The hybrid that the control ``variant`` controls; ``None`` for any other variant."""
    hybrid, dot, _ = variant.partition(".")
    return hybrid if dot else None


def kind(variant: str) -> str:
    """``baseline`` for float, wbin and fbin, ``control`` for a control, else ``hybrid``."""
    if variant in PRESET_VARIANTS:
        return "baseline"
    return "control" if controlled_hybrid(variant) else "hybrid"


def report_order(budgets: Sequence[float], trained: Sequence[str]) -> tuple[str, ...]:
    """The paper's row order: float, wbin, the hybrids (most float inputs first), fbin.

    Each hybrid is followed by its controls, in the order they appear in ``trained``.
    """
    order = []
    for name in ("float", "wbin", *hybrid_names(budgets), "fbin"):
        order.append(name)
        order += [v for v in trained if controlled_hybrid(v) == name]
    return tuple(name for name in order if name in trained)


def of_plan(plan: object) -> str:
    """The variant a ``train`` run of ``config.plan`` is: the preset's name, else ``hybrid``."""
    return plan if plan in PRESET_VARIANTS else "hybrid"


def recipe_key(variant: str) -> str:
    """The ``config.variants`` key that holds ``variant``'s overrides."""
    return variant if variant in PRESET_VARIANTS else "hybrid"


def variant_config(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``variant``'s overrides applied (``config`` is unchanged)."""
    resolved = config.copy_and_resolve_references()
    overrides = config.get("variants", {}).get(recipe_key(variant), {})
    for field, value in overrides.items():
        resolved[field] = value
    return resolved
