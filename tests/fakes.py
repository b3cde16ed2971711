"""Model variables made with NumPy, for tests that need a network's weights but not its
initializers (whose random-number code takes seconds to compile for every large kernel)."""

import jax
import jax.numpy as jnp
import numpy as np


def variable_shapes(model, x):
    """``params`` and ``batch_stats`` as shapes (init also returns what the units sow)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    return {k: shapes[k] for k in ("params", "batch_stats")}


def fake_variables(model, x, seed=0):
    """He-scaled normal kernels from NumPy, unit batch norm (no JAX RNG to compile)."""
    rng = np.random.default_rng(seed)

    def fill(path, s):
        leaf = path[-1].key
        if leaf == "kernel":
            std = np.sqrt(2 / np.prod(s.shape[:-1]), dtype=np.float32)
            return jnp.asarray(rng.standard_normal(s.shape, np.float32) * std)
        return (jnp.ones if leaf in ("scale", "var") else jnp.zeros)(s.shape, s.dtype)

    return {
        k: jax.tree_util.tree_map_with_path(fill, v) for k, v in variable_shapes(model, x).items()
    }
