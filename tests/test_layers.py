"""binflax.layers: the planned conv unit against a NumPy convolution and batch norm.

Each case builds the unit's expected output from the block layouts of docs/method.md
section 4 (binary input: BN -> sign -> conv; float input: conv -> BN) with NumPy alone.
Variables are made with NumPy (shapes from ``jax.eval_shape``), so the checks do not
depend on the initializers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import layers, quantizers
from binflax.layers import HBNConv
from binflax.plan import LayerPrecision
from binflax.planned import BINARIZED_INPUTS, BinaryOptions

EPS = 1e-5
FLOAT = LayerPrecision("u", "float", "float")
WBIN = LayerPrecision("u", "float", "binary")
XNOR = LayerPrecision("u", "binary", "binary")
BIN_INPUT_FLOAT_WEIGHT = LayerPrecision("u", "binary", "float")


def np_sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def np_conv(x, w, stride=1, pad=0):
    """NHWC x HWIO cross-correlation with symmetric zero padding, by explicit windows."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = w.shape[:2]
    ho, wo = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[-1]))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out


def np_binary_weights(w):
    return np.abs(w).reshape(-1, w.shape[-1]).mean(0) * np_sign(w)


def np_bn(x, mean, var, scale, bias):
    return (x - mean) / np.sqrt(var + EPS) * scale + bias


def unit(precision, **kwargs):
    kwargs = {"features": 5, "kernel_size": (3, 3), **kwargs}
    return HBNConv(precision=precision, **kwargs)


