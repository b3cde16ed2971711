"""What trained a variant, on what, and for how long: ``VARIANT/provenance.json``.

Why: a long study runs across several sittings (killed and resumed by rerunning the same
command), possibly on other machines and with the code changed in between, and its
``results.json`` is read long after. A figure is trusted only when a reader can tell
which code produced it, on which CPU and accelerator, and at what cost in time. The
training loop keeps one :class:`Sittings` per run directory and rewrites the file at
every checkpoint and when the run finishes, so a sitting killed between checkpoints
counts up to its last one (the steps after it are trained again, and counted, in the
next sitting):

    {"commit": "104b282+dirty", "cpu": {"model": "AMD EPYC 7B13", "avx512f": false,
     "avx2": true}, "backend": "cpu", "device_kind": "cpu", "device_count": 1,
     "train_seconds": 812.3,
     "sittings": [{"from_step": 0, "to_step": 300, "seconds": 400.2, "commit": ..., ...},
                  {"from_step": 300, "to_step": 500, "seconds": 412.1, ...}]}

The top-level machine and code are the last sitting's (the one that finished the run);
each sitting records its own. ``train_seconds`` is the sum over the sittings, or
``None`` when the first recorded sitting did not start at step 0 (steps trained before
binflax recorded sittings: an unknown time is not reported as a known one).
"""

from __future__ import annotations

import functools
import json
import pathlib
import platform
import subprocess

import jax
from etils import epath

from binflax import outputs

UNKNOWN = "unknown"
# The fields of environment(): each sitting's, and the top level's (the last sitting's).
ENVIRONMENT_KEYS = ("commit", "cpu", "backend", "device_kind", "device_count")
_PACKAGE = pathlib.Path(__file__).resolve().parent
CPUINFO = pathlib.Path("/proc/cpuinfo")


def _git(*args: str) -> str | None:
    """``git ARGS`` in binflax's own directory; ``None`` when git or the checkout is missing."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=_PACKAGE, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def code_version() -> str:
    """The short commit of the checkout binflax is imported from, ``+dirty`` when its tree
    has changes (untracked files that git does not ignore included), ``unknown`` outside
    a git checkout (an installed package: the checkout must be binflax's own, not one
    that merely contains a virtual environment with binflax installed).

    Taken once per process, at first use: the code that runs is what was imported then,
    whatever is edited later in the tree.
    """
    top = _git("rev-parse", "--show-toplevel")
    if top is None or pathlib.Path(top).resolve() / "binflax" != _PACKAGE:
        return UNKNOWN
    commit, status = _git("rev-parse", "--short", "HEAD"), _git("status", "--porcelain")
    if commit is None or status is None:
        return UNKNOWN
    return commit + ("+dirty" if status else "")


def cpuinfo() -> tuple[str, str, frozenset[str]]:
    """``(model name, vendor, flags)`` of this machine's first CPU from /proc/cpuinfo;
    ``(platform.processor(), "", {})`` where there is no such file (not Linux)."""
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return platform.processor(), "", frozenset()

    def field(name: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), "")

    return (
        field("model name") or platform.processor(),
        field("vendor_id"),
        frozenset(field("flags").split()),
    )


def cpu() -> dict:
    """The CPU's model and the vector extensions that decide binary-layer speed (the
    native kernel's paths, docs/native.md); the extensions are ``None`` when unknown."""
    model, _, flags = cpuinfo()
    known = bool(flags)
    return {
        "model": model or UNKNOWN,
        "avx512f": "avx512f" in flags if known else None,
        "avx2": "avx2" in flags if known else None,
    }


def environment() -> dict:
    """This process's code, CPU and JAX devices (:data:`ENVIRONMENT_KEYS`)."""
    return {
        "commit": code_version(),
        "cpu": cpu(),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
    }


class Sittings:
    """The sittings of one training run, mirrored to ``path`` (``RunDir.provenance_json``).

    A sitting that trains no step (a finished run rerun) leaves the file as it is. A file
    that does not read (a write cut short by a kill) never stops the run: its sittings
    are dropped, said in one line, and the seconds become unknown unless this sitting
    starts at step 0.
    """

    def __init__(self, path: epath.PathLike, start_step: int):
        self.path = epath.Path(path)
        self._start_step = int(start_step)
        self._sittings: list[dict] = []
        if self.path.exists():
            try:
                self._sittings = list(json.loads(self.path.read_text())["sittings"])
            except (ValueError, KeyError, TypeError) as err:
                outputs.log(f"[provenance] {self.path} does not read ({err}); starting it anew")
        self._index = len(self._sittings)  # where this sitting's record goes

    def progress(self, step: int, seconds: float) -> None:
        """This sitting has trained up to ``step`` in ``seconds`` of its loop: recorded and
        written (from the main process)."""
        record = {"from_step": self._start_step, "to_step": int(step), "seconds": round(seconds, 1)}
        self._sittings[self._index :] = [record | environment()]
        outputs.write_json(self.path, self.summary())

    def summary(self) -> dict | None:
        """``provenance.json``'s content; ``None`` when no sitting was recorded (a run
        trained before binflax recorded sittings)."""
        if not self._sittings:
            return None
        last = self._sittings[-1]
        total = sum(s["seconds"] for s in self._sittings)
        return {
            **{key: last[key] for key in ENVIRONMENT_KEYS},
            "train_seconds": round(total, 1) if self._sittings[0]["from_step"] == 0 else None,
            "sittings": list(self._sittings),
        }
