"""binflax.binarize on plain-Flax networks (tests/user_nets.py): names, plans, layers
against NumPy and against Flax's own ``nn.Conv``, gradients, costs, selection, loading.

References are independent of binflax: NumPy convolutions and batch norms, Flax's
``nn.Conv``/``nn.Dense`` fed with NumPy-binarized operands, and the user's float network
run with NumPy-binarized kernels. Variables are drawn in NumPy (no initializer compiles).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from binflax import binarize, cost, optimizer, quantizers, select, tracing
from binflax.binarized import BinarizeError, load_float_variables
from binflax.errors import UserError
from binflax.plan import Plan, PlanError
from binflax.planned import BINARIZED_INPUTS
from binflax.testing import random_variables
from tests import user_nets

SHAPE = (16, 16, 1)
EPS = 1e-5
NAMES = {
    user_nets.VGG: ("Conv_0", "Conv_1", "Conv_2", "Conv_3", "Dense_0", "Dense_1"),
    user_nets.PreActResNet: (
        "stem",
        *(f"stage0/block{b}/conv{c}" for b in (0, 1) for c in (1, 2)),
        "stage1/block0/shortcut",  # called first: it reads the pre-activated block input
        "stage1/block0/conv1",
        "stage1/block0/conv2",
        "stage1/block1/conv1",
        "stage1/block1/conv2",
        "head",
    ),
    user_nets.GroupedNet: ("Conv_0", "Conv_1", "Conv_2", "Dense_0"),
}
NETS = list(NAMES)
PLANNED = (nn.Conv, nn.Dense)


# -- NumPy references -----------------------------------------------------------------


def np_sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def np_binary_weights(w):
    """alpha * sign(W), alpha = mean |W| over every axis but the output channels."""
    return np.abs(w).reshape(-1, w.shape[-1]).mean(0) * np_sign(w)


def np_bn(x, mean, var, scale, bias):
    return (x - mean) / np.sqrt(var + EPS) * scale + bias


def np_conv(x, w, stride=1, pads=((0, 0), (0, 0)), groups=1):
    """NHWC x (kh, kw, cin/groups, cout) cross-correlation, zero padding, by windows."""
    x = np.pad(x, ((0, 0), *pads, (0, 0)))
    kh, kw, cin_group, cout = w.shape
    cout_group = cout // groups
    ho, wo = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, cout))
    for g in range(groups):
        xg = x[..., g * cin_group : (g + 1) * cin_group]
        wg = w[..., g * cout_group : (g + 1) * cout_group]
        for i in range(ho):
            for j in range(wo):
                patch = xg[:, i * stride : i * stride + kh, j * stride : j * stride + kw]
                out[:, i, j, g * cout_group : (g + 1) * cout_group] = np.einsum(
                    "nhwc,hwco->no", patch, wg
                )
    return out


# -- helpers --------------------------------------------------------------------------


def images(batch=2, shape=SHAPE, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, *shape)), jnp.float32)


def flat(tree):
    return traverse_util.flatten_dict(tree, sep="/")


def compiled(fn, *args):
    """``fn(*args)``, compiled without XLA's optimisation passes: on a CPU, compiling
    these small networks costs more than running them, and eager mode compiles every op."""
    options = {"xla_backend_optimization_level": 0}
    return jax.jit(fn).lower(*args).compile(options)(*args)


def layer_io(model, variables, x, target, **apply_kwargs):
    """The input and output of the planned layer at path ``target`` in one forward pass
    (and the mutated collections when ``apply_kwargs`` has ``mutable``)."""

    def run(variables, x):
        seen = {}

        def record(next_fun, args, kwargs, context):
            y = next_fun(*args, **kwargs)
            module = context.module
            planned = context.method_name == "__call__" and isinstance(module, PLANNED)
            if planned and "/".join(module.scope.path) == target:
                seen["x"], seen["y"] = args[0], y
            return y

        with nn.intercept_methods(record):
            out = model.apply(variables, x, **apply_kwargs)
        return seen["x"], seen["y"], out[1] if apply_kwargs else None

    inp, out, state = jax.device_get(compiled(run, variables, x))
    return (inp, out, state) if apply_kwargs else (inp, out)


def table(plan):
    return {layer.name: (layer.input, layer.weight) for layer in plan}


# -- names and trees ------------------------------------------------------------------


@pytest.mark.parametrize("net", NETS, ids=lambda c: c.__name__)
def test_plan_names_are_the_module_paths_of_the_users_own_params(net):
    """Plan names, in call order, are the paths of the network's own kernels; the fbin
    tree is the network's own plus a batch norm under each binary-input layer."""
    model = binarize(net(), "fbin", input_shape=SHAPE)
    assert model.plan.names == NAMES[net]
    x = jax.ShapeDtypeStruct((1, *SHAPE), jnp.float32)
    own = jax.eval_shape(net().init, jax.random.key(0), x)
    ours = jax.eval_shape(model.init, jax.random.key(0), x)
    kernels = sorted(p.removesuffix("/kernel") for p in flat(own["params"]) if "kernel" in p)
    assert kernels == sorted(NAMES[net])
    for collection, leaves in (("params", ("scale", "bias")), ("batch_stats", ("mean", "var"))):
        theirs, mine = flat(own[collection]), flat(ours[collection])
        added = {f"{n}/bn/{leaf}" for n in model.plan.binary_inputs for leaf in leaves}
        assert set(mine) == set(theirs) | added
        assert all(mine[p].shape == s.shape for p, s in theirs.items())
    # the sown inputs of sign: exactly the binary-input layers, under their paths
    sown = flat(ours[BINARIZED_INPUTS])
    assert sorted(p.removesuffix("/sign_input") for p in sown) == sorted(model.plan.binary_inputs)
    assert type(model).__name__ == f"Binarized{net.__name__}"


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("preset", ["float", "wbin", "fbin"])
def test_presets_expand_in_call_order(preset, last):
    """The first layer called is float, the last called keeps a float input and binary
    weights only with binarize_last_weights (docs/method.md section 3)."""
    names = NAMES[user_nets.PreActResNet]
    model = binarize(
        user_nets.PreActResNet(), preset, input_shape=SHAPE, binarize_last_weights=last
    )
    middle = {"float": ("float", "float"), "wbin": ("float", "binary")}.get(
        preset, ("binary", "binary")
    )
    expected = dict.fromkeys(names[1:-1], middle)
    expected["stem"] = ("float", "float")
    expected["head"] = ("float", "binary" if last and preset != "float" else "float")
    assert table(model.plan) == expected and model.plan.names == names


