"""Per-layer sensitivity to each input bit-width: the paper's error and two scores of the field.

Why: mixed-precision HBN asks, for every candidate layer and every input precision in
``{1, 2, 4, 8, float}``, how much the network suffers when that layer's input is
quantized to that many bits (docs/method.md section 12). One jit-compiled step per
batch, on the trained fbin network, reads the tensor each binary-input layer quantizes
(the one :func:`binflax.select.measure` reads) and the loss's gradient with respect to
it, and accumulates three scores, each a map ``layer -> {bits: number}`` (32 is float
and scores 0):

- ``error`` (the paper's, generalised): ``sqrt(mean((Q_k(x) - x)^2))``, where ``Q_1`` is
  ``sign`` (so 1 bit is :func:`binflax.select.measure`'s ``rmse`` exactly) and ``Q_k``
  the k-bit quantizer at the step training starts from
  (:func:`binflax.quantizers.gaussian_step`);
- ``fisher`` (a first-order loss change, NVIDIA ModelOpt ``auto_quantize``'s score): the
  diagonal empirical Fisher estimate of the loss change,
  ``1/2 * mean over examples of sum_i (dL/dx_i * (Q_k(x_i) - x_i))^2``;
- ``hessian`` (HAWQ-V3's trace x perturbation): ``1/2 * (Tr(H) / n) *
  mean over examples of ||Q_k(x) - x||^2``, with ``Tr(H)`` the trace of the loss's
  Hessian with respect to the layer's ``n``-element input, estimated by Hutchinson's
  method (Rademacher vectors, ``hutchinson_samples`` per batch; one probe vector spans
  every layer, whose cross terms vanish in expectation).

The gradients come from zero *probes* added to each quantized input
(:data:`binflax.planned.INPUT_PROBES`; absent in training), one per example, so
``dL/dx`` is per example without vmapping; the loss is the summed cross-entropy of the
network in evaluation mode. Each score is a function of per-layer statistics
(:class:`LayerStatistics`) registered in :data:`SENSITIVITIES`, so a score of your own
plugs in as one of :data:`binflax.select.SCORES` does. ``fisher`` and ``hessian`` need
labels: batches are dicts
with ``"image"``, ``"label"`` and an optional ``"mask"`` (without labels only ``error``
is measured).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from binflax import quantizers
from binflax.binarized_nnx import linen_view
from binflax.errors import UserError
from binflax.planned import BINARIZED_INPUTS, INPUT_PROBES, SIGN_INPUT
from binflax.select.metrics import (
    _candidate_layers,
    _captured,
    _replicate_like,
    _unpack,
    compute_of,
)

INPUT_BITS = (1, 2, 4, 8, 32)
FLOAT_BITS = 32


class SensitivityError(UserError, ValueError):
    """A sensitivity measurement that cannot be made as asked."""


@dataclasses.dataclass(frozen=True)
class LayerStatistics:
    """What the pass measured of one candidate layer, each a mean over examples, per
    quantized bit-width ``k``; a score is a function of these.

    ``squared_error[k]``: ``||Q_k(x) - x||^2``; ``fisher[k]``: ``sum_i (g_i * (Q_k(x_i)
    - x_i))^2`` with ``g = dL/dx``; ``trace``: Hutchinson's estimate of the trace of the
    loss's Hessian with respect to ``x`` (the last two None without labels);
    ``elements``: the size ``n`` of one example's ``x``.
    """

    squared_error: dict[int, float]
    fisher: dict[int, float] | None
    trace: float | None
    elements: int


class Sensitivity(NamedTuple):
    """A registered score: ``fn(statistics, bits) -> number`` for every quantized
    bit-width (float scores 0), and whether it needs labelled batches."""

    fn: Callable[[LayerStatistics, int], float]
    needs_labels: bool
    description: str


def error(stats: LayerStatistics, bits: int) -> float:
    """The paper's input-quantization error: ``sqrt(mean((Q_k(x) - x)^2))``."""
    return math.sqrt(stats.squared_error[bits] / stats.elements)


