"""binflax.quantizers against NumPy formulas written out by hand (docs/method.md section 3)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from binflax import quantizers

GRID = np.array([-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2], np.float32)


def np_sign(x):
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def probe_points(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([GRID, rng.normal(0, 1.5, 64).astype(np.float32)])


def vjp(fn, x, g):
    _, pullback = jax.vjp(fn, jnp.asarray(x))
    return np.asarray(pullback(jnp.asarray(g))[0])


# -- sign functions --------------------------------------------------------------------


@pytest.mark.parametrize("fn", [quantizers.ste_sign, quantizers.approx_sign])
def test_sign_forward_maps_zero_to_plus_one(fn):
    x = probe_points()
    np.testing.assert_array_equal(np.asarray(fn(jnp.asarray(x))), np_sign(x))
    np.testing.assert_array_equal(
        np.asarray(fn(jnp.asarray(GRID))), [-1, -1, -1, -1, 1, 1, 1, 1, 1]
    )


def test_ste_sign_gradient_passes_inside_and_on_the_clip_boundary():
    x = probe_points()
    g = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    expected = g * (np.abs(x) <= 1.0)
    np.testing.assert_array_equal(vjp(quantizers.ste_sign, x, g), expected)
    # Larq's boundary: the gradient passes at exactly +-1 and stops beyond.
    grad = jax.grad(lambda v: quantizers.ste_sign(v).sum())(jnp.asarray(GRID))
    np.testing.assert_array_equal(np.asarray(grad), [0, 0, 1, 1, 1, 1, 1, 0, 0])


@pytest.mark.parametrize("clip", [0.5, 1.5])
def test_ste_sign_clip_argument(clip):
    x = probe_points(2)
    g = np.ones_like(x)
    np.testing.assert_array_equal(
        vjp(lambda v: quantizers.ste_sign(v, clip), x, g), (np.abs(x) <= clip).astype(np.float32)
    )
    grad = jax.grad(lambda v: quantizers.ste_sign(v, clip=clip).sum())(jnp.asarray(GRID))
    np.testing.assert_array_equal(np.asarray(grad), np.abs(GRID) <= clip)


def test_approx_sign_gradient_is_bireal_polynomial():
    x = probe_points(3)
    g = np.random.default_rng(4).normal(size=x.shape).astype(np.float32)
    expected = g * np.where(np.abs(x) <= 1, 2 - 2 * np.abs(x), 0)
    np.testing.assert_allclose(vjp(quantizers.approx_sign, x, g), expected, rtol=1e-6)
    grad = jax.grad(lambda v: quantizers.approx_sign(v).sum())(jnp.asarray(GRID))
    np.testing.assert_allclose(np.asarray(grad), [0, 0, 0, 1, 2, 1, 0, 0, 0])


def test_sign_keeps_dtype():
    x = jnp.asarray(GRID, jnp.bfloat16)
    assert quantizers.ste_sign(x).dtype == jnp.bfloat16
    assert quantizers.approx_sign(x).dtype == jnp.bfloat16


def test_quantizer_registry():
    for name in ("ste_sign", "approx_sign"):
        q = quantizers.get_quantizer(name)
        assert q.name == name and q.bits == 1
        np.testing.assert_array_equal(np.asarray(q.fn(jnp.asarray(GRID))), np_sign(GRID))
    with pytest.raises(ValueError, match="'dorefa'.*approx_sign, ste_sign"):
        quantizers.get_quantizer("dorefa")


# -- weight binarizer ------------------------------------------------------------------


def random_kernel(shape=(3, 3, 4, 5), seed=0, scale=0.6):
    return np.random.default_rng(seed).normal(0, scale, shape).astype(np.float32)


def test_weight_scale_is_mean_abs_per_output_channel():
    w = random_kernel()
    alpha = np.array([np.abs(w[..., o]).mean() for o in range(w.shape[-1])])
    np.testing.assert_allclose(np.asarray(quantizers.weight_scale(jnp.asarray(w))), alpha, 1e-6)
    wb = np.asarray(quantizers.binarize_weights(jnp.asarray(w)))
    np.testing.assert_allclose(wb, alpha * np_sign(w), rtol=1e-6)
    # every filter holds exactly two values, +-alpha_o
    for o in range(w.shape[-1]):
        np.testing.assert_allclose(np.unique(np.abs(wb[..., o])), [alpha[o]], rtol=1e-6)


def np_binarize_weights_grad(w, g, stop_alpha):
    """d/dW of sum(g * alpha(W) * sign(W)) with the STE, worked out by hand.

    With n = kh*kw*cin and s = sign(W): the STE term is g * alpha_o * 1[|W| <= 1]; alpha's
    own term is d alpha_o / dW = s / n, times sum over the filter of g * s.
    """
    n = np.prod(w.shape[:-1])
    s = np_sign(w)
    alpha = np.abs(w).reshape(n, -1).mean(0)
    grad = g * alpha * (np.abs(w) <= 1)
    if not stop_alpha:
        grad = grad + s / n * (g * s).reshape(n, -1).sum(0)
    return grad


@pytest.mark.parametrize("stop_alpha", [False, True])
def test_binarize_weights_gradient(stop_alpha):
    w = random_kernel(seed=5, scale=0.8)  # some |W| > 1, so the STE mask matters
    assert (np.abs(w) > 1).any()
    g = random_kernel(seed=6, scale=1.0)
    got = vjp(lambda k: quantizers.binarize_weights(k, stop_alpha_gradient=stop_alpha), w, g)
    np.testing.assert_allclose(got, np_binarize_weights_grad(w, g, stop_alpha), atol=1e-6)


# -- latent-weight projection ----------------------------------------------------------


def np_project(w):
    return np.clip(w - w.mean(axis=-2, keepdims=True), -1, 1)


def test_project_latent_kernel():
    w = random_kernel(seed=8, scale=1.0)
    np.testing.assert_allclose(
        np.asarray(quantizers.project_latent_kernel(jnp.asarray(w))), np_project(w), atol=1e-6
    )


def _params():
    return {
        "conv2": {"kernel": jnp.asarray(random_kernel((3, 3, 4, 5), 9, 0.2))},
        "conv3": {"kernel": jnp.asarray(random_kernel((3, 3, 5, 2), 10, 2.0))},
        "fc": {"kernel": jnp.asarray(random_kernel((1, 1, 5, 3), 11, 2.0))},
        "bn": {"scale": jnp.asarray(random_kernel((4,), 12, 2.0))},
    }


MASK = {
    "conv2": {"kernel": True},
    "conv3": {"kernel": True},
    "fc": {"kernel": False},
    "bn": {"scale": False},
}


@pytest.mark.parametrize("mask", [MASK, lambda params: MASK])
def test_project_binary_kernels_chained_after_adam(mask):
    params = _params()
    tx = optax.chain(optax.adam(0.05), quantizers.project_binary_kernels(mask))
    plain = optax.adam(0.05)
    state, plain_state = tx.init(params), plain.init(params)
    for step in range(3):
        grads = jax.tree.map(
            lambda p, s=step: jnp.asarray(random_kernel(p.shape, 100 + s, 1.0)), params
        )
        updates, state = tx.update(grads, state, params)
        plain_updates, plain_state = plain.update(grads, plain_state, params)
        raw = optax.apply_updates(params, plain_updates)
        new = optax.apply_updates(params, updates)
        # masked: the adam step, then mean-centred over cin and clipped to [-1, 1]
        for name in ("conv2", "conv3"):
            kernel = np.asarray(new[name]["kernel"])
            np.testing.assert_allclose(
                kernel, np_project(np.asarray(raw[name]["kernel"])), atol=1e-5
            )
            assert np.abs(kernel).max() <= 1.0
        # unmasked leaves: exactly the adam step, even where |w| > 1
        for name, leaf in (("fc", "kernel"), ("bn", "scale")):
            np.testing.assert_array_equal(np.asarray(new[name][leaf]), np.asarray(raw[name][leaf]))
        params = new
    assert np.abs(np.asarray(params["fc"]["kernel"])).max() > 1.0
    assert (np.abs(np.asarray(params["conv3"]["kernel"])) == 1.0).any()  # clipping was active
    # a kernel that never reached the clip ends exactly mean-centred over input channels
    small = np.asarray(params["conv2"]["kernel"])
    assert np.abs(small).max() < 1.0
    np.testing.assert_allclose(small.mean(axis=-2), 0.0, atol=1e-6)


def test_project_binary_kernels_clip_only_keeps_the_mean():
    """``center=False`` (Larq's weight_clip): the Adam step, clipped, never re-centred."""
    params = _params()
    tx = optax.chain(optax.adam(0.05), quantizers.project_binary_kernels(MASK, center=False))
    plain = optax.adam(0.05)
    grads = jax.tree.map(lambda p: jnp.asarray(random_kernel(p.shape, 200, 1.0)), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    plain_updates, _ = plain.update(grads, plain.init(params), params)
    raw = optax.apply_updates(params, plain_updates)
    new = optax.apply_updates(params, updates)
    for name in ("conv2", "conv3"):
        expected = np.clip(np.asarray(raw[name]["kernel"]), -1, 1)
        np.testing.assert_allclose(np.asarray(new[name]["kernel"]), expected, atol=1e-6)
    assert np.abs(np.asarray(new["conv2"]["kernel"]).mean(axis=-2)).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(new["fc"]["kernel"]), np.asarray(raw["fc"]["kernel"]))


def test_project_binary_kernels_needs_params():
    tx = quantizers.project_binary_kernels(MASK)
    params = _params()
    with pytest.raises(ValueError, match="needs params"):
        tx.update(params, tx.init(params))


# -- k-bit inputs and 8-bit weights ----------------------------------------------------


def np_quantize_input(x, step, bits):
    """The mid-rise k-bit quantizer written out: the nearest of the 2**k levels
    ``step * (i + 1/2)``, ``i`` in ``[-2**(k-1), 2**(k-1) - 1]``."""
    levels = step * (np.arange(-(2 ** (bits - 1)), 2 ** (bits - 1)) + 0.5)
    return levels[np.argmin(np.abs(x[:, None] - levels[None, :]), axis=1)]


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_k_bit_input_is_the_nearest_of_its_levels(bits):
    step = 0.37
    x = probe_points(bits) * 2 ** (bits - 1) * step / 2
    # away from the decision boundaries (multiples of step), where ties are a convention
    x = x[np.abs(x / step - np.round(x / step)) > 1e-3]
    got = np.asarray(quantizers.quantize_input(jnp.asarray(x)[None], jnp.float32(step), bits))[0]
    np.testing.assert_allclose(got, np_quantize_input(x.astype(np.float64), step, bits), rtol=1e-6)


def test_one_bit_input_is_the_sign_times_half_a_step():
    x = probe_points()
    got = quantizers.quantize_input(jnp.asarray(x)[None], jnp.float32(2.0), 1)[0]
    np.testing.assert_array_equal(np.asarray(got), np_sign(x))


@pytest.mark.parametrize("bits", [2, 4])
def test_k_bit_input_gradients_are_lsq(bits):
    """x: straight through inside the range, 0 outside; step: LSQ's ``q/s - x/s`` inside,
    the clipped level outside, summed and scaled by ``1/sqrt(features * 2**(k-1))``."""
    step, half = 0.5, 2 ** (bits - 1)
    x = probe_points(3) * half * step / 1.5
    x = x[np.abs(x / step - np.round(x / step)) > 1e-3].astype(np.float32)
    g = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)

    def f(x, s):
        return jnp.sum(quantizers.quantize_input(x[None], s, bits)[0] * g)

    gx, gs = jax.grad(f, argnums=(0, 1))(jnp.asarray(x), jnp.float32(step))
    inside = (x >= -half * step) & (x < half * step)
    np.testing.assert_array_equal(np.asarray(gx), np.where(inside, g, 0))
    level = np.clip(np.floor(x / step), -half, half - 1) + 0.5
    dq_ds = np.where(inside, level - x / step, level)
    expected = np.sum(g * dq_ds) / np.sqrt(x.size * half)
    np.testing.assert_allclose(float(gs), expected, rtol=1e-5)