def test_rules_first_match_wins():
    rules = [
        ("stem|head", "float", "float"),
        ("stage1/block0/.*", "float", "binary"),  # the downsampling block: float inputs
        (".*/conv2", "binary", "float"),  # would match stage1/block0/conv2: rule 1 wins
        (".*", "binary", "binary"),
    ]
    model = binarize(user_nets.PreActResNet(), rules, input_shape=SHAPE)
    bb, bf, fb, ff = ("binary", "binary"), ("binary", "float"), ("float", "binary"), ("float",) * 2
    assert table(model.plan) == {
        "stem": ff,
        "stage0/block0/conv1": bb,
        "stage0/block0/conv2": bf,
        "stage0/block1/conv1": bb,
        "stage0/block1/conv2": bf,
        "stage1/block0/shortcut": fb,
        "stage1/block0/conv1": fb,
        "stage1/block0/conv2": fb,
        "stage1/block1/conv1": bb,
        "stage1/block1/conv2": bf,
        "head": ff,
    }
    assert model.plan.names == NAMES[user_nets.PreActResNet]


@pytest.mark.parametrize(
    "rules, message",
    [
        ([("Conv_9", "float", "float"), (".*", "float", "float")], "rule 0 .* matches no layer"),
        (
            [("Conv_0|Dense_1", "float", "float"), (".*", "binary", "binary"),
             ("Conv_2", "float", "binary")],
            r"rule 2 .* decides no layer: earlier rules take every layer it matches \(Conv_2\)",
        ),
        ([("Conv_.*", "float", "binary")], "no rule matches layer 'Dense_0'"),
        ([("Conv_0", "bin", "float"), (".*", "float", "float")], "input precision .*'bin'"),
        ([("Conv_(", "float", "float")], "is not a regular expression"),
        ([("Conv_0", "float")], r"is not a \(regex, input, weight\) triple"),
        ([(".*", "binary", "binary")], "'Conv_0'.*first and last layers"),
        ([("Conv_0", "float", "float"), (".*", "binary", "binary")], "'Dense_1'.*first and last"),
    ],
)  # fmt: skip
def test_unknown_or_unmatched_rules_are_plan_errors(rules, message):
    with pytest.raises(PlanError, match=message) as error:
        binarize(user_nets.VGG(), rules, input_shape=SHAPE)
    assert isinstance(error.value, UserError)


