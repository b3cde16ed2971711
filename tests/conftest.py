"""Session-wide test settings.

JAX's persistent compilation cache is shared by every test of the session and by the
subprocesses the tests start (through the environment), so the same train step of the
quickstart net is compiled once rather than once per test process.
"""

import os
import tempfile

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="binflax-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
