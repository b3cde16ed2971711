"""The hbn pipeline's mixed-precision study (config.hbn.precisions), end to end."""

import json

import pytest

from binflax import cli, results
from binflax.plan import Plan
from configs import quickstart

BITS = {"binary": 1, "int2": 2, "int4": 4, "int8": 8, "float": 32}


@pytest.mark.slow
def test_hbn_with_precisions_trains_mixed_hybrids_and_their_controls(tmp_path, capsys):
    """fbin, the sensitivity pass, a bit-width per layer at the budget, its uniform
    control and the error score's pick at the same budget, trained, tabled, evaluated
    and exported."""
    config = quickstart.get_config()
    config.update(num_train_steps=6, batch_size=32, eval_batch_size=40)
    config.update(log_every_steps=3, checkpoint_every_steps=3, num_eval_batches=1)
    config.hbn.update(budgets=(3.0,), baselines=(), measure_batches=1)
    config.hbn.update(precisions=(1, 2, 4, 8, 32), sensitivity="fisher", hutchinson_samples=1)
    # two controls train here (the binary/float and random ones are built and checked in
    # test_mixed; each trained control costs the pipeline ~15 s of CI's cores)
    config.hbn.precision_controls = ("uniform", "error")
    assert cli.run(config, mode="hbn", workdir=str(tmp_path)) == 0, capsys.readouterr().err
    run = json.loads((tmp_path / "results.json").read_text())
    controls = ["hybrid.uniform", "hybrid.error"]
    assert list(run["variants"]) == ["hybrid", *controls, "fbin"]
    assert run["version"] == results.VERSION == 4
    assert run["selection"]["precisions"] == [1, 2, 4, 8, 32]
    fbin = run["variants"]["fbin"]["eq_flops"]
    report = json.loads((tmp_path / "select.json").read_text())
    assert report["hybrid"]["score"] == "fisher" and set(report["controls"]) == {
        c.removeprefix("hybrid.") for c in controls
    }
    assert set(report["measurement"]["scores"]) == {"error", "fisher", "hessian"}
    for name in ["hybrid", *controls]:
        plan = Plan.load(tmp_path / ("plan.json" if name == "hybrid" else f"plan_{name}.json"))
        entry = run["variants"][name]
        assert entry["eq_flops"] <= 3.0 * fbin * (1 + 1e-9), name
        pick = report["hybrid"] if name == "hybrid" else report["controls"][name[7:]]
        assert entry["eq_flops"] == pytest.approx(pick["eq_flops"], rel=1e-9)
        assert {n: b for n, b in pick["bits"].items()} == {
            layer.name: layer.input_bits for layer in plan if layer.name in pick["bits"]
        }
        if plan.mixed:
            assert entry["input_bits"] == {layer.name: layer.input_bits for layer in plan}
        assert entry["bops"] > run["variants"]["fbin"]["bops"] or entry["eq_flops"] == fbin
    assert len(set(report["controls"]["uniform"]["bits"].values())) == 1
    table = (tmp_path / "results.md").read_text()
    assert "Mixed precision:" in table and "| hybrid.uniform |" in table
    assert cli.run(config, mode="eval", workdir=str(tmp_path)) == 0  # reads the plans back
    # every trained variant, its k-bit and 8-bit layers included, exports and agrees
    capsys.readouterr()
    assert cli.run(config, mode="export", workdir=str(tmp_path)) == 0
    exported = [line for line in capsys.readouterr().out.splitlines() if "[export]" in line]
    trained = [n for n in run["variants"] if (tmp_path / n / "evaluations.json").exists()]
    assert len(exported) == len(trained) >= 3  # a control equal to the hybrid: not retrained
    assert all("top-1 agreement 100.0%" in line for line in exported), exported
    for name in trained:
        assert (tmp_path / name / "model.npz").exists(), name

    config.hbn.precision_controls = ("cost_only",)
    assert cli.run(config, mode="select", workdir=str(tmp_path)) == cli.EXIT_USER_ERROR
    assert "config.hbn.precision_controls has 'cost_only'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("precisions", (1, 3, 32), "config.hbn.precisions=(1, 3, 32) must be two or more"),
        ("precisions", (32,), "must be two or more distinct input bit-widths"),
        ("sensitivity", "taylor", "config.hbn.sensitivity"),
        ("hutchinson_samples", 0, "config.hbn.hutchinson_samples=0"),
    ],
)
def test_a_bad_precision_field_is_named(field, value, message, tmp_path, capsys):
    config = quickstart.get_config()
    config.hbn[field] = value
    assert cli.run(config, mode="summary", workdir=str(tmp_path)) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