# -- one binary layer against NumPy ---------------------------------------------------


def test_binary_conv_is_bn_sign_binary_weights_conv():
    """stage1/block0/conv1: BN of the input (running statistics), sign, a stride-2 SAME
    conv (pads (0, 1) at 16 -> 8) with alpha * sign(W), no bias."""
    model = binarize(user_nets.PreActResNet(), "fbin", input_shape=SHAPE)
    x = images()
    variables = random_variables(model, x.shape[1:])
    name = "stage1/block0/conv1"
    inp, out = layer_io(model, variables, x, name)
    params, stats = flat(variables["params"]), flat(variables["batch_stats"])
    bn = [np.asarray(d[f"{name}/bn/{k}"]) for d, k in
          ((stats, "mean"), (stats, "var"), (params, "scale"), (params, "bias"))]  # fmt: skip
    w = np.asarray(params[f"{name}/kernel"])
    expected = np_conv(np_sign(np_bn(inp, *bn)), np_binary_weights(w), 2, ((0, 1), (0, 1)))
    assert out.shape == (2, 8, 8, 16)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_binary_grouped_conv_with_bias():
    """Conv_1 of GroupedNet: 4 groups, stride 2, SAME, a float bias after the conv."""
    model = binarize(user_nets.GroupedNet(), "fbin", input_shape=SHAPE)
    x = images()
    variables = random_variables(model, x.shape[1:])
    inp, out = layer_io(model, variables, x, "Conv_1")
    p, s = flat(variables["params"]), flat(variables["batch_stats"])
    bn = (s["Conv_1/bn/mean"], s["Conv_1/bn/var"], p["Conv_1/bn/scale"], p["Conv_1/bn/bias"])
    bn = [np.asarray(a) for a in bn]
    w, b = np.asarray(p["Conv_1/kernel"]), np.asarray(p["Conv_1/bias"])
    assert w.shape == (3, 3, 2, 8)
    signs = np_sign(np_bn(inp, *bn))
    expected = np_conv(signs, np_binary_weights(w), 2, ((0, 1), (0, 1)), groups=4) + b
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("input_norm", ["batchnorm", "shift", "none"])
def test_binary_dense_and_input_norms(input_norm):
    """Dense_0 of VGG (flattened 4x4x16 input): norm, sign, x @ alpha * sign(W) + bias;
    ``shift`` subtracts a learned per-feature ``threshold``, ``none`` adds nothing."""
    model = binarize(user_nets.VGG(), "fbin", input_shape=SHAPE, input_norm=input_norm)
    x = images()
    variables = random_variables(model, x.shape[1:])
    inp, out, state = layer_io(model, variables, x, "Dense_0", mutable=[BINARIZED_INPUTS])
    p, s = flat(variables["params"]), flat(variables["batch_stats"])
    added = {k.removeprefix("Dense_0/") for k in p if k.startswith("Dense_0/")}
    added -= {"kernel", "bias"}
    if input_norm == "batchnorm":
        assert added == {"bn/scale", "bn/bias"}
        keys = ("mean", "var", "scale", "bias")
        normed = np_bn(inp, *(np.asarray({**p, **s}[f"Dense_0/bn/{k}"]) for k in keys))
    elif input_norm == "shift":
        assert added == {"threshold"} and p["Dense_0/threshold"].shape == (256,)
        normed = inp - np.asarray(p["Dense_0/threshold"])
    else:
        assert added == set()
        normed = inp
    w, b = np.asarray(p["Dense_0/kernel"]), np.asarray(p["Dense_0/bias"])
    np.testing.assert_allclose(
        out, np_sign(normed) @ np_binary_weights(w) + b, rtol=1e-4, atol=1e-4
    )
    (sown,) = state[BINARIZED_INPUTS]["Dense_0"]["sign_input"]
    np.testing.assert_allclose(np.asarray(sown), normed, rtol=1e-5, atol=1e-5)


