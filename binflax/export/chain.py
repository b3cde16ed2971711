"""Packed activations between binary layers: the next layer's input as thresholds on the
accumulator.

Why: between two XNOR layers the float model computes ``y = alpha * acc`` (float32),
ReLU, maybe a max pool, then the next layer's ``sign(BN(.))``. Every step is monotone
per channel, so the next layer's sign is a step function of the integer accumulator
``acc``: +1 exactly when ``acc >= T`` (or ``acc <= T``) for one integer ``T`` per
channel. Larq Compute Engine calls this the output threshold. The producer compares its
``int32`` accumulator with ``T`` and writes packed words, and the consumer reads bits
with no float tensor, no ReLU, no float pooling and no repacking between them.

k-bit links. A consumer with a k-bit input on binary weights runs on ``k`` sign planes
of its level (binflax.export.inference.level_accumulator), and its level is a monotone
step function of the producer's accumulator too: ``2**k - 1`` thresholds per channel,
one per level boundary. The producer packs one word per threshold (a thermometer code
of the level), max-pools them as signs, and XORs them into the ``k`` planes. A k-bit
producer (binary weights) links the same way: its accumulator counts half steps, and
its output ``acc * h * alpha`` is one more monotone step.

Exactness. The thresholds are found by bisection over the integers ``|acc| <= kh * kw *
C_in * (2**k_producer - 1)`` (:func:`step_limits`) on the unlinked program's own float32
operations (binflax.export.inference: ``acc * [h] * alpha``, ReLU, then the folded sign
``direction * v >= direction * tau`` or the normalisation and quantizer), so every level
equals the unlinked path's for every accumulator value, ties included. Each of those
operations is monotone in float32, which is all the bisection needs.

Max pooling on packed words. A channel whose sign is ``v >= tau`` (direction +1) is +1
after a max pool when *any* input of the window is +1; in bits (1 = -1) that is the AND
of the window's bits. With direction -1 (``v <= tau``) the pooled sign is +1 when *all*
are +1: the OR of the bits. A per-channel mask picks AND or OR, so the pool is exact on
the words; padded window positions (max pool's -inf) take each operation's identity.
A k-bit consumer's thresholds are max-pooled the same way, each on its own words: the
pooled level reaches threshold ``t`` exactly when some input of the window does (or every
input, where the level falls as the input rises). The planes are then a few XORs of the
pooled threshold words (:func:`level_planes`).

Which layers link. :func:`find_links` runs the model once on random probes, with every
unit's output replaced by independent random values, and links producer P to consumer C
when C's input equals ``max_pool(relu(P's output))`` (or without the ReLU or the pool)
exactly. A residual sum, a concatenation or any other operation between them breaks the
equality, so only chains that the thresholds compute exactly are linked. A producer may
feed several consumers (SqueezeNet's squeeze feeds both expands); it writes one set of
words for each. Linked are plain 2-D convs with binary weights and a binary or k-bit
input (no groups, no circular or reflect padding) without XNOR-Net's K map (its scale
needs the float input); a link runs where both layers run on packed words (a k-bit
input of at most ``arithmetic.max_planes`` bits) and where it was measured to pay
(``arithmetic.link_pays``). Producers have no bias
and no RPReLU (its float shifts and slope are not in the thresholds' ``acc * alpha``
and ReLU; every layer with one ends its output in float).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from binflax import packing, tracing
from binflax.tracing import LayerInfo

PROBE_SCALE = 100.0  # probes far outside [0, 6] so a clipping activation cannot pass


@dataclasses.dataclass(frozen=True)
class Pool:
    """A max pool as the model applies it: window, strides and explicit padding."""

    window: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Link:
    """``consumer``'s input is ``pool(relu(producer's output))`` (ReLU and pool optional)."""

    producer: str
    consumer: str
    relu: bool
    pool: Pool | None


def find_links(
    model: nn.Module, input_shape: Sequence[int], variables: Mapping | None = None
) -> tuple[Link, ...]:
    """The producer -> consumer pairs of XNOR layers that can pass packed words exactly.

    ``variables`` are what the network keeps outside its planned layers (a network of
    your own may have batch norms between them); none for binflax's models. The probe
    compiles the model once."""
    layers = {info.name: info for info in tracing.trace_layers(model, input_shape)}
    inputs, outputs = _probe(model, tuple(input_shape), layers, variables or {})
    order = list(layers)
    links = []
    for consumer in order:
        if not _linkable(layers[consumer]):
            continue
        for producer in reversed(order[: order.index(consumer)]):
            info = layers[producer]
            if not _linkable(info) or info.use_bias or info.rprelu:
                continue
            link = _match(producer, consumer, outputs[producer], inputs[consumer])
            if link is not None:
                links.append(link)
                break
    return tuple(links)


def _linkable(info: LayerInfo) -> bool:
    """Binary weights on a quantized input (binary or k bits: what runs on packed
    words), a plain 2-D conv, no K map."""
    g = info.geometry
    return (
        info.precision.binary_weight
        and info.precision.quantized_input
        and not info.scale_inputs
        and g.kind == "conv"
        and g.spatial == 2
        and g.groups == 1
        and g.padding not in ("CIRCULAR", "REFLECT")
    )


def step_limits(
    levels: Callable[[np.ndarray], np.ndarray], count: int, bound: int, channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(sense, limits)``, int32, shapes ``(C,)`` and ``(count, C)``: the level
    ``levels(acc)`` (0 to ``count`` per channel, a monotone step function of the integer
    ``acc``) is at least ``t`` iff ``sense * acc >= limits[t - 1]``.

    ``levels`` maps an ``(n, C)`` int64 array of accumulators to their levels, computed
    the way the unlinked program computes them; ``bound`` is the largest ``|acc|``. A
    level that every accumulator reaches gets the limit ``-bound``, one that none
    reaches ``bound + 1``. Bisection over the integers, all levels and channels at once.
    """
    thresholds = np.arange(1, count + 1)[:, None]

    def reaches(acc: np.ndarray) -> np.ndarray:  # (count, C) accumulators -> level >= t
        return np.asarray(levels(acc)).reshape(count, channels) >= thresholds

    lo = np.full((count, channels), -bound, np.int64)
    hi = np.full((count, channels), bound, np.int64)
    at_lo, at_hi = reaches(lo), reaches(hi)
    rising = at_hi & ~at_lo  # reached from some T up: the smallest such T is hi at the end
    falling = at_lo & ~at_hi  # reached up to some T: the largest such T is lo at the end
    while np.any((hi - lo > 1) & (rising | falling)):
        mid = (lo + hi) // 2
        at_mid = reaches(mid)
        move_hi = np.where(rising, at_mid, ~at_mid)
        hi, lo = np.where(move_hi, mid, hi), np.where(move_hi, lo, mid)
    sense = np.where(falling.any(axis=0), -1, 1)
    limit = np.where(rising, hi, np.where(falling, -lo, np.where(at_lo, -bound, bound + 1)))
    return sense.astype(np.int32), limit.astype(np.int32)


