"""The training loop: schedule, masks, resume after SIGKILL, SIGTERM, divergence."""

import json
import os
import pathlib
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from binflax import models, networks, optimizer, parallel, train
from binflax.checkpointing import Checkpoints
from binflax.plan import Plan
from configs import quickstart
from tests import runner


def small_config(**overrides):
    config = quickstart.get_config()
    config.mode = "train"
    config.plan = "fbin"
    config.batch_size = 32
    config.eval_batch_size = 40
    config.num_train_steps = 30
    config.log_every_steps = 5
    config.checkpoint_every_steps = 5
    config.eval_every_epochs = 1000  # evaluate at the end only
    config.update(overrides)
    return config


def test_learning_rate_halves_on_interval_down_to_floor():
    config = small_config(learning_rate=2e-3, lr_decay_epochs=2, lr_decay_factor=0.5, lr_floor=3e-4)
    schedule = optimizer.learning_rate_schedule(config, steps_per_epoch=10)
    for step in (0, 5, 19, 20, 39, 40, 60, 500):
        expected = max(2e-3 * 0.5 ** (step // 20), 3e-4)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6), step


def test_binary_kernel_mask_marks_exactly_the_binary_weight_kernels():
    model = models.create("resnet18", plan="fbin", num_classes=10)
    params = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 32, 32, 3)))["params"]
    mask = optimizer.binary_kernel_mask(params, model.plan)
    marked = {
        "/".join(p.key for p in path[:-1])
        for path, leaf in jax.tree_util.tree_leaves_with_path(mask)
        if leaf
    }
    expected = {layer.name for layer in model.plan if layer.weight == "binary"}
    assert marked == expected
    assert "conv1" not in marked and "fc" not in marked and "layer4_1/conv2" in marked


@pytest.mark.parametrize("projection", optimizer.KERNEL_PROJECTIONS)
def test_kernel_projection_chooses_what_happens_to_binary_latent_kernels(projection):
    """center_clip: mean zero over input channels and within [-1, 1]; clip: within [-1, 1]
    with the mean kept; none: the optimizer's step alone. Float kernels are never touched."""
    config = small_config(kernel_projection=projection, learning_rate=0.5)
    model = models.create("mini_sketchanet", plan="fbin", num_classes=10)
    params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))["params"]
    tx = optimizer.create_optimizer(config, model.plan, steps_per_epoch=10)
    # gradients far from zero, both signs: Adam's first step is -lr * sign(g)
    grads = jax.tree.map(
        lambda p: (jnp.where(jnp.arange(p.size) % 3, 1.0, -2.0)).reshape(p.shape), params
    )
    updates, _ = tx.update(grads, tx.init(params), params)
    new = jax.tree.map(lambda p, u: p + u, params, updates)
    binary = next(layer.name for layer in model.plan if layer.weight == "binary")
    kernel = np.asarray(new[binary]["kernel"])
    adam_step = np.asarray(params[binary]["kernel"]) - 0.5 * np.sign(
        np.asarray(grads[binary]["kernel"])
    )
    expected = {
        "center_clip": np.clip(adam_step - adam_step.mean(axis=-2, keepdims=True), -1, 1),
        "clip": np.clip(adam_step, -1, 1),
        "none": adam_step,
    }[projection]
    np.testing.assert_allclose(kernel, expected, atol=1e-5)
    first = np.asarray(new["conv1"]["kernel"])  # float weights: the Adam step alone
    step = np.asarray(params["conv1"]["kernel"]) - 0.5 * np.sign(
        np.asarray(grads["conv1"]["kernel"])
    )
    np.testing.assert_allclose(first, step, atol=1e-5)


def test_transfer_matching_copies_same_shaped_leaves_only():
    target = {"a": {"kernel": np.zeros((2, 3))}, "b": {"scale": np.zeros(4)}}
    source = {"a": {"kernel": np.ones((2, 3))}, "b": {"scale": np.ones(5)}}
    out = train.transfer_matching(target, source)
    np.testing.assert_array_equal(out["a"]["kernel"], np.ones((2, 3)))
    np.testing.assert_array_equal(out["b"]["scale"], np.zeros(4))


def test_hybrid_from_fbin_keeps_the_batch_norms_that_moved():
    """A layer whose input turns float has its BN after the conv: a different shape."""
    config = small_config()
    fbin = networks.build_model(config, 10, "fbin")
    names = models.layer_names(fbin)
    hybrid = networks.build_model(config, 10, Plan.hybrid(names, ["conv2"]))
    x = np.zeros((1, 16, 16, 1), np.float32)
    v_fbin = fbin.init(jax.random.key(1), x)
    v_hyb = hybrid.init(jax.random.key(2), x)
    moved = train.transfer_matching(v_hyb["params"], v_fbin["params"])
    np.testing.assert_array_equal(moved["conv3"]["kernel"], v_fbin["params"]["conv3"]["kernel"])
    # conv2's BN normalizes 48 input channels in fbin, 64 output channels in the hybrid.
    assert moved["conv2"]["bn"]["scale"].shape == (64,)


