"""binflax.planned: the one planned-layer core, the same for HBNConv and binarize's layers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import binarize, models, planned, tracing
from binflax.binarized import BinarizeError
from binflax.geometry import Geometry
from binflax.layers import HBNConv
from binflax.plan import LayerPrecision
from tests import user_nets

XNOR = LayerPrecision("conv", "binary", "binary")


def np_box_filter(a, k, stride, pad):
    """Mean of ``a`` (N, H, W) over each k x k window, zero padding ``pad`` on every side."""
    a = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
    n, h, w = a.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((n, ho, wo, 1), np.float32)
    for i in range(ho):
        for j in range(wo):
            win = a[:, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, i, j, 0] = win.mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("k,stride,pad", [(3, 1, 1), (3, 2, 0), (1, 1, 0), (5, 2, 2)])
def test_k_map_is_box_filtered_mean_abs(k, stride, pad):
    x = np.random.default_rng(7).normal(size=(2, 9, 9, 6)).astype(np.float32)
    expected = np_box_filter(np.abs(x).mean(-1), k, stride, pad)
    got = planned.k_map(Geometry.conv((k, k), stride, [(pad, pad)] * 2), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def test_k_map_ignores_groups_and_is_the_mean_for_a_dense_layer():
    x = np.random.default_rng(8).normal(size=(2, 6, 6, 8)).astype(np.float32)
    grouped = Geometry.conv((3, 3), 1, [(1, 1)] * 2, groups=4)
    np.testing.assert_allclose(
        np.asarray(planned.k_map(grouped, jnp.asarray(x))),
        np_box_filter(np.abs(x).mean(-1), 3, 1, 1),
        rtol=1e-5,
        atol=1e-6,
    )
    dense = planned.k_map(Geometry.dense(), jnp.asarray(x[:, 0, 0]))
    np.testing.assert_allclose(
        np.asarray(dense), np.abs(x[:, 0, 0]).mean(-1, keepdims=True), rtol=1e-6
    )


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("input_norm", "layernorm", "input_norm='layernorm'; choose one of batchnorm, shift, none"),
        ("activation", "prelu", "activation='prelu'; choose one of relu, rprelu"),
    ],
)
def test_an_unknown_option_is_refused_with_one_message_on_both_paths(option, value, message):
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(2)(nn.Conv(4, (3, 3))(nn.Conv(4, (3, 3))(x)).reshape(len(x), -1))

    with pytest.raises(planned.OptionError) as unit:
        HBNConv(4, (3, 3), precision=XNOR, options=planned.BinaryOptions(**{option: value})).init(
            jax.random.key(0), jnp.zeros((1, 5, 5, 2))
        )
    with pytest.raises(BinarizeError) as user:
        binarize(Net(), "fbin", input_shape=(8, 8, 1), **{option: value})
    assert str(unit.value) == str(user.value) == message


def test_a_public_constructor_takes_the_options_whole_or_one_by_one():
    """models.create and binarize build the one BinaryOptions their layers carry from
    ``options=`` or from its fields given on their own, the loose fields winning."""
    whole = planned.BinaryOptions(input_norm="shift", scale_inputs=True, dtype=jnp.bfloat16)
    loose = {"input_norm": "shift", "scale_inputs": True, "dtype": jnp.bfloat16}
    assert models.create("lenet5", options=whole) == models.create("lenet5", **loose)
    assert models.create("lenet5", num_classes=3, options=whole, input_norm="none").options == (
        planned.BinaryOptions(input_norm="none", scale_inputs=True, dtype=jnp.bfloat16)
    )
    assert models.create("lenet5").options == planned.BinaryOptions()
    net, shape = user_nets.VGG(), (8, 8, 1)
    assert binarize(net, input_shape=shape, options=whole).options == whole
    assert binarize(net, input_shape=shape, **loose).options == whole
    with pytest.raises(TypeError, match="'scale_input'"):
        binarize(net, input_shape=shape, scale_input=True)


def layer_io(model, variables, x, name):
    """The input and output of planned layer ``name`` when ``model`` runs on ``x``."""
    captured = {}

    def capture(call):
        y = call.compute(call.x)
        captured[call.info.name] = (call.x, y)
        return y

    with tracing.intercept(capture):
        model.apply(variables, jnp.asarray(x))
    return captured[name]


def conv_of(kernel_shape, x, **fields):
    """One 3x3 XNOR layer with RSign and the K map, as an HBNConv and as a binarized
    nn.Conv: the same parameters give the same output."""
    unit = HBNConv(kernel_shape[-1], kernel_shape[:2], padding=((1, 1), (1, 1)), precision=XNOR,
                   norm=True, options=planned.BinaryOptions(**fields))  # fmt: skip

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.Conv(kernel_shape[-2], (1, 1), name="stem")(x)
            x = nn.Conv(kernel_shape[-1], kernel_shape[:2], padding=1, use_bias=False,
                        name="conv")(x)  # fmt: skip
            return nn.Dense(2, name="head")(x.reshape(len(x), -1))

    return unit, Net()


def test_hbnconv_and_binarize_compute_the_same_shift_and_k_map_layer():
    """ReActNet's RSign and XNOR-Net's K map on both paths: one core, the same numbers
    (and the NumPy formula: sign(x - t) conv alpha * sign(W), times K)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    threshold = rng.normal(size=4).astype(np.float32) * 0.3
    options = {"input_norm": "shift", "scale_inputs": True}
    unit, net = conv_of(kernel.shape, x, **options)
    ours = unit.apply({"params": {"kernel": kernel, "threshold": threshold}}, jnp.asarray(x))
    alpha = np.abs(kernel).mean(axis=(0, 1, 2))
    signs = np.where(x - threshold >= 0, 1.0, -1.0)
    padded = np.pad(signs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np.zeros((2, 6, 6, 5), np.float32)
    for i in range(3):
        for j in range(3):
            expected += padded[:, i : i + 6, j : j + 6] @ np.where(kernel[i, j] >= 0, 1.0, -1.0)
    expected *= alpha * np_box_filter(np.abs(x - threshold).mean(-1), 3, 1, 1)
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-5, atol=1e-5)

    model = binarize(net, [("conv", "binary", "binary"), (".*", "float", "float")],
                     input_shape=(6, 6, 4), **options)  # fmt: skip
    variables = model.init(jax.random.key(0), jnp.asarray(x))
    variables["params"]["conv"] = {"kernel": kernel, "threshold": threshold}
    layer_input, layer_output = layer_io(model, variables, x, "conv")
    again = unit.apply({"params": {"kernel": kernel, "threshold": threshold}}, layer_input)
    np.testing.assert_allclose(np.asarray(layer_output), np.asarray(again), rtol=1e-6)


