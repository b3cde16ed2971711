"""binflax.run_dir: one owner of a run's paths and of the rule that only process 0 writes."""

import json
import pathlib
import re

import jax
import pytest

from binflax.checkpointing import CheckpointError
from binflax.run_dir import RunDir, TrainedRun

CLI_DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def documented_names() -> set[str]:
    """The file and folder names docs/cli.md's "Modes and what they write" gives a run
    (folders with their trailing ``/``): what a user reads, and looks for on disk."""
    section = CLI_DOC.read_text().split("## Modes and what they write")[1].split("\n## ")[0]
    return set(re.findall(r"`([\w.]+/?)`", section))


def test_every_path_is_one_docs_cli_md_names_where_it_says(tmp_path):
    run = RunDir.of(tmp_path)
    assert RunDir.of(run) is run
    documented = documented_names()
    # one budget: the hybrid's selection files; several: hybrid1's; a control's plan
    selection = [
        run.selection(kind, "hybrid", suffix)
        for kind, suffix in (("select", ".json"), ("plan", ".json"), ("scores", ".png"),
                             ("frontier", ".png"))
    ] + [run.selection("select", "hybrid1"), run.selection("plan", "hybrid1"),
         run.selection("plan", "hybrid1.random0")]  # fmt: skip
    in_workdir = [run.results_json, run.results_md, run.results_png, run.summary_json]
    for path in in_workdir + selection:
        assert path.parent == tmp_path and path.name in documented, path
    variant = run.variant("hybrid1")
    assert variant.path.parent == tmp_path and f"{variant.path.name}/" in documented
    for path in (
        variant.evaluations_json,
        variant.metrics_json,
        variant.provenance_json,
        variant.export_file,
    ):
        assert path.parent == variant.path and path.name in documented, path
    for folder in (variant.tensorboard, variant.first_stage.path):
        assert folder.parent == variant.path and f"{folder.name}/" in documented, folder


def test_only_the_main_process_writes(tmp_path, monkeypatch):
    run = RunDir.of(tmp_path / "new")
    written = []
    run.write_json(run.results_json, {"top1": 1.0})
    run.write(run.selection("plan", "hybrid"), lambda path: written.append(path))
    assert json.loads(run.results_json.read_text()) == {"top1": 1.0}
    assert written == [run.selection("plan", "hybrid")]
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    run.write_json(run.summary_json, {})
    run.write(run.results_png, lambda path: written.append(path))
    assert not run.summary_json.exists() and len(written) == 1


def trained_here(folder: pathlib.Path) -> None:
    """A folder as training leaves it, as far as finding it goes (docs/cli.md)."""
    (folder / "checkpoints" / "6").mkdir(parents=True)


def test_an_hbn_workdir_is_read_from_its_layout_not_from_a_config(tmp_path):
    """Every variant with checkpoints of its own is found, hybrids and controls with the
    plan their selection wrote, in the paper's order; a folder that names no variant, a
    variant not trained (no checkpoints) and a control's plan without a run are not."""
    for name in ("fbin", "hybrid2", "hybrid1.random0", "float", "hybrid1", "hybrid2.cost_only"):
        trained_here(tmp_path / name)
    for name in ("hybrid1", "hybrid2", "hybrid1.random0", "hybrid2.cost_only", "hybrid1.random1"):
        (tmp_path / f"plan_{name}.json").write_text("{}")
    (tmp_path / "wbin").mkdir()  # started, never checkpointed
    trained_here(tmp_path / "notes")  # the user's
    found = RunDir.of(tmp_path).trained_runs("fbin")
    names = ["float", "hybrid1", "hybrid1.random0", "hybrid2", "hybrid2.cost_only", "fbin"]
    assert [t.variant for t in found] == names
    assert [t.run.path for t in found] == [tmp_path / name for name in names]
    plans = [str(tmp_path / f"plan_{name}.json") for name in names[1:-1]]
    assert [t.plan for t in found] == ["float", *plans, "fbin"]


def test_a_train_workdir_is_one_run_of_the_plan_it_is_given(tmp_path):
    trained_here(tmp_path)
    trained_here(tmp_path / "hybrid")  # checkpoints of its own make it a train workdir
    assert RunDir.of(tmp_path).trained_runs("wbin") == [
        TrainedRun(RunDir(tmp_path), "wbin", "wbin")
    ]
    plan = str(tmp_path / "my_plan.json")
    assert RunDir.of(tmp_path).trained_runs(plan) == [TrainedRun(RunDir(tmp_path), "hybrid", plan)]


def test_a_workdir_without_a_trained_variant_or_a_trained_hybrid_without_its_plan_says_so(
    tmp_path,
):
    (tmp_path / "fbin").mkdir()
    with pytest.raises(CheckpointError, match="no trained checkpoints under"):
        RunDir.of(tmp_path).trained_runs("fbin")
    with pytest.raises(CheckpointError, match="no trained checkpoints under"):
        RunDir.of(tmp_path / "absent").trained_runs("fbin")
    trained_here(tmp_path / "hybrid")
    with pytest.raises(CheckpointError, match=r"its plan .*plan\.json is missing"):
        RunDir.of(tmp_path).trained_runs("fbin")
    (tmp_path / "plan.json").write_text("{}")
    assert [t.variant for t in RunDir.of(tmp_path).trained_runs("fbin")] == ["hybrid"]
