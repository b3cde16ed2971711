"""Input-binarization error: how far the tensor a layer binarizes is from its sign.

Why measure it: HBN keeps float inputs where binarizing them destroys the most
information for the least compute (docs/method.md section 7). On a trained fbin network,
each binary-input layer (a :class:`~binflax.layers.HBNConv`, or a layer of a network
passed through ``binflax.binarize``) sows the tensor ``x`` that ``sign`` receives into the
``"binarized_inputs"`` collection under its path; :func:`measure` reads those tensors
over held-out batches and reduces them to per-layer running sums inside one jit-compiled
step, so no activation is ever stored and memory does not grow with the number of batches.

Metrics (over every valid sample and element of ``x``; ``sign(0) = +1``):

- ``rmse`` (the authors'): ``sqrt(mean((sign(x) - x)^2))``;
- ``relative`` [choice: the spec says "normalised by mean x^2"]:
  ``sqrt(mean((sign(x) - x)^2) / mean(x^2))``, the RMSE over the RMS of ``x`` - a
  scale-free noise-to-signal ratio (0 when every ``|x| = 1``);
- ``one_minus_x2``: ``mean(|1 - clip(x, -1, 1)^2|)``.

    model = models.create("resnet18", plan="fbin", num_classes=250)
    m = measure(model, {"params": ..., "batch_stats": ...}, holdout_batches)
    m.errors   # {"layer1_0/conv1": 0.71, ...}, m.macs, m.fixed_macs, m.metrics["relative"]

Batches are arrays ``(B, H, W, C)`` or dicts with ``"image"`` and an optional bool
``"mask"`` (padded evaluation batches: masked examples do not count); multi-crop images
``(B, crops, H, W, C)`` are folded into the batch. A batch may be a ``jax.Array`` sharded
over a device mesh: the sums are then global (XLA inserts the all-reduce).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from binflax import models
from binflax.binarized_nnx import linen_view
from binflax.planned import BINARIZED_INPUTS, SIGN_INPUT
from binflax.quantizers import binary_sign

METRICS = ("rmse", "relative", "one_minus_x2")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Per-layer errors and MACs of a model's candidate (binary-input) layers.

    ``errors`` is ``metrics[metric]``; ``macs`` and ``errors`` are keyed by candidate
    layer in network order; ``fixed_macs`` is the MACs of the other (float-input) layers,
    ``total_macs`` of the whole network; ``num_samples`` counts the images measured
    (each crop of a multi-crop batch counts as one).
    """

    metric: str
    errors: dict[str, float]
    metrics: dict[str, dict[str, float]]
    macs: dict[str, int]
    fixed_macs: int
    total_macs: int
    layer_names: tuple[str, ...]
    num_samples: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"layer_names": list(self.layer_names)}


def measure(
    model: nn.Module,
    variables: Mapping,
    batches: Iterable,
    *,
    metric: str = "rmse",
    max_batches: int | None = None,
) -> Measurement:
    """Measures every binary-input layer's input-binarization error over ``batches``.

    ``model`` is a binflax model or a ``binflax.binarize``-d network whose plan binarizes
    some inputs (an fbin network, as the paper measures); ``variables`` its ``params``
    and ``batch_stats`` (a sown
    ``binarized_inputs`` collection in them is ignored). ``max_batches`` stops early.
    A binarized NNX module (``binflax.binarize(nnx_module, ...)``) is measured at its
    own values when ``variables`` is ``None``.
    """
    model, variables = linen_view(model, variables)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError("variables must be a mapping with a 'params' collection")
    variables = {k: v for k, v in variables.items() if k != BINARIZED_INPUTS}
    step = _step(model)
    image_shape, layers, acc = None, (), None
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        images, mask = _unpack(batch, index)
        if image_shape is None:
            image_shape = tuple(images.shape[-3:])
            layers = _candidate_layers(model, image_shape)
            variables = _replicate_like(variables, images)
            acc = ({info.name: jnp.zeros(3, jnp.float32) for info in layers[1]}, jnp.int32(0))
        elif tuple(images.shape[-3:]) != image_shape:
            raise ValueError(
                f"batch {index}: images of shape {tuple(images.shape[-3:])} after "
                f"{image_shape} in earlier batches; one measurement needs one input shape"
            )
        acc = step(acc, variables, images, mask)
    if acc is None:
        raise ValueError("measure got no batches")
    sums, samples = jax.device_get(acc)
    if int(samples) == 0:
        raise ValueError("every example of every batch is masked out: nothing to measure")
    return _summarise(*layers, sums, int(samples), metric)


