"""The command line's modes and its handling of user errors (in-process via binflax.cli)."""

import importlib
import json
import os
import re

import pytest

from binflax import cli, config_check
from configs import quickstart
from tests import remote_fs

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")
EXPERIMENTS = sorted(
    name[:-3]
    for name in os.listdir(CONFIG_DIR)
    if name.endswith(".py") and name[:-3] not in ("default", "sketch_common", "imagenet_common")
)


def test_the_paper_configs_are_all_there():
    for name in (
        "alexnet",
        "resnet18",
        "sketchanet_tuberlin",
        "resnet18_tuberlin",
        "squeezenet_tuberlin",
        "sketchanet_sketchy",
        "resnet18_sketchy",
        "quickstart",
    ):
        assert name in EXPERIMENTS


# The paper's TU-Berlin and Sketchy configs are the ImageNet configs' networks on other
# data: every config passes the command line's checks below (its dataset's name and
# image shape against the builder's metadata included), so the twins' summaries (a
# full-size export each) are `exhaustive`.
DATASET_TWINS = (
    "resnet18_tuberlin",
    "squeezenet_tuberlin",
    "resnet18_sketchy",
    "sketchanet_sketchy",
)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.exhaustive if n in DATASET_TWINS else ())
        for n in EXPERIMENTS
    ],
)
def test_every_config_runs_summary_without_data(name, tmp_path, capsys):
    config = importlib.import_module(f"configs.{name}").get_config()
    config.data_dir = str(tmp_path / "no_data")
    config.manual_dir = str(tmp_path / "no_manual")
    assert cli.run(config, mode="summary", workdir=str(tmp_path)) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["layers"][0]["input"] == "float"
    assert set(summary["layers"][0]) >= {
        "name",
        "macs",
        "params",
        "input",
        "weight",
        "eq_flops",
        "memory_bytes",
    }
    assert summary["total"]["macs"] == sum(layer["macs"] for layer in summary["layers"])
    assert summary["layers"][-1]["name"] in capsys.readouterr().out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_config_passes_the_command_lines_checks(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    assert config_check.checked(config).model == config.model


def test_runlocal_shrinks_any_config():
    config = importlib.import_module("configs.alexnet").get_config("runlocal")
    assert config.num_train_steps == 4 and config.batch_size == 8
    with pytest.raises(ValueError, match="runlocal"):
        importlib.import_module("configs.alexnet").get_config("fast")


def test_missing_dataset_in_train_mode_says_where_to_put_it(tmp_path, capsys):
    config = importlib.import_module("configs.sketchanet_tuberlin").get_config("runlocal")
    config.data_dir = str(tmp_path / "tfds")
    config.manual_dir = str(tmp_path / "downloads")
    assert cli.run(config, mode="train", workdir=str(tmp_path / "run")) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("binflax: ") and "downloads" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "field, value",
    [
        ("hbn.method", "fastest"),
        ("model", "vgg16"),
        ("plan", "half"),
        ("batch_size", 0),
        ("hbn.budgets", (1.2, 0.9)),
        ("lr_schedule", "cosine"),
        ("kernel_projection", "center"),
        ("test_every_epochs", -1),
    ],
)
def test_a_bad_config_value_names_its_field(field, value, tmp_path, capsys):
    config = quickstart.get_config()
    parent = config
    *path, leaf = field.split(".")
    for part in path:
        parent = parent[part]
    parent[leaf] = value
    assert cli.run(config, mode="train", workdir=str(tmp_path)) == cli.EXIT_USER_ERROR
    assert f"config.{field}" in capsys.readouterr().err


