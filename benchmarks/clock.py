"""The clock a core runs at now, measured: the per-cycle ceilings become G MAC/s with it.

Why measured: a VM's ``/proc/cpuinfo`` gives the nominal clock (2.45 GHz on the project's
Zen 3), while the cores boost to ~3.1 GHz when idle and slow down under load, so a
ceiling from the nominal clock would flatter a kernel by a quarter. It needs a C++
compiler (as ``binflax.native`` does); without one the nominal clock is returned and
named as such.

Three figures, from one small program run ``runs`` times:

- **the add chain** (trusted): dependent ``add %reg, %reg`` instructions, one cycle each
  on every x86-64 core, with an addend the compiler cannot know (it comes from
  ``argc``). Not ``add $1, %reg``: Intel's Golden Cove-class cores fold chains of
  immediate adds in the renamer, so such a chain ran several adds per cycle there (18.4
  "GHz" on a 2-core AVX-512 Xeon); a register operand is not folded. It measures the
  clock the core runs at under the load of the moment, boost included, which is what a
  ceiling needs.
- **the multiply chain**: dependent ``imul %reg, %reg``, 3 cycles each on Intel and AMD
  cores since Sandy Bridge and Zen, so 3 x multiplies per second is the clock again by
  another unit (a cross-check only; no renamer folds a multiply).
- **the TSC rate**: ``rdtsc`` ticks over the same timed interval. The time-stamp counter
  runs at a constant rate, usually the nominal clock, whatever the core does, so it
  bounds what is plausible but is not the running clock (it misses boost and throttling).

:func:`choose_clock` takes the add chain unless it is implausible: more than
:data:`PLAUSIBLE` (1.5x) the TSC rate, else the nominal ``cpu MHz`` of
``/proc/cpuinfo`` (no x86-64 core boosts by half again over its base clock in a
VM-sized part, and a folded chain gives several times it). An implausible add chain is
replaced by the multiply chain where that one is plausible, else by the TSC rate; the
``how`` string says which, and why.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from pathlib import Path

from binflax.native import build

# A measured clock above this multiple of the TSC (or nominal) rate is not believed.
PLAUSIBLE = 1.5

SOURCE = r"""
#include <chrono>
#include <cstdio>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif
int main(int argc, char**) {
  const long iterations = 50000000;
  long step = argc;  // 1, unknown to the compiler: a register operand, never an immediate
  long x = 0;
  auto start = std::chrono::steady_clock::now();
#if defined(__x86_64__)
  unsigned long long tsc_start = __rdtsc();
#endif
  for (long i = 0; i < iterations; ++i) {
    asm volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                 "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0" : "+r"(x) : "r"(step));
  }
  auto middle = std::chrono::steady_clock::now();
  for (long i = 0; i < iterations / 4; ++i) {
    asm volatile("imul %1, %0\n\timul %1, %0\n\timul %1, %0\n\timul %1, %0\n\t"
                 "imul %1, %0\n\timul %1, %0\n\timul %1, %0\n\timul %1, %0" : "+r"(x) : "r"(step));
  }
  auto stop = std::chrono::steady_clock::now();
  double tsc_ghz = 0.0 / 0.0;
#if defined(__x86_64__)
  tsc_ghz = (__rdtsc() - tsc_start) / std::chrono::duration<double>(stop - start).count() / 1e9;
#endif
  double adds = std::chrono::duration<double>(middle - start).count();
  double muls = std::chrono::duration<double>(stop - middle).count();
  std::printf("%.4f %.4f %.4f %ld\n", 8.0 * iterations / adds / 1e9,
              3.0 * 8.0 * (iterations / 4) / muls / 1e9, tsc_ghz, x & 1);
}
"""


def nominal_ghz() -> float:
    """``cpu MHz`` of ``/proc/cpuinfo`` in GHz (NaN where there is none)."""
    path = Path("/proc/cpuinfo")
    found = re.search(r"cpu MHz\s*:\s*([\d.]+)", path.read_text() if path.exists() else "")
    return float(found.group(1)) / 1e3 if found else float("nan")


def plausible(ghz: float, tsc_ghz: float, nominal: float) -> bool:
    """Whether a measured clock is believable: positive and at most :data:`PLAUSIBLE` times
    the TSC rate (else the nominal clock; with neither, any positive figure)."""
    reference = tsc_ghz if tsc_ghz > 0 else nominal
    if not ghz > 0:
        return False
    return not reference > 0 or ghz <= PLAUSIBLE * reference


def choose_clock(add_ghz: float, imul_ghz: float, tsc_ghz: float, nominal: float) -> tuple:
    """``(GHz, how)`` from the three measurements and the nominal clock (module docstring)."""
    if plausible(add_ghz, tsc_ghz, nominal):
        return add_ghz, "measured (dependent register adds)"
    why = f"the add chain gave an implausible {add_ghz:.2f} GHz against TSC {tsc_ghz:.2f} GHz"
    if plausible(imul_ghz, tsc_ghz, nominal):
        return imul_ghz, f"measured (dependent multiplies; {why})"
    if tsc_ghz > 0:
        return tsc_ghz, f"TSC rate ({why}, multiplies {imul_ghz:.2f} GHz)"
    return nominal, f"nominal (cpuinfo; {why})"


def measure(runs: int = 3) -> dict:
    """Every figure: the fastest of ``runs`` of each chain, the TSC rate, the nominal
    clock, and the chosen ``ghz`` with ``how``."""
    nominal = nominal_ghz()
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
                [float(v) for v in subprocess.run(
                    [str(binary)], capture_output=True, text=True, timeout=120
                ).stdout.split()[:3]]
                for _ in range(runs)
            ]  # fmt: skip
    except (build.BuildError, OSError, subprocess.SubprocessError, ValueError):
        return {"ghz": nominal, "how": "nominal (cpuinfo)", "nominal_ghz": nominal}
    add_ghz, imul_ghz = (max(s[k] for s in samples) for k in (0, 1))
    tsc = [s[2] for s in samples if not math.isnan(s[2])]
    tsc_ghz = sorted(tsc)[len(tsc) // 2] if tsc else float("nan")
    ghz, how = choose_clock(add_ghz, imul_ghz, tsc_ghz, nominal)
    return {
        "ghz": ghz,
        "how": how,
        "add_chain_ghz": round(add_ghz, 3),
        "imul_chain_ghz": round(imul_ghz, 3),
        "tsc_ghz": round(tsc_ghz, 3),
        "nominal_ghz": nominal,
    }


def measure_ghz(runs: int = 3) -> tuple[float, str]:
    """``(GHz, how)``: the clock :func:`measure` chooses, and how it was found."""
    found = measure(runs)
    return found["ghz"], found["how"]


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=1))
