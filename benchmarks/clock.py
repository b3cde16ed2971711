"""The clock a core runs at now, measured: the per-cycle ceilings become G MAC/s with it.

Why measured: a VM's ``/proc/cpuinfo`` gives the nominal clock (2.45 GHz on the project's
Zen 3), while the cores boost to ~3.1 GHz when idle and slow down under load, so a
ceiling from the nominal clock would flatter a kernel by a quarter. A chain of dependent
integer adds runs one add per cycle on every x86-64 core, so adds per second is the
clock. It needs a C++ compiler (as ``binflax.native`` does); without one the nominal
clock is returned and named as such.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from binflax.native import build

SOURCE = r"""
#include <chrono>
#include <cstdio>
int main() {
  const long iterations = 100000000;
  long x = 0;
  auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < iterations; ++i) {
    asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                 "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%.4f\n", 8.0 * iterations / s / 1e9);
}
"""


def measure_ghz(runs: int = 3) -> tuple[float, str]:
    """``(GHz, how)``: the fastest of ``runs`` dependent-add chains, else cpuinfo's clock."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source, binary = Path(tmp) / "clock.cc", Path(tmp) / "clock"
            source.write_text(SOURCE)
            subprocess.run(
                [build.compiler(), "-O2", "-o", str(binary), str(source)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            samples = [
                float(subprocess.run([str(binary)], capture_output=True, text=True).stdout)
                for _ in range(runs)
            ]
        return max(samples), "measured (dependent adds)"
    except (build.BuildError, OSError, subprocess.SubprocessError, ValueError):
        text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        found = re.search(r"cpu MHz\s*:\s*([\d.]+)", text)
        return (float(found.group(1)) / 1e3 if found else float("nan")), "nominal (cpuinfo)"
