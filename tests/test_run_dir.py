"""binflax.run_dir: one owner of a run's paths and of the rule that only process 0 writes."""

import json
import pathlib
import re

import jax

from binflax.run_dir import RunDir

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