def pool_mask(direction: np.ndarray) -> np.ndarray:
    """Packed ``uint32`` words with bit 1 for the channels whose max pool is an AND of bits
    (pair them with :func:`binflax.packing.pair_words` for 64-bit words)."""
    return packing.pack_bits(np.asarray(direction) > 0)


def threshold_words(
    acc: jax.Array, sense: jax.Array, limit: jax.Array, word_type=np.uint32
) -> jax.Array:
    """A binary consumer's packed signs (bit 1 = -1) from the producer's ``int32``
    accumulator (``limit``: the one row of its :func:`step_limits`)."""
    return packing.pack_bits(sense * acc < limit, word_type)


def level_planes(not_reached: Sequence[jax.Array]) -> jax.Array:
    """A k-bit consumer's ``k`` packed sign planes, stacked on the batch axis as
    :func:`binflax.export.inference.level_accumulator` stacks them, from the packed
    words of its ``2**k - 1`` thresholds (:func:`threshold_words`: bit 1 where the level
    is below threshold ``t``), max-pooled or not.

    The thresholds are a thermometer code of the level ``u``, and bit ``j`` of ``u`` is
    the parity of the thresholds ``t <= u`` that are multiples of ``2**j``. There are
    ``2**(k-j) - 1`` such thresholds, an odd number, so plane ``j``'s bit (1 where bit
    ``j`` of ``u`` is 0) is the XOR of their "below" words, and padding bits stay 0."""
    count = len(not_reached)
    planes = [
        functools.reduce(jnp.bitwise_xor, not_reached[step - 1 :: step])
        for step in (2**j for j in range(count.bit_length()))
    ]
    return planes[0] if count == 1 else jnp.concatenate(planes)


