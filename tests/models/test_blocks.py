"""ResNet's Bi-Real and ReActNet blocks and the units' RPReLU, found by probing the network.

Every planned unit's output is replaced by independent random values
(``tracing.intercept``) and every unit's input is recorded, so what the network does
*between* its units - a shortcut add, a ReLU, an average pool - is read off exactly and
compared with NumPy formulas written here from Bi-Real Net's and ReActNet's blocks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import models, tracing
from binflax.models.base import ModelError
from binflax.plan import Plan
from tests.fakes import fake_variables, variable_shapes
from tests.models.test_models import FAST, assert_useful_gradients, loss_fn

SHAPE = (32, 32, 3)
SMALL = dict(num_classes=10, stem="cifar", widths=(8, 16, 16, 32))


def probe(model, input_shape):
    """(layers, inputs, outputs) by name when every unit outputs random values."""
    layers = {info.name: info for info in tracing.trace_layers(model, input_shape)}
    rng = np.random.default_rng(0)
    outputs = {
        name: rng.standard_normal(info.output_shape).astype(np.float32)
        for name, info in layers.items()
    }
    inputs = {}

    def replace(call):
        inputs[call.info.name] = np.asarray(call.x)
        return jnp.asarray(outputs[call.info.name])

    with tracing.intercept(replace):
        model.apply({}, jnp.zeros((1, *input_shape)), train=False)
    return layers, inputs, outputs


def np_avg_pool_2x2(x):
    """2x2 stride-2 average pool of an NHWC map; an odd map's last window averages the
    pixels it has (the 3x3 stride-2 conv beside it also gives ceil(size / 2))."""
    n, h, w, c = x.shape
    padded = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=np.nan)
    windows = padded.reshape(n, (h + 1) // 2, 2, (w + 1) // 2, 2, c)
    return np.nanmean(windows, axis=(2, 4))


def resnet(block, plan="fbin", **fields):
    names = models.layer_names(models.create("resnet18", block=block, **SMALL))
    if plan == "hybrid":  # two binary-input convs kept float, one of them a downsample
        plan = Plan.hybrid(names, ["layer1_0/conv2", "layer2_0/downsample"])
    return models.create("resnet18", plan=plan, block=block, **SMALL, **fields)


@pytest.mark.parametrize(
    "block,activation,plan,shape",
    [
        ("bireal", "relu", "fbin", SHAPE),
        ("bireal", "rprelu", "hybrid", (28, 28, 1)),  # Fashion-MNIST: 28 -> 14 -> 7 -> 4
        ("reactnet", "relu", "hybrid", SHAPE),
    ],
)
def test_every_conv_of_the_bireal_topology_is_its_own_residual(block, activation, plan, shape):
    """conv2's input is act(conv1 + shortcut), the next block's input act(conv2 + conv2's
    input): a real-valued identity shortcut around every conv, and where the shape
    changes AvgPool(2, 2) -> downsample. act is ReLU, except after a unit with its own
    RPReLU: every unit under "rprelu" (block "reactnet" sets it on its units whatever the
    model's field says)."""
    model = resnet(block, plan, activation=activation)
    layers, inputs, outputs = probe(model, shape)
    rprelu = activation == "rprelu" or block == "reactnet"

    def act(name, y):  # under rprelu every unit ends in its own RPReLU, which replaces ReLU
        return y if rprelu else np.maximum(y, 0)

    blocks = [f"layer{s}_{b}" for s in range(1, 5) for b in range(2)]
    for block_name, following in zip(blocks, [*blocks[1:], None], strict=True):
        x = inputs[f"{block_name}/conv1"]
        shortcut = x
        if f"{block_name}/downsample" in layers:
            np.testing.assert_allclose(
                inputs[f"{block_name}/downsample"], np_avg_pool_2x2(x), rtol=1e-6, atol=1e-6
            )
            shortcut = outputs[f"{block_name}/downsample"]
        mid = act(f"{block_name}/conv1", outputs[f"{block_name}/conv1"] + shortcut)
        np.testing.assert_allclose(inputs[f"{block_name}/conv2"], mid, rtol=1e-6, atol=1e-6)
        out = act(f"{block_name}/conv2", outputs[f"{block_name}/conv2"] + mid)
        if following is not None:
            np.testing.assert_allclose(inputs[f"{following}/conv1"], out, rtol=1e-6, atol=1e-6)
    pooled = out.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(inputs["fc"], pooled, rtol=1e-5, atol=1e-6)


def test_the_xnor_block_keeps_one_shortcut_per_two_convs():
    """The default block is unchanged: conv2 reads relu(conv1), with no shortcut."""
    layers, inputs, outputs = probe(resnet("xnor"), SHAPE)
    conv1 = outputs["layer1_0/conv1"]
    np.testing.assert_array_equal(inputs["layer1_0/conv2"], np.maximum(conv1, 0))
    expected = np.maximum(outputs["layer1_0/conv2"] + inputs["layer1_0/conv1"], 0)
    np.testing.assert_allclose(inputs["layer1_1/conv1"], expected, rtol=1e-6)


def test_reactnet_units_carry_rsign_and_rprelu_the_bireal_ones_batch_norm():
    shapes = {
        block: variable_shapes(resnet(block), jnp.zeros((1, *SHAPE)))["params"]
        for block in ("bireal", "reactnet")
    }
    assert set(shapes["bireal"]["layer2_0"]["conv1"]) == {"kernel", "bn"}
    assert set(shapes["reactnet"]["layer2_0"]["conv1"]) == {"kernel", "threshold", "rprelu"}
    assert set(shapes["reactnet"]["layer2_0"]["downsample"]["rprelu"]) == {"gamma", "beta", "zeta"}
    assert set(shapes["reactnet"]["conv1"]) == set(shapes["bireal"]["conv1"])  # float stem
    bireal, xnor = (models.layer_names(resnet(block)) for block in ("bireal", "xnor"))
    assert sorted(bireal) == sorted(xnor)  # the same plan entries, called in block order:
    assert bireal[5:8] == ("layer2_0/conv1", "layer2_0/downsample", "layer2_0/conv2")


def test_rprelu_replaces_the_relu_after_every_unit_of_any_model():
    """mini_sketchanet conv2 -> conv3 with no pool between: conv3 reads conv2's output
    itself where conv2 ends in RPReLU - under "rprelu" whatever conv2's input - and relu
    of it under "relu"."""
    names = models.layer_names(models.create("mini_sketchanet"))
    for float_inputs, activation in (((), "rprelu"), (("conv2",), "rprelu"), ((), "relu")):
        plan = Plan.hybrid(names, float_inputs)
        model = models.create("mini_sketchanet", plan=plan, activation=activation)
        _, inputs, outputs = probe(model, (16, 16, 1))
        conv2 = outputs["conv2"]
        expected = conv2 if activation == "rprelu" else np.maximum(conv2, 0)
        np.testing.assert_array_equal(inputs["conv3"], expected)


def test_nested_blocks_get_the_activation():
    model = models.create("squeezenet", plan="fbin", num_classes=10, activation="rprelu")
    params = variable_shapes(model, jnp.zeros((1, 48, 48, 1)))["params"]
    assert "rprelu" in params["fire2"]["squeeze"] and "rprelu" in params["conv1"]
    assert "rprelu" not in params["conv10"]  # the classifier keeps its ReLU


def test_unknown_block_names_the_choices():
    with pytest.raises(ModelError, match="block='bi-real'.*'xnor', 'bireal', 'reactnet'"):
        models.create("resnet18", block="bi-real", **SMALL)


@pytest.mark.parametrize("block,plan", [("bireal", "fbin"), ("reactnet", "hybrid")])
def test_resnet18_bireal_trains_on_a_small_input(block, plan):
    """``--config.model=resnet18 --config.model_kwargs.block=bireal`` at 32x32x3 with 10
    classes: one compiled forward and backward pass, every gradient finite and reaching
    every kernel."""
    names = models.layer_names(models.create("resnet18", block=block, num_classes=10))
    if plan == "hybrid":
        plan = Plan.hybrid(names, ["layer2_0/conv1", "layer3_0/downsample"])
    model = models.create("resnet18", plan=plan, block=block, num_classes=10)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, *SHAPE)), jnp.float32)
    v = fake_variables(model, x)
    grad = jax.jit(jax.grad(loss_fn(model, x))).lower(*v.values()).compile(**FAST)
    assert_useful_gradients(grad(*v.values()))