def variables(module, x, kernel, *, bias=None, bn=None):
    """The module's variables with given values; ``bn`` = (mean, var, scale, bias)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    params = {"kernel": kernel}
    if bias is not None:
        params["bias"] = bias
    out = {"params": params}
    if bn is not None:
        mean, var, scale, shift = bn
        params["bn"] = {"scale": scale, "bias": shift}
        out["batch_stats"] = {"bn": {"mean": mean, "var": var}}
    got = jax.tree.map(lambda a: a.shape, out)
    # init also returns what the unit sows; only the variables are compared
    want = {k: jax.tree.map(lambda s: s.shape, v) for k, v in shapes.items() if k in out}
    assert got == want, f"variable layout {got} differs from the module's {want}"
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), out)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def bn_values(rng, channels):
    return (
        rng.normal(0, 0.3, channels),
        rng.uniform(0.5, 2.0, channels),
        rng.uniform(0.5, 1.5, channels),
        rng.normal(0, 0.2, channels),
    )


def test_float_unit_is_conv_plus_bias(rng):
    x = rng.normal(size=(2, 7, 7, 3))
    w, b = rng.normal(size=(3, 3, 3, 5)), rng.normal(size=5)
    module = unit(FLOAT, strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=True, norm=False)
    y = module.apply(variables(module, x, w, bias=b), jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(y), np_conv(x, w, 2, 1) + b, rtol=1e-4, atol=1e-4)


def test_binary_weights_float_input_conv_then_bn(rng):
    x = rng.normal(size=(2, 6, 6, 3))
    w = rng.normal(size=(3, 3, 3, 5))
    bn = bn_values(rng, 5)  # on the output channels
    module = unit(WBIN)
    y = module.apply(variables(module, x, w, bn=bn), jnp.asarray(x, jnp.float32))
    expected = np_bn(np_conv(x, np_binary_weights(w)), *bn)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)


def test_binary_input_bn_sign_conv_and_sow(rng):
    x = rng.normal(size=(2, 6, 6, 4))
    w = rng.normal(size=(3, 3, 4, 5))
    bn = bn_values(rng, 4)  # on the input channels
    module = unit(XNOR, padding=((1, 1), (1, 1)))
    y, state = module.apply(
        variables(module, x, w, bn=bn), jnp.asarray(x, jnp.float32), mutable=[BINARIZED_INPUTS]
    )
    sign_input = np_bn(x, *bn)
    expected = np_conv(np_sign(sign_input), np_binary_weights(w), 1, 1)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)
    (sown,) = state[BINARIZED_INPUTS]["sign_input"]
    np.testing.assert_allclose(np.asarray(sown), sign_input, rtol=1e-5, atol=1e-5)


def test_float_input_unit_sows_nothing(rng):
    x = rng.normal(size=(1, 5, 5, 3))
    module = unit(WBIN)
    bn = bn_values(rng, 5)
    _, state = module.apply(
        variables(module, x, rng.normal(size=(3, 3, 3, 5)), bn=bn),
        jnp.asarray(x, jnp.float32),
        mutable=[BINARIZED_INPUTS],
    )
    assert BINARIZED_INPUTS not in state


@pytest.mark.parametrize("precision", [XNOR, WBIN])
def test_train_mode_batch_statistics_and_momentum(rng, precision):
    """Train mode normalises with the batch's statistics (biased variance, eps 1e-5) and
    moves the running statistics by 0.1 of the way (momentum 0.9)."""
    x = rng.normal(1.0, 2.0, size=(3, 5, 5, 4))
    w = rng.normal(size=(3, 3, 4, 5))
    channels = 4 if precision.binary_input else 5
    bn = bn_values(rng, channels)
    module = unit(precision)
    y, state = module.apply(
        variables(module, x, w, bn=bn), jnp.asarray(x, jnp.float32), train=True,
        mutable=["batch_stats"],
    )  # fmt: skip
    wb = np_binary_weights(w)
    normed_of = x if precision.binary_input else np_conv(x, wb)
    mu, var = normed_of.mean((0, 1, 2)), normed_of.var((0, 1, 2))
    normed = np_bn(normed_of, mu, var, bn[2], bn[3])
    expected = np_conv(np_sign(normed), wb) if precision.binary_input else normed
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)
    stats = state["batch_stats"]["bn"]
    np.testing.assert_allclose(np.asarray(stats["mean"]), 0.9 * bn[0] + 0.1 * mu, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(stats["var"]), 0.9 * bn[1] + 0.1 * var, rtol=1e-5)


def test_xnor_input_scaling_multiplies_by_k_map(rng):
    x = rng.normal(size=(2, 6, 6, 4))
    w = rng.normal(size=(3, 3, 4, 5))
    bn = bn_values(rng, 4)
    module = unit(
        XNOR, strides=(2, 2), padding=((1, 1), (1, 1)), options=BinaryOptions(scale_inputs=True)
    )
    y = module.apply(variables(module, x, w, bn=bn), jnp.asarray(x, jnp.float32))
    a = np_bn(x, *bn)
    k_map = np_conv(np.abs(a).mean(-1, keepdims=True), np.full((3, 3, 1, 1), 1 / 9), 2, 1)
    expected = np_conv(np_sign(a), np_binary_weights(w), 2, 1) * k_map
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "quantizer,derivative",
    [
        ("ste_sign", lambda x: (np.abs(x) <= 1).astype(float)),
        ("approx_sign", lambda x: np.maximum(0, 2 - 2 * np.abs(x))),
    ],
)
def test_input_quantizer_gradient(rng, quantizer, derivative):
    """L = sum(conv1x1(q(x), W)): dL/dx = q'(x) * sum_o W[c, o]."""
    x = rng.uniform(-1.6, 1.6, size=(2, 4, 4, 3))
    w = rng.normal(size=(1, 1, 3, 5))
    module = unit(
        BIN_INPUT_FLOAT_WEIGHT,
        kernel_size=(1, 1),
        norm=False,
        options=BinaryOptions(input_quantizer=quantizer),
    )
    v = variables(module, x, w)
    grad = jax.grad(lambda inp: module.apply(v, inp).sum())(jnp.asarray(x, jnp.float32))
    expected = derivative(x) * w[0, 0].sum(-1)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stop_alpha", [False, True])