def test_added_batch_norm_trains_when_batch_stats_are_mutable():
    """As the network's own batch norms do: with ``batch_stats`` mutable (training) the
    added norm uses the batch's statistics (biased variance) and moves its running ones
    by 0.1 of the way (momentum 0.9); otherwise it uses the running ones (tested above)."""
    model = binarize(user_nets.VGG(), "fbin", input_shape=SHAPE)
    x = images(4)
    variables = random_variables(model, x.shape[1:])
    mutable = ["batch_stats", BINARIZED_INPUTS]
    inp, _, state = layer_io(model, variables, x, "Dense_0", train=True, mutable=mutable)
    p, old = flat(variables["params"]), flat(variables["batch_stats"])
    new = flat(state["batch_stats"])
    mean, var = inp.mean(0), inp.var(0)
    np.testing.assert_allclose(
        np.asarray(new["Dense_0/bn/mean"]), 0.9 * old["Dense_0/bn/mean"] + 0.1 * mean, rtol=1e-4
    )
    np.testing.assert_allclose(
        np.asarray(new["Dense_0/bn/var"]), 0.9 * old["Dense_0/bn/var"] + 0.1 * var, rtol=1e-4
    )
    (sown,) = state[BINARIZED_INPUTS]["Dense_0"]["sign_input"]
    expected = np_bn(inp, mean, var, p["Dense_0/bn/scale"], p["Dense_0/bn/bias"])
    np.testing.assert_allclose(np.asarray(sown), expected, rtol=1e-4, atol=1e-4)


# -- every geometry nn.Conv takes, against Flax's own nn.Conv ---------------------------


class Sandwich(nn.Module):
    """A pointwise Dense, the conv under test, a pointwise Dense: the conv is a middle
    layer, so it may take a binary input."""

    conv: tuple  # nn.Conv's fields as (name, value) pairs
    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Dense(4, name="first")(x)
        x = nn.Conv(**dict(self.conv), name="conv")(x)
        return nn.Dense(self.num_classes, name="last")(x)


GEOMETRIES = {  # id: (nn.Conv fields, one example's shape)
    "same": (dict(features=6, kernel_size=(3, 3)), (7, 7, 3)),
    "valid-stride2": (dict(features=6, kernel_size=(3, 3), strides=2, padding="VALID"), (7, 7, 3)),
    "int-pad-2x3-strides21": (
        dict(features=6, kernel_size=(2, 3), strides=(2, 1), padding=1), (7, 6, 3)),
    "pairs": (dict(features=6, kernel_size=(3, 3), padding=((1, 0), (2, 1))), (6, 6, 3)),
    "per-dim-ints": (dict(features=6, kernel_size=(3, 3), padding=(1, 2)), (6, 6, 3)),
    "circular-dilated": (
        dict(features=6, kernel_size=(3, 3), padding="CIRCULAR", kernel_dilation=2), (7, 7, 3)),
    "reflect-stride2": (
        dict(features=6, kernel_size=(3, 3), padding="REFLECT", strides=2), (7, 7, 3)),
    "input-dilation": (
        dict(features=6, kernel_size=(3, 3), input_dilation=2, padding=1), (5, 5, 3)),
    "groups-dilation": (
        dict(features=8, kernel_size=(3, 3), feature_group_count=4, kernel_dilation=(1, 2)),
        (7, 7, 3)),
    "1d-causal": (
        dict(features=6, kernel_size=3, padding="CAUSAL", kernel_dilation=2), (9, 3)),
    "1d-stride2": (dict(features=6, kernel_size=(3,), strides=2), (9, 3)),
    "3d": (dict(features=5, kernel_size=(2, 2, 2), strides=(1, 2, 1)), (4, 5, 4, 3)),
    "two-batch-dims-no-bias": (dict(features=6, kernel_size=(3, 3), use_bias=False), (2, 5, 5, 3)),
}  # fmt: skip
SANDWICH_RULES = [("first|last", "float", "float"), ("conv", "binary", "binary")]


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_binary_conv_geometry_matches_flax_conv(geometry):
    """The binarized layer computes what Flax's own nn.Conv computes on sign(x) with the
    kernel alpha * sign(W): every padding, stride, dilation, grouping and rank."""
    fields, shape = GEOMETRIES[geometry]
    model = binarize(
        Sandwich(tuple(fields.items())), SANDWICH_RULES, input_shape=shape, input_norm="none"
    )
    x = images(shape=shape)
    variables = random_variables(model, x.shape[1:])
    inp, out = layer_io(model, variables, x, "conv")
    conv = {k.removeprefix("conv/"): v for k, v in flat(variables["params"]).items()}
    conv = {k: v for k, v in conv.items() if "/" not in k}
    conv["kernel"] = np_binary_weights(np.asarray(conv["kernel"]))
    expected = nn.Conv(**fields).apply({"params": conv}, np_sign(inp))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_bfloat16_binary_layer_keeps_integer_accumulators():
    """dtype=bfloat16: inputs and kernels in bfloat16, accumulation in float32, so the
    output over the bfloat16 alpha is the exact integer accumulator; params stay float32."""
    fields, shape = GEOMETRIES["groups-dilation"]
    fields = {**fields, "use_bias": False}
    model = binarize(
        Sandwich(tuple(fields.items())),
        SANDWICH_RULES,
        input_shape=shape,
        input_norm="none",
        dtype=jnp.bfloat16,
    )
    x = images(shape=shape)
    variables = random_variables(model, x.shape[1:])
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
    inp, out = layer_io(model, variables, x, "conv")
    w = np.asarray(flat(variables["params"])["conv/kernel"])
    alpha = np.asarray(jnp.asarray(np.abs(w).reshape(-1, 8).mean(0)).astype(jnp.bfloat16))
    counts = nn.Conv(**fields).apply({"params": {"kernel": np_sign(w)}}, np_sign(inp))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out / alpha.astype(np.float32), np.asarray(counts))


