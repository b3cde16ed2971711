"""Every benchmark takes ``--out`` and writes its JSON, with the machine and the code beside
the figures, where docs/benchmarks.md cites it (benchmarks/output.py).

The measurements are stood in for (each benchmark's ``run``): what is checked is the
option, the file's name and that it reads back; tests/test_inference_benchmark.py writes a
real run's file.
"""

import argparse
import importlib
import json

import pytest

from benchmarks import output

BENCHMARKS = (
    "accelerator",
    "binary_layers",
    "export_sizes",
    "inference",
    "input_pipeline",
    "native_kernel",
    "select_pass",
    "train_step",
)
FIGURES = {"rows": [{"ms": 1.5, "speedup": 2.0}], "exports": [], "layers": [], "targets": []}


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_writes_its_json_with_provenance(name, tmp_path, monkeypatch, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    monkeypatch.setattr(module, "run", lambda *args, **kwargs: dict(FIGURES))
    module.main(["--out", str(tmp_path)])
    written = tmp_path / f"{name}-{output.cpu_tag()}.json"
    assert [p.name for p in tmp_path.iterdir()] == [written.name]
    record = json.loads(written.read_text())
    assert record["benchmark"] == name and record["rows"] == FIGURES["rows"]
    machine = record["provenance"]
    assert {"cpu", "jax", "jaxlib", "commit", "date", "device_kind"} <= set(machine)
    assert {"model", "simd", "cores", "tag"} <= set(machine["cpu"])
    assert machine["cpu"]["tag"] == output.cpu_tag()
    out = capsys.readouterr()
    assert str(written) in out.err and str(written) not in out.out  # stdout stays the JSON


def test_a_json_path_is_written_as_given_and_no_option_writes_nothing(tmp_path, monkeypatch):
    from benchmarks import select_pass

    monkeypatch.setattr(select_pass, "run", lambda args: {"ratio": 0.7})
    select_pass.main(["--out", str(tmp_path / "runs" / "idle.json")])
    assert json.loads((tmp_path / "runs" / "idle.json").read_text())["ratio"] == 0.7
    monkeypatch.chdir(tmp_path / "runs")
    select_pass.main([])
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["idle.json"]


def test_out_without_a_folder_is_the_repositorys_results_folder():
    parser = argparse.ArgumentParser()
    output.add_out_option(parser)
    assert parser.parse_args(["--out"]).out == str(output.RESULTS)
    assert output.RESULTS.parent.name == "benchmarks" and output.RESULTS.name == "results"
    assert parser.parse_args([]).out is None


def test_the_cpu_tag_names_the_model_and_its_widest_vector_extension():
    assert output.cpu_tag("AMD EPYC", {"avx2"}) == "amd-epyc-avx2"
    assert output.cpu_tag("AMD EPYC 9B14", {"avx2", "avx512f"}) == "amd-epyc-9b14-avx512"
    xeon = "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert output.cpu_tag(xeon, {"avx2"}) == "intel-xeon-avx2"
