"""binflax.provenance: the commit, CPU and devices of each sitting, and the seconds summed
over sittings, against git, a hand-written /proc/cpuinfo and a resumed training run."""

import json
import platform
import subprocess

import jax
import pytest

from binflax import provenance, train
from binflax.run_dir import RunDir
from tests.test_train import small_config


def _git(repo, *args):
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def package_in(monkeypatch):
    """Points code_version at a ``binflax`` folder of the test's making."""

    def use(package):
        package.mkdir(parents=True)
        monkeypatch.setattr(provenance, "_PACKAGE", package.resolve())
        provenance.code_version.cache_clear()
        return package

    yield use
    provenance.code_version.cache_clear()


def test_the_commit_is_git_short_hash_and_dirty_with_any_change(tmp_path, package_in):
    package = package_in(tmp_path / "repo" / "binflax")
    repo = package.parent
    _git(repo, "init", "-q")
    (package / "m.py").write_text("x = 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    short = _git(repo, "rev-parse", "--short", "HEAD").strip()
    assert provenance.code_version() == short
    (package / "m.py").write_text("x = 2\n")
    assert provenance.code_version() == short  # taken once per process
    provenance.code_version.cache_clear()
    assert provenance.code_version() == short + "+dirty"
    _git(repo, "checkout", "-q", "--", ".")
    (repo / "new.py").write_text("")  # an untracked file git does not ignore: dirty too
    provenance.code_version.cache_clear()
    assert provenance.code_version() == short + "+dirty"


def test_outside_binflax_own_checkout_the_commit_is_unknown(tmp_path, package_in):
    package_in(tmp_path / "plain" / "binflax")  # no git at all
    assert provenance.code_version() == "unknown"
    repo = tmp_path / "project"
    package_in(repo / ".venv" / "site-packages" / "binflax")  # installed, inside a checkout
    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "first")
    provenance.code_version.cache_clear()
    assert provenance.code_version() == "unknown"


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse4_2 avx avx2 popcnt

processor\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
"""


def test_the_cpu_is_read_from_proc_cpuinfo_and_falls_back_to_platform(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CPUINFO", tmp_path / "cpuinfo")
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    assert provenance.cpu() == {
        "model": "AMD EPYC 7B13 64-Core Processor",
        "avx512f": False,
        "avx2": True,
    }
    (tmp_path / "cpuinfo").write_text(CPUINFO.replace("avx2", "avx2 avx512f"))
    assert provenance.cpu()["avx512f"] is True
    (tmp_path / "cpuinfo").unlink()
    assert provenance.cpu() == {
        "model": platform.processor() or "unknown",
        "avx512f": None,
        "avx2": None,
    }


def test_the_environment_names_jax_devices():
    env = provenance.environment()
    assert list(env) == list(provenance.ENVIRONMENT_KEYS)
    assert env["backend"] == jax.default_backend()
    assert env["device_kind"] == jax.devices()[0].device_kind
    assert env["device_count"] == jax.device_count()


def test_seconds_are_summed_over_sittings_each_counted_to_its_last_checkpoint(tmp_path):
    path = tmp_path / "provenance.json"
    first = provenance.Sittings(path, start_step=0)
    assert first.summary() is None and not path.exists()
    first.progress(100, 10.04)
    first.progress(200, 20.0)  # then killed before step 300's checkpoint
    second = provenance.Sittings(path, start_step=200)  # resumed from step 200
    second.progress(300, 5.26)
    saved = json.loads(path.read_text())
    assert saved == second.summary()
    assert saved["train_seconds"] == pytest.approx(20.0 + 5.3)
    steps = [(s["from_step"], s["to_step"], s["seconds"]) for s in saved["sittings"]]
    assert steps == [(0, 200, 20.0), (200, 300, 5.3)]
    assert {key: saved[key] for key in provenance.ENVIRONMENT_KEYS} == provenance.environment()
    rerun = provenance.Sittings(path, start_step=300)  # finished: trains no step
    assert rerun.summary() == saved and json.loads(path.read_text()) == saved


def test_steps_trained_before_sittings_were_recorded_leave_the_seconds_unknown(tmp_path):
    late = provenance.Sittings(tmp_path / "provenance.json", start_step=150)
    late.progress(300, 12.0)
    summary = late.summary()
    assert summary["train_seconds"] is None and summary["sittings"][0]["from_step"] == 150


def test_a_garbled_file_is_started_anew_and_leaves_the_seconds_unknown(tmp_path, capsys):
    path = tmp_path / "provenance.json"
    path.write_text('{"sittings": [{"from_step": 0, "to_')  # a write cut short
    resumed = provenance.Sittings(path, start_step=5)
    assert "does not read" in capsys.readouterr().out
    resumed.progress(8, 3.0)
    saved = json.loads(path.read_text())
    assert saved["train_seconds"] is None and len(saved["sittings"]) == 1


@pytest.mark.slow
def test_a_resumed_run_records_both_sittings_and_a_finished_one_none(tmp_path, monkeypatch):
    """Killed at step 7 (its last checkpoint at 5), resumed, rerun once finished."""
    run, config = RunDir.of(tmp_path), small_config(num_train_steps=8)  # checkpoints every 5
    real_step, calls = train.train_step, []

    def killed_at_step_7(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", killed_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, str(tmp_path))
    (killed,) = json.loads(run.provenance_json.read_text())["sittings"]
    assert (killed["from_step"], killed["to_step"]) == (0, 5) and killed["seconds"] > 0
    monkeypatch.setattr(train, "train_step", real_step)
    resumed = train.train_and_evaluate(config, str(tmp_path))
    assert resumed.provenance == json.loads(run.provenance_json.read_text())
    sittings = resumed.provenance["sittings"]
    assert sittings[0] == killed and (sittings[1]["from_step"], sittings[1]["to_step"]) == (5, 8)
    assert resumed.seconds == resumed.provenance["train_seconds"]
    assert resumed.seconds == pytest.approx(killed["seconds"] + sittings[1]["seconds"], abs=0.1)
    again = train.train_and_evaluate(config, str(tmp_path))
    assert again.provenance == resumed.provenance and again.seconds == resumed.seconds
    run.provenance_json.unlink()  # as a run trained before binflax recorded sittings
    old = train.train_and_evaluate(config, str(tmp_path))
    assert old.provenance is None and old.seconds is None