# -- gradients and training -----------------------------------------------------------


@pytest.mark.parametrize("net", [user_nets.GroupedNet, user_nets.VGG], ids=lambda c: c.__name__)
def test_wbin_is_the_users_network_with_binary_kernels_and_the_ste_gradient(net):
    """wbin = the user's float network run with alpha * sign(W) kernels (forward), and
    the latent kernel's gradient is the STE formula g_b * alpha * 1[|W| <= 1], where g_b
    is the user's network's gradient at the binarized kernels (alpha held constant)."""
    model = binarize(net(), "wbin", input_shape=SHAPE)
    x = images()
    variables = random_variables(model, SHAPE)  # wbin adds nothing: the tree is the user's own
    weights = jnp.asarray(np.random.default_rng(3).normal(size=(2, 10)), jnp.float32)
    binary = {n for n in model.plan.names if model.plan[n].binary_weight}

    def with_binary_kernels(params):
        leaves = flat(params)
        for name in binary:
            leaves[f"{name}/kernel"] = np_binary_weights(np.asarray(leaves[f"{name}/kernel"]))
        return traverse_util.unflatten_dict(leaves, sep="/")

    def loss(module, params):
        logits = module.apply({**variables, "params": params}, x)
        return jnp.sum(logits * weights)

    substituted = with_binary_kernels(variables["params"])
    np.testing.assert_allclose(
        np.asarray(
            compiled(lambda p: model.apply({**variables, "params": p}, x), variables["params"])
        ),
        np.asarray(compiled(lambda p: net().apply({**variables, "params": p}, x), substituted)),
        rtol=1e-4,
        atol=1e-4,
    )
    got = flat(compiled(jax.grad(lambda p: loss(model, p)), variables["params"]))
    reference = flat(compiled(jax.grad(lambda p: loss(net(), p)), substituted))
    latent = flat(variables["params"])
    for path, g in got.items():
        expected = np.asarray(reference[path])
        if path.endswith("/kernel") and path.removesuffix("/kernel") in binary:
            w = np.asarray(latent[path])
            alpha = np.abs(w).reshape(-1, w.shape[-1]).mean(0)
            expected = expected * alpha * (np.abs(w) <= 1)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(
            np.asarray(g), expected, rtol=1e-4, atol=1e-5 * scale, err_msg=path
        )
    assert len(binary) == len(NAMES[net]) - 2