def max_pool_words(words: jax.Array, and_mask: jax.Array, pool: Pool) -> jax.Array:
    """Max pooling of packed signs: AND of the window's bits where ``and_mask`` is 1, else OR."""
    pads = ((0, 0), *pool.padding, (0, 0))
    ones = jnp.pad(words, pads, constant_values=np.array(np.iinfo(words.dtype).max, words.dtype))
    zeros = jnp.pad(words, pads)
    all_negative = _reduce_window(ones, pool, jnp.bitwise_and)
    any_negative = _reduce_window(zeros, pool, jnp.bitwise_or)
    if and_mask.dtype != words.dtype:
        and_mask = packing.pair_words(and_mask)
    return (all_negative & and_mask) | (any_negative & ~and_mask)


def _reduce_window(padded: jax.Array, pool: Pool, op) -> jax.Array:
    n, h, w, c = padded.shape
    (kh, kw), (sh, sw) = pool.window, pool.strides
    out_h, out_w = (h - kh) // sh + 1, (w - kw) // sw + 1
    result = None
    for i, j in itertools.product(range(kh), range(kw)):
        stop = (n, i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, c)
        tap = lax.slice(padded, (0, i, j, 0), stop, (1, sh, sw, 1))
        result = tap if result is None else op(result, tap)
    return result


def _probe(
    model: nn.Module,
    input_shape: tuple[int, ...],
    layers: Mapping[str, LayerInfo],
    variables: Mapping,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every layer's input when every layer outputs independent random values.

    One jit-compiled call, concrete even when :func:`find_links` runs under a trace."""
    rng = np.random.default_rng(0)
    outputs = {
        name: (PROBE_SCALE * rng.standard_normal(info.output_shape)).astype(np.float32)
        for name, info in layers.items()
    }

    def layer_inputs(outputs, variables):
        inputs = {}

        def replace(call: tracing.PlannedCall) -> jax.Array:
            inputs[call.info.name] = call.x
            return outputs[call.info.name]

        with tracing.intercept(replace):
            model.apply(dict(variables), jnp.zeros((1, *input_shape), jnp.float32), train=False)
        return inputs

    with jax.ensure_compile_time_eval():
        inputs = jax.jit(layer_inputs)(outputs, variables)
    return {name: np.asarray(x) for name, x in inputs.items()}, outputs


def _match(producer: str, consumer: str, y: np.ndarray, x: np.ndarray) -> Link | None:
    if y.shape[-1] != x.shape[-1]:
        return None
    for relu in (True, False):
        z = np.maximum(y, 0) if relu else y
        for pool in _candidate_pools(z.shape[1:3], x.shape[1:3]):
            if np.array_equal(z if pool is None else _np_max_pool(z, pool), x):
                return Link(producer, consumer, relu, pool)
    return None


def _candidate_pools(src: Sequence[int], dst: Sequence[int]) -> list[Pool | None]:
    """Max pools (windows 2-3, strides 1-3, no padding or padding up to window - 1 on
    either side) that take spatial size ``src`` to ``dst``; ``None`` when equal."""
    if tuple(src) == tuple(dst):
        return [None]
    found = []
    for k, s in itertools.product((2, 3), (1, 2, 3)):
        per_axis = []
        for size, out in zip(src, dst, strict=True):
            per_axis.append(
                [
                    (lo, hi)
                    for lo, hi in itertools.product(range(k), repeat=2)
                    if (size + lo + hi - k) // s + 1 == out
                ]
            )
        for pads in itertools.product(*per_axis):
            found.append(Pool((k, k), (s, s), tuple(pads)))
    return found


def _np_max_pool(x: np.ndarray, pool: Pool) -> np.ndarray:
    padded = np.pad(x, ((0, 0), *pool.padding, (0, 0)), constant_values=-np.inf)
    (kh, kw), (sh, sw) = pool.window, pool.strides
    out_h = (padded.shape[1] - kh) // sh + 1
    out_w = (padded.shape[2] - kw) // sw + 1
    taps = [
        padded[:, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw]
        for i, j in itertools.product(range(kh), range(kw))
    ]
    return np.max(taps, axis=0)
