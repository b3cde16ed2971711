"""Packed activations between binary layers: the next sign as a threshold on the accumulator.

Why: between two XNOR layers the float model computes ``y = alpha * acc`` (float32),
ReLU, maybe a max pool, then the next layer's ``sign(BN(.))``. Every step is monotone
per channel, so the next layer's sign is a step function of the integer accumulator
``acc``: +1 exactly when ``acc >= T`` (or ``acc <= T``) for one integer ``T`` per
channel. Larq Compute Engine calls this the output threshold. The producer compares its
``int32`` accumulator with ``T`` and writes packed words, and the consumer reads bits
with no float tensor, no ReLU, no float pooling and no repacking between them.

Exactness. ``T`` is found by bisection over the integers ``|acc| <= kh * kw * C_in``
using the float path's own float32 operations in NumPy (``acc * alpha``, ReLU, then the
folded sign ``direction * v >= direction * tau``), so the bits equal those of the
unpacked path for every accumulator value, ties included. Float32 multiplication by a
constant is monotone, which is all the bisection needs.

Max pooling on packed words. A channel whose sign is ``v >= tau`` (direction +1) is +1
after a max pool when *any* input of the window is +1; in bits (1 = -1) that is the AND
of the window's bits. With direction -1 (``v <= tau``) the pooled sign is +1 when *all*
are +1: the OR of the bits. A per-channel mask picks AND or OR, so the pool is exact on
the words; padded window positions (max pool's -inf) take each operation's identity.

Which layers link. :func:`find_links` runs the model once on random probes, with every
unit's output replaced by independent random values, and links producer P to consumer C
when C's input equals ``max_pool(relu(P's output))`` (or without the ReLU or the pool)
exactly. A residual sum, a concatenation or any other operation between them breaks the
equality, so only chains that the thresholds compute exactly are linked. A producer may
feed several consumers (SqueezeNet's squeeze feeds both expands); it writes one set of
words for each. Linked are plain 2-D convs (no groups, no circular or reflect padding)
without XNOR-Net's K map (its scale needs the float input), producers without a bias
and without an RPReLU (its float shifts and slope are not in the threshold's ``acc *
alpha`` and ReLU; every layer with one ends its output in float).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

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
    g = info.geometry
    return (
        info.precision.xnor
        and not info.scale_inputs
        and g.kind == "conv"
        and g.spatial == 2
        and g.groups == 1
        and g.padding not in ("CIRCULAR", "REFLECT")
    )


def sign_limits(
    scale: np.ndarray,
    threshold: np.ndarray,
    direction: np.ndarray,
    *,
    relu: bool,
    bound: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(sense, limit)``, int32 per channel: the consumer's sign of the producer's output
    ``v = [relu](float32(acc) * scale)`` is +1 iff ``sense * acc >= limit``.

    ``threshold`` and ``direction`` are the consumer's folded sign
    (``+1 iff direction * v >= direction * threshold``); ``bound`` is the largest
    ``|acc|``. A constant sign gets ``limit`` -bound (always +1) or bound + 1 (never).
    """
    scale = np.asarray(scale, np.float32)
    d = np.asarray(direction, np.float32)
    dtau = d * np.asarray(threshold, np.float32)

    def positive(acc: np.ndarray) -> np.ndarray:
        v = acc.astype(np.float32) * scale
        if relu:
            v = np.maximum(v, np.float32(0))
        return d * v >= dtau

    lo = np.full(scale.shape, -bound, np.int64)
    hi = np.full(scale.shape, bound, np.int64)
    at_lo, at_hi = positive(lo), positive(hi)
    rising = at_hi & ~at_lo  # +1 from some T up: smallest such T is hi at the end
    falling = at_lo & ~at_hi  # +1 up to some T: largest such T is lo at the end
    while np.any((hi - lo > 1) & (rising | falling)):
        mid = (lo + hi) // 2
        at_mid = positive(mid)
        move_hi = np.where(rising, at_mid, ~at_mid)
        hi, lo = np.where(move_hi, mid, hi), np.where(move_hi, lo, mid)
    sense = np.where(falling, -1, 1)
    limit = np.where(rising, hi, np.where(falling, -lo, np.where(at_lo, -bound, bound + 1)))
    return sense.astype(np.int32), limit.astype(np.int32)


def pool_mask(direction: np.ndarray) -> np.ndarray:
    """Packed ``uint32`` words with bit 1 for the channels whose max pool is an AND of bits
    (pair them with :func:`binflax.packing.pair_words` for 64-bit words)."""
    return packing.pack_bits(np.asarray(direction) > 0)


def threshold_words(
    acc: jax.Array, sense: jax.Array, limit: jax.Array, word_type=np.uint32
) -> jax.Array:
    """The consumer's packed signs (bit 1 = -1) from the producer's ``int32`` accumulator."""
    return packing.pack_bits(sense * acc < limit, word_type)


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
