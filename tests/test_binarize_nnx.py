"""binflax.binarize on ``flax.nnx`` networks (tests/user_nets_nnx.py): names are attribute
paths, plans, the user's module untouched, layers binflax cannot plan; the numbers against
the same network written in ``flax.linen`` (tests/user_nets_nnx.LinenResNet) with equal
weights; costs against hand formulas; selection; training through binflax's own step.

``binarize`` returns an ``nnx.Module`` (tests/test_nnx_module.py tests it as one); the
numbers here are its linen face's (``model.linen``), which binflax's own code runs.
"""

import json
import subprocess
import sys
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx, traverse_util

from binflax import binarize, cli, config_check, cost, export, models, networks, select, train
from binflax.binarized import BinarizeError
from binflax.checkpointing import Checkpoints
from binflax.errors import ConfigError
from binflax.plan import PlanError
from binflax.planned import BINARIZED_INPUTS
from binflax.select import sensitivity
from binflax.testing import random_variables
from configs import quickstart
from tests import user_nets_nnx
from tests.test_export import PATHS as EXPORT_PATHS
from tests.test_export_binarized import FRESH_PROCESS

SHAPE = (16, 16, 1)
NAMES = (
    "stem",
    "blocks/0/conv1",
    "blocks/0/conv2",
    "blocks/1/shortcut",  # called first: it reads the pre-activated block input
    "blocks/1/conv1",
    "blocks/1/conv2",
    "head",
)


def images(batch=2, shape=SHAPE, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, *shape)), jnp.float32)


def flat(tree):
    return traverse_util.flatten_dict(dict(tree), sep="/")


def compiled(fn, *args):
    """``fn(*args)`` compiled without XLA's optimisation passes (cheaper on a CPU)."""
    options = {"xla_backend_optimization_level": 0}
    return jax.jit(fn).lower(*args).compile(options)(*args)


def resnet(seed=0):
    return user_nets_nnx.ResNet(10, rngs=nnx.Rngs(seed))


def own(net, kind=(nnx.Param, nnx.BatchStat)):
    """The network's own variables of ``kind`` by attribute path, as NumPy arrays."""
    state = nnx.state(net, nnx.Any(*kind) if isinstance(kind, tuple) else kind)
    return {
        "/".join(map(str, path)): np.asarray(v.get_value()) for path, v in nnx.to_flat_state(state)
    }


def table(plan):
    return {layer.name: (layer.input, layer.weight) for layer in plan}


# -- names, plans, trees --------------------------------------------------------------


@pytest.mark.parametrize("preset", ["wbin", "fbin"])
def test_names_are_attribute_paths_and_the_users_module_stays_untouched(preset):
    """Plan names, in call order, are the attribute paths of the network's nnx.Conv and
    nnx.Linear layers; the variables are the network's own at the same paths (plus a
    batch norm under each binary-input layer); the module passed in keeps its layers."""
    net = resnet()
    before = own(net)
    model = binarize(net, preset, input_shape=SHAPE)
    assert model.plan.names == NAMES and type(model).__name__ == "BinarizedResNet"
    middle = ("binary", "binary") if preset == "fbin" else ("float", "binary")
    assert table(model.plan) == {
        "stem": ("float", "float"),
        **dict.fromkeys(NAMES[1:-1], middle),
        "head": ("float", "float"),
    }
    # the user's module: its own layer types and values, no planned layer in it
    assert type(net.stem) is nnx.Conv and type(net.blocks[1].shortcut) is nnx.Conv
    assert type(net.head) is nnx.Linear
    after = own(net)
    assert set(before) == set(after)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value)
    # the variables: the network's own values at its own paths, the module's own alike
    variables = model.linen.init(jax.random.key(0), images(1))
    for collection, tree in model.linen_variables().items():
        want = flat(variables[collection])
        assert set(flat(tree)) == set(want), collection
        for key, value in flat(tree).items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(want[key]), err_msg=key)
    params = own(net, nnx.Param)
    ours = flat(variables["params"])
    added = {f"{n}/bn/{leaf}" for n in model.plan.binary_inputs for leaf in ("scale", "bias")}
    assert set(ours) == set(params) | added
    for path, value in params.items():
        np.testing.assert_array_equal(np.asarray(ours[path]), np.asarray(value))
    stats = flat(variables["batch_stats"])
    added = {f"{n}/bn/{leaf}" for n in model.plan.binary_inputs for leaf in ("mean", "var")}
    assert set(stats) == set(own(net, nnx.BatchStat)) | added
    sown = flat(variables.get(BINARIZED_INPUTS, {}))
    assert sorted(p.removesuffix("/sign_input") for p in sown) == sorted(model.plan.binary_inputs)


