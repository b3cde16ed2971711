"""Every kind of mistake a user can make on the command line ends in one clear line.

Mistakes in the flags themselves (a misspelled field, a missing config file, a bad
``:arg``) and one bad config value run ``main.py`` as a user would, each in its own
process (all at once, to keep the suite quick). The mistakes found after the flags are
parsed take the same path through ``binflax.cli.run`` and run in-process. Each must exit
with status 1, print the single line ``binflax: ...`` (plus absl's hint for a bad flag)
naming what to change, and show no traceback.
"""

import importlib
import json
import subprocess

import pytest

from binflax import cli
from binflax.errors import UserError
from configs import quickstart, sketchanet_tuberlin
from tests import runner

QUICKSTART = "--config=configs/quickstart.py"
FLAG_MISTAKES = {
    "config value": ([QUICKSTART, "--config.hbn.score=log_ration"], "config.hbn.score"),
    "config field": ([QUICKSTART, "--config.batch_sz=3"], '"batch_size"'),
    "config file": (["--config=configs/nope.py"], "configs/nope.py"),
    "config argument": ([f"{QUICKSTART}:fast"], "unknown config argument 'fast'"),
    "flag value": ([QUICKSTART, "--config.num_epochs=many"], "num_epochs=many"),
}


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
            env=runner.env(),
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
