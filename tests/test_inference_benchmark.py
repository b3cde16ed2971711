"""benchmarks/inference.py --small: the whole-network benchmark end to end, in seconds.

No timing is asserted (the machine may be shared): only that every variant was exported,
run and measured, and that the predictions and the table come out right.
"""

import json
import os
import subprocess
import sys

from benchmarks import binary_layers, inference, output
from binflax import native, provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUTO_ROWS = ("float32", "auto")  # the float runs, and each binary variant's default
# MiniSketchANet at 16x16: kh * kw * C_in * C_out * output pixels, from the spec's shapes.
MINI_MACS = {
    "conv1": 5 * 5 * 1 * 48 * 16 * 16,
    "conv2": 3 * 3 * 48 * 64 * 8 * 8,
    "conv3": 3 * 3 * 64 * 64 * 8 * 8,
    "conv4": 4 * 4 * 64 * 128,
    "conv5": 128 * 128,
    "fc": 128 * 10,
}


def test_small_run_measures_every_variant(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.inference", "--small", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    result = json.loads(out)
    # --out: the same figures in a file named for this CPU, with their provenance
    (written,) = tmp_path.iterdir()
    record = json.loads(written.read_text())
    assert written.name == f"inference-{output.cpu_tag()}.json"
    assert record.pop("provenance")["cpu"]["tag"] == output.cpu_tag() and record == result
    # The default (auto) row of each variant; native and XLA's popcount beside it.
    rows = {row["variant"]: row for row in result["rows"] if row["arithmetic"] in AUTO_ROWS}
    assert list(rows) == [
        "float (model.apply)", "float (exported)", "wbin", "hybrid1", "hybrid2", "fbin", "fbin8"
    ]  # fmt: skip
    arithmetics = {(r["variant"], r["arithmetic"]) for r in result["rows"]}
    forced = ("native", "popcount") if native.available() else ("popcount",)
    assert {("fbin", "auto")} | {("fbin", a) for a in forced} <= arithmetics
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
    assert limit["speedup"] == binary_layers.binary_mac_limit().speedup >= 13.0
    fbin = rows["fbin"]
    assert 1.0 < fbin["limit_speedup"] <= limit["speedup"]
    assert fbin["limit_speedup"] < fbin["predicted_speedup"]  # the CPU's limit, under 58x
    profile, fbin8 = result["profiles"]  # the fbin and fbin8 networks, layer by layer
    assert (profile["variant"], fbin8["variant"]) == ("fbin", "fbin8")
    kinds = {r["layer"]: r["kind"] for r in fbin8["layers"]}
    assert kinds["conv1"] == "integer" and kinds["conv2"] == "xnor"
    assert fbin8["layers"][0]["auto"]["arithmetic"] in ("exact_float", "native_int8")
    assert [r["layer"] for r in profile["layers"]] == [
        "conv1", "conv2", "conv3", "conv4", "conv5", "fc"
    ]  # fmt: skip
    for r in profile["layers"]:
        assert all(r[a]["ms"] > 0 for a in forced) and r["macs"] == MINI_MACS[r["layer"]]
    # auto: the kernel on every XNOR layer, the dense conv4 and conv5 included.
    picks = {r["layer"]: r["auto"]["arithmetic"] for r in profile["layers"] if r["kind"] == "xnor"}
    kernel = "native" if native.available() else "popcount"
    assert picks == {"conv2": kernel, "conv3": kernel, "conv4": kernel, "conv5": kernel}
    table = inference.markdown(result)
    assert "| mini_sketchanet | fbin | auto | 1 |" in table
    assert f"| conv3 | xnor | 2 | {kernel} " in table
    assert f"{limit['isa']} limit ({limit['speedup']:.1f}x)" in table


def test_the_limit_follows_the_instruction_set(monkeypatch):
    def cpu(vendor, flags):
        return lambda: ("a CPU", vendor, set(flags))

    monkeypatch.setattr(provenance, "cpuinfo", cpu("AuthenticAMD", ["avx2", "popcnt"]))
    assert binary_layers.binary_mac_limit().speedup == 13.125  # Zen 3: (171 + 39) / 16
    zen4 = ["avx2", "avx512f", "avx512_vpopcntdq"]
    monkeypatch.setattr(provenance, "cpuinfo", cpu("AuthenticAMD", zen4))
    assert round(binary_layers.binary_mac_limit().speedup, 2) == 24.0  # (512/1.5 + 128/3) / 16
    monkeypatch.setattr(provenance, "cpuinfo", cpu("GenuineIntel", zen4))
    assert binary_layers.binary_mac_limit().speedup == 16.0  # 512 / 32