def test_kernel_gradient_through_binarized_weights(rng, stop_alpha):
    """L = sum(G * conv1x1(x, alpha * sign(W))); dL/dWb = sum_nhw x G, then the STE and,
    unless stopped, alpha's own term sign(W)/n * sum(dL/dWb * sign(W))."""
    x = rng.normal(size=(2, 3, 3, 4))
    w = rng.normal(0, 0.8, size=(1, 1, 4, 5))
    g = rng.normal(size=(2, 3, 3, 5))
    module = unit(
        WBIN, kernel_size=(1, 1), norm=False, options=BinaryOptions(stop_alpha_gradient=stop_alpha)
    )
    v = variables(module, x, w)

    def loss(kernel):
        return (module.apply({"params": {"kernel": kernel}}, jnp.asarray(x, jnp.float32)) * g).sum()

    got = jax.grad(loss)(v["params"]["kernel"])
    d_wb = np.einsum("nhwc,nhwo->co", x, g)[None, None]
    n = 4
    alpha = np.abs(w).reshape(n, -1).mean(0)
    expected = d_wb * alpha * (np.abs(w) <= 1)
    if not stop_alpha:
        expected = expected + np_sign(w) / n * (d_wb * np_sign(w)).reshape(n, -1).sum(0)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)


def test_kernel_init_is_the_authors_kaiming_normal_fan_out():
    """The authors' ``weights_init``: untruncated normal, std = sqrt(2 / (kh * kw * cout))."""
    module = unit(FLOAT, features=32, norm=False)
    params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 3, 3, 128)))["params"]
    kernel = np.asarray(params["kernel"])
    std = np.sqrt(2 / (9 * 32))
    assert abs(kernel.std() - std) < 0.03 * std
    # untruncated: a normal sample of 36,864 has values beyond 2 sigma (truncated has none)
    assert (np.abs(kernel) > 2.5 * std).mean() > 0.005


