"""What each selection budget allows, before anything is trained: ``--mode=summary``'s
budget report.

For each of ``config.hbn.budgets`` (a multiple of fbin's equivalent FLOPs,
docs/select.md): the equivalent FLOPs it allows and the most expensive of the authors'
hybrids (:mod:`binflax.paper`) within it, so a user sees what an ``hbn`` run targets
before spending anything. Costs come from the cost model (:mod:`binflax.cost`) at the
config's own input shape and classes.

Why beside the cost model and not in it: this report reads a config and builds its
network (:mod:`binflax.networks`), which ``cost`` never does (it takes a network and a
shape, and nothing of the configs).
"""

from __future__ import annotations

import ml_collections

from binflax import cost, models, networks, paper, variants
from binflax.plan import Plan


def targets(config: ml_collections.ConfigDict) -> list[dict]:
    """For each hybrid of ``config.hbn.budgets``: the equivalent FLOPs its budget allows,
    and the most expensive of the authors' hybrids (:mod:`binflax.paper`) within it.

    Costs come from the cost model at the config's own input shape and classes.
    """
    num_classes, image_shape = networks.config_shapes(config)
    fbin = networks.build_model(config, num_classes, "fbin")
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
    found = []
    budgets = config.hbn.budgets
    for variant, budget in zip(variants.hybrid_names(budgets), budgets, strict=True):
        bound = budget * fbin_eq
        within = [(h, eq) for h, eq in authors if eq <= bound]
        hybrid, eq = max(within, key=lambda item: item[1]) if within else (None, None)
        found.append(
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
    return found


def format_targets(found: list[dict], model_name: str) -> str:
    """:func:`targets` as the console lines ``--mode=summary`` prints."""
    lines = [f"hbn budgets (fbin: {found[0]['fbin_eq_flops'] / 1e6:.2f} M eq. FLOPs):"]
    for t in found:
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
