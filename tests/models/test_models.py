"""The registered models under every plan: names, parameter layout, block layout, gradients.

Expected layer lists and spatial sizes are written out by hand from docs/method.md
section 5, torchvision's layouts and the files the small benchmarks' docstrings name
(their MACs and parameters: test_small_benchmarks.py). Most checks run on shapes alone
(``jax.eval_shape``); a real gradient is compiled once per model, under a hybrid plan,
since XLA compile time (not compute) dominates on a CPU. Variables come from NumPy, not
from the initializers, whose random-number code takes seconds to compile for every
distinct shape.
"""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from binflax import models, tracing
from binflax.geometry import Geometry
from binflax.plan import Plan
from binflax.planned import BINARIZED_INPUTS
from tests.fakes import fake_variables, variable_shapes

ALEXNET = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
SKETCHANET = tuple(f"conv{i}" for i in range(1, 9))
LENET5 = ("conv1", "conv2", "fc1", "fc")
VGG_SMALL = (*(f"conv{i}" for i in range(1, 7)), "fc1", "fc2", "fc")


def _resnet18_names():
    names = ["conv1"]
    for stage in range(1, 5):
        for block in range(2):
            names += [f"layer{stage}_{block}/conv1", f"layer{stage}_{block}/conv2"]
            if stage > 1 and block == 0:
                names.append(f"layer{stage}_{block}/downsample")
    return (*names, "fc")


RESNET18 = _resnet18_names()
SQUEEZENET = (
    "conv1",
    *(f"fire{i}/{conv}" for i in range(2, 10) for conv in ("squeeze", "expand1x1", "expand3x3")),
    "conv10",
)
EXPECTED_NAMES = {
    "alexnet": ALEXNET,
    "sketchanet": SKETCHANET,
    "resnet18": RESNET18,
    "squeezenet": SQUEEZENET,
    "lenet5": LENET5,
    "vgg_small": VGG_SMALL,
}
# the quickstart net is tuned to the digits and may change shape; its names are its own
EXPECTED_NAMES["mini_sketchanet"] = models.layer_names(models.create("mini_sketchanet"))
# the smallest inputs each architecture takes (AlexNet and Sketch-A-Net need their own)
SMALL_INPUT = {
    "alexnet": (224, 224, 3),
    "sketchanet": (225, 225, 1),
    "resnet18": (32, 32, 3),
    "squeezenet": (48, 48, 1),
    "mini_sketchanet": models.MiniSketchANet.default_input_shape,
    "lenet5": (28, 28, 1),
    "vgg_small": (28, 28, 1),  # Fashion-MNIST: fc1 spans the 3x3 map the third pool leaves
}
PLANS = ("float", "wbin", "fbin", "hybrid")
# XLA compile time dominates these tests on a CPU; optimisation level 0 halves it
FAST = dict(compiler_options={"xla_backend_optimization_level": 0})