def test_gaussian_step_is_max_1960s_optimum():
    """Max (1960), Table II, uniform quantizer of a unit Gaussian, 2/4/8/16 levels."""
    expected = {1: 1.596, 2: 0.9957, 3: 0.5860, 4: 0.3352}
    for bits, step in expected.items():
        assert quantizers.gaussian_step(bits) == pytest.approx(step, abs=5e-4)
    # two levels +-step/2 at the conditional means +-E|x| = +-sqrt(2/pi)
    assert quantizers.gaussian_step(1) == pytest.approx(2 * np.sqrt(2 / np.pi), rel=1e-5)


def test_int8_weights_are_rounded_per_output_channel_with_a_straight_gradient():
    kernel = np.random.default_rng(2).normal(size=(3, 3, 4, 5)).astype(np.float32)
    kernel[..., 2] *= 100  # channels of very different range keep their own scale
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127
    expected = np.round(kernel / scale) * scale
    got = quantizers.quantize_weights_int8(jnp.asarray(kernel))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    assert len(np.unique(np.round(np.asarray(got)[..., 0] / scale[0]))) <= 255
    g = np.random.default_rng(3).normal(size=kernel.shape).astype(np.float32)
    np.testing.assert_array_equal(vjp(quantizers.quantize_weights_int8, kernel, g), g)


def test_int8_weights_of_a_zero_channel_stay_zero():
    kernel = np.zeros((2, 3), np.float32)
    kernel[:, 1] = [0.5, -1.0]
    got = np.asarray(quantizers.quantize_weights_int8(jnp.asarray(kernel)))
    np.testing.assert_array_equal(got[:, 0], 0)
    assert np.isfinite(got).all()
