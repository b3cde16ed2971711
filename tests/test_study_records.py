"""scripts/study_records.py: a study's records reach the repository, its checkpoints do not."""

import importlib.util
import pathlib

SCRIPT = pathlib.Path(__file__).parent.parent / "scripts" / "study_records.py"


def _script():
    spec = importlib.util.spec_from_file_location("study_records", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _touch(path: pathlib.Path, text: str = "{}") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_records_are_copied_and_checkpoints_left_behind(tmp_path):
    runs, dest = tmp_path / "runs", tmp_path / "docs" / "study"
    kept = [
        "study.log",
        "xnor_s2/results.json",
        "xnor_s2/results.md",
        "xnor_s2/select.json",
        "xnor_s2/plan_hybrid2.json",
        "xnor_s2/fbin/evaluations.json",
        "xnor_s2/fbin/provenance.json",
        "reactnet_s0/fbin/stage1/evaluations.json",
    ]
    left = [
        "xnor_s2/fbin/checkpoints/445/_CHECKPOINT_METADATA",
        "xnor_s2/fbin/checkpoints/445/state/manifest.ocdbt",
        "xnor_s2/fbin/best/445/state/_sharding.json",
        "xnor_s2/fbin/tensorboard/events.out.tfevents.1",
        "xnor_s2/fbin/model.npz",
        "xnor_s2/results.png",
    ]
    for name in kept + left:
        _touch(runs / name, name)
    assert _script().main([str(runs), str(dest)]) == 0
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == sorted(kept)
    assert (dest / "xnor_s2/fbin/evaluations.json").read_text() == "xnor_s2/fbin/evaluations.json"

    _touch(runs / "xnor_s2/fbin/evaluations.json", "later")  # a variant still training
    assert _script().main([str(runs), str(dest)]) == 0
    assert (dest / "xnor_s2/fbin/evaluations.json").read_text() == "later"


def test_a_missing_runs_directory_is_one_line(tmp_path, capsys):
    assert _script().main([str(tmp_path / "nowhere"), str(tmp_path / "dest")]) == 2
    assert "no runs directory" in capsys.readouterr().err
