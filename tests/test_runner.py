"""tests/runner.py's XLA flags: a flag this jaxlib's XLA does not know is left out, since
XLA aborts a process whose XLA_FLAGS names one (tests/conftest.py says why each flag)."""

import os

from tests import runner


def test_a_flag_xla_does_not_know_is_probed_out_and_the_decision_is_shared():
    assert not runner._xla_knows("--xla_cpu_binflax_no_such_flag=true")
    # decided once: xdist's workers and the test subprocesses read it from the environment
    assert os.environ["BINFLAX_TEST_XLA_FLAGS"] == runner.TEST_XLA_FLAGS
    assert runner.TEST_XLA_FLAGS.startswith(runner.OPTIMIZATION_LEVEL)
    assert runner.xla_flags(8).startswith(runner.TEST_XLA_FLAGS)