def test_the_abstract_state_is_init_states_shapes_without_compiling_anything():
    """What eval and export restore into: init_state's tree, leaf for leaf the same shapes
    and dtypes on the default device, traced only (no XLA compilation, no weights drawn)."""
    config = small_config(plan="fbin")
    model = networks.build_model(config, 10, "fbin")
    compiled = []

    def on_event(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(duration)

    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        abstract = train.abstract_state(config, model, (16, 16, 1), steps_per_epoch=3)
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    assert compiled == []
    state = train.init_state(config, model, (16, 16, 1), steps_per_epoch=3)
    # the same leaves at the same paths (the optimizer, a static field, is a new object)
    paths, leaves = zip(*jax.tree_util.tree_leaves_with_path(state), strict=True)
    abstract_paths, abstract_leaves = zip(
        *jax.tree_util.tree_leaves_with_path(abstract), strict=True
    )
    assert abstract_paths == paths
    assert abstract.step == state.step == 0
    for want, got in zip(leaves[1:], abstract_leaves[1:], strict=True):  # after the step
        assert isinstance(got, jax.ShapeDtypeStruct)
        assert (got.shape, got.dtype) == (want.shape, want.dtype)
        assert got.sharding == jax.sharding.SingleDeviceSharding(jax.devices()[0])


def test_training_learns_the_digits(tmp_path):
    """The float net, 100 steps: the test loss falls to a fraction of the untrained net's,
    and the accuracy is far above chance (10%)."""
    config = small_config(plan="float", num_train_steps=100, log_every_steps=50)
    result = train.train_and_evaluate(config, str(tmp_path))
    mesh = parallel.make_mesh()
    untrained = train.init_state(config, result.model, (16, 16, 1), steps_per_epoch=1)
    before = train.evaluate(
        parallel.replicate(untrained, mesh), train.eval_batches(config, "test"), mesh
    )
    assert before["top1"] < 30 and before["loss"] > 1.5
    assert result.metrics["loss"] < 0.3 * before["loss"]
    assert result.metrics["top1"] > 85


def test_eval_step_scores_crops_by_their_mean_log_softmax():
    """The sketch configs' 10-crop evaluation, against NumPy: each example's crops are
    scored by the mean of their log-softmax; masked examples count nothing."""
    config = small_config(plan="float")  # an untrained fbin net gives every input one answer
    model = networks.build_model(config, 10, "float")
    state = train.init_state(config, model, (16, 16, 1), steps_per_epoch=1)
    images = jax.random.normal(jax.random.key(2), (4, 3, 16, 16, 1))
    labels = np.array([0, 3, 7, 9])
    mask = np.array([True, True, True, False])
    batch = {"image": images, "label": jnp.asarray(labels), "mask": jnp.asarray(mask)}
    sums = jax.device_get(train.eval_step(state, batch))
    logits = np.asarray(state.apply_fn(state.variables, images.reshape(12, 16, 16, 1)))
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = (shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))).reshape(4, 3, 10)
    scores = log_probs.mean(axis=1)
    top5 = np.argsort(-scores, axis=-1)[:, :5]
    assert sums["count"] == 3
    np.testing.assert_allclose(sums["loss"], -scores[np.arange(3), labels[:3]].sum(), rtol=1e-5)
    assert sums["top1"] == np.sum(scores.argmax(-1)[:3] == labels[:3])
    assert sums["top5"] == np.sum((top5 == labels[:, None]).any(-1)[:3])


class ClosingSpy:
    """Wraps an object and records whether its ``close`` was called."""

    def __init__(self, inner, closed):
        self._inner, self._closed = inner, closed

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def close(self):
        self._closed.append(type(self._inner).__name__)
        self._inner.close()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    closed = []
    real_checkpoints, real_writer = train.Checkpoints, train.ScalarWriter
    monkeypatch.setattr(
        train, "Checkpoints", lambda *a, **k: ClosingSpy(real_checkpoints(*a, **k), closed)
    )
    monkeypatch.setattr(
        train, "ScalarWriter", lambda *a, **k: ClosingSpy(real_writer(*a, **k), closed)
    )
    real_step = train.train_step

    def poisoned(state, batch, key):
        step = int(state.step)
        state, metrics = real_step(state, batch, key)
        if step >= 12:
            metrics = dict(metrics, loss=metrics["loss"] * np.nan)
        return state, metrics

    monkeypatch.setattr(train, "train_step", poisoned)
    with pytest.raises(train.TrainingDiverged, match="last good checkpoint is step 10"):
        train.train_and_evaluate(small_config(), str(tmp_path))
    assert sorted(closed) == ["Checkpoints", "ScalarWriter"]  # closed although it failed
    checkpoints = Checkpoints(str(tmp_path))
    assert checkpoints.latest_step == 10
    checkpoints.close()