def fisher(stats: LayerStatistics, bits: int) -> float:
    """The diagonal empirical Fisher estimate of the loss change (ModelOpt)."""
    return 0.5 * stats.fisher[bits]


def hessian(stats: LayerStatistics, bits: int) -> float:
    """HAWQ-V3's average Hessian trace times the perturbation's squared norm."""
    return 0.5 * stats.trace / stats.elements * stats.squared_error[bits]


# Every score measure_precisions computes (those it can: a score that needs labels is
# left out without them); register one of your own here, as select.SCORES.
SENSITIVITIES: dict[str, Sensitivity] = {
    "error": Sensitivity(error, False, "sqrt(mean((Q_k(x) - x)^2)), the paper's generalised"),
    "fisher": Sensitivity(fisher, True, "1/2 mean sum_i (dL/dx_i * dx_i)^2, ModelOpt's"),
    "hessian": Sensitivity(hessian, True, "1/2 Tr(H)/n * mean ||dx||^2, HAWQ-V3's"),
}


@dataclasses.dataclass(frozen=True)
class PrecisionMeasurement:
    """Each candidate layer's sensitivity to each input bit-width, by score.

    ``scores[score][layer][bits]``; ``macs`` of the candidate (binary-input) layers in
    network order, ``fixed_macs`` of the others, ``total_macs`` of the network.
    """

    precisions: tuple[int, ...]
    scores: dict[str, dict[str, dict[int, float]]]
    macs: dict[str, int]
    fixed_macs: int
    total_macs: int
    layer_names: tuple[str, ...]
    num_samples: int
    statistics: dict[str, LayerStatistics] | None = None

    def sensitivity(self, score: str = "error") -> dict[str, dict[int, float]]:
        """``layer -> {bits: sensitivity}`` of one score (what the solver takes)."""
        if score not in self.scores:
            measured = ", ".join(self.scores)
            needs = score in SENSITIVITIES and SENSITIVITIES[score].needs_labels
            hint = " (it needs batches with labels)" if needs else ""
            raise SensitivityError(f"score {score!r} was not measured{hint}; measured: {measured}")
        return self.scores[score]

    def rescored(
        self, name: str, fn: Callable[[LayerStatistics, int], float]
    ) -> PrecisionMeasurement:
        """This measurement with one more score, ``fn(statistics, bits)``, computed from
        the statistics it kept (no new pass over the data)."""
        if self.statistics is None:
            raise SensitivityError("this measurement kept no statistics to score again")
        table = {
            layer: _with_float({b: fn(stats, b) for b in stats.squared_error}, self.precisions)
            for layer, stats in self.statistics.items()
        }
        return dataclasses.replace(self, scores={**self.scores, name: table})

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self) | {"layer_names": list(self.layer_names)}
        data["scores"] = {
            score: {
                layer: {str(b): v for b, v in by_bits.items()} for layer, by_bits in table.items()
            }
            for score, table in self.scores.items()
        }
        return data


