"""binflax.variants: variant names, the paper's row order, per-variant recipes."""

from binflax import cli, variants
from configs import quickstart


def test_one_budget_is_hybrid_several_are_numbered_in_order():
    assert variants.hybrid_names((1.5,)) == ("hybrid",)
    assert variants.hybrid_names((3.0, 2.27, 1.93)) == ("hybrid1", "hybrid2", "hybrid3")
    trained = ["fbin", "hybrid2", "wbin", "hybrid1", "float"]
    assert variants.report_order((1.43, 1.14), trained) == (
        "float",
        "wbin",
        "hybrid1",
        "hybrid2",
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