def build(name, plan, *, binarize_last_weights=False, **kwargs):
    names = EXPECTED_NAMES[name]
    if plan == "hybrid":  # float input for one middle layer: all three kinds of unit appear
        plan = Plan.hybrid(
            names, [names[len(names) // 2]], binarize_last_weights=binarize_last_weights
        )
    kwargs.setdefault("num_classes", 10)
    return models.create(name, plan=plan, binarize_last_weights=binarize_last_weights, **kwargs)


def images(name, batch=2, seed=1):
    shape = (batch, *SMALL_INPUT[name])
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def loss_fn(model, x, rngs=None):
    """Cross-entropy of a training-mode forward pass, as a function of (params, batch_stats)."""
    labels = jnp.arange(x.shape[0]) % 10

    def loss(params, batch_stats):
        logits, _ = model.apply(
            {"params": params, "batch_stats": batch_stats},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs=rngs,
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return loss


def flat(tree):
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def kernel_paths(params):
    return tuple(p.removesuffix("/kernel") for p in flat(params) if p.endswith("/kernel"))


# -- names and layout ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_layer_names_are_stable_readable_paths(name):
    model = models.create(name, plan="fbin")
    assert model.plan.names == EXPECTED_NAMES[name]
    assert models.layer_names(model) == EXPECTED_NAMES[name]
    # the first layer is float throughout; the classifier's weights follow the flag
    first, classifier = model.plan.layers[0], model.plan.layers[-1]
    assert (first.input, first.weight, classifier.input) == ("float", "float", "float")
    assert classifier.weight == "float"
    last = models.create(name, plan="fbin", binarize_last_weights=True).plan.layers[-1]
    assert (last.input, last.weight) == ("float", "binary")


def test_resnet18_name_examples():
    assert {"layer4_1/conv1", "layer2_0/downsample"} <= set(RESNET18)
    assert len(RESNET18) == 21 and "layer1_0/downsample" not in RESNET18
    assert "fire2/squeeze" in SQUEEZENET and len(SQUEEZENET) == 26


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_params_batch_norm_placement_and_sown_inputs(name):
    """Per layer of a hybrid (both kinds of unit present): the parameter path is the plan
    name; batch norm acts on the input channels of a binary-input unit and on the output
    channels otherwise, and never in the classifier; exactly the binary-input units sow
    the tensor they binarize."""
    model = build(name, "hybrid")
    x = jax.ShapeDtypeStruct((1, *SMALL_INPUT[name]), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    infos = {info.name: info for info in models.trace_layers(model, SMALL_INPUT[name])}
    assert tuple(infos) == model.plan.names  # call order is the plan's order
    assert sorted(kernel_paths(params)) == sorted(model.plan.names)  # pytrees sort dict keys
    leaves = flat(params)
    for layer in model.plan:
        kh, kw, cin, cout = infos[layer.name].kernel_shape
        assert leaves[f"{layer.name}/kernel"].shape == (kh, kw, cin, cout)
        bn = leaves.get(f"{layer.name}/bn/scale")
        if layer.name == model.plan.names[-1]:
            assert bn is None
        else:
            assert bn.shape == ((cin,) if layer.binary_input else (cout,))
        # a float bias in the first layer and the classifier only
        has_bias = f"{layer.name}/bias" in leaves
        assert has_bias == (layer.name in (model.plan.names[0], model.plan.names[-1]))

    logits, state = jax.eval_shape(
        lambda v: model.apply(v, x, mutable=[BINARIZED_INPUTS]), variable_shapes(model, x)
    )
    assert logits.shape == (1, 10)
    prefix, suffix = f"{BINARIZED_INPUTS}/", "/sign_input/0"
    sown = {p.removeprefix(prefix).removesuffix(suffix): s.shape for p, s in flat(state).items()}
    assert sorted(sown) == sorted(model.plan.binary_inputs)
    for layer_name, shape in sown.items():
        assert shape == infos[layer_name].input_shape


@pytest.mark.parametrize(
    "preset,last", [("fbin", False), ("fbin", True), ("wbin", True), ("float", True)]
)
def test_effective_weights_and_inputs_follow_the_plan(preset, last):
    """Intercepting every unit's convolution: the first layer always sees float weights
    and inputs, the classifier's weights are alpha * sign(W) exactly when
    binarize_last_weights (and the preset binarizes weights), binary-input units feed
    +-1 to the conv."""
    model = build("mini_sketchanet", preset, binarize_last_weights=last)
    x = images("mini_sketchanet", batch=1)
    variables = fake_variables(model, x)
    params = flat(variables["params"])

    @jax.jit
    def conv_operands(variables):
        seen, current = {}, []
        linear_map = Geometry.apply

        def record_operands(geometry, x, kernel, **kwargs):
            if current:
                seen.setdefault(current[-1], (x, kernel))
            return linear_map(geometry, x, kernel, **kwargs)

        def within_layer(call):
            current.append(call.info.name)
            try:
                return call.compute(call.x)
            finally:
                current.pop()

        with (
            mock.patch.object(Geometry, "apply", record_operands),
            tracing.intercept(within_layer),
        ):
            model.apply(variables, x)
        return seen

    seen = conv_operands(variables)
    assert sorted(seen) == sorted(model.plan.names)
    for layer in model.plan:
        inputs, kernel = (np.asarray(a) for a in seen[layer.name])
        latent = np.asarray(params[f"{layer.name}/kernel"])
        alpha = np.abs(latent).reshape(-1, latent.shape[-1]).mean(0)
        binary = alpha * np.where(latent >= 0, 1.0, -1.0)
        expected = binary if layer.binary_weight else latent
        np.testing.assert_allclose(kernel, expected, rtol=1e-5)
        assert np.isin(inputs, [-1.0, 1.0]).all() == layer.binary_input
    first, classifier = model.plan.layers[0], model.plan.layers[-1]
    assert not first.binary_weight and not first.binary_input and not classifier.binary_input
    assert classifier.binary_weight == (last and preset != "float")


# -- gradients -------------------------------------------------------------------------


def assert_useful_gradients(grads):
    leaves = flat(grads)
    for path, g in leaves.items():
        assert np.isfinite(np.asarray(g)).all(), path
        if path.endswith("/kernel"):
            assert np.abs(np.asarray(g)).max() > 0, f"no gradient reaches {path}"


# A real gradient costs one XLA compile (seconds on a CPU). AlexNet's layer kinds (a conv
# chain with pools, a "fully-connected" conv over the last map, 1x1 convs, dropout) are
# Sketch-A-Net's, which runs for real, so AlexNet's gradients are only traced.
COMPILED = ("mini_sketchanet", "sketchanet", "resnet18", "squeezenet")


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_backward_pass_traces_for_every_plan(name):
    """Every plan's loss and gradient trace with consistent shapes (``jax.eval_shape``);
    the hybrid's gradient is also compiled and run below (AlexNet's is not)."""
    x = images(name)
    for plan in PLANS if name not in COMPILED else PLANS[:-1]:
        model = build(name, plan, dropout_rate=0.0)
        v = variable_shapes(model, x)
        loss, grads = jax.eval_shape(jax.value_and_grad(loss_fn(model, x)), *v.values())
        assert loss.shape == ()
        assert jax.tree.map(lambda a: a.shape, grads) == jax.tree.map(
            lambda a: a.shape, v["params"]
        )


@pytest.mark.parametrize("name", COMPILED)
def test_hybrid_gradient_is_finite_and_reaches_every_kernel(name):
    """One compiled gradient per model, under a hybrid plan: float/float, float-input/
    binary-weight and XNOR units are all present, and each unit picks its code path from
    its own plan entry, so this exercises every path a preset can."""
    x = images(name)
    rngs, kwargs = None, {"dropout_rate": 0.0}
    if name == "sketchanet":  # one model also trains through its dropout
        rngs, kwargs = {"dropout": jax.random.key(0)}, {}
    model = build(name, "hybrid", **kwargs)
    v = fake_variables(model, x)
    grad = jax.jit(jax.grad(loss_fn(model, x, rngs))).lower(*v.values()).compile(**FAST)
    assert_useful_gradients(grad(*v.values()))


# -- spatial sizes ---------------------------------------------------------------------


def sizes(name, input_shape=None):
    infos = models.trace_layers(models.create(name), input_shape)
    return {i.name: (i.input_shape[1], i.output_shape[1]) for i in infos}


def test_sketchanet_spatial_sizes():
    """225 -> conv1 71 -> pool 35 -> conv2 31 -> pool 15 -> conv3..5 15 -> pool 7 -> 1."""
    s = sizes("sketchanet")
    assert s["conv1"] == (225, 71)
    assert s["conv2"] == (35, 31)  # the first pool's output is conv2's input
    assert s["conv3"] == (15, 15) and s["conv4"] == (15, 15) and s["conv5"] == (15, 15)
    assert s["conv6"] == (7, 1)  # the third pool gives 7, conv6 (7x7) gives 1
    assert s["conv7"] == (1, 1) and s["conv8"] == (1, 1)


def test_squeezenet_spatial_sizes_ceil_mode_pooling():
    """torchvision's squeezenet1_0 at 224: 109 -> 54 -> 27 -> 13 (ceil-mode pooling)."""
    s = sizes("squeezenet")
    assert s["conv1"] == (224, 109)
    assert s["fire2/squeeze"] == (54, 54) and s["fire4/expand3x3"] == (54, 54)
    assert s["fire5/squeeze"] == (27, 27) and s["fire8/expand1x1"] == (27, 27)
    assert s["fire9/squeeze"] == (13, 13) and s["conv10"] == (13, 13)


def test_resnet18_spatial_sizes():
    s = sizes("resnet18")
    assert s["conv1"] == (224, 112)
    assert s["layer1_0/conv1"] == (56, 56)
    assert s["layer2_0/conv1"] == (56, 28) and s["layer2_0/downsample"] == (56, 28)
    assert s["layer3_1/conv2"] == (14, 14) and s["layer4_1/conv2"] == (7, 7)
    assert s["fc"] == (1, 1)


def test_unknown_model_lists_the_registry():
    with pytest.raises(ValueError, match="'vgg'.*alexnet, lenet5, mini_sketchanet, resnet18"):
        models.create("vgg")
