"""What ``binflax.binarize`` returns for a ``flax.nnx`` network is an ``nnx.Module``:
called directly, switched with ``train()``/``eval()`` as the NNX original is, trained with
``nnx.Optimizer`` and ``nnx.value_and_grad``, and taken as it is by binflax's cost model,
selection and export (which run its linen face on its values, ``linen_view``).
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx, traverse_util

from binflax import binarize, cost, export, select
from binflax.binarized_nnx import BinarizedModule, linen_view
from binflax.plan import PlanError
from tests import user_nets_nnx

SHAPE = (16, 16, 1)


def images(batch=4, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, *SHAPE)), jnp.float32)


def flat(tree):
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(dict(tree), sep="/").items()}


def own(net):
    """The NNX network's own variables (params and batch statistics) by attribute path."""
    state = nnx.state(net, nnx.Any(nnx.Param, nnx.BatchStat))
    return {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


def test_binarize_returns_an_nnx_module_whose_call_is_the_linen_faces_apply():
    net = user_nets_nnx.ResNet(10, rngs=nnx.Rngs(0))
    before = own(net)
    model = binarize(net, "fbin", input_shape=SHAPE)
    assert isinstance(model, nnx.Module) and isinstance(model, BinarizedModule)
    assert type(model).__name__ == "BinarizedResNet"
    assert model.plan == model.linen.plan and model.plan.names[0] == "stem"
    assert model.unplanned == () and model.default_input_shape == SHAPE
    # its state: NNX variables, one per linen leaf, nested by attribute path
    params = nnx.state(model, nnx.Param)
    assert "blocks/1/conv2/bn/scale" in {
        "/".join(map(str, p[1:])) for p, _ in nnx.to_flat_state(params)
    }
    x = images()
    face, variables = linen_view(model)
    assert face is model.linen
    again, same = linen_view(face, variables)  # a linen module: as it is
    assert again is face and same is variables
    mine = {"params": {}}
    assert linen_view(model, mine)[1] is mine  # variables given: those
    for mode in ("eval", "train"):  # train mode: batch statistics, so other logits
        getattr(model, mode)()
        want = face.apply(variables, x, train=mode == "train", mutable=["batch_stats"])[0]
        got = model(x)
        if mode == "eval":
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        else:  # dropout draws differ from the face's stored streams; shapes and finiteness
            assert got.shape == want.shape and np.isfinite(np.asarray(got)).all()
    # the network passed in: untouched, its own layer types and values
    assert type(net.stem) is nnx.Conv and type(net.head) is nnx.Linear
    after = own(net)
    assert set(after) == set(before)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def test_train_and_eval_switch_every_batch_norm_as_the_nnx_original_does():
    """``model.train()``: the network's batch norms and the planned layers' input norms
    normalise with batch statistics and update their running averages - for the float
    plan exactly as the NNX network itself does in training mode; ``model.eval()``:
    running averages, nothing updated."""
    net = user_nets_nnx.ResNet(10, rngs=nnx.Rngs(0), dropout_rate=0.0)
    x = images()
    model = binarize(net, "fbin", input_shape=SHAPE)
    model.eval()
    assert model.use_running_average
    stats = flat(model.linen_variables()["batch_stats"])
    evaluated = model(x)
    assert flat(model.linen_variables()["batch_stats"]).keys() == stats.keys()
    for key, value in flat(model.linen_variables()["batch_stats"]).items():
        np.testing.assert_array_equal(value, stats[key], err_msg=key)
    model.train()
    assert not model.use_running_average
    trained = model(x)
    moved = flat(model.linen_variables()["batch_stats"])
    for key in ("bn/mean", "blocks/0/bn1/var", "blocks/1/conv2/bn/mean", "blocks/1/conv2/bn/var"):
        assert not np.allclose(moved[key], stats[key]), key  # own norm and input norms
    assert not np.allclose(np.asarray(trained), np.asarray(evaluated))
    # the updates are the face's in training mode, from the same values
    face = model.linen
    _, updates = face.apply(
        {"params": model.linen_variables()["params"], "batch_stats": stats},
        x,
        train=True,
        mutable=["batch_stats"],
    )
    for key, value in flat(updates["batch_stats"]).items():
        np.testing.assert_allclose(moved[key], value, rtol=1e-6, atol=1e-7, err_msg=key)

    # the float plan against the NNX network itself, both in training mode
    plain = binarize(net, "float", input_shape=SHAPE)
    plain.train(), net.train()
    np.testing.assert_allclose(np.asarray(plain(x)), np.asarray(net(x)), rtol=1e-6, atol=1e-6)
    mine = flat(plain.linen_variables()["batch_stats"])
    theirs = own(net)
    for key, value in mine.items():
        np.testing.assert_allclose(value, theirs[key], rtol=1e-6, atol=1e-7, err_msg=key)


def train_steps(model, batch, labels, steps):
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(model):
            logits = model(batch)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    model.train()
    return [float(step(model, optimizer)) for _ in range(steps)]


def test_nnx_optimizer_trains_it_and_the_export_gives_its_eval_logits(tmp_path):
    """Ten steps of ``nnx.Optimizer`` with ``nnx.value_and_grad`` on a fixed batch lower
    the loss and move the parameters and statistics; the export of the trained module
    (``export.export_model(model, None, path)``: its own values) gives its eval-mode
    logits within relative 1e-5; the network passed to binarize is untouched."""
    net = user_nets_nnx.ResNet(10, rngs=nnx.Rngs(0), dropout_rate=0.0)
    before = own(net)
    model = binarize(net, "fbin", input_shape=SHAPE)
    start = model.linen_variables()
    batch, labels = images(16, seed=4), jnp.arange(16) % 10
    losses = train_steps(model, batch, labels, 10)
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.9 * losses[0] and np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    end = model.linen_variables()
    for collection, key in (("params", "blocks/0/conv1/kernel"), ("batch_stats", "bn/mean")):
        assert not np.allclose(flat(end[collection])[key], flat(start[collection])[key]), key

    model.eval()
    x = images(3, seed=5)
    want = np.asarray(model(x))
    export.export_model(model, None, tmp_path / "trained.npz")
    exported = export.load(tmp_path / "trained.npz")
    got = np.asarray(export.integer_forward(exported, x))
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-5
    after = own(net)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def test_cost_and_select_take_the_module_as_its_linen_face_with_its_values():
    model = binarize(user_nets_nnx.ResNet(10, rngs=nnx.Rngs(0)), "fbin", input_shape=SHAPE)
    face, variables = linen_view(model)
    assert cost.summary(model) == cost.summary(face)
    assert cost.layer_costs(model) == cost.layer_costs(face)
    batches = [images(8, seed=s) for s in (1, 2)]
    mine = select.measure(model, None, batches)
    assert mine.errors == select.measure(face, variables, batches).errors
    plan, report = select.select(model, None, batches, budget=1.5, method="exact")
    assert plan.names == model.plan.names and report.model == "BinarizedResNet"


def test_with_plan_keeps_the_current_values_and_adds_what_the_plan_needs():
    """``model.with_plan(plan)`` (e.g. the selection's hybrid): a new module from this
    one's current values, its new binary-input layers' norms at their initial values;
    this one is untouched."""
    net = user_nets_nnx.ResNet(10, rngs=nnx.Rngs(0))
    model = binarize(net, "wbin", input_shape=SHAPE)
    assert not model.plan.binary_inputs
    train_steps(model, images(16, seed=4), jnp.arange(16) % 10, 2)
    trained = flat(model.linen_variables()["params"])
    fbin = model.with_plan("fbin")
    assert isinstance(fbin, BinarizedModule) and type(fbin) is type(model)
    assert fbin.plan.binary_inputs and fbin.use_running_average == model.use_running_average
    params = flat(fbin.linen_variables()["params"])
    for key, value in trained.items():
        np.testing.assert_array_equal(params[key], value, err_msg=key)
    added = set(params) - set(trained)
    assert added == {
        f"{n}/bn/{leaf}" for n in fbin.plan.binary_inputs for leaf in ("scale", "bias")
    }
    for key in added:
        np.testing.assert_array_equal(params[key], 1.0 if key.endswith("scale") else 0.0)
    assert model.plan.name == "wbin" and set(flat(model.linen_variables()["params"])) == set(
        trained
    )
    with pytest.raises(PlanError, match="stem"):
        fbin.with_plan([(".*", "binary", "binary")])  # a binary first layer: refused
