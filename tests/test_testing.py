"""binflax.testing.random_variables: init's tree, drawn far from init, reproducibly."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from binflax import binarize
from binflax.testing import random_variables
from tests import user_nets

SHAPE = (8, 8, 1)


def test_random_variables_have_inits_tree_and_are_reproducible():
    """Every params and batch_stats leaf of ``model.init``, same shape and dtype, nothing
    sown; the same seed draws the same values, another seed others."""
    model = binarize(user_nets.VGG(), "fbin", input_shape=SHAPE)
    init = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))
    got = random_variables(model, SHAPE, seed=3)
    want = {k: init[k] for k in ("params", "batch_stats")}
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
    again, other = random_variables(model, SHAPE, seed=3), random_variables(model, SHAPE)
    for a, b, c in zip(*(jax.tree.leaves(t) for t in (got, again, other)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_random_variables_flip_and_zero_norm_scales_and_set_the_kernel_scale():
    """Norm scales reach below zero with the first exactly 0; kernels are He-scaled
    unless ``kernel_std`` is given; variances are positive."""
    model = binarize(user_nets.VGG(widths=(64, 64)), "fbin", input_shape=SHAPE)
    variables = random_variables(model, SHAPE)
    scale = np.asarray(variables["params"]["Conv_1"]["bn"]["scale"])
    assert scale[0] == 0.0 and scale.min() < 0 < scale.max()
    stats = traverse_util.flatten_dict(variables["batch_stats"], sep="/")
    assert all(np.asarray(v).min() > 0 for k, v in stats.items() if k.endswith("/var"))
    kernel = np.asarray(variables["params"]["Conv_1"]["kernel"])  # 3 * 3 * 64 inputs
    np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (3 * 3 * 64)), rtol=0.02)
    wide = random_variables(model, SHAPE, kernel_std=1.5)["params"]["Conv_1"]["kernel"]
    np.testing.assert_allclose(np.asarray(wide).std(), 1.5, rtol=0.02)
