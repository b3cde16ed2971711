"""Runs binflax's command line or a Python snippet in a fresh process, as a user would.

Why a subprocess: simulated device counts (XLA_FLAGS), multiple processes, signals and
exit codes only exist at process level.
"""

from __future__ import annotations

import os
import subprocess
import sys

from binflax.data.common import QUIET_TENSORFLOW

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# XLA's flags for every test process (tests/conftest.py says why)
OPTIMIZATION_LEVEL = "--xla_backend_optimization_level=0"
LEGACY_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _xla_knows(flag: str) -> bool:
    """Whether this jaxlib's XLA takes ``flag``: XLA aborts a process whose ``XLA_FLAGS``
    names a flag it does not know, as a later jaxlib may do with the legacy emitters."""
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env={**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        timeout=300,
    )
    return probe.returncode == 0


def _test_xla_flags() -> str:
    """Decided once a session and handed to pytest-xdist's workers (and to every test
    subprocess) in the environment, so that only the first process probes."""
    flags = os.environ.get("BINFLAX_TEST_XLA_FLAGS")
    if flags is None:
        flags = OPTIMIZATION_LEVEL
        if _xla_knows(LEGACY_EMITTERS):
            flags = f"{flags} {LEGACY_EMITTERS}"
        os.environ["BINFLAX_TEST_XLA_FLAGS"] = flags
    return flags


TEST_XLA_FLAGS = _test_xla_flags()


def xla_flags(devices: int) -> str:
    """``XLA_FLAGS`` for a test subprocess that simulates ``devices`` CPU devices."""
    return f"{TEST_XLA_FLAGS} --xla_force_host_platform_device_count={devices}"


def env(devices: int = 1) -> dict:
    environment = dict(os.environ)
    environment["XLA_FLAGS"] = xla_flags(devices)
    environment["PYTHONPATH"] = ROOT + os.pathsep + environment.get("PYTHONPATH", "")
    # TensorFlow's own variables are left as a user has them: binflax quiets it itself
    for name in QUIET_TENSORFLOW:
        environment.pop(name, None)
    return environment


def main_command(*args: str) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "main.py"), *args]


def run_main(*args: str, devices: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        main_command(*args),
        cwd=ROOT,
        env=env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_main(*args: str, devices: int = 1, log_path: str | None = None) -> subprocess.Popen:
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        main_command(*args),
        cwd=ROOT,
        env=env(devices),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_python(code: str, devices: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