def _latest_params(workdir):
    step_dir = os.path.join(workdir, "checkpoints", str(Checkpoints(workdir).latest_step))
    restored = ocp.StandardCheckpointer().restore(os.path.join(step_dir, "default"))
    return restored["params"], restored["step"]


TRAIN_ARGS = (
    "--config=configs/quickstart.py",
    "--mode=train",
    "--config.plan=fbin",
    "--config.batch_size=32",
    "--config.eval_batch_size=40",
    "--config.num_train_steps=40",
    "--config.checkpoint_every_steps=5",
    "--config.log_every_steps=5",
    "--config.eval_every_epochs=1000",
)


def _wait_for(predicate, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        assert proc.poll() is None, "the run ended before the expected point"
        time.sleep(0.2)
    raise AssertionError("timed out")


def _checkpoint_steps(workdir):
    path = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(path):
        return []
    return [int(d) for d in os.listdir(path) if d.isdigit()]


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path):
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    first = runner.run_main(*TRAIN_ARGS, f"--workdir={whole}")
    assert first.returncode == 0, first.stderr[-3000:]

    proc = runner.start_main(*TRAIN_ARGS, f"--workdir={killed}")
    _wait_for(lambda: any(s >= 10 for s in _checkpoint_steps(killed)), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = max(_checkpoint_steps(killed))
    assert interrupted_at < 40

    again = runner.run_main(*TRAIN_ARGS, f"--workdir={killed}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from step {interrupted_at}" in again.stdout
    params_whole, step_whole = _latest_params(whole)
    params_killed, step_killed = _latest_params(killed)
    assert int(step_whole) == int(step_killed) == 40
    for a, b in zip(jax.tree.leaves(params_whole), jax.tree.leaves(params_killed), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    whole_metrics = json.loads(pathlib.Path(whole, "metrics.json").read_text())
    killed_metrics = json.loads(pathlib.Path(killed, "metrics.json").read_text())
    assert whole_metrics["top1"] == killed_metrics["top1"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    workdir = str(tmp_path / "run")
    log = str(tmp_path / "log.txt")
    args = [a for a in TRAIN_ARGS if "num_train_steps" not in a and "checkpoint_every" not in a]
    proc = runner.start_main(
        *args,
        "--config.num_train_steps=100000",
        "--config.checkpoint_every_steps=100000",
        f"--workdir={workdir}",
        log_path=log,
    )
    _wait_for(lambda: "step 5/100000" in pathlib.Path(log).read_text(), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    output = pathlib.Path(log).read_text()
    assert "SIGTERM at step" in output and "run the same command again" in output
    assert "Traceback" not in output
    assert _checkpoint_steps(workdir), "no checkpoint was left behind"


@pytest.mark.slow
def test_half_precision_computes_in_bfloat16_and_keeps_float32_state(tmp_path):
    config = small_config(half_precision=True, num_train_steps=4)
    result = train.train_and_evaluate(config, str(tmp_path))
    assert result.model.options.dtype == jnp.bfloat16 and np.isfinite(result.metrics["loss"])
    _, sown = result.model.apply(
        result.state.variables,
        jnp.zeros((2, 16, 16, 1)),
        mutable=["binarized_inputs"],
    )
    assert {x.dtype for x in jax.tree.leaves(sown)} == {jnp.dtype(jnp.bfloat16)}
    restored = ocp.StandardCheckpointer().restore(
        os.path.join(tmp_path, "checkpoints", "4", "default")
    )
    dtypes = {
        leaf.dtype
        for key in ("params", "batch_stats", "opt_state")
        for leaf in jax.tree.leaves(restored[key])
        if jnp.issubdtype(leaf.dtype, jnp.floating)  # bfloat16 included (not np.floating)
    }
    assert dtypes == {np.dtype(np.float32)}


def test_a_digits_run_never_imports_tensorflow(tmp_path):
    """TensorFlow (4 s of start-up, and its log lines) is for TFDS pipelines only: a digits
    run trains, evaluates, checkpoints and writes TensorBoard events without it."""
    code = f"""
import sys
from binflax import cli
from configs import quickstart
config = quickstart.get_config()
config.update(num_train_steps=4, log_every_steps=2, checkpoint_every_steps=2)
assert cli.run(config, mode="train", workdir={str(tmp_path)!r}) == 0
print("tensorflow loaded:", "tensorflow" in sys.modules)
"""
    result = runner.run_python(code)
    assert "tensorflow loaded: False" in result.stdout, result.stdout[-2000:]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
