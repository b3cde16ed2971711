"""binflax.activations: RPReLU's forward pass and gradients against NumPy formulas."""

import jax
import jax.numpy as jnp
import numpy as np

from binflax import activations


def np_rprelu(x, gamma, beta, zeta):
    """ReActNet's ``PReLU_beta(x - gamma) + zeta`` per channel, and each input's local
    derivative per element (PyTorch's PReLU takes the slope at ``x == gamma``)."""
    y = x - gamma
    positive = y > 0
    out = np.where(positive, y, beta * y) + zeta
    dx = np.where(positive, 1.0, beta)
    return out, {
        "dx": dx,
        "dgamma": -dx,
        "dbeta": np.where(positive, 0.0, y),
        "dzeta": np.ones_like(x),
    }


def test_rprelu_forward_and_gradients_match_the_formulas():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 5, 6))
    gamma, zeta = rng.normal(size=6) * 0.5, rng.normal(size=6) * 0.5
    beta = rng.uniform(-0.5, 1.5, size=6)
    x[0, 0, 0] = gamma  # the kink: the slope's side
    g = rng.normal(size=x.shape)
    expected, d = np_rprelu(x, gamma, beta, zeta)

    f = lambda *a: activations.rprelu(*a)  # noqa: E731
    args = [jnp.asarray(a, jnp.float32) for a in (x, gamma, beta, zeta)]
    out, vjp = jax.vjp(f, *args)
    dx, dgamma, dbeta, dzeta = vjp(jnp.asarray(g, jnp.float32))
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(dx), g * d["dx"], rtol=1e-6, atol=1e-6)
    for got, local in ((dgamma, d["dgamma"]), (dbeta, d["dbeta"]), (dzeta, d["dzeta"])):
        np.testing.assert_allclose(np.asarray(got), (g * local).sum((0, 1, 2)), rtol=1e-5)


def test_rprelu_module_starts_as_the_authors_leaky_relu():
    """ReActNet's init: both LearnableBias shifts at 0, nn.PReLU's slope at 0.25."""
    x = jnp.linspace(-2.0, 2.0, 24).reshape(2, 3, 4)
    variables = activations.RPReLU().init(jax.random.key(0), x)
    params = variables["params"]
    assert set(params) == {"gamma", "beta", "zeta"}
    np.testing.assert_array_equal(params["gamma"], np.zeros(4))
    np.testing.assert_array_equal(params["beta"], np.full(4, 0.25))
    np.testing.assert_array_equal(params["zeta"], np.zeros(4))
    y = activations.RPReLU().apply(variables, x)
    np.testing.assert_allclose(np.asarray(y), np.where(x > 0, x, 0.25 * x), rtol=1e-6)
