"""Every kind of mistake a user can make on the command line ends in one clear line.

Mistakes in the flags themselves (a misspelled field, a missing config file, a bad
``:arg``) and one bad config value run ``main.py`` as a user would, each in its own
process (all at once, to keep the suite quick). The mistakes found after the flags are
parsed take the same path through ``binflax.cli.run`` and run in-process. Each must exit
with status 1, print the single line ``binflax: ...`` (plus absl's hint for a bad flag)
naming what to change, and show no traceback.

The line must be all a user sees on stderr on any CPU. TensorFlow announces itself at
start-up (its CPU-feature notice on every x86 CPU, oneDNN's notice on AVX-512 ones), so
the tests run with TensorFlow's variables as a user has them (unset: binflax quiets it),
and the command-line mistakes also run with ``TF_ENABLE_ONEDNN_OPTS=1``, which makes
TensorFlow print oneDNN's notice on an AVX2 CPU too: a digits config never loads
TensorFlow, so it still prints nothing.
"""

import importlib
import json
import subprocess
import sys

import pytest

from binflax import cli
from binflax.errors import UserError
from configs import fashion_mnist, quickstart, sketchanet_tuberlin
from tests import runner

QUICKSTART = "--config=configs/quickstart.py"
FLAG_MISTAKES = {
    "config value": ([QUICKSTART, "--config.hbn.score=log_ration"], "config.hbn.score"),
    "config field": ([QUICKSTART, "--config.batch_sz=3"], '"batch_size"'),
    "config file": (["--config=configs/nope.py"], "configs/nope.py"),
    "config argument": ([f"{QUICKSTART}:fast"], "unknown config argument 'fast'"),
    "flag value": ([QUICKSTART, "--config.num_epochs=many"], "num_epochs=many"),
}


def _noisy_tensorflow_env() -> dict:
    """The environment of a user on an AVX-512 CPU, on any CPU (see the module docstring)."""
    return {**runner.env(), "TF_ENABLE_ONEDNN_OPTS": "1"}


def assert_one_line(err: str, expected: str) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert lines[0].startswith("binflax: ") and expected in lines[0], err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Pass --helpshort")), err


def test_mistakes_in_the_command_line_are_one_line(tmp_path):
    processes = {
        name: subprocess.Popen(
            runner.main_command(*args, f"--workdir={tmp_path}"),
            cwd=runner.ROOT,
            env=_noisy_tensorflow_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, _) in FLAG_MISTAKES.items()
    }
    for name, (_, expected) in FLAG_MISTAKES.items():
        out, err = processes[name].communicate(timeout=300)
        assert processes[name].returncode == 1, (name, out[-2000:], err[-2000:])
        assert "Traceback" not in out, name
        assert_one_line(err, expected)


def test_a_missing_tfds_dataset_is_one_line_although_tensorflow_loads(tmp_path):
    """The TFDS path imports TensorFlow: binflax's own environment keeps it quiet."""
    result = runner.run_main(
        "--config=configs/sketchanet_tuberlin.py:runlocal",
        f"--config.data_dir={tmp_path / 'tfds'}",
        f"--config.manual_dir={tmp_path / 'dl'}",
        f"--workdir={tmp_path / 'run'}",
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert_one_line(result.stderr, str(tmp_path / "dl"))


def test_tensorflow_is_quiet_but_a_users_own_setting_is_kept():
    code = (
        "import os; from binflax.data import common; common.tensorflow(); "
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    )
    quiet = subprocess.run(
        [sys.executable, "-c", code], env=runner.env(), capture_output=True, text=True
    )
    # JAX, imported first, sets its own default level of 1 (INFO lines off), which stays
    assert quiet.stdout.split() == ["1", "0"] and quiet.stderr == "", quiet.stderr
    own = subprocess.run(
        [sys.executable, "-c", code], env=_noisy_tensorflow_env(), capture_output=True, text=True
    )
    assert own.stdout.split() == ["1", "1"]
    assert "oneDNN custom operations are on" in own.stderr  # what the quiet default hides


@pytest.mark.parametrize(
    "name", ["mode", "plan", "dataset", "batch over data", "nothing trained", "batch over devices"]
)
def test_mistakes_found_after_parsing_are_one_line(name, tmp_path, capsys, monkeypatch):
    config = quickstart.get_config()
    workdir = tmp_path / "run"
    mode = "train"
    if name == "mode":
        mode, expected = "fit", "unknown mode 'fit'"
    elif name == "plan":
        plan = tmp_path / "plan.json"
        layers = {n: {"input": "float", "weight": "float"} for n in ("conv1", "conv9", "fc")}
        plan.write_text(json.dumps({"format": "binflax.plan", "version": 1, "layers": layers}))
        config.plan, mode, expected = str(plan), "summary", "conv9"
    elif name == "dataset":
        config = sketchanet_tuberlin.get_config("runlocal")
        config.update(data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "dl"))
        expected = str(tmp_path / "dl")
    elif name == "batch over data":
        config.batch_size, expected = 4096, "config.batch_size=4096 is larger than the"
    elif name == "nothing trained":
        mode, workdir = "eval", tmp_path
        expected = f"no trained checkpoints under {tmp_path}"
    else:  # a global batch that 7 devices cannot share
        monkeypatch.setattr("binflax.parallel.make_mesh", lambda: FakeMesh(7))
        config.batch_size, expected = 64, "config.batch_size=64 is not divisible by the 7"
    capsys.readouterr()
    assert cli.run(config, mode=mode, workdir=str(workdir)) == cli.EXIT_USER_ERROR
    assert_one_line(capsys.readouterr().err, expected)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            {"dataset": "fashion_mnsit"},
            "config.dataset='fashion_mnsit' is neither digits, folder:PATH, idx:DIR nor a "
            "TFDS dataset; did you mean fashion_mnist?",
        ),
        ({"dataset": "cifar10"}, "config.channels=1 but cifar10's images have 3 channels"),
        ({"num_classes": 7}, "config.num_classes=7 but fashion_mnist has 10 classes"),
    ],
)
def test_a_dataset_unlike_its_config_is_refused_without_data(overrides, expected, tmp_path, capsys):
    """Even ``summary``, which reads no data, checks the name, channels and classes
    against TFDS's builder, and nothing is downloaded or written."""
    config = fashion_mnist.get_config()
    config.update(data_dir=str(tmp_path / "tfds"), **overrides)
    capsys.readouterr()
    assert cli.run(config, mode="summary", workdir=str(tmp_path / "run")) == cli.EXIT_USER_ERROR
    assert_one_line(capsys.readouterr().err, expected)
    assert not (tmp_path / "tfds").exists() and not (tmp_path / "run").exists()


class FakeMesh:
    def __init__(self, size):
        self.size = size


@pytest.mark.parametrize(
    "module, name",
    [
        ("binflax.errors", "ConfigError"),
        ("binflax.plan", "PlanError"),
        ("binflax.data", "DatasetError"),
        ("binflax.export", "ExportError"),
        ("binflax.checkpointing", "CheckpointError"),
    ],
)
def test_every_user_fixable_error_is_a_user_error(module, name):
    assert issubclass(getattr(importlib.import_module(module), name), UserError)
