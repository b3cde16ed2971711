"""Session-wide test settings, shared fixtures, and the spec's numbers that several test
files check against.

JAX's persistent compilation cache is shared by every test of the session and by the
subprocesses the tests start (through the environment), so the same train step of the
quickstart net is compiled once rather than once per test process.

The tests compile with XLA's backend optimisation level 0 (``XLA_FLAGS``, passed on to
their subprocesses): the suite spends most of its time compiling small programs that
then run a few steps, and level 0 took 23 % less CPU time on a compile-bound pair of
tests (an export and a two-stage run: 77-80 s against 60-62 s, 2-core Zen 3). The
programs compute the same; the exactness tests compare programs compiled alike, and
README's quickstart and the benchmarks run XLA's default level.

They also compile with XLA's legacy CPU emitters (``--xla_cpu_use_fusion_emitters=false``)
where this jaxlib still has them (tests/runner.py probes once a session: XLA aborts on a
flag it does not know). Measured on a 2-core Zen 3 shared with a training run,
2026-12-07: the suite's CPU time 1,620 s against 1,291 s with the flag in the pytest
processes (not yet their subprocesses), a compile-bound export and benchmark subset 151
against 95 s, and a fresh clone's `.ci/run` 21 min 30 s of tests against 18 min 48 s
(with resumed runs no longer compiling an init). Two programs that fuse the same float
arithmetic differently may then round it differently in the last bit, so the export
tests compare different paths' logits within 1e-6 of the largest (tests/test_export.py,
``assert_paths_agree``); their int32 accumulators are compared exactly.

Tests marked ``slow`` (end-to-end runs of tens of seconds) are collected first, so that
README's test command, which runs one pytest-xdist worker per core, starts them while
the many short tests fill the other workers, instead of finishing on one of them alone.
"""

import os
import tempfile
from typing import NamedTuple

import pytest

from tests.runner import TEST_XLA_FLAGS

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="binflax-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow first


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """A fake Cloud Storage bucket, ``testfs://bucket/...`` (tests/remote_fs.py), and a
    fresh working directory; afterwards, checks that nothing bypassed epath into a local
    ``testfs:`` folder."""
    from tests import remote_fs

    installed = remote_fs.install(str(tmp_path / "bucket"), monkeypatch)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield installed
    strays = [p for p in tmp_path.rglob("*") if p.name.startswith(remote_fs.SCHEME)]
    assert not strays and not list(cwd.iterdir()), f"written outside the bucket: {strays}"


class AuthorsSketchANet(NamedTuple):
    """The spec's Sketch-A-Net sanity check (docs/method.md section 7)."""

    errors: dict[str, float]  # the authors' measured input errors (TU-Berlin, trained fbin)
    macs: dict[str, int]  # those layers' MACs in binflax's Sketch-A-Net (250 classes)
    fixed_macs: int  # conv1 and conv8, whose inputs are never binarized
    total_macs: int


@pytest.fixture(scope="session")
def authors_sketchanet() -> AuthorsSketchANet:
    from binflax import models

    infos = models.trace_layers(models.create("sketchanet", plan="fbin"))
    errors = {"conv2": 0.608, "conv3": 0.620, "conv4": 0.782, "conv5": 0.791}
    errors |= {"conv6": 0.684, "conv7": 0.943}
    return AuthorsSketchANet(
        errors=errors,
        macs={i.name: i.macs for i in infos if i.precision.binary_input},
        fixed_macs=sum(i.macs for i in infos if not i.precision.binary_input),
        total_macs=sum(i.macs for i in infos),
    )