def measure_precisions(
    model: nn.Module,
    variables: Mapping,
    batches: Iterable,
    *,
    precisions: Sequence[int] = INPUT_BITS,
    hutchinson_samples: int = 4,
    max_batches: int | None = None,
    seed: int = 0,
) -> PrecisionMeasurement:
    """Measures every binary-input layer's sensitivity to each of ``precisions`` (input
    bit-widths; 32 is float) over ``batches``; see the module docstring.

    ``model`` is an fbin network (a binflax model or a ``binflax.binarize``-d one) and
    ``variables`` its ``params`` and ``batch_stats`` (``None`` for a binarized NNX
    module: its own values).
    """
    model, variables = linen_view(model, variables)
    bits = _check_bits(precisions)
    if not isinstance(hutchinson_samples, int) or hutchinson_samples < 1:
        raise SensitivityError(
            f"hutchinson_samples must be an integer >= 1, got {hutchinson_samples!r}"
        )
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise SensitivityError("variables must be a mapping with a 'params' collection")
    variables = {k: v for k, v in variables.items() if k not in (BINARIZED_INPUTS, INPUT_PROBES)}
    quantized = tuple(b for b in bits if b != FLOAT_BITS)
    key = jax.random.key(seed)
    layers, acc, labelled, shape = (), None, None, None
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        images, mask = _unpack(batch, index)
        labels = batch.get("label") if isinstance(batch, Mapping) else None
        if images.ndim == 5:  # (B, crops, ...): every crop is a sample with the image's label
            crops = images.shape[1]
            images = images.reshape(-1, *images.shape[2:])
            mask = None if mask is None else jnp.repeat(mask, crops)
            labels = None if labels is None else jnp.repeat(labels, crops)
        if shape is None:
            shape, labelled = tuple(images.shape[1:]), labels is not None
            layers = _candidate_layers(model, shape)
            variables = _replicate_like(variables, images)
        elif tuple(images.shape[1:]) != shape:
            raise SensitivityError(
                f"batch {index}: images of shape {tuple(images.shape[1:])} after {shape} "
                "in earlier batches; one measurement needs one input shape"
            )
        if (labels is not None) != labelled:
            raise SensitivityError(f"batch {index}: some batches have labels and some not")
        weight = (
            jnp.ones(images.shape[0], jnp.float32) if mask is None else mask.astype(jnp.float32)
        )
        key, sample_key = jax.random.split(key)
        step = _step(model, quantized, hutchinson_samples if labelled else 0)
        sums = step(variables, images, labels, weight, sample_key)
        acc = sums if acc is None else jax.tree.map(jnp.add, acc, sums)
    if acc is None:
        raise SensitivityError("measure_precisions got no batches")
    acc = jax.device_get(acc)
    samples = int(acc["samples"])
    if samples == 0:
        raise SensitivityError("every example of every batch is masked out: nothing to measure")
    all_layers, candidates = layers
    statistics = {
        info.name: _statistics(info, acc[info.name], samples, quantized) for info in candidates
    }
    scores = {
        name: {
            layer: _with_float({k: score.fn(stats, k) for k in quantized}, bits)
            for layer, stats in statistics.items()
        }
        for name, score in SENSITIVITIES.items()
        if labelled or not score.needs_labels
    }
    return PrecisionMeasurement(
        precisions=bits,
        scores=scores,
        statistics=statistics,
        num_samples=samples,
        **compute_of(all_layers, candidates),
    )


def quantization_error(x: jax.Array, bits: int) -> jax.Array:
    """``Q_k(x) - x``: ``sign`` for 1 bit, the k-bit quantizer at its initial step else."""
    if bits == 1:
        return quantizers.binary_sign(x) - x
    return quantizers.quantize_input(x, jnp.float32(quantizers.gaussian_step(bits)), bits) - x


def _check_bits(precisions: Sequence[int]) -> tuple[int, ...]:
    bits = tuple(precisions)
    unknown = [b for b in bits if b not in INPUT_BITS or isinstance(b, bool)]
    if unknown or not bits:
        raise SensitivityError(
            f"precisions must be input bit-widths among {', '.join(map(str, INPUT_BITS))}, "
            f"got {bits!r}"
        )
    if len(set(bits)) != len(bits):
        raise SensitivityError(f"precisions {bits!r} repeat a bit-width")
    return tuple(sorted(bits))