def test_training_projects_exactly_the_binary_kernels():
    """The training loop's mask marks the binary-weight kernels of a user network (convs
    and Dense) and nothing else; the projection mean-centres each over its input axis
    (-2) and clips it to [-1, 1]."""
    model = binarize(user_nets.VGG(), "fbin", input_shape=SHAPE)
    x = images()
    params = random_variables(model, x.shape[1:], kernel_std=1.5)["params"]
    mask = flat(optimizer.binary_kernel_mask(params, model.plan))
    marked = {p.removesuffix("/kernel") for p, is_binary in mask.items() if is_binary}
    assert marked == {"Conv_1", "Conv_2", "Conv_3", "Dense_0"}
    project = quantizers.project_binary_kernels(
        lambda p: optimizer.binary_kernel_mask(p, model.plan)
    )
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = project.update(zeros, project.init(params), params)
    after = flat(optax.apply_updates(params, updates))
    for path, value in flat(params).items():
        value = np.asarray(value)
        if mask[path]:
            centred = value - value.mean(axis=-2, keepdims=True)
            expected = np.clip(centred, -1, 1)
        else:
            expected = value
        np.testing.assert_allclose(np.asarray(after[path]), expected, rtol=1e-5, atol=1e-6)


# -- cost -----------------------------------------------------------------------------


def conv_macs(h_out, w_out, c_out, c_in_per_group, kh, kw):
    return h_out * w_out * c_out * c_in_per_group * kh * kw


