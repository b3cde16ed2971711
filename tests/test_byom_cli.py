"""A network of your own on the command line: ``--config.model=package.module:Class``.

The hbn pipeline, summary, eval and export run in-process through ``binflax.cli.run`` on
the quickstart config with tests/user_nets.py's GroupedNet (small, so that its few
compiles stay quick); a bad import path or field is one line naming the config field.
"""

import json

import jax.numpy as jnp
import pytest

from binflax import cli, export, networks
from configs import quickstart

GROUPED = "tests.user_nets:GroupedNet"
LAYERS = ["Conv_0", "Conv_1", "Conv_2", "Dense_0"]


@pytest.mark.slow
def test_hbn_pipeline_runs_on_a_user_network(tmp_path, capsys):
    config = quickstart.get_config()
    config.model = GROUPED
    config.num_train_steps = 6
    config.batch_size = 32
    config.eval_batch_size = 40
    config.log_every_steps = 3
    config.checkpoint_every_steps = 6
    config.hbn.baselines = ()
    config.hbn.measure_batches = 2
    workdir = str(tmp_path)
    assert cli.run(config, mode="hbn", workdir=workdir) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model"] == GROUPED and list(results["variants"]) == ["hybrid", "fbin"]
    fbin, hybrid = results["variants"]["fbin"], results["variants"]["hybrid"]
    assert fbin["float_inputs"] == ["Conv_0", "Dense_0"]
    assert fbin["eq_flops"] <= hybrid["eq_flops"] <= 1.5 * fbin["eq_flops"]
    assert list(json.loads((tmp_path / "plan.json").read_text())["layers"]) == LAYERS
    assert "BinarizedGroupedNet" in capsys.readouterr().out

    assert cli.run(config, mode="summary", workdir=workdir) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [layer["name"] for layer in summary["layers"]] == LAYERS
    measured = summary["export"]
    assert measured["compression"] == measured["float32_bytes"] / measured["weights_bytes"]
    # (a network this small is smaller as a float32 checkpoint: ~300 bytes per npz member)
    assert measured["weights_bytes"] > measured["predicted_bytes"] > 0
    assert cli.run(config, mode="eval", workdir=workdir) == 0
    capsys.readouterr()
    # the export of a network of your own: a self-contained file per variant, its size,
    # its agreement with the float model and its latency
    assert cli.run(config, mode="export", workdir=workdir) == 0
    logged = [line for line in capsys.readouterr().out.splitlines() if "[export]" in line]
    assert len(logged) == 2 and all("MiB" in line and "batch 1:" in line for line in logged)
    for variant in ("hybrid", "fbin"):
        exported = export.load(tmp_path / variant / "model.npz")
        assert exported.header["network"] == "BinarizedGroupedNet"
        assert [info.name for info in exported.layers] == LAYERS


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "tests.user_nets:Nope", "nothing named 'Nope'"),
        ("model", "tests.no_such_module:VGG", "cannot import 'tests.no_such_module'"),
        ("model", "tests.user_nets", "neither a registered model"),
        ("model", "tests.user_nets:Sequence", "not a flax.linen Module class"),
        ("model", "tests.user_nets:PreActBlock", "PreActBlock has no num_classes field"),
        ("model_kwargs", {"width": 3}, "config.model_kwargs.width is not a field of VGG"),
        ("input_norm", "layernorm", "config.input_norm='layernorm'"),
    ],
)
def test_a_bad_user_model_is_one_line_naming_the_field(field, value, message, tmp_path, capsys):
    config = quickstart.get_config()
    config.model = "tests.user_nets:VGG"
    config[field] = value
    assert cli.run(config, mode="summary", workdir=str(tmp_path)) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"binflax: config.{field}") and message in err, err
    assert len(err.splitlines()) == 1


def test_build_model_passes_the_recipe_to_a_user_network():
    """num_classes, model_kwargs, the variant's dropout_rate (when the class has one),
    bfloat16 compute under half_precision, and the config's input shape."""
    config = quickstart.get_config()
    config.model = "tests.user_nets:VGG"
    config.model_kwargs = {"hidden": 12}
    config.dropout_rate = 0.25
    config.half_precision = True
    model = networks.build_model(config, num_classes=7, plan="wbin")
    assert (model.model.num_classes, model.model.hidden, model.model.dropout_rate) == (7, 12, 0.25)
    assert model.options.dtype == jnp.bfloat16 and model.default_input_shape == (16, 16, 1)
    assert model.plan.name == "wbin" and model.plan.names[-1] == "Dense_1"