@functools.lru_cache(maxsize=32)
def _step(model: nn.Module, quantized: tuple[int, ...], hutchinson: int):
    """One batch's sums: per layer, ``err[k]``, ``fisher[k]`` and the Hutchinson sum."""

    def loss_and_inputs(variables, probes, images, labels, weight):
        logits, state = model.apply(
            {**variables, INPUT_PROBES: probes}, images, train=False, mutable=[BINARIZED_INPUTS]
        )
        ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
        return jnp.sum(ce * weight), state[BINARIZED_INPUTS]

    @jax.jit
    def step(variables, images, labels, weight, key):
        sown = jax.eval_shape(
            lambda v, x: model.apply(v, x, train=False, mutable=[BINARIZED_INPUTS])[1],
            variables,
            images,
        )[BINARIZED_INPUTS]
        probes = _probes(sown)
        if labels is None:
            _, state = model.apply(variables, images, train=False, mutable=[BINARIZED_INPUTS])
            inputs, grads = state[BINARIZED_INPUTS], None
        else:
            (_, inputs), grads = jax.value_and_grad(loss_and_inputs, argnums=1, has_aux=True)(
                variables, probes, images, labels, weight
            )
        sums = {"samples": jnp.sum(weight)}
        traces = _hutchinson(
            loss_and_inputs, variables, probes, images, labels, weight, key, hutchinson
        )
        for name, xs in _captured(inputs):
            (x,) = xs
            x = x.astype(jnp.float32)
            w = weight.reshape(-1, *([1] * (x.ndim - 1)))
            g = None if grads is None else _at(grads, name).astype(jnp.float32)
            err, fisher = [], []
            for k in quantized:
                d2 = quantization_error(x, k) ** 2
                err.append(jnp.sum(w * d2))
                if g is not None:
                    fisher.append(jnp.sum(w * g**2 * d2))
            sums[name] = {"error": jnp.stack(err)}
            if g is not None:
                sums[name]["fisher"] = jnp.stack(fisher)
                sums[name]["trace"] = _at(traces, name)
        return sums

    return step


def _probes(sown: Mapping) -> dict:
    """Zeros shaped like each layer's quantized input, in the sown tree's structure."""
    out = {}
    for key, value in sown.items():
        if key == SIGN_INPUT:
            if len(value) != 1:
                raise SensitivityError(
                    "a layer is called more than once per forward pass; measure_precisions "
                    "needs one input per layer"
                )
            out[key] = jnp.zeros(value[0].shape, value[0].dtype)
        else:
            out[key] = _probes(value)
    return out


def _at(tree: Mapping, name: str) -> jax.Array:
    for part in name.split("/"):
        tree = tree[part]
    return tree[SIGN_INPUT]


def _hutchinson(loss_and_inputs, variables, probes, images, labels, weight, key, samples):
    """Per layer, the mean over ``samples`` Rademacher ``v`` of ``v . (H v)`` summed over
    the layer's elements (masked examples count 0): Hutchinson's estimate of the trace of
    the summed loss's Hessian with respect to the layer's input. ``H v`` is forward over
    reverse; the straight-through signs are custom JVPs, so both passes see the same
    derivative."""
    if labels is None or samples == 0:
        return None

    def grad_fn(p):
        return jax.grad(lambda q: loss_and_inputs(variables, q, images, labels, weight)[0])(p)

    leaves, treedef = jax.tree.flatten(probes)

    def add_sample(index, total):
        keys = jax.random.split(jax.random.fold_in(key, index), len(leaves))
        v = jax.tree.unflatten(
            treedef,
            [
                jax.random.rademacher(k, p.shape, jnp.float32)
                for k, p in zip(keys, leaves, strict=True)
            ],
        )
        _, hv = jax.jvp(grad_fn, (probes,), (v,))
        return jax.tree.map(lambda t, a, b: t + jnp.sum(a * b) / samples, total, v, hv)

    zeros = jax.tree.map(lambda p: jnp.zeros((), jnp.float32), probes)
    return jax.lax.fori_loop(0, samples, add_sample, zeros)


def _tree_vdot(a, b) -> jax.Array:
    return sum(jnp.sum(x * y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _statistics(info, sums, samples: int, quantized: tuple[int, ...]) -> LayerStatistics:
    """One layer's sums as means over the ``samples`` examples."""
    squared = {k: float(v) / samples for k, v in zip(quantized, sums["error"], strict=True)}
    fisher_sums = sums.get("fisher")
    return LayerStatistics(
        squared_error=squared,
        fisher=None
        if fisher_sums is None
        else {k: float(v) / samples for k, v in zip(quantized, fisher_sums, strict=True)},
        trace=None if "trace" not in sums else float(sums["trace"]) / samples,
        elements=math.prod(info.input_shape[1:]),
    )


def _with_float(by_bits: dict[int, float], bits: tuple[int, ...]) -> dict[int, float]:
    return {b: (0.0 if b == FLOAT_BITS else by_bits[b]) for b in bits}