MACS = {  # by hand at 16x16x1 (SAME convs; pools and strides halve)
    user_nets.VGG: {
        "Conv_0": conv_macs(16, 16, 8, 1, 3, 3),
        "Conv_1": conv_macs(16, 16, 8, 8, 3, 3),
        "Conv_2": conv_macs(8, 8, 16, 8, 3, 3),
        "Conv_3": conv_macs(8, 8, 16, 16, 3, 3),
        "Dense_0": 4 * 4 * 16 * 32,  # flattened 4x4x16 -> 32
        "Dense_1": 32 * 10,
    },
    user_nets.PreActResNet: {
        "stem": conv_macs(16, 16, 8, 1, 3, 3),
        **dict.fromkeys(NAMES[user_nets.PreActResNet][1:5], conv_macs(16, 16, 8, 8, 3, 3)),
        "stage1/block0/shortcut": conv_macs(8, 8, 16, 8, 1, 1),
        "stage1/block0/conv1": conv_macs(8, 8, 16, 8, 3, 3),
        "stage1/block0/conv2": conv_macs(8, 8, 16, 16, 3, 3),
        "stage1/block1/conv1": conv_macs(8, 8, 16, 16, 3, 3),
        "stage1/block1/conv2": conv_macs(8, 8, 16, 16, 3, 3),
        "head": 16 * 10,
    },
    user_nets.GroupedNet: {
        "Conv_0": conv_macs(16, 16, 8, 1, 3, 3),
        "Conv_1": conv_macs(8, 8, 8, 8 // 4, 3, 3),  # 4 groups: C_in / groups per output
        "Conv_2": conv_macs(8, 8, 16, 8, 3, 3),
        "Dense_0": 16 * 10,
    },
}  # fmt: skip


@pytest.mark.parametrize("net", NETS, ids=lambda c: c.__name__)
def test_layer_costs_macs_equal_hand_formulas(net):
    model = binarize(net(), "fbin", input_shape=SHAPE)
    costs = cost.layer_costs(model, SHAPE)
    assert {c.name: c.macs for c in costs} == MACS[net]
    names, macs = NAMES[net], MACS[net]
    first_last = macs[names[0]] + macs[names[-1]]
    eq = cost.totals(costs)["eq_flops"]
    assert eq == pytest.approx(first_last + (sum(macs.values()) - first_last) / 58, rel=1e-12)
    text = cost.format_summary(cost.summary(model, SHAPE))
    assert all(name in text for name in names) and f"Binarized{net.__name__}" in text


@pytest.mark.parametrize(
    "input_norm, activation, added",
    [
        ("batchnorm", "relu", 2 * 8),
        ("shift", "relu", 8),
        ("none", "relu", 0),
        ("shift", "rprelu", 8 + 3 * 8),
    ],
)
def test_params_and_memory_count_what_binarization_adds(input_norm, activation, added):
    """GroupedNet's Conv_1 (binary input, 4 groups): a 3x3x2x8 kernel, 8 biases, and the
    input norm's 2 (batch norm) or 1 (threshold) float per input channel, RPReLU's 3 per
    output channel; memory 1 bit per binary weight + a float32 alpha per output channel
    + 4 bytes per float."""
    model = binarize(
        user_nets.GroupedNet(),
        "fbin",
        input_shape=SHAPE,
        input_norm=input_norm,
        activation=activation,
    )
    conv1 = {c.name: c for c in cost.layer_costs(model)}["Conv_1"]
    assert conv1.params == 3 * 3 * 2 * 8 + 8 + added
    assert conv1.memory_bytes == 3 * 3 * 2 * 8 / 8 + 4 * 8 + 4 * (8 + added)
    x = jax.ShapeDtypeStruct((1, *SHAPE), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]["Conv_1"]
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == conv1.params


def test_the_networks_own_activation_follows_a_layer_with_rprelu():
    """binarize changes only the planned layers: GroupedNet's ReLU after Conv_2 still
    acts on the RPReLU's output (binflax's own models drop it, a user's network keeps it)."""
    model = binarize(user_nets.GroupedNet(), "fbin", input_shape=SHAPE, activation="rprelu")
    x = images()
    variables = random_variables(model, x.shape[1:])
    seen = {}

    def record(call):
        seen[call.info.name] = (np.asarray(call.x), np.asarray(y := call.compute(call.x)))
        return y

    with tracing.intercept(record):
        model.apply(variables, x)
    conv2 = seen["Conv_2"][1]
    assert (conv2 < 0).any()  # the RPReLU's negative side, which the ReLU then clips
    np.testing.assert_allclose(
        seen["Dense_0"][0], np.maximum(conv2, 0).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6
    )


# -- selection ------------------------------------------------------------------------


def test_select_returns_a_valid_plan_for_the_same_network():
    """measure's rmse per layer is sqrt(mean((sign(x) - x)^2)) of what the layer's sign
    received over both batches; select's plan builds the same network again."""
    model = binarize(user_nets.VGG(), "fbin", input_shape=SHAPE)
    batches = [images(8, seed=s) for s in (1, 2)]
    variables = random_variables(model, batches[0].shape[1:])
    plan, report = select.select(model, variables, batches, budget=1.5, method="exact")
    assert isinstance(plan, Plan) and plan.names == NAMES[user_nets.VGG]
    assert set(report.float_layers) <= set(model.plan.binary_inputs)
    assert plan.float_inputs == ("Conv_0", *report.float_layers, "Dense_1")
    hybrid = binarize(user_nets.VGG(), plan, input_shape=SHAPE)
    assert hybrid.plan == plan
    sow = jax.jit(lambda b: model.apply(variables, b, mutable=[BINARIZED_INPUTS])[1])
    sown = [sow(b)[BINARIZED_INPUTS] for b in batches]
    for row in report.layers:
        xs = np.concatenate([np.asarray(s[row.name]["sign_input"][0]).ravel() for s in sown])
        assert row.error == pytest.approx(np.sqrt(np.mean((np_sign(xs) - xs) ** 2)), rel=1e-4)
    assert "Conv_3" in str(report)


# -- loading float weights, initial values ----------------------------------------------


def test_initial_values_are_the_networks_own():
    """Same module paths, same initializers, same order: the binarized network starts
    from the values the user's network is initialised with (the same random keys; the
    two compiled programs may round the initializers' arithmetic differently)."""
    net, x = user_nets.GroupedNet(), images()
    fbin = binarize(net, "fbin", input_shape=SHAPE)
    ours, theirs = (
        compiled(fbin.init, jax.random.key(0), x),
        compiled(net.init, jax.random.key(0), x),
    )
    ours = flat(ours["params"])
    for path, value in flat(theirs["params"]).items():
        np.testing.assert_allclose(np.asarray(ours[path]), np.asarray(value), rtol=1e-5, atol=1e-7)


def test_the_float_networks_variables_load_into_the_binarized_network():
    """Trained float variables load as they are: every leaf of the user's network keeps
    its value, the added batch norms keep theirs, and the float plan computes exactly
    what the user's network does."""
    net, x = user_nets.VGG(), images()
    fbin = binarize(net, "fbin", input_shape=SHAPE)
    fresh = random_variables(fbin, x.shape[1:])
    trained = random_variables(net, x.shape[1:], seed=5)
    loaded = load_float_variables(fresh, trained)
    got = flat(loaded["params"])
    for path, value in flat(trained["params"]).items():
        np.testing.assert_array_equal(np.asarray(got[path]), np.asarray(value))
    np.testing.assert_array_equal(
        np.asarray(got["Conv_1/bn/scale"]), np.asarray(flat(fresh["params"])["Conv_1/bn/scale"])
    )
    logits = fbin.apply(loaded, x)
    assert logits.shape == (2, 10) and np.isfinite(np.asarray(logits)).all()
    as_float = binarize(net, "float", input_shape=SHAPE)
    np.testing.assert_array_equal(
        np.asarray(as_float.apply(trained, x)), np.asarray(net.apply(trained, x))
    )
    other = random_variables(user_nets.GroupedNet(), x.shape[1:])
    with pytest.raises(BinarizeError, match="'params/Conv_0/bias'.*another network"):
        load_float_variables(fresh, other)
    trained["params"]["Dense_0"]["bias"] = jnp.zeros(7)
    with pytest.raises(BinarizeError, match="'params/Dense_0/bias' has shape"):
        load_float_variables(fresh, trained)


# -- what binarize refuses ------------------------------------------------------------


class Twice(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train=False):
        shared = nn.Dense(4)
        x = nn.Dense(4)(x.reshape(x.shape[0], -1))
        return nn.Dense(self.num_classes)(shared(shared(x)))


class Masked(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(2, (3, 3))(x)
        x = nn.Conv(2, (1, 1), mask=jnp.ones((1, 1, 2, 2)))(x)
        return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


def test_what_binarize_refuses_is_a_clear_user_error():
    with pytest.raises(PlanError, match="Dense_0 run more than once"):
        binarize(Twice(), "fbin", input_shape=SHAPE)
    with pytest.raises(BinarizeError, match="'Conv_1' sets mask"):
        binarize(Masked(), "wbin", input_shape=SHAPE)
    masked = binarize(Masked(), "float", input_shape=SHAPE)  # a float layer runs as written
    assert masked.plan.names == ("Conv_0", "Conv_1", "Dense_0")
    with pytest.raises(BinarizeError, match="input_norm='layernorm'"):
        binarize(user_nets.VGG(), input_shape=SHAPE, input_norm="layernorm")
    with pytest.raises(BinarizeError, match="calls no flax.linen Conv or Dense"):
        binarize(nn.BatchNorm(use_running_average=True), input_shape=SHAPE)
    with pytest.raises(BinarizeError, match="not binarized yet"):
        binarize(binarize(user_nets.VGG(), input_shape=SHAPE), input_shape=SHAPE)


def test_equal_builds_are_one_jit_static_argument():
    a = binarize(user_nets.VGG(), "fbin", input_shape=SHAPE)
    b = binarize(user_nets.VGG(), "fbin", input_shape=SHAPE)
    assert a == b and hash(a) == hash(b) and type(a) is type(b)
    assert a != binarize(user_nets.VGG(), "wbin", input_shape=SHAPE)


class Widths(nn.Module):
    """A network with a list field: unhashable, so its trace cannot be remembered."""

    widths: list = dataclasses.field(default_factory=lambda: [4, 6])
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train=False):
        x = x.reshape(x.shape[0], -1)
        for width in self.widths:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


def test_a_networks_trace_is_remembered_and_an_unhashable_one_still_traces():
    remembered = tracing._trace_layers_remembered
    remembered.cache_clear()
    net = binarize(user_nets.VGG(), "fbin", input_shape=SHAPE)
    first = tracing.trace_layers(net, SHAPE)
    again = tracing.trace_layers(binarize(user_nets.VGG(), "fbin", input_shape=SHAPE), SHAPE)
    assert again == first and remembered.cache_info().hits >= 1  # an equal network
    other = tracing.trace_layers(binarize(user_nets.VGG(), "wbin", input_shape=SHAPE), SHAPE)
    assert [i.precision for i in other] != [i.precision for i in first]
    wide = binarize(Widths(widths=[4, 6]), "fbin", input_shape=SHAPE)
    with pytest.raises(TypeError):
        hash(wide)
    infos = tracing.trace_layers(wide, SHAPE)
    assert [(i.name, i.kernel_shape[-1]) for i in infos] == [
        ("Dense_0", 4), ("Dense_1", 6), ("Dense_2", 10)
    ]  # fmt: skip
    narrow = binarize(Widths(widths=[5]), "fbin", input_shape=SHAPE)
    assert len(tracing.trace_layers(narrow, SHAPE)) == 2
