"""Where a benchmark's JSON goes: ``--out`` keeps it in ``benchmarks/results/``, with the
machine and the code beside the figures.

Every benchmark prints its JSON (or its table); with ``--out`` it also writes the JSON
to a file, so that docs/benchmarks.md can cite the file a figure came from instead of
being its only copy:

    python -m benchmarks.select_pass --out                       # benchmarks/results/
    python -m benchmarks.inference --small --out /tmp/runs/      # /tmp/runs/inference-<cpu>.json
    python -m benchmarks.inference --out /tmp/inference-quiet.json   # that file

A folder gets ``<benchmark>-<cpu tag>.json`` (:func:`cpu_tag`: the CPU's model and its
widest vector extension, ``amd-epyc-avx2``), so a run on another CPU never overwrites
this one's; a path ending in ``.json`` is written as given. The file holds the printed
figures under their own keys and ``"provenance"`` (:func:`machine`): the CPU (model,
vendor, family and model numbers, SIMD flags, cores), the load, platform, Python, JAX
and jaxlib, the backend and device, the commit (``+dirty`` when the tree had changes,
:func:`binflax.provenance.code_version`) and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import sys
from collections.abc import Iterable

import jax
import jaxlib

from binflax import provenance

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# The flags that decide how fast a binary MAC runs (docs/benchmarks.md), as every
# benchmark's "cpu" string names them (benchmarks.binary_layers.cpu_model).
SIMD_PREFIXES = ("avx", "sse4", "popcnt")


def add_out_option(parser: argparse.ArgumentParser) -> None:
    """``--out [DIR_OR_FILE]``: also write the JSON there (no value: benchmarks/results/)."""
    parser.add_argument(
        "--out",
        nargs="?",
        const=str(RESULTS),
        default=None,
        metavar="DIR_OR_FILE",
        help=f"also write the JSON, with its provenance, to DIR/<benchmark>-<cpu>.json or "
        f"to FILE.json (no value: {RESULTS.relative_to(RESULTS.parent.parent)}/)",
    )


def simd_flags(flags: Iterable[str]) -> list[str]:
    """The vector extensions among /proc/cpuinfo's ``flags``, sorted."""
    return sorted(f for f in flags if f.startswith(SIMD_PREFIXES))


def cpu_tag(model: str | None = None, flags: Iterable[str] | None = None) -> str:
    """A file-name tag for this machine's CPU (or ``model`` with ``flags``): its model name
    without trademarks, clock or core count, and its widest vector extension.

    >>> cpu_tag("AMD EPYC", {"avx2", "popcnt"})
    'amd-epyc-avx2'
    >>> cpu_tag("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", {"avx2", "avx512f"})
    'intel-xeon-platinum-8481c-avx512'
    """
    if model is None or flags is None:
        found_model, _, found_flags = provenance.cpuinfo()
        model = found_model if model is None else model
        flags = found_flags if flags is None else flags
    flags = set(flags)
    name = re.sub(r"\((R|TM)\)", "", model, flags=re.I).split("@")[0]
    name = re.sub(r"\b(CPU|Processor|\d+-Core)\b", "", name, flags=re.I)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cpu"
    if "avx512f" in flags:
        return f"{slug}-avx512"
    if "avx2" in flags:
        return f"{slug}-avx2"
    return f"{slug}-{platform.machine().lower() or 'unknown'}"


def _cpuinfo_numbers() -> dict:
    """The first CPU's ``cpu family`` and ``model`` numbers (a Zen 3 is family 25,
    model 1), ``None`` where /proc/cpuinfo does not say."""
    numbers = {"family": None, "model_number": None}
    try:
        lines = provenance.CPUINFO.read_text().splitlines()
    except OSError:
        return numbers
    for key, field in (("cpu family", "family"), ("model", "model_number")):
        value = next(
            (ln.split(":", 1)[1].strip() for ln in lines if ln.split(":")[0].strip() == key), None
        )
        numbers[field] = int(value) if value and value.isdigit() else None
    return numbers


def host_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine() -> dict:
    """What ran the benchmark, and from which code: the file's ``"provenance"``."""
    model, vendor, flags = provenance.cpuinfo()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": {
            "model": model or provenance.UNKNOWN,
            "vendor": vendor or None,
            **_cpuinfo_numbers(),
            "simd": simd_flags(flags),
            "cores": os.cpu_count(),
            "tag": cpu_tag(model, flags),
        },
        "load_average_1min_at_end": round(load[0], 2) if load else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "commit": provenance.code_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def path_for(benchmark: str, out: str | os.PathLike) -> pathlib.Path:
    """``out`` itself when it names a ``.json`` file, else ``out/<benchmark>-<cpu tag>.json``."""
    out = pathlib.Path(out)
    return out if out.suffix == ".json" else out / f"{benchmark}-{cpu_tag()}.json"


def write(benchmark: str, result: dict, out: str | os.PathLike | None) -> pathlib.Path | None:
    """Writes ``result`` with its provenance where ``--out`` says (nothing when it is
    ``None``); says where on stderr, so that stdout stays the benchmark's own output."""
    if out is None:
        return None
    path = path_for(benchmark, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = {key: value for key, value in result.items() if key != "benchmark"}
    record = {"benchmark": benchmark, "provenance": machine(), **figures}
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"[{benchmark}] wrote {path}", file=sys.stderr)
    return path
