"""Two-stage training and the recipe presets: the split, the first stage's plan, stage 2
starting from stage 1's parameters exactly, and a kill in stage 2 resuming into stage 2."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from binflax import cli, config_check, modes, networks, planned, recipe_presets, train, two_stage
from binflax.errors import ConfigError
from binflax.plan import Plan
from binflax.recipe_presets import RECIPES, resolve
from configs import default, quickstart


def test_the_budget_splits_at_the_first_fraction():
    config = resolve(quickstart.get_config())
    config.two_stage.first_fraction = 0.25
    first, second = two_stage.stage_configs(config)  # 15 epochs
    assert (first.num_epochs, second.num_epochs) == (3.75, 11.25)
    config.num_train_steps = 10
    first, second = two_stage.stage_configs(config)
    assert (first.num_train_steps, second.num_train_steps) == (2, 8)


def test_the_first_stage_keeps_the_inputs_and_floats_the_weights():
    plan = Plan.preset("fbin", ["a", "b", "c", "d"], binarize_last_weights=True)
    first = two_stage.first_stage_plan(plan)
    assert [(p.input, p.weight) for p in first] == [
        ("float", "float"), ("binary", "float"), ("binary", "float"), ("float", "float")
    ]  # fmt: skip
    assert not two_stage.applies(resolve(quickstart.get_config()), plan)  # xnor: one stage


def test_a_recipe_fills_only_what_the_config_leaves_unset():
    config = quickstart.get_config()
    config.recipe = "reactnet"
    config.distill.weight = 0.5
    resolved = networks.resolved(config)
    assert resolved.distill.weight == 0.5  # the override
    assert resolved.input_norm == "shift" and resolved.activation == "rprelu"
    assert resolved.two_stage.enabled and resolved.input_quantizer == "approx_sign"
    assert resolved.model_kwargs.block is None  # mini_sketchanet has no block field
    config.model = "resnet18"
    assert networks.resolved(config).model_kwargs.block == "reactnet"
    assert networks.resolved(networks.resolved(config)) == networks.resolved(config)


# Fields configs/default.py leaves None with a meaning of their own, not "the recipe's":
# TFDS's data and manual dirs, the dataset's augmentation, no cap on the float inputs.
NOT_THE_RECIPES = {"data_dir", "manual_dir", "augment", "hbn.num_float"}


def unset_fields(config, prefix=""):
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from unset_fields(value, f"{prefix}{key}.")
        elif value is None:
            yield prefix + key


def test_every_recipe_fills_every_field_the_default_config_leaves_to_it():
    """A field left to the recipe that one recipe did not set would stay None when a
    run switches to that recipe; one a recipe sets that the config fixes would never
    apply (configs/default.py: None means "the recipe's")."""
    left_to_recipes = set(unset_fields(default.get_config())) - NOT_THE_RECIPES
    for name in RECIPES:
        config = default.get_config()
        config.recipe = name
        resolved = resolve(config, model_fields=frozenset({"block"}))
        assert set(unset_fields(resolved)) == NOT_THE_RECIPES, name
        assert set(RECIPES[name]) == left_to_recipes, name


def test_the_default_recipe_builds_the_librarys_default_unit():
    """The command line's default (configs/default.py, the xnor recipe) and a network
    planned with no option set (binflax.binarize, binflax's models) build the same unit,
    the authors': batch norm, sign with the clipped STE, ReLU, alpha a constant."""
    config = networks.resolved(default.get_config())
    unit = planned.BinaryOptions()
    in_config = [name for name in planned.OPTION_NAMES if name in config]
    assert len(in_config) >= 5  # input_norm, activation, quantizer, scaling, alpha at least
    assert {name: config[name] for name in in_config} == {
        name: getattr(unit, name) for name in in_config
    }


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("recipe", "bireal", "config.recipe='bireal'"),
        ("distill.weight", 1.5, "config.distill.weight=1.5"),
        ("distill.teacher", "/no/such/run", "config.distill.teacher='/no/such/run'"),
        ("two_stage.first_fraction", 1.0, "config.two_stage.first_fraction=1.0"),
        ("activation", "gelu", "config.activation='gelu'"),
    ],
)
def test_a_bad_recipe_field_is_named(field, value, message):
    config = quickstart.get_config()
    config.recipe = "reactnet"
    parent, _, key = field.rpartition(".")
    (config[parent] if parent else config)[key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_check.checked(config)


def smoke_config(tmp_path):
    config = quickstart.get_config("runlocal")
    config.recipe = "reactnet"
    config.checkpoint_every_steps = 1
    return config


@pytest.mark.slow
def test_stage_two_starts_from_stage_one_and_resumes_there(tmp_path, monkeypatch):
    config = smoke_config(tmp_path)
    calls, sources = [], []
    real_train, real_transfer = train.train_and_evaluate, train.transfer_matching

    def spy(config, workdir, **kwargs):
        result = real_train(config, workdir, **kwargs)
        calls.append((workdir, result))
        return result

    def record_transfer(target, source):
        sources.append(jax.tree.map(np.asarray, source))
        return real_transfer(target, source)

    monkeypatch.setattr(train, "train_and_evaluate", spy)
    monkeypatch.setattr(train, "transfer_matching", record_transfer)
    real_step, steps = train.train_step, []

    def killed_in_stage_two(*args, **kwargs):
        steps.append(1)
        if len(steps) == 4:  # stage 1 has 2 steps: the second step of stage 2
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", killed_in_stage_two)
    workdir = str(tmp_path / "fbin")
    with pytest.raises(KeyboardInterrupt):
        modes.train_variant(config, workdir, "fbin", "fbin")
    assert [c[0] for c in calls] == [f"{workdir}/stage1"]  # stage 1 done, stage 2 killed
    stage1 = calls[0][1]
    assert stage1.model.plan.name == "fbin.stage1" and stage1.steps == 2
    # Stage 2 started from stage 1's chosen parameters, leaf for leaf (its transfer).
    source, _ = sources  # params, then batch_stats
    chosen = checkpointed_params(f"{workdir}/stage1")
    for a, b in zip(jax.tree.leaves(source), jax.tree.leaves(chosen), strict=True):
        np.testing.assert_array_equal(a, b)

    resumed_steps = []

    def counted(*args, **kwargs):
        resumed_steps.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", counted)
    result = modes.train_variant(config, workdir, "fbin", "fbin")
    # stage 1 is not trained again, stage 2 resumes from its checkpoint at step 1: no
    # transfer, as a resumed run restores its own state, and one step left to train
    assert result.first_stage is not None and result.steps == 2 and len(sources) == 2
    assert len(resumed_steps) == 1 and result.model.plan.name == "fbin"


def checkpointed_params(workdir):
    """The params of the state a finished run chose (its best checkpoint)."""
    config = networks.resolved(smoke_config(None))
    _, state = train.restore_state(config, workdir, two_stage.first_stage_plan(
        networks.build_model(config, config.num_classes, "fbin").plan))  # fmt: skip
    return jax.tree.map(np.asarray, state.params)


@pytest.mark.slow
def test_the_quickstart_runs_with_the_reactnet_recipe(tmp_path, capsys):
    config = smoke_config(tmp_path)
    assert cli.run(config, mode="hbn", workdir=str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.index("[float]") < out.index("[fbin.stage1]") < out.index("[fbin]")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["recipe"] == "reactnet"
    for variant in ("fbin", "hybrid"):
        stages = results["variants"][variant]["stages"]
        assert stages["stage1"]["plan"] == f"{variant}.stage1" and stages["stage2"]["plan"]
        assert results["variants"][variant]["steps"] == 4
        # each stage's own sittings; the row's provenance is stage 2's, its run directory's
        for stage in ("stage1", "stage2"):
            (sitting,) = stages[stage]["provenance"]["sittings"]
            assert (sitting["from_step"], sitting["to_step"]) == (0, 2)
        assert results["variants"][variant]["provenance"] == stages["stage2"]["provenance"]
    assert "stages" not in results["variants"]["float"]


def test_a_config_is_resolved_once_however_many_marked_functions_it_passes(tmp_path, monkeypatch):
    """The command line resolves the user's config at its entry and every function below
    takes it as it is (summary builds the network several times); a marked library entry
    point handed a config as get_config() returns it resolves it itself, once."""
    calls = []
    real = recipe_presets.resolve

    def counted(config, model_fields=frozenset()):
        calls.append(config.recipe)
        return real(config, model_fields)

    monkeypatch.setattr(recipe_presets, "resolve", counted)
    config = quickstart.get_config()
    config.recipe = "reactnet"
    assert cli.run(config, mode="summary", workdir=str(tmp_path)) == 0
    assert calls == ["reactnet"]
    assert config.input_norm is None and networks.RESOLVED not in config  # the user's, as is
    model = networks.build_model(config, config.num_classes, "fbin")
    assert calls == ["reactnet", "reactnet"]
    assert (model.options.input_norm, model.options.activation) == ("shift", "rprelu")
    resolved = networks.resolved(config)
    assert networks.build_model(resolved, config.num_classes, "fbin") == model
    assert len(calls) == 3  # resolved() once; build_model took it as it was
