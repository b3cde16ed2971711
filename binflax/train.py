"""Training and evaluation: ``train_and_evaluate(config, workdir)`` and its building blocks.

One readable loop, data parallel over every device of every process (binflax.parallel),
with the authors' recipe: Adam, a learning rate halved on a fixed interval down to a
floor, and after every step the latent binary kernels mean-centred over input channels
and clipped to [-1, 1] (``binflax.optimizer``; ``config.kernel_projection`` chooses).

The loop resumes by itself: the step is the data position (``binflax.data`` streams are
deterministic per step), the dropout key is ``fold_in(seed key, step)``, and the Orbax
checkpoint holds params, batch statistics and optimizer state. A SIGTERM saves and
stops; a non-finite loss stops before anything non-finite is saved.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Iterable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from binflax import data, distill, networks, optimizer, outputs, parallel, provenance
from binflax.checkpointing import CheckpointError, Checkpoints, PreemptionGuard
from binflax.errors import ConfigError
from binflax.eval_history import EvalHistory
from binflax.outputs import log
from binflax.plan import Plan
from binflax.run_dir import RunDir
from binflax.summaries import ScalarWriter


class TrainState(train_state.TrainState):
    batch_stats: Any = None

    @property
    def variables(self) -> dict:
        """``params`` and ``batch_stats`` as ``model.apply`` takes them."""
        return {"params": self.params, "batch_stats": self.batch_stats}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing non-finite was checkpointed."""


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was saved and the run can be resumed."""


@dataclasses.dataclass
class TrainResult:
    """A finished run: the state chosen on held-out data and its three test figures."""

    model: nn.Module
    state: TrainState  # chosen on the holdout's top-1 (the final state without a holdout)
    metrics: dict  # test metrics of that state: the headline
    steps: int
    # The loop's wall seconds summed over every sitting that trained the run (each counted
    # up to its last checkpoint, binflax.provenance), not only the last sitting's; None
    # when steps were trained before binflax recorded sittings.
    seconds: float | None
    chosen_step: int
    holdout: dict | None  # holdout metrics of the chosen state (None without a holdout)
    final: dict  # test metrics of the final step's state
    best_test: tuple[int, dict]  # (step, metrics) of the best test evaluation: optimistic
    first_stage: TrainResult | None = None  # stage 1 of a two-stage run (binflax.two_stage)
    # provenance.json: code, CPU, devices and seconds of each sitting (None, as seconds)
    provenance: dict | None = None


def init_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    image_shape: tuple[int, int, int],
    steps_per_epoch: int,
) -> TrainState:
    key, dummy = jax.random.key(config.seed), jnp.zeros((1, *image_shape), jnp.float32)
    # init runs once: compiling its random-number code without XLA's optimisation passes
    # is ~3x faster on a CPU and gives the same values.
    init = (
        jax.jit(model.init, static_argnames="train")
        .lower(key, dummy, train=False)
        .compile(compiler_options={"xla_backend_optimization_level": 0})
    )
    return _new_state(config, model, init(key, dummy), steps_per_epoch)


def abstract_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    image_shape: tuple[int, int, int],
    steps_per_epoch: int,
) -> TrainState:
    """:func:`init_state`'s state as shapes and dtypes on this process's default device,
    traced and never computed: what a checkpoint restores into. Restoring needs no random
    initialisation, so a resumed run, eval and export compile no ``init`` and draw no
    weights."""

    def new_state() -> TrainState:
        key, dummy = jax.random.key(config.seed), jnp.zeros((1, *image_shape), jnp.float32)
        return _new_state(config, model, model.init(key, dummy, train=False), steps_per_epoch)

    shapes = jax.eval_shape(new_state)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), shapes
    )
    return abstract.replace(step=0)  # a Python int, as TrainState.create leaves it


def _new_state(
    config: ml_collections.ConfigDict, model: nn.Module, variables: Any, steps_per_epoch: int
) -> TrainState:
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=optimizer.create_optimizer(config, model.plan, steps_per_epoch),
    )


def transfer_matching(target: Any, source: Any) -> Any:
    """``target`` with every leaf that ``source`` has at the same path and shape copied.

    Initialising a hybrid from its fbin checkpoint, or a second stage from its first: a
    layer whose input precision changed keeps its fresh batch norm (it sits on the other
    side of the conv), the rest is copied - into new buffers, as the train step donates
    its state and ``source`` stays the other run's result.
    """
    flat_source = flax.traverse_util.flatten_dict(flax.core.unfreeze(source))

    def pick(path, leaf):
        key = tuple(p.key for p in path)
        other = flat_source.get(key)
        return (
            jnp.array(other, copy=True) if other is not None and other.shape == leaf.shape else leaf
        )

    return jax.tree_util.tree_map_with_path(pick, target)


# -- steps -----------------------------------------------------------------------------
@functools.partial(jax.jit, donate_argnums=0, static_argnames=("distill_weight", "temperature"))
def train_step(
    state: TrainState,
    batch: dict,
    dropout_key: jax.Array,
    teacher: distill.Teacher | None = None,
    *,
    distill_weight: float = 0.0,
    temperature: float = 1.0,
) -> tuple[TrainState, dict]:
    """One optimizer step on a global batch, compiled; metrics are global means. The
    step donates ``state``'s buffers: use the state it returns.

    With a ``teacher`` the loss is :func:`binflax.distill.loss`; the teacher's forward
    pass runs here, in inference mode, outside the gradient."""
    teacher_logits = None if teacher is None else teacher.logits(batch["image"])

    def loss_fn(params):
        logits, updates = state.apply_fn(
            state.replace(params=params).variables,
            batch["image"],
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.fold_in(dropout_key, state.step)},
        )
        logits = logits.astype(jnp.float32)  # the loss is float32 under half precision too
        if teacher_logits is None:
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        else:
            loss = distill.loss(logits, teacher_logits, batch["label"], weight=distill_weight,
                                temperature=temperature)  # fmt: skip
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return state, {"loss": loss, "accuracy": accuracy}


@jax.jit
def eval_step(state: TrainState, batch: dict) -> dict:
    """Sums of loss, top-1 and top-5 hits over the real (unmasked) examples, compiled.

    Multi-crop images ``(B, crops, H, W, C)`` are scored by the mean log-softmax over crops.
    """
    images = batch["image"]
    crops = images.shape[1] if images.ndim == 5 else 1
    flat = images.reshape(-1, *images.shape[-3:])
    logits = state.apply_fn(state.variables, flat)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    log_probs = log_probs.reshape(images.shape[0], crops, -1).mean(axis=1)
    labels, mask = batch["label"], batch["mask"].astype(jnp.float32)
    loss = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    top5 = jax.lax.top_k(log_probs, min(5, log_probs.shape[-1]))[1]
    return {
        "loss": jnp.sum(loss * mask),
        "top1": jnp.sum((jnp.argmax(log_probs, -1) == labels) * mask),
        "top5": jnp.sum(jnp.any(top5 == labels[:, None], axis=-1) * mask),
        "count": jnp.sum(mask),
    }


_jit_all_finite = jax.jit(
    lambda tree: jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))
)


def evaluate(state: TrainState, batches: Iterable[dict], mesh: jax.sharding.Mesh) -> dict:
    """top-1/top-5 (percent) and mean loss of ``state`` over one pass of ``batches``."""
    totals = None
    for batch in batches:
        sums = eval_step(state, parallel.global_batch(batch, mesh))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
        raise data.DatasetError("the evaluation split is empty")
    totals = parallel.fetch(totals)
    count = max(float(totals["count"]), 1.0)
    return {
        "top1": 100.0 * float(totals["top1"]) / count,
        "top5": 100.0 * float(totals["top5"]) / count,
        "loss": float(totals["loss"]) / count,
        "count": int(totals["count"]),
    }


# -- the loop --------------------------------------------------------------------------
@networks.takes_config
def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    plan: str | Plan | None = None,
    init_from: TrainState | None = None,
    teacher: distill.Teacher | None = None,
    name: str = "train",
) -> TrainResult:
    """Trains ``config.model`` with ``plan`` (default ``config.plan``) in ``workdir``.

    Resumes from ``workdir``'s latest checkpoint when there is one. ``init_from`` seeds
    a fresh run with the matching leaves of another state (a hybrid from its fbin).
    With a ``teacher`` and ``config.distill.weight > 0`` the loss distills from it.

    Every ``eval_every_epochs`` the state is evaluated on the holdout slice of the
    training split, and the best of those states is kept as the run's result: the test
    split never chooses it. Every ``test_every_epochs``, and at the last step, the test
    split is evaluated too, for the final-step and the (optimistic) best-test figures.

    Each sitting (a first run, each resume) records its code, machine and seconds in the
    run's ``provenance.json`` at every checkpoint (:mod:`binflax.provenance`), so the
    result's ``seconds`` is the whole training's, not the last sitting's.
    """
    info = dataset_info(config)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.batch_size, mesh)
    parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
    model = networks.build_model(config, info.num_classes, plan)
    steps_per_epoch = info.num_examples["train"] // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"config.batch_size={config.batch_size} is larger than the "
            f"{info.num_examples['train']} training examples"
        )
    total_steps = (
        config.num_train_steps
        if config.num_train_steps > 0
        else int(config.num_epochs * steps_per_epoch)
    )
    has_holdout = info.num_examples["holdout"] > 0
    holdout_every = max(1, int(config.eval_every_epochs * steps_per_epoch))
    test_every = (
        max(1, int(config.test_every_epochs * steps_per_epoch))
        if config.test_every_epochs > 0
        else total_steps
    )

    checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints)
    run = RunDir.of(workdir)
    writer = ScalarWriter(run.tensorboard, enabled=outputs.main_process())
    try:
        history = EvalHistory(run.evaluations_json)
        # A resumed run restores into the state's shapes: its random initialisation would
        # be overwritten, and compiling it costs about as much as compiling a train step.
        restored = None
        if checkpoints.latest_step is not None:
            abstract = abstract_state(config, model, info.image_shape, steps_per_epoch)
            restored = checkpoints.restore_latest(abstract)
        if restored is not None:
            _, state = restored
            log(f"[{name}] resuming from step {int(state.step)} in {workdir}")
        else:
            state = init_state(config, model, info.image_shape, steps_per_epoch)
            if init_from is not None:
                state = state.replace(
                    params=transfer_matching(state.params, init_from.params),
                    batch_stats=transfer_matching(state.batch_stats, init_from.batch_stats),
                )
        state = parallel.replicate(state, mesh)
        start_step = int(state.step)
        sittings = provenance.Sittings(run.provenance_json, start_step)
        distillation = {}
        if teacher is not None and config.distill.weight > 0:
            teacher = teacher.replace(variables=parallel.replicate(teacher.variables, mesh))
            distillation = {
                "teacher": teacher,
                "distill_weight": float(config.distill.weight),
                "temperature": float(config.distill.temperature),
            }

        dropout_key = jax.random.key(config.seed + 1)
        batches = data.train_batches(config, seed=config.seed, start_step=start_step)
        lr_schedule = optimizer.learning_rate_schedule(config, steps_per_epoch)
        log(
            f"[{name}] {type(model).__name__} plan={model.plan.name} on {mesh.size} device(s), "
            f"{jax.process_count()} process(es): {total_steps} steps, "
            f"{steps_per_epoch} per epoch, global batch {config.batch_size}, "
            f"{jnp.dtype(model.options.dtype).name} compute on {jax.default_backend()}; checkpoint "
            + ("chosen on the holdout's top-1" if has_holdout else "= the final step (no holdout)")
        )

        def evaluate_split(split: str, step: int) -> dict:
            metrics = evaluate(state, eval_batches(config, split), mesh)
            history.record(split, step, metrics)
            writer.write_scalars(step, {f"{split}_{k}": v for k, v in metrics.items()})
            log(
                f"[{name}] {split} at step {step}: top-1 {metrics['top1']:.2f}% "
                f"top-5 {metrics['top5']:.2f}% loss {metrics['loss']:.4f}"
            )
            return metrics

        t_start, last_log, last_log_step = time.time(), time.time(), start_step
        metrics_sum, metrics_count = None, 0
        with PreemptionGuard() as preemption:
            for step in range(start_step, total_steps):
                batch = parallel.global_batch(next(batches), mesh)
                state, metrics = train_step(state, batch, dropout_key, **distillation)
                metrics_sum = (
                    metrics if metrics_sum is None else jax.tree.map(jnp.add, metrics_sum, metrics)
                )
                metrics_count += 1
                done = step + 1
                last = done == total_steps

                if done % config.log_every_steps == 0 or last:
                    means = {
                        k: float(v) / metrics_count for k, v in parallel.fetch(metrics_sum).items()
                    }
                    if not math.isfinite(means["loss"]):
                        raise TrainingDiverged(
                            f"[{name}] the training loss became {means['loss']} by step {done}; "
                            f"the last good checkpoint is step {checkpoints.latest_step} in "
                            f"{workdir}. Lower config.learning_rate or check the data."
                        )
                    now = time.time()
                    rate = (done - last_log_step) * config.batch_size / max(now - last_log, 1e-9)
                    eta = (total_steps - done) * config.batch_size / max(rate, 1e-9)
                    writer.write_scalars(done, {f"train_{k}": v for k, v in means.items()})
                    log(
                        f"[{name}] step {done}/{total_steps} epoch {done / steps_per_epoch:.1f} | "
                        f"loss {means['loss']:.4f} acc {100 * means['accuracy']:.1f}% | "
                        f"lr {float(lr_schedule(done)):.2e} | {rate:.0f} img/s | ETA {_hms(eta)}"
                    )
                    metrics_sum, metrics_count = None, 0
                    last_log, last_log_step = now, done

                holdout = tested = None
                if has_holdout and (done % holdout_every == 0 or last):
                    holdout = evaluate_split("holdout", done)
                if done % test_every == 0 or last:
                    tested = evaluate_split("test", done)
                if holdout or tested or done % config.checkpoint_every_steps == 0:
                    _save(checkpoints, done, state, name, workdir)
                    sittings.progress(done, time.time() - t_start)
                if holdout and history.best("holdout")[0] == done:
                    checkpoints.save_best(done, state)

                if preemption.requested:
                    _save(checkpoints, done, state, name, workdir)
                    sittings.progress(done, time.time() - t_start)
                    raise Preempted(
                        f"[{name}] SIGTERM at step {done}: checkpoint saved in {workdir}; "
                        "run the same command again to resume"
                    )

        if history.get("test", total_steps) is None:  # finished before evaluations were kept
            evaluate_split("test", total_steps)
        best = None
        if has_holdout and checkpoints.best_step not in (None, total_steps):
            best = checkpoints.restore_best(state)  # the latest intact one if it is damaged
        if best is None or best[0] == total_steps:
            chosen_step, chosen = total_steps, state
        else:
            chosen_step, chosen = best[0], parallel.replicate(best[1], mesh)
        metrics = (
            history.get("test", chosen_step)
            or history.chosen_test(chosen_step)
            or evaluate(chosen, eval_batches(config, "test"), mesh)
        )
        if history.chosen_test(chosen_step) != metrics:
            history.record_chosen(chosen_step, metrics)
        seconds = time.time() - t_start
        if start_step < total_steps:  # this sitting trained: it finished the run
            sittings.progress(total_steps, seconds)
        record = sittings.summary()
        final, best_test = history.get("test", total_steps), history.best("test")
        chosen_by = "chosen on the holdout" if has_holdout else "the final step"
        log(
            f"[{name}] done in {_hms(seconds)}: test top-1 {metrics['top1']:.2f}% at step "
            f"{chosen_step} ({chosen_by}); final step {final['top1']:.2f}%; best test "
            f"evaluation {best_test[1]['top1']:.2f}% at step {best_test[0]} (optimistic)"
        )
        return TrainResult(
            model=model,
            state=chosen,
            metrics=metrics,
            steps=total_steps,
            seconds=record["train_seconds"] if record else None,
            chosen_step=chosen_step,
            holdout=history.get("holdout", chosen_step),
            final=final,
            best_test=best_test,
            provenance=record,
        )
    finally:  # also when the run diverges, is preempted or fails
        writer.close()
        checkpoints.close()


def _save(checkpoints: Checkpoints, step: int, state: TrainState, name: str, workdir: str) -> None:
    if not bool(_jit_all_finite((state.params, state.batch_stats))):
        raise TrainingDiverged(
            f"[{name}] the parameters became non-finite by step {step}; the last good "
            f"checkpoint is step {checkpoints.latest_step} in {workdir}"
        )
    checkpoints.save(step, state)


def dataset_info(config: ml_collections.ConfigDict) -> data.DatasetInfo:
    """The dataset's facts, checked against the config's ``num_classes``."""
    info = data.get_info(config)
    if info.num_classes != config.num_classes:
        raise data.DatasetError(
            f"config.num_classes={config.num_classes} but {config.dataset} has "
            f"{info.num_classes} classes"
        )
    return info


def eval_batches(config: ml_collections.ConfigDict, split: str) -> Iterable[dict]:
    """One pass over ``split``, cut to ``config.num_eval_batches`` when that is positive."""
    batches = data.eval_batches(config, split)
    if config.num_eval_batches > 0:
        return itertools.islice(batches, config.num_eval_batches)
    return batches


def restore_state(
    config: ml_collections.ConfigDict, workdir: str, plan: str | Plan | None = None
) -> tuple[nn.Module, TrainState]:
    """The best checkpointed state of a finished or running ``train`` in ``workdir``."""
    info = dataset_info(config)
    model = networks.build_model(config, info.num_classes, plan)
    state = abstract_state(config, model, info.image_shape, steps_per_epoch=1)
    checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints)
    try:
        restored = checkpoints.restore_best(state)
    finally:
        checkpoints.close()
    if restored is None:
        raise CheckpointError(f"no checkpoint in {workdir}; train it first (--mode=train)")
    return model, restored[1]


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