def test_rules_name_attribute_paths_first_match_wins():
    rules = [
        ("stem|head", "float", "float"),
        ("blocks/1/.*", "float", "binary"),
        (r"blocks/\d+/conv2", "binary", "float"),  # blocks/1/conv2: rule 1 wins
        (".*", "binary", "binary"),
    ]
    model = binarize(resnet(), rules, input_shape=SHAPE)
    fb, bf, bb, ff = ("float", "binary"), ("binary", "float"), ("binary",) * 2, ("float",) * 2
    assert table(model.plan) == {
        "stem": ff,
        "blocks/0/conv1": bb,
        "blocks/0/conv2": bf,
        "blocks/1/shortcut": fb,
        "blocks/1/conv1": fb,
        "blocks/1/conv2": fb,
        "head": ff,
    }
    with pytest.raises(PlanError, match="no rule matches layer 'head'"):
        binarize(resnet(), [("stem|blocks/.*", "float", "float")], input_shape=SHAPE)


def test_layers_binflax_cannot_plan_stay_float_listed_in_one_line_or_refused_by_a_rule():
    net = user_nets_nnx.WithGeneral(10, rngs=nnx.Rngs(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = binarize(net, "wbin", input_shape=SHAPE)
    assert model.plan.names == ("conv", "head")
    assert model.unplanned == ("general (LinearGeneral)", "mix (Einsum)")
    (line,) = [str(w.message) for w in caught if "binarize leaves" in str(w.message)]
    assert line == (
        "binarize leaves 2 layer(s) of WithGeneral float, which binflax cannot plan: "
        "general (LinearGeneral), mix (Einsum)"
    )
    assert "\n" not in line
    model.eval()
    assert model(images()).shape == (2, 10)
    rules = [("conv|head", "float", "binary"), ("mix", "binary", "binary")]
    with pytest.raises(BinarizeError, match=r"rule 1 'mix' names mix \(Einsum\), which binflax"):
        binarize(net, rules, input_shape=SHAPE)


def test_what_binarize_refuses_for_nnx():
    class NoLayers(nnx.Module):
        def __init__(self, *, rngs):
            self.bn = nnx.BatchNorm(1, rngs=rngs)

        def __call__(self, x):
            return self.bn(x)

    class CustomDot(nnx.Module):
        def __init__(self, num_classes=10, *, rngs):
            self.first = nnx.Linear(16 * 16, 4, rngs=rngs)
            self.mid = nnx.Linear(4, 4, dot_general=lambda *a, **k: jax.lax.dot_general(*a, **k),
                                  rngs=rngs)  # fmt: skip
            self.head = nnx.Linear(4, num_classes, rngs=rngs)

        def __call__(self, x):
            return self.head(self.mid(self.first(x.reshape(x.shape[0], -1))))

    with pytest.raises(BinarizeError, match="layer 'mid' sets dot_general"):
        binarize(CustomDot(rngs=nnx.Rngs(0)), "wbin", input_shape=SHAPE)
    kept = binarize(CustomDot(rngs=nnx.Rngs(0)), "float", input_shape=SHAPE)  # runs as written
    assert kept.plan.names == ("first", "mid", "head")
    with pytest.raises(BinarizeError, match="holds no flax.nnx Conv or Linear"):
        binarize(NoLayers(rngs=nnx.Rngs(0)), input_shape=SHAPE)
    model = binarize(resnet(), "fbin", input_shape=SHAPE)
    with pytest.raises(BinarizeError, match="not binarized yet.*model.with_plan"):
        binarize(model, input_shape=SHAPE)
    with pytest.raises(BinarizeError, match="not binarized yet"):
        binarize(model.linen, input_shape=SHAPE)
    with pytest.raises(BinarizeError, match="input_norm='layernorm'"):
        binarize(resnet(), input_shape=SHAPE, input_norm="layernorm")


def test_equal_builds_are_one_jit_static_argument():
    a = binarize(resnet(), "fbin", input_shape=SHAPE).linen
    b = binarize(resnet(), "fbin", input_shape=SHAPE).linen
    assert a == b and hash(a) == hash(b) and type(a) is type(b)
    assert a != binarize(resnet(), "wbin", input_shape=SHAPE).linen
    assert a != binarize(resnet(seed=1), "fbin", input_shape=SHAPE).linen  # other values


def test_the_config_builds_an_nnx_class_by_its_import_path():
    """``config.model="package.module:Class"`` for an NNX class: built as
    ``Class(num_classes=..., rngs=nnx.Rngs(config.seed), **model_kwargs)`` with the
    variant's dropout_rate, binarized at the config's input shape; a bad kwarg is the
    config's one line."""
    config = quickstart.get_config()
    config.model = "tests.user_nets_nnx:ResNet"
    config.dropout_rate = 0.25
    model = networks.build_model(config, num_classes=7, plan="fbin")
    assert model.plan.names == NAMES and type(model).__name__ == "BinarizedResNet"
    assert model.default_input_shape == (16, 16, 1)
    variables = model.init(jax.random.key(0), images(1))
    assert variables["params"]["head"]["kernel"].shape == (16, 7)
    same = user_nets_nnx.ResNet(7, rngs=nnx.Rngs(config.seed), dropout_rate=0.25)
    assert model == binarize(same, "fbin", input_shape=(16, 16, 1)).linen  # the linen face
    assert models.model_fields(user_nets_nnx.ResNet) == ("num_classes", "dropout_rate")
    config.model_kwargs = {"width": 3}
    with pytest.raises(ConfigError, match="config.model_kwargs.width is not a field of ResNet"):
        config_check.checked(config)
    config.model = "tests.user_nets_nnx:Block"
    with pytest.raises(models.ModelError, match="Block has no num_classes field"):
        models.import_model(config.model)


# -- the numbers: the same network in linen, equal weights ------------------------------


def twins(plan="fbin", **options):
    """The NNX network and its linen twin, binarized alike, and equal variables."""
    ours = binarize(resnet(), plan, input_shape=SHAPE, **options).linen
    theirs = binarize(user_nets_nnx.LinenResNet(), plan, input_shape=SHAPE, **options)
    assert tuple(map(user_nets_nnx.linen_name, ours.plan.names)) == theirs.plan.names
    assert [(p.input, p.weight) for p in ours.plan] == [(p.input, p.weight) for p in theirs.plan]
    variables = random_variables(ours, SHAPE, seed=3)
    linen_variables = {
        collection: traverse_util.unflatten_dict(
            {tuple(user_nets_nnx.linen_name(k).split("/")): v for k, v in flat(tree).items()}
        )
        for collection, tree in variables.items()
        if collection in ("params", "batch_stats")
    }
    shapes = jax.eval_shape(theirs.init, jax.random.key(0), images(1))
    for collection in ("params", "batch_stats"):
        assert jax.tree.map(jnp.shape, linen_variables[collection]) == jax.tree.map(
            jnp.shape, dict(shapes[collection])
        )
    return (
        ours,
        theirs,
        {k: v for k, v in variables.items() if k != BINARIZED_INPUTS},
        (linen_variables),
    )


MIXED = [  # the twin's paths differ; these rules match both
    ("stem|head", "float", "float"),
    (r"blocks.0/conv1", "int4", "int8"),
    (r"blocks.0/conv2", "int2", "binary"),
    (r"blocks.1/shortcut", "float", "int8"),
    (".*", "int8", "binary"),
]


@pytest.mark.parametrize(
    "plan, options",
    [
        ("fbin", {}),
        ("fbin", {"input_norm": "shift", "activation": "rprelu"}),
        ("fbin", {"scale_inputs": True}),
        (MIXED, {}),
    ],
    ids=["batchnorm", "shift-rprelu", "kmap", "mixed-precision"],
)
def test_planned_nnx_layers_compute_what_the_linen_path_computes(plan, options):
    """Equal weights, the same plan: eval logits and sown inputs equal the linen twin's;
    in training mode the batch statistics (the network's own and the added norms') move
    alike (within 1e-6). Every input and weight precision, every input option."""
    ours, theirs, variables, linen_variables = twins(plan, **options)
    x = images(4)

    def run(model, v, train):
        mutable = ["batch_stats", BINARIZED_INPUTS] if train else [BINARIZED_INPUTS]
        rngs = {"dropout": jax.random.key(0)}
        return model.apply(v, x, train=train, mutable=mutable, rngs=rngs)

    for training in (False, True):
        y1, s1 = compiled(lambda v, m=ours, t=training: run(m, v, t), variables)
        y2, s2 = compiled(lambda v, m=theirs, t=training: run(m, v, t), linen_variables)
        if not training:  # dropout masks differ between the two APIs' streams
            np.testing.assert_allclose(np.asarray(y1), np.asarray(y2), rtol=1e-6, atol=1e-6)
        for collection in s1:
            got = {user_nets_nnx.linen_name(k): v for k, v in flat(s1[collection]).items()}
            want = flat(s2[collection])
            assert set(got) == set(want), collection
            for key, value in want.items():
                np.testing.assert_allclose(
                    np.asarray(got[key]), np.asarray(value), rtol=1e-6, atol=1e-6, err_msg=key
                )


def test_a_float_layer_runs_the_networks_own_code():
    """The float plan: logits equal the user's own NNX network in eval mode, exactly."""
    net = resnet()
    model = binarize(net, "float", input_shape=SHAPE)
    model.eval(), net.eval()
    np.testing.assert_array_equal(np.asarray(model(images())), net(images()))


# -- cost and selection ---------------------------------------------------------------


def conv_macs(h_out, w_out, c_out, c_in_per_group, kh, kw):
    return h_out * w_out * c_out * c_in_per_group * kh * kw


MACS = {  # by hand at 16x16x1 (SAME convs; block 1 halves the resolution)
    "stem": conv_macs(16, 16, 8, 1, 3, 3),
    "blocks/0/conv1": conv_macs(16, 16, 8, 8, 3, 3),
    "blocks/0/conv2": conv_macs(16, 16, 8, 8 // 2, 3, 3),  # 2 groups
    "blocks/1/shortcut": conv_macs(8, 8, 16, 8, 1, 1),
    "blocks/1/conv1": conv_macs(8, 8, 16, 8, 3, 3),
    "blocks/1/conv2": conv_macs(8, 8, 16, 16 // 4, 3, 3),  # 4 groups
    "head": 16 * 10,
}


def test_cost_summary_macs_equal_hand_formulas():
    model = binarize(resnet(), "fbin", input_shape=SHAPE)
    costs = cost.layer_costs(model, SHAPE)
    assert {c.name: c.macs for c in costs} == MACS
    first_last = MACS["stem"] + MACS["head"]
    eq = cost.totals(costs)["eq_flops"]
    assert eq == pytest.approx(first_last + (sum(MACS.values()) - first_last) / 58, rel=1e-12)
    # blocks/1/conv2: a 3x3x4x16 kernel, 16 biases, the input norm's 2 per input channel
    conv2 = {c.name: c for c in costs}["blocks/1/conv2"]
    assert conv2.params == 3 * 3 * 4 * 16 + 16 + 2 * 16
    text = cost.format_summary(cost.summary(model))
    assert all(name in text for name in NAMES) and "BinarizedResNet" in text


def test_select_measures_the_sown_inputs_and_returns_a_plan_for_the_same_network():
    model = binarize(resnet(), "fbin", input_shape=SHAPE)
    batches = [images(8, seed=s) for s in (1, 2)]
    variables = random_variables(model.linen, SHAPE)
    measurement = select.measure(model, variables, batches)  # the module, other values
    assert set(measurement.errors) == set(model.plan.binary_inputs)
    sow = jax.jit(lambda b: model.linen.apply(variables, b, mutable=[BINARIZED_INPUTS])[1])
    sown = [flat(sow(b)[BINARIZED_INPUTS]) for b in batches]
    for name in model.plan.binary_inputs:
        xs = np.concatenate([np.asarray(s[f"{name}/sign_input"][0]).ravel() for s in sown])
        rmse = np.sqrt(np.mean((np.where(xs >= 0, 1.0, -1.0) - xs) ** 2))
        assert measurement.errors[name] == pytest.approx(rmse, rel=1e-4)
    plan, report = select.select(model, variables, batches, budget=1.5, method="exact")
    assert plan.names == NAMES
    hybrid = binarize(resnet(), plan, input_shape=SHAPE)
    assert hybrid.plan == plan and set(report.float_layers) <= set(model.plan.binary_inputs)


def test_sensitivity_probes_reach_the_nnx_layers_as_the_linen_ones():
    """measure_precisions differentiates the loss with respect to each layer's quantized
    input through the ``input_probes`` it passes: the NNX network's Fisher and squared
    errors equal its linen twin's."""
    ours, theirs, variables, linen_variables = twins("fbin")
    batches = [{"image": images(8, seed=s), "label": jnp.arange(8) % 10} for s in (1, 2)]
    kwargs = dict(precisions=(1, 2), hutchinson_samples=1)
    got = sensitivity.measure_precisions(ours, variables, batches, **kwargs).statistics
    want = sensitivity.measure_precisions(theirs, linen_variables, batches, **kwargs).statistics
    assert {user_nets_nnx.linen_name(k) for k in got} == set(want)
    for name, stats in got.items():
        other = want[user_nets_nnx.linen_name(name)]
        assert stats.fisher[1] > 0, name
        for bits in (1, 2):
            assert stats.fisher[bits] == pytest.approx(other.fisher[bits], rel=1e-4), name
            assert stats.squared_error[bits] == pytest.approx(
                other.squared_error[bits], rel=1e-5
            ), name


def test_an_nnx_network_exports_and_its_integer_logits_match(tmp_path):
    """The export takes the binarized NNX network as a linen one: the file's layers are
    the attribute paths, and its integer logits (every arithmetic, with and without the
    packed chain) are within relative 1e-5 of ``model.apply``'s, in this process and in
    a fresh one that imports neither the network's module nor ``tests``."""
    model = binarize(resnet(), "fbin", input_shape=SHAPE).linen
    variables = random_variables(model, SHAPE, seed=2)
    x = images(3)
    want = np.asarray(model.apply(variables, x))
    export.export_model(model, variables, tmp_path / "resnet.npz")
    exported = export.load(tmp_path / "resnet.npz")
    assert exported.header["network"] == "BinarizedResNet"
    assert [info.name for info in exported.layers] == list(NAMES)
    scale = np.max(np.abs(want))
    for arithmetic, chain in EXPORT_PATHS:
        got = np.asarray(export.integer_forward(exported, x, arithmetic=arithmetic, chain=chain))
        assert np.max(np.abs(got - want)) / scale <= 1e-5, (arithmetic, chain)
    np.save(tmp_path / "images.npy", np.asarray(x))
    subprocess.run(
        [
            sys.executable, "-c", FRESH_PROCESS, json.dumps({"resnet": EXPORT_PATHS}),
            str(tmp_path / "images.npy"), str(tmp_path), str(tmp_path / "logits.npz"),
        ],
        check=True,
        cwd=tmp_path,  # not the repository: `tests` is not importable from there
    )  # fmt: skip
    fresh = np.load(tmp_path / "logits.npz")
    for arithmetic, chain in EXPORT_PATHS:
        got = fresh[f"resnet/{arithmetic}/{chain}"]
        assert np.max(np.abs(got - want)) / scale <= 1e-5, ("fresh", arithmetic, chain)


# -- training -------------------------------------------------------------------------


def test_thirty_steps_of_binflaxs_own_train_step_lower_the_loss_and_resume(tmp_path):
    """init_state and train_step as the training loop runs them: the fbin network learns
    a fixed batch and its batch statistics (its own and the added norms') move; killed
    after 15 steps (an Orbax checkpoint) and resumed into a fresh state, it ends where
    the uninterrupted run ends."""
    model = binarize(resnet(), "fbin", input_shape=SHAPE).linen  # the loop takes the face
    config = ml_collections.ConfigDict(
        dict(seed=0, learning_rate=1e-2, lr_schedule="decay", lr_decay_epochs=100,
             lr_decay_factor=0.5, lr_floor=0.0, weight_decay=0.0,
             kernel_projection="center_clip")
    )  # fmt: skip
    batch = {"image": images(16, seed=4), "label": jnp.arange(16) % 10}

    def steps(state, first, last, losses):
        for step in range(first, last):
            state, metrics = train.train_step(state, batch, jax.random.key(step))
            losses.append(float(metrics["loss"]))
        return state

    state = train.init_state(config, model, SHAPE, steps_per_epoch=30)
    before = flat(jax.tree.map(np.asarray, state.batch_stats))
    losses = []
    state = steps(state, 0, 30, losses)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses
    after = flat(state.batch_stats)
    for key in ("bn/mean", "blocks/1/conv2/bn/var"):
        assert not np.allclose(after[key], before[key]), key

    checkpoints = Checkpoints(str(tmp_path))
    first = steps(train.init_state(config, model, SHAPE, steps_per_epoch=30), 0, 15, [])
    checkpoints.save(15, first)
    checkpoints.close()
    del first  # killed
    checkpoints = Checkpoints(str(tmp_path))
    fresh = binarize(resnet(seed=7), "fbin", input_shape=SHAPE).linen  # other initial values
    step, resumed = checkpoints.restore_latest(train.init_state(config, fresh, SHAPE, 30))
    checkpoints.close()
    assert step == 15 and int(resumed.step) == 15
    resumed = steps(resumed, 15, 30, [])
    for name in ("params", "batch_stats"):
        got, want = flat(getattr(resumed, name)), flat(getattr(state, name))
        for key, value in want.items():
            np.testing.assert_allclose(
                np.asarray(got[key]), np.asarray(value), rtol=1e-5, atol=1e-6, err_msg=key
            )


VGG_NAMES = ("convs/0", "convs/1", "convs/2", "convs/3", "hidden", "head")  # its docstring's


@pytest.mark.slow
def test_the_hbn_pipeline_summary_eval_and_export_run_on_the_issue_s_nnx_vgg(tmp_path, capsys):
    """``python main.py --config=configs/quickstart.py --config.model=tests.user_nets_nnx:VGG``
    as issue 28 wrote it: the hbn pipeline, then the command line's other modes on what it
    trained."""
    config = quickstart.get_config()
    config.model = "tests.user_nets_nnx:VGG"
    config.update(num_train_steps=4, batch_size=32, eval_batch_size=40, log_every_steps=2)
    config.update(checkpoint_every_steps=4, num_eval_batches=1)
    config.hbn.update(baselines=(), measure_batches=1)
    workdir = str(tmp_path)
    assert cli.run(config, mode="hbn", workdir=workdir) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["variants"]) == ["hybrid", "fbin"]
    assert results["variants"]["fbin"]["float_inputs"] == ["convs/0", "head"]
    assert list(json.loads((tmp_path / "plan.json").read_text())["layers"]) == list(VGG_NAMES)
    assert "BinarizedVGG" in capsys.readouterr().out
    for mode in ("summary", "eval", "export"):
        assert cli.run(config, mode=mode, workdir=workdir) == 0, mode
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [layer["name"] for layer in summary["layers"]] == list(VGG_NAMES)
    for variant in ("hybrid", "fbin"):
        exported = export.load(tmp_path / variant / "model.npz")
        assert [info.name for info in exported.layers] == list(VGG_NAMES)


# -- the two APIs mixed ----------------------------------------------------------------


class _LinenPart(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Conv(4, (3, 3))(x)


def test_a_linen_module_inside_an_nnx_network_is_left_float_and_named():
    class Mixed(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
            self.inner = nnx.bridge.ToNNX(_LinenPart(), rngs=rngs)
            self.head = nnx.Linear(4 * 8 * 8, 3, rngs=rngs)

        def __call__(self, x, train=False):
            return self.head(self.inner(self.conv(x)).reshape(len(x), -1))

    net = Mixed(nnx.Rngs(0))
    nnx.bridge.lazy_init(net.inner, jnp.zeros((1, 8, 8, 4)))
    with pytest.warns(UserWarning, match=r"inner \(a linen module in nnx.bridge.ToNNX\)"):
        model = binarize(net, "fbin", input_shape=(8, 8, 1))
    assert model.plan.names == ("conv", "head")


def test_a_wrapper_of_the_other_api_is_refused_with_what_to_do():
    with pytest.raises(BinarizeError, match=r"the linen module that nnx.bridge.ToNNX wraps"):
        binarize(nnx.bridge.ToNNX(_LinenPart(), rngs=nnx.Rngs(0)), input_shape=(8, 8, 1))

    class Outer(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nnx.bridge.to_linen(nnx.Conv, 1, 4, (3, 3))(x)
            return nn.Dense(3)(x.reshape(len(x), -1))

    with pytest.raises(BinarizeError, match=r"'ToLinen_0' is a flax.nnx module inside"):
        binarize(Outer(), "fbin", input_shape=(8, 8, 1))


def test_the_linen_twin_gives_the_same_cost_table_and_the_same_selection():
    """The same network in both APIs with equal weights: one cost table and one hybrid,
    layer for layer under the twin's names."""
    ours, theirs, variables, linen_variables = twins("fbin")
    mine, twin = cost.summary(ours, SHAPE), cost.summary(theirs, SHAPE)
    assert mine["total"] == twin["total"]
    for a, b in zip(mine["layers"], twin["layers"], strict=True):
        assert user_nets_nnx.linen_name(a["name"]) == b["name"]
        assert {k: v for k, v in a.items() if k != "name"} == {
            k: v for k, v in b.items() if k != "name"
        }
    batches = [images(8, seed=s) for s in (1, 2)]
    _, report = select.select(ours, variables, batches, budget=1.5, method="exact")
    _, twin_report = select.select(theirs, linen_variables, batches, budget=1.5, method="exact")
    assert tuple(map(user_nets_nnx.linen_name, report.float_layers)) == twin_report.float_layers
    for row, twin_row in zip(report.layers, twin_report.layers, strict=True):
        assert row.error == pytest.approx(twin_row.error, rel=1e-5)
