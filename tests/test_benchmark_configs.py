"""The small-benchmark configs (MNIST, Fashion-MNIST, CIFAR-10): their recipes, their
smoke switch, and budgets that leave the error metric a real choice.

"A real choice": at each budget at least two different maximal sets of float-input
layers fit (sets no other candidate can join). The sets are enumerated here from the
cost model's per-layer figures, independently of binflax's solvers.
"""

import importlib
import itertools

import pytest

from binflax import cost, data, models, networks
from binflax.plan import Plan

CONFIGS = {  # config: (model, dataset, channels, augment)
    "mnist": ("lenet5", "mnist", 1, "none"),
    "fashion_mnist": ("vgg_small", "fashion_mnist", 1, "none"),
    "cifar10": ("vgg_small", "cifar10", 3, "crop_flip"),
}


def load(name, arg=None):
    return importlib.import_module(f"configs.{name}").get_config(arg)


def maximal_sets(config) -> dict[float, list[tuple[str, ...]]]:
    fbin = networks.build_model(config, config.num_classes, "fbin")
    shape = (config.image_size, config.image_size, config.channels)
    names = models.layer_names(fbin)

    def eq(model) -> float:
        return cost.totals(cost.layer_costs(model, shape))["eq_flops"]

    base = eq(fbin)
    candidates = [i.name for i in models.trace_layers(fbin) if i.precision.binary_input]
    extra = {name: eq(fbin.clone(plan=Plan.hybrid(names, [name]))) - base for name in candidates}
    found = {}
    for budget in config.hbn.budgets:
        room = (budget - 1.0) * base
        fits = [
            subset
            for k in range(len(candidates) + 1)
            for subset in itertools.combinations(candidates, k)
            if sum(extra[n] for n in subset) <= room
        ]
        found[budget] = [
            s
            for s in fits
            if all(sum(extra[n] for n in s) + extra[c] > room for c in candidates if c not in s)
        ]
    return found


@pytest.mark.parametrize("name", CONFIGS)
def test_recipe_model_and_data(name):
    model, dataset, channels, augment = CONFIGS[name]
    config = load(name)
    assert (config.model, config.dataset, config.channels) == (model, dataset, channels)
    assert config.mode == "hbn" and data.recipes.augment_of(config) == augment
    doc = importlib.import_module(f"configs.{name}").__doc__
    assert f"python main.py --config=configs/{name}.py" in doc and ":runlocal" in doc
    smoke = load(name, "runlocal")
    assert smoke.num_train_steps == 4 and smoke.batch_size == 8


@pytest.mark.parametrize("name", CONFIGS)
def test_every_budget_admits_several_float_input_sets(name):
    for budget, sets in maximal_sets(load(name)).items():
        assert len(sets) >= 2, (name, budget, sets)


def flat(d, prefix=""):
    """A config dict's leaves by dotted field name."""
    for key, value in d.items():
        if isinstance(value, dict):
            yield from flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_fashion_mnist_runs_every_control():
    config = load("fashion_mnist")
    assert set(config.hbn.controls) == {"random", "cost_only", "error_only"}
    assert len(config.hbn.budgets) == 2


def test_the_study_config_differs_from_fashion_mnist_only_where_its_docstring_says():
    """configs/fashion_mnist_study.py is fashion_mnist.py plus equal-cost random controls,
    the float baseline alone and Larq's clip: any other difference would make the study a
    different recipe from the table it extends."""
    base, study = load("fashion_mnist").to_dict(), load("fashion_mnist_study").to_dict()

    base, study = dict(flat(base)), dict(flat(study))
    changed = {key: study[key] for key in study if study[key] != base.get(key)}
    assert changed == {
        "hbn.method": "exact",
        "hbn.controls": ("random",),
        "hbn.baselines": ("float",),
        "kernel_projection": "clip",
    }
    doc = importlib.import_module("configs.fashion_mnist_study").__doc__
    for key in changed:
        assert key.rpartition(".")[2] in doc, key


def test_the_mixed_study_differs_from_the_study_only_where_its_docstring_says():
    """configs/fashion_mnist_mixed_study.py is the binary study's config plus the search
    space and its budgets: fbin and float must train as in the binary study, whose runs
    the mixed study reuses."""

    base = dict(flat(load("fashion_mnist_study").to_dict()))
    mixed = dict(flat(load("fashion_mnist_mixed_study").to_dict()))
    changed = {key: mixed[key] for key in mixed if mixed[key] != base.get(key)}
    assert changed == {
        "hbn.precisions": (1, 2, 4, 8, 32),
        "hbn.budgets": (1.53, 2.58),
        "hbn.num_random": 1,
    }
    doc = importlib.import_module("configs.fashion_mnist_mixed_study").__doc__
    for key in changed:
        assert key.rpartition(".")[2] in doc, key
