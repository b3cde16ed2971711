"""Training recipes as presets: ``config.recipe = "xnor" | "reactnet"``, field by field.

Why presets: the accuracy of binary networks since 2018 has come mostly from the training
recipe (docs/choices.md, "Modern recipe"), and a researcher wants to switch the whole
recipe with one flag yet still change any one part of it. Every field a recipe sets
defaults to ``None`` in configs/default.py, meaning "the recipe's"; :func:`resolve` fills
exactly those, so ``--config.recipe=reactnet --config.distill.weight=0.5`` keeps the
0.5 and takes the rest from ReActNet. It works for every model: the block is set only
where the model has a ``block`` field (binflax's ResNet), the unit options, distillation
and the two stages everywhere, a network of your own included.

- ``xnor`` (binflax's default, the paper's and XNOR-Net's): batch norm then sign with the
  clipped straight-through estimator, ReLU, one stage, no teacher.
- ``reactnet`` (Liu et al., ECCV 2020, on Bi-Real Net, Liu et al., ECCV 2018): RSign (a
  learned per-channel threshold, ``input_norm="shift"``), Bi-Real's ``approx_sign``
  gradient, RPReLU, the real-valued shortcut around every binary conv (``block``),
  distillation from the float model with ReActNet's distributional loss (weight 1,
  temperature 1), and two stages of equal length (binary activations with float
  weights, then binary weights).
"""

from __future__ import annotations

import ml_collections

from binflax.errors import ConfigError

# field path -> value, per recipe; a field the config sets (not None) wins.
RECIPES: dict[str, dict[str, object]] = {
    "xnor": {
        "input_norm": "batchnorm",
        "input_quantizer": "ste_sign",
        "activation": "relu",
        "distill.weight": 0.0,
        "distill.temperature": 1.0,
        "distill.teacher": "float",
        "two_stage.enabled": False,
        "two_stage.first_fraction": 0.5,
        "model_kwargs.block": "xnor",
    },
    "reactnet": {
        "input_norm": "shift",
        "input_quantizer": "approx_sign",
        "activation": "rprelu",
        "distill.weight": 1.0,
        "distill.temperature": 1.0,
        "distill.teacher": "float",
        "two_stage.enabled": True,
        "two_stage.first_fraction": 0.5,
        "model_kwargs.block": "reactnet",
    },
}
BLOCK_FIELD = "model_kwargs.block"


def resolve(
    config: ml_collections.ConfigDict, model_fields: frozenset[str] = frozenset()
) -> ml_collections.ConfigDict:
    """A copy of ``config`` with every recipe field still ``None`` set from
    ``config.recipe``; ``model_fields`` are the model's field names (the block is set
    only for a model that has one). Idempotent."""
    recipe = config.get("recipe", "xnor")
    if recipe not in RECIPES:
        raise ConfigError(f"config.recipe={recipe!r}; choose one of {', '.join(RECIPES)}")
    resolved = config.copy_and_resolve_references()
    with resolved.unlocked():
        for path, value in RECIPES[recipe].items():
            parent, _, field = path.rpartition(".")
            node = resolved[parent] if parent else resolved
            if path == BLOCK_FIELD:
                if "block" in model_fields and node.get("block") is None:
                    node["block"] = value
            elif node.get(field) is None:
                node[field] = value
    return resolved
