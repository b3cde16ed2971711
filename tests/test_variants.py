"""binflax.variants: variant names, the paper's row order, per-variant recipes."""

import pytest

from binflax import cli, variants
from configs import quickstart


def test_one_budget_is_hybrid_several_are_numbered_in_order():
    assert variants.hybrid_names((1.5,)) == ("hybrid",)
    assert variants.hybrid_names((3.0, 2.27, 1.93)) == ("hybrid1", "hybrid2", "hybrid3")
    trained = ["fbin", "hybrid2", "wbin", "hybrid1", "float"]
    assert variants.report_order(trained) == (
        "float",
        "wbin",
        "hybrid1",
        "hybrid2",
        "fbin",
    )


@pytest.mark.parametrize(
    "name, kind, hybrid, control, draw, recipe",
    [
        ("float", "baseline", None, None, None, "float"),
        ("fbin", "baseline", None, None, None, "fbin"),
        ("hybrid", "hybrid", "hybrid", None, None, "hybrid"),
        ("hybrid12", "hybrid", "hybrid12", None, None, "hybrid"),
        ("hybrid.random0", "control", "hybrid", "random", 0, "hybrid"),
        ("hybrid2.random13", "control", "hybrid2", "random", 13, "hybrid"),
        ("hybrid1.cost_only", "control", "hybrid1", "cost_only", None, "hybrid"),
        ("hybrid3.error_only", "control", "hybrid3", "error_only", None, "hybrid"),
    ],
)
def test_a_name_parses_into_its_parts_and_formats_back(name, kind, hybrid, control, draw, recipe):
    variant = variants.parse(name)
    assert (variant.kind, variant.hybrid, variant.control, variant.draw) == (
        kind,
        hybrid,
        control,
        draw,
    )
    assert variant.recipe_key == recipe and variant.name == name
    if kind == "control":
        assert variants.parse(hybrid).control_of(name.split(".")[1]) == variant


@pytest.mark.parametrize(
    "name",
    ["", "hybrid0", "hybrid.random", "hybrid.metric", "fbin.random0", "hybrid.stage1", "notes"],
)
def test_a_name_that_is_no_variant_is_refused(name):
    with pytest.raises(ValueError, match="names no variant"):
        variants.parse(name)


def test_only_a_hybrid_has_controls():
    with pytest.raises(ValueError, match="fbin is not a hybrid"):
        variants.parse("fbin").control_of("random0")
    with pytest.raises(ValueError, match="is not a hybrid"):
        variants.parse("hybrid.random0").control_of("cost_only")


def test_hybrids_are_ordered_by_number_not_by_spelling():
    trained = ["hybrid10", "fbin", "hybrid2", "hybrid10.random0", "hybrid1", "wbin"]
    assert variants.report_order(trained) == (
        "wbin",
        "hybrid1",
        "hybrid2",
        "hybrid10",
        "hybrid10.random0",
        "fbin",
    )


def test_overrides_apply_to_their_variant_only_and_leave_the_config_alone():
    config = quickstart.get_config()
    config.variants.float = {"learning_rate": 5e-3, "weight_decay": 5e-4}
    config.variants.hybrid = {"dropout_rate": 0.2}
    float_config = variants.variant_config(config, "float")
    assert (float_config.learning_rate, float_config.weight_decay) == (5e-3, 5e-4)
    assert variants.variant_config(config, "hybrid2").dropout_rate == 0.2
    fbin = variants.variant_config(config, "fbin")
    assert (fbin.learning_rate, fbin.dropout_rate) == (config.learning_rate, config.dropout_rate)
    assert config.learning_rate == 2e-3 and config.dropout_rate == 0.0


def test_train_mode_trains_with_the_plans_own_recipe(tmp_path, capsys):
    config = quickstart.get_config()
    config.update(mode="train", plan="float", num_train_steps=2, eval_batch_size=40)
    config.num_eval_batches = 1
    config.variants.float = {"batch_size": 32}
    assert cli.run(config, mode="train", workdir=str(tmp_path)) == 0
    assert "global batch 32" in capsys.readouterr().out