def np_max_pool(x, window, stride, ceil_mode):
    """PyTorch's MaxPool2d (no padding): ceil_mode keeps a last, partial window if it
    starts inside the input."""
    size = x.shape[1]
    if ceil_mode:
        out = -(-(size - window) // stride) + 1
        if (out - 1) * stride >= size:
            out -= 1
    else:
        out = (size - window) // stride + 1
    y = np.empty((x.shape[0], out, out, x.shape[-1]))
    for i in range(out):
        for j in range(out):
            win = x[:, i * stride : i * stride + window, j * stride : j * stride + window]
            y[:, i, j] = win.max(axis=(1, 2))
    return y


@pytest.mark.parametrize(
    "size,window,stride,ceil,out",
    [(55, 3, 2, False, 27), (54, 3, 2, True, 27), (54, 3, 2, False, 26), (109, 3, 2, True, 54),
     (27, 3, 2, True, 13), (8, 2, 2, False, 4), (6, 3, 2, True, 3)],
)  # fmt: skip
def test_max_pool_matches_pytorch_semantics(rng, size, window, stride, ceil, out):
    x = rng.normal(size=(2, size, size, 3)) - 5.0  # all negative: padding must not win
    got = np.asarray(layers.max_pool(jnp.asarray(x, jnp.float32), window, stride, ceil))
    assert got.shape == (2, out, out, 3)
    np.testing.assert_allclose(got, np_max_pool(x, window, stride, ceil), rtol=1e-6)


def test_global_avg_pool(rng):
    x = rng.normal(size=(2, 5, 4, 3))
    got = np.asarray(layers.global_avg_pool(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(got, x.mean((1, 2), keepdims=True), rtol=1e-5)


def test_bfloat16_binary_unit_has_float32s_signs_and_integer_accumulators(rng):
    """Half precision loses nothing in an XNOR unit: sign(bfloat16(x)) = sign(x), the +-1
    products accumulate in float32, so output / alpha is the exact integer accumulator
    sum(sign(x) * sign(W)) of a NumPy convolution, in float32 and in bfloat16."""
    x = rng.normal(size=(2, 6, 6, 64)).astype(np.float32)
    w = rng.normal(0, 0.5, size=(3, 3, 64, 8)).astype(np.float32)
    accumulators = np_conv(np_sign(x), np_sign(w), pad=1)
    alpha = np.abs(w).reshape(-1, 8).mean(0)
    for dtype in (jnp.float32, jnp.bfloat16):
        module = unit(
            XNOR,
            features=8,
            padding=((1, 1), (1, 1)),
            norm=False,
            options=BinaryOptions(dtype=dtype),
        )
        y, state = module.apply(
            {"params": {"kernel": w}}, jnp.asarray(x), mutable=[BINARIZED_INPUTS]
        )
        assert y.dtype == jnp.float32  # the float32 accumulator, scaled by alpha
        sown = np.asarray(state[BINARIZED_INPUTS]["sign_input"][0], np.float32)
        np.testing.assert_array_equal(np_sign(sown), np_sign(x))
        scale = np.asarray(jnp.asarray(alpha).astype(dtype), np.float32)
        np.testing.assert_allclose(np.asarray(y) / scale, accumulators, atol=1e-3)
        if dtype == jnp.bfloat16:  # bfloat16 alphas times integers: exact in float32
            np.testing.assert_array_equal(np.asarray(y) / scale, accumulators)


# -- k-bit inputs and 8-bit weights ----------------------------------------------------


def np_k_bit(x, step, bits):
    half = 2 ** (bits - 1)
    return step * (np.clip(np.floor(x / step), -half, half - 1) + 0.5)


def np_int8_weights(w):
    scale = np.abs(w).reshape(-1, w.shape[-1]).max(0) / 127
    return np.round(w / scale) * scale


@pytest.mark.parametrize("bits,weight", [(2, "binary"), (4, "int8"), (8, "float")])
def test_k_bit_input_unit_is_bn_quantize_conv(rng, bits, weight):
    """The binary-input block with the k-bit quantizer in place of sign, its step a
    parameter initialised to the Gaussian optimum; weights binary, 8-bit or float."""
    x = rng.normal(size=(2, 6, 6, 4))
    w = rng.normal(size=(3, 3, 4, 5))
    bn = bn_values(rng, 4)
    module = unit(LayerPrecision("u", f"int{bits}", weight), padding=((1, 1), (1, 1)))
    init = module.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
    step = float(init["params"]["input_step"])
    assert step == pytest.approx(quantizers.gaussian_step(bits))
    step = 0.8 * step  # a trained step, not the initial one
    values = {"params": {"kernel": w, "input_step": step, "bn": {"scale": bn[2], "bias": bn[3]}}}
    values["batch_stats"] = {"bn": {"mean": bn[0], "var": bn[1]}}
    values = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), values)
    y, state = module.apply(values, jnp.asarray(x, jnp.float32), mutable=[BINARIZED_INPUTS])
    weights = {"binary": np_binary_weights, "int8": np_int8_weights, "float": lambda w: w}
    normed = np_bn(x, *bn)
    expected = np_conv(np_k_bit(normed, step, bits), weights[weight](w), 1, 1)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)
    (sown,) = state[BINARIZED_INPUTS]["sign_input"]  # what the selection measures
    np.testing.assert_allclose(np.asarray(sown), normed, rtol=1e-5, atol=1e-5)


def test_k_bit_unit_learns_its_step(rng):
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 4)), jnp.float32)
    module = unit(LayerPrecision("u", "int2", "binary"))
    values = module.init(jax.random.key(0), x)

    def loss(params):
        y, _ = module.apply({**values, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.mean(y**2)

    grads = jax.grad(loss)(values["params"])
    assert float(jnp.abs(grads["input_step"])) > 0
    assert float(jnp.abs(grads["bn"]["scale"]).sum()) > 0
