"""benchmarks/inference.py --small: the whole-network benchmark end to end, in seconds.

No timing is asserted (the machine may be shared): only that every variant was exported,
run and measured, and that the predictions and the table come out right.
"""

import json
import os
import subprocess
import sys

from benchmarks import binary_layers, inference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_small_run_measures_every_variant():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.inference", "--small"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    result = json.loads(out)
    rows = {row["variant"]: row for row in result["rows"]}
    assert list(rows) == [
        "float (model.apply)", "float (exported)", "wbin", "hybrid1", "hybrid2", "fbin"
    ]  # fmt: skip
    assert all(row["ms"] > 0 and row["batch"] == 1 for row in rows.values())
    assert max(rows["float (model.apply)"]["speedup"], rows["float (exported)"]["speedup"]) == 1
    # Equivalent FLOPs: wbin as float, then the hybrids, then fbin.
    predicted = [rows[v]["predicted_speedup"] for v in ("wbin", "hybrid1", "hybrid2", "fbin")]
    assert predicted[0] == 1.0 and predicted == sorted(predicted)
    assert rows["hybrid1"]["float_inputs"] == ["conv4", "conv5"]
    assert rows["fbin"]["packed_links"] == 3

    def weights(row):  # the file without its programs, which are code
        return row["file_bytes"] - row["program_bytes"]

    assert 0 < rows["fbin"]["program_bytes"] < rows["fbin"]["file_bytes"]
    assert weights(rows["fbin"]) < weights(rows["float (exported)"]) / 10
    limit = result["binary_mac_limit"]  # this CPU's instruction set, not a fixed 8x
    assert limit["speedup"] == binary_layers.binary_mac_limit().speedup >= 8.0
    fbin = rows["fbin"]
    assert 1.0 < fbin["limit_speedup"] <= limit["speedup"] < fbin["predicted_speedup"]
    table = inference.markdown(result)
    assert (
        table.count("\n") == len(result["rows"]) + 1 and "| mini_sketchanet | fbin | 1 |" in table
    )
    assert f"{limit['isa']} limit ({limit['speedup']:.1f}x)" in table


def test_the_limit_follows_the_instruction_set(monkeypatch):
    def cpu(vendor, flags):
        return lambda: ("a CPU", vendor, set(flags))

    monkeypatch.setattr(binary_layers, "_cpuinfo", cpu("AuthenticAMD", ["avx2", "popcnt"]))
    assert binary_layers.binary_mac_limit().speedup == 8.0  # Zen 3: 128 / 16
    zen4 = ["avx2", "avx512f", "avx512_vpopcntdq"]
    monkeypatch.setattr(binary_layers, "_cpuinfo", cpu("AuthenticAMD", zen4))
    assert round(binary_layers.binary_mac_limit().speedup, 2) == 21.33  # (512 / 1.5) / 16
    monkeypatch.setattr(binary_layers, "_cpuinfo", cpu("GenuineIntel", zen4))
    assert binary_layers.binary_mac_limit().speedup == 16.0  # 512 / 32
