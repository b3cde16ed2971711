"""binflax.run_dir: one owner of a run's paths and of the rule that only process 0 writes."""

import json

import jax

from binflax.run_dir import RunDir


def test_every_path_of_the_layout(tmp_path):
    run = RunDir.of(tmp_path)
    assert RunDir.of(run) is run
    names = {
        run.results_json: "results.json",
        run.results_md: "results.md",
        run.results_png: "results.png",
        run.summary_json: "summary.json",
        run.metrics_json: "metrics.json",
        run.selection("plan", "hybrid"): "plan.json",
        run.selection("select", "hybrid2"): "select_hybrid2.json",
        run.selection("scores", "hybrid", ".png"): "scores.png",
        run.selection("plan", "hybrid.random0"): "plan_hybrid.random0.json",
    }
    for path, name in names.items():
        assert path == tmp_path / name
    fbin = run.variant("fbin")
    assert fbin.path == tmp_path / "fbin"
    assert fbin.evaluations_json == tmp_path / "fbin" / "evaluations.json"
    assert fbin.provenance_json == tmp_path / "fbin" / "provenance.json"
    assert fbin.tensorboard == tmp_path / "fbin" / "tensorboard"
    assert fbin.export_file == tmp_path / "fbin" / "model.npz"


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