def test_hbnconv_and_binarize_end_a_binary_input_layer_in_the_same_rprelu():
    """``activation="rprelu"``: RSign -> sign -> conv(alpha * sign(W)) -> RPReLU, the
    RPReLU's gamma, beta and zeta under the layer's path as ``rprelu``, on both paths
    (NumPy: PReLU_beta(y - gamma) + zeta per output channel)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    threshold = rng.normal(size=4).astype(np.float32) * 0.3
    rprelu = {
        "gamma": rng.normal(size=5).astype(np.float32) * 0.3,
        "beta": rng.uniform(0.05, 0.5, size=5).astype(np.float32),
        "zeta": rng.normal(size=5).astype(np.float32) * 0.3,
    }
    options = {"input_norm": "shift", "activation": "rprelu"}
    unit, net = conv_of(kernel.shape, x, **options)
    params = {"kernel": kernel, "threshold": threshold, "rprelu": rprelu}
    assert set(unit.init(jax.random.key(0), jnp.asarray(x))["params"]) == set(params)
    ours = unit.apply({"params": params}, jnp.asarray(x))
    alpha = np.abs(kernel).mean(axis=(0, 1, 2))
    padded = np.pad(np.where(x - threshold >= 0, 1.0, -1.0), ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = np.zeros((2, 6, 6, 5))
    for i in range(3):
        for j in range(3):
            y += padded[:, i : i + 6, j : j + 6] @ np.where(kernel[i, j] >= 0, 1.0, -1.0)
    y = y * alpha - rprelu["gamma"]
    expected = np.where(y > 0, y, rprelu["beta"] * y) + rprelu["zeta"]
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-5, atol=1e-5)

    model = binarize(net, [("conv", "binary", "binary"), (".*", "float", "float")],
                     input_shape=(6, 6, 4), **options)  # fmt: skip
    variables = model.init(jax.random.key(0), jnp.asarray(x))
    assert set(variables["params"]["conv"]) == set(params)
    assert "rprelu" not in variables["params"]["stem"]  # a float-input layer is unchanged
    variables["params"]["conv"] = params
    captured = {}

    def capture(call):
        captured[call.info.name] = (call.x, call.compute(call.x))
        return captured[call.info.name][1]

    with tracing.intercept(capture):
        model.apply(variables, jnp.asarray(x))
    layer_input, layer_output = captured["conv"]
    again = unit.apply({"params": params}, layer_input)
    np.testing.assert_allclose(np.asarray(layer_output), np.asarray(again), rtol=1e-6)


def test_a_float_input_unit_ends_in_rprelu_after_its_batch_norm_a_classifier_does_not():
    """In binflax's models RPReLU replaces every ReLU after a unit: a ReLU before the next
    RSign would make its input all +1 (a zero threshold at init)."""
    float_input = LayerPrecision("conv", "float", "binary")
    unit = HBNConv(
        4, (3, 3), precision=float_input, options=planned.BinaryOptions(activation="rprelu")
    )
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 5, 5, 2)), jnp.float32)
    variables = unit.init(jax.random.key(0), x)
    assert set(variables["params"]) == {"kernel", "bn", "rprelu"}
    params = jax.tree.map(lambda a: a, variables["params"])
    params["rprelu"] = {"gamma": jnp.full(4, 0.1), "beta": jnp.full(4, 0.3),
                        "zeta": jnp.full(4, -0.2)}  # fmt: skip
    y = unit.apply({**variables, "params": params}, x)
    no_rprelu = HBNConv(4, (3, 3), precision=float_input)
    z = np.asarray(
        no_rprelu.apply({**variables, "params": {k: params[k] for k in ("kernel", "bn")}}, x)
    )
    expected = np.where(z - 0.1 >= 0, z - 0.1, 0.3 * (z - 0.1)) - 0.2
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-6)
    classifier = HBNConv(
        4,
        (1, 1),
        precision=float_input,
        norm=False,
        options=planned.BinaryOptions(activation="rprelu"),
    )
    assert "rprelu" not in classifier.init(jax.random.key(0), x)["params"]


@pytest.mark.parametrize("inp,weight", [("int4", "binary"), ("int2", "int8"), ("int8", "int8")])
def test_hbnconv_and_binarize_compute_the_same_k_bit_layer(inp, weight):
    """A k-bit input (with a learned threshold) and binary or 8-bit weights: the same
    parameters give the same output on both paths."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    params = {
        "kernel": kernel,
        "threshold": rng.normal(size=4).astype(np.float32) * 0.3,
        "input_step": np.float32(0.3),
    }
    precision = LayerPrecision("conv", inp, weight)
    unit = HBNConv(5, (3, 3), padding=((1, 1), (1, 1)), precision=precision,
                   options=planned.BinaryOptions(input_norm="shift"))  # fmt: skip
    _, net = conv_of(kernel.shape, x)
    model = binarize(net, [("conv", inp, weight), (".*", "float", "float")],
                     input_shape=(6, 6, 4), input_norm="shift")  # fmt: skip
    assert model.plan["conv"] == precision
    variables = model.init(jax.random.key(0), jnp.asarray(x))
    assert set(variables["params"]["conv"]) == set(params)
    variables["params"]["conv"] = params
    layer_input, layer_output = layer_io(model, variables, x, "conv")
    again = unit.apply({"params": params}, layer_input)
    np.testing.assert_allclose(np.asarray(layer_output), np.asarray(again), rtol=1e-6)
    unquantized = unit.apply({"params": {**params, "input_step": np.float32(1e-4)}}, layer_input)
    assert not np.allclose(np.asarray(again), np.asarray(unquantized))  # the step acts