def test_a_plan_naming_an_unknown_layer_is_refused_by_name(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    layers = {n: {"input": "float", "weight": "float"} for n in ("conv1", "conv9", "fc")}
    plan.write_text(json.dumps({"format": "binflax.plan", "version": 1, "layers": layers}))
    config = quickstart.get_config()
    config.plan = str(plan)
    assert cli.run(config, mode="summary", workdir=str(tmp_path)) == cli.EXIT_USER_ERROR
    assert "conv9" in capsys.readouterr().err


@pytest.mark.slow
def test_hbn_pipeline_in_a_bucket_writes_results_and_resumes(bucket, capsys):
    """hbn, its rerun, select, export, eval and summary in a ``gs://``-style workdir (the
    fake bucket of tests/remote_fs.py): results, plans, plots, checkpoints, TensorBoard
    and exports land in the bucket, a rerun retrains nothing, and nothing is written to a
    local folder named after the URI (the fixture checks)."""
    config = quickstart.get_config()
    config.num_train_steps = 12
    config.batch_size = 32
    config.eval_batch_size = 40
    config.log_every_steps = 6
    config.checkpoint_every_steps = 6
    config.hbn.baselines = ("float",)
    config.hbn.measure_batches = 2
    workdir = "testfs://bucket/run"
    assert cli.run(config, mode="hbn", workdir=workdir) == 0, capsys.readouterr().err
    files = remote_fs.files(bucket, "run")
    results = json.loads(files["results.json"].read_text())
    assert list(results["variants"]) == ["float", "hybrid", "fbin"]  # the paper's order
    for name, entry in results["variants"].items():
        assert set(entry) >= {"top1", "top5", "eq_flops", "macs", "memory_bytes", "plan"}
        assert {"final_top1", "best_test_top1_optimistic", "checkpoint_step"} <= set(entry)
        assert 0.0 <= entry["top1"] <= 100.0
        assert isinstance(entry["memory_bytes"], int)
        # the headline's test figure is kept with the run's evaluations, not only here
        chosen = json.loads(files[f"{name}/evaluations.json"].read_text())["chosen"]
        assert chosen["step"] == entry["checkpoint_step"]
        assert chosen["test"]["top1"] == entry["top1"]
    variants = results["variants"]
    assert variants["fbin"]["eq_flops"] <= variants["hybrid"]["eq_flops"]
    assert variants["hybrid"]["eq_flops"] <= 1.5 * variants["fbin"]["eq_flops"]
    assert variants["float"]["eq_flops"] == variants["float"]["macs"]
    assert "| hybrid |" in files["results.md"].read_text()

    capsys.readouterr()
    assert cli.run(config, mode="hbn", workdir=workdir) == 0
    out = capsys.readouterr().out
    assert "resuming from step 12" in out and "step 6/12" not in out
    again = json.loads(files["results.json"].read_text())["variants"]
    for name, entry in variants.items():
        assert again[name]["top1"] == entry["top1"] and again[name]["plan"] == entry["plan"]

    # select, export, eval and summary work on what hbn left behind
    files["plan.json"].unlink()
    assert cli.run(config, mode="select", workdir=workdir) == 0
    plan = json.loads(remote_fs.files(bucket, "run")["plan.json"].read_text())
    assert plan["layers"]["conv1"]["input"] == "float"
    capsys.readouterr()
    assert cli.run(config, mode="export", workdir=workdir) == 0
    out = capsys.readouterr().out
    assert out.count("top-1 agreement 100.0%") == 3
    assert "testfs://bucket/run/fbin/model.npz" in out
    assert cli.run(config, mode="eval", workdir=workdir) == 0
    out = capsys.readouterr().out
    for name in ("fbin", "hybrid", "float"):
        assert f"plan={variants[name]['plan']}: top1 {variants[name]['top1']:.4g}" in out
    assert cli.run(config, mode="summary", workdir=workdir) == 0

    files = remote_fs.files(bucket, "run")
    expected = {"results.json", "results.md", "results.png", "select.json", "plan.json"}
    expected |= {"scores.png", "frontier.png", "summary.json"}
    for name in ("float", "hybrid", "fbin"):
        expected |= {f"{name}/evaluations.json", f"{name}/model.npz"}
        step = variants[name]["checkpoint_step"]
        assert any(re.fullmatch(rf"{name}/checkpoints/12/.+", f) for f in files), name
        assert any(re.fullmatch(rf"{name}/best/{step}/.+", f) for f in files), name
        assert any(f.startswith(f"{name}/tensorboard/events.out.tfevents") for f in files)
    assert expected <= set(files), expected - set(files)
    # Orbax (TensorStore) reaches buckets with its own client: it was handed the URI,
    # not a local path (TensorBoard events went through epath, into the bucket above)
    assert bucket.tensorstore_uris
    for uri in bucket.tensorstore_uris:
        assert uri.startswith("testfs://bucket/run/"), uri


def test_per_variant_overrides_are_checked_by_name(tmp_path, capsys):
    config = quickstart.get_config()
    config.variants.float = {"learning_rate": 1e-3, "momentum": 0.9}
    assert cli.run(config, mode="summary", workdir=str(tmp_path)) == cli.EXIT_USER_ERROR
    assert "config.variants.float.momentum" in capsys.readouterr().err
    config.variants = {"hybrid2": {"batch_size": 32}}
    assert cli.run(config, mode="summary", workdir=str(tmp_path)) == cli.EXIT_USER_ERROR
    assert "config.variants.hybrid2" in capsys.readouterr().err
