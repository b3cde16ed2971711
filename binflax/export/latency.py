"""Measured latency of an exported network against the fastest float32 run of the same network.

Why the float side gets two candidates: a binary network's speedup is only as honest as
the float baseline it is divided by. Every export carries the float32 program of the same
network (every layer float, batch norm folded into the kernels, its fully-connected
layers as matrix products, which XLA's CPU backend runs faster); for binflax's registered
models the float32 model as a user runs it, ``jax.jit(model.apply)`` with the variables on
the device, is a second candidate (a network of your own has no class in the file). The
baseline is whichever is faster in the same run; both are reported.

Times are medians of calls interleaved across everything compared (one call of each,
then the next round), after a warm-up call of each that compiles it, so that load on a
shared machine affects every side alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from etils import epath

from binflax.export.loaded import ExportedModel, integer_forward, load, rebuild_registered
from binflax.export.memory import zero_variables
from binflax.export.schema import FLOAT_BASELINE
from binflax.export.writer import export_model
from binflax.plan import Plan


def time_calls(calls: Mapping[str, Callable[[], jax.Array]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each call over ``repeats`` interleaved rounds.

    Each round starts one call later than the last (round ``r`` at call ``r mod n``), so
    no call always follows the same one. With a fixed order, AlexNet fbin's ``auto`` and
    ``native`` (one stored program) read 5.32 and 4.75 ms when ``auto`` followed the
    float network, 5.32 and 5.20 the other way round (a probe on a 2-core Zen 4, not
    kept): a fixed order puts such a difference on the same call every round."""
    for call in calls.values():
        jax.block_until_ready(call())
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            jax.block_until_ready(calls[name]())
            samples[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(times) for name, times in samples.items()}


def float_calls(
    model: nn.Module,
    variables: Mapping,
    images: jax.Array,
    directory: epath.PathLike,
) -> dict[str, Callable[[], jax.Array]]:
    """The two float32 runs of ``model`` (plan ``float``) on ``images``, ready to time.

    ``"float (model.apply)"``: the jitted Flax model, variables on the device;
    ``"float (exported)"``: its export (written to ``directory``) run by
    :func:`~binflax.export.integer_forward`.
    """
    if any(layer[1:] != ("float", "float") for layer in model.plan):
        raise ValueError(f"the float baseline needs a float plan, not {model.plan.name!r}")
    device_variables = jax.device_put(dict(variables))
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    path = epath.Path(directory) / "float.npz"
    export_model(model, variables, path, input_shape=images.shape[1:])
    exported = load(path)
    return {
        "float (model.apply)": lambda: apply(device_variables, images),
        "float (exported)": lambda: integer_forward(exported, images),
    }


def latency(exported: ExportedModel, images: jax.Array, *, repeats: int = 7) -> dict:
    """``exported``'s latency on ``images`` against the float32 network of the same shape.

    The float network has the same architecture with every layer float, and zero weights
    (the time of a float32 conv does not depend on its values). Returns milliseconds:
    ``ms`` (the export, ``arithmetic="auto"``), ``float_exported_ms``,
    ``float_apply_ms`` (None for a network of your own), ``float_ms`` (the fastest) and
    ``speedup = float_ms / ms``, with ``batch`` and ``repeats``.
    """
    images = jnp.asarray(images, jnp.float32)
    calls = {"float (exported)": lambda: exported.run(FLOAT_BASELINE, images)}
    model = rebuild_registered(exported)
    if model is not None:
        float_model = model.clone(plan=Plan.preset("float", exported.plan.names))
        variables = jax.device_put(zero_variables(float_model, images.shape[1:]))
        apply = jax.jit(lambda v, x: float_model.apply(v, x, train=False))
        calls["float (model.apply)"] = lambda: apply(variables, images)
    calls["export"] = lambda: integer_forward(exported, images)
    ms = time_calls(calls, repeats)
    float_apply = ms.get("float (model.apply)")
    float_ms = min(ms["float (exported)"], float_apply or float("inf"))
    return {
        "batch": int(images.shape[0]),
        "repeats": repeats,
        "ms": ms["export"],
        "float_apply_ms": float_apply,
        "float_exported_ms": ms["float (exported)"],
        "float_ms": float_ms,
        "speedup": float_ms / ms["export"],
    }