def _unpack(batch, index: int):
    if isinstance(batch, Mapping):
        if "image" not in batch:
            raise ValueError(f"batch {index} has no 'image' (its keys: {', '.join(batch)})")
        images, mask = batch["image"], batch.get("mask")
    else:
        images, mask = batch, None
    if images.ndim not in (4, 5):
        raise ValueError(
            f"batch {index}: images must be (B, H, W, C) or (B, crops, H, W, C), "
            f"got shape {tuple(images.shape)}"
        )
    if mask is not None and tuple(mask.shape) != tuple(images.shape[:1]):
        raise ValueError(
            f"batch {index}: mask of shape {tuple(mask.shape)} does not match "
            f"{images.shape[0]} images"
        )
    return images, mask


def _replicate_like(variables, images):
    """Variables replicated over the mesh a sharded batch lives on (a no-op otherwise)."""
    sharding = getattr(images, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding) and len(sharding.device_set) > 1:
        replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
        return jax.device_put(variables, replicated)
    return variables


@functools.lru_cache(maxsize=32)
def _step(model: nn.Module):
    """The jitted accumulation step for ``model`` (cached: one compile per model/shape)."""

    def batch_sums(variables, images, mask):
        if images.ndim == 5:  # (B, crops, H, W, C): every crop is a sample
            crops = images.shape[1]
            images = images.reshape(-1, *images.shape[2:])
            mask = None if mask is None else jnp.repeat(mask, crops)
        _, state = model.apply(variables, images, train=False, mutable=[BINARIZED_INPUTS])
        weight = (
            jnp.ones(images.shape[0], jnp.float32) if mask is None else mask.astype(jnp.float32)
        )
        sums = {name: _sums(xs, weight) for name, xs in _captured(state[BINARIZED_INPUTS])}
        return sums, jnp.sum(weight, dtype=jnp.float32).astype(jnp.int32)

    @functools.partial(jax.jit, donate_argnums=0)
    def step(acc, variables, images, mask):
        sums, samples = batch_sums(variables, images, mask)
        if set(sums) != set(acc[0]):
            raise RuntimeError(
                f"the sown layers {sorted(sums)} differ from the plan's binary-input "
                f"layers {sorted(acc[0])}"
            )
        return jax.tree.map(jnp.add, acc[0], sums), acc[1] + samples

    return step


def _sums(xs: tuple[jax.Array, ...], weight: jax.Array) -> jax.Array:
    """``[sum (sign(x)-x)^2, sum x^2, sum |1-clip(x)^2|]`` over the valid samples of ``xs``."""
    total = jnp.zeros(3, jnp.float32)
    for x in xs:  # a layer called more than once sows once per call
        x = x.astype(jnp.float32)
        w = weight.reshape(-1, *([1] * (x.ndim - 1)))
        total += jnp.stack(
            [
                jnp.sum(w * (binary_sign(x) - x) ** 2),
                jnp.sum(w * x**2),
                jnp.sum(w * jnp.abs(1.0 - jnp.clip(x, -1.0, 1.0) ** 2)),
            ]
        )
    return total


def _captured(tree: Mapping, path: tuple[str, ...] = ()):
    for key, value in tree.items():
        if key == SIGN_INPUT:
            yield "/".join(path), value
        else:
            yield from _captured(value, (*path, key))


@functools.lru_cache(maxsize=32)
def _candidate_layers(model: nn.Module, image_shape: tuple[int, ...]):
    """``(all layers, binary-input layers)`` of ``model`` traced at ``image_shape``."""
    layers = models.trace_layers(model, image_shape)
    candidates = tuple(info for info in layers if info.precision.binary_input)
    if not candidates:
        raise ValueError(
            f"{type(model).__name__} with plan {getattr(model.plan, 'name', None)!r} "
            "binarizes no input: measure needs an fbin (or hybrid) model"
        )
    return layers, candidates


def _summarise(layers, candidates, sums, samples: int, metric: str) -> Measurement:
    values: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    for info in candidates:
        sq_err, sq_x, one_minus = (float(v) for v in sums[info.name])
        count = samples * math.prod(info.input_shape[1:])
        values["rmse"][info.name] = math.sqrt(sq_err / count)
        values["relative"][info.name] = (
            math.sqrt(sq_err / sq_x) if sq_x > 0 else (0.0 if sq_err == 0 else math.inf)
        )
        values["one_minus_x2"][info.name] = one_minus / count
    return Measurement(
        metric=metric,
        errors=dict(values[metric]),
        metrics=values,
        num_samples=samples,
        **compute_of(layers, candidates),
    )


def compute_of(layers, candidates) -> dict:
    """A measurement's compute fields: the candidates' MACs (network order), the other
    layers' (``fixed_macs``), the network's, and every layer's name."""
    return {
        "macs": {info.name: info.macs for info in candidates},
        "fixed_macs": sum(info.macs for info in layers if not info.precision.binary_input),
        "total_macs": sum(info.macs for info in layers),
        "layer_names": tuple(info.name for info in layers),
    }
