"""Packed activations between XNOR units: which units link, the integer thresholds, and max
pooling on packed words, each against a direct float computation."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import models, packing, tracing
from binflax.export import arithmetic, chain, inference
from binflax.plan import Plan


def links_of(name, input_shape, **fields):
    model = models.create(name, plan="fbin", **fields)
    return {(link.producer, link.consumer): link for link in chain.find_links(model, input_shape)}


def test_links_follow_relu_and_max_pool_only():
    # Sequential: every XNOR unit feeds the next one; the max pools are found exactly.
    quick = links_of("mini_sketchanet", (16, 16, 1))
    assert list(quick) == [("conv2", "conv3"), ("conv3", "conv4"), ("conv4", "conv5")]
    assert quick["conv3", "conv4"].pool == chain.Pool((2, 2), (2, 2), ((0, 0), (0, 0)))
    assert quick["conv2", "conv3"].pool is None and quick["conv2", "conv3"].relu
    # ResNet: only conv1 -> conv2 inside each block; a residual sum breaks every other link.
    resnet = links_of("resnet18", (32, 32, 3), num_classes=10)
    blocks = [f"layer{s}_{b}" for s in range(1, 5) for b in range(2)]
    assert list(resnet) == [(f"{b}/conv1", f"{b}/conv2") for b in blocks]
    # SqueezeNet: a squeeze feeds both expands; a concatenation breaks the link onwards.
    squeeze = links_of("squeezenet", (32, 32, 1), num_classes=10)
    fires = [f"fire{i}" for i in range(2, 10)]
    assert sorted(squeeze) == sorted(
        (f"{f}/squeeze", f"{f}/{e}") for f in fires for e in ("expand1x1", "expand3x3")
    )


def test_no_link_into_a_float_input_unit():
    names = models.layer_names(models.create("mini_sketchanet"))
    model = models.create("mini_sketchanet", plan=Plan.hybrid(names, ["conv4"]))
    found = {(link.producer, link.consumer) for link in chain.find_links(model, (16, 16, 1))}
    assert found == {("conv2", "conv3")}


@pytest.mark.parametrize("relu", [True, False])
def test_step_limits_give_the_float_sign_for_every_accumulator(relu):
    """Brute force over every accumulator value: scales of both signs and zero; thresholds
    on a representable product (a tie), at 0 and infinite; both directions."""
    rng = np.random.default_rng(0)
    bound = 300
    scale = rng.uniform(-0.05, 0.05, 64).astype(np.float32)
    scale[:4] = (0.0, 0.03, -0.03, 1e-3)
    threshold = rng.uniform(-10, 10, 64).astype(np.float32)
    threshold[4:10] = (0.0, np.inf, -np.inf, 0.0, np.float32(17) * scale[1], -0.0)
    d = np.where(rng.random(64) < 0.5, -1, 1).astype(np.float32)

    def positive(acc):
        v = acc.astype(np.float32) * scale
        v = np.maximum(v, np.float32(0)) if relu else v
        return d * v >= d * threshold

    sense, limit = chain.step_limits(positive, 1, bound, 64)
    acc = np.arange(-bound, bound + 1)[:, None]
    np.testing.assert_array_equal(sense * acc >= limit[0], positive(acc))
    assert sense.dtype == limit.dtype == np.int32 and limit.shape == (1, 64)


@pytest.mark.parametrize("bits", [2, 4])
def test_step_limits_give_every_k_bit_level(bits):
    """A k-bit consumer's unsigned level of ``relu(acc * alpha)`` after its batch norm
    (scales of both signs, so levels that rise and fall with the accumulator, and a
    clipped channel), brute force over every accumulator: the level is the number of
    limits the accumulator reaches."""
    rng = np.random.default_rng(3)
    bound, channels, count = 200, 48, 2**bits - 1
    alpha = rng.uniform(-0.05, 0.05, channels).astype(np.float32)
    norm = rng.uniform(-3, 3, channels).astype(np.float32)
    shift = rng.uniform(-1, 1, channels).astype(np.float32)
    norm[0], alpha[1] = 1e-4, 0.0  # one level for every accumulator; a constant channel
    step = np.float32(0.4)

    def levels(acc):
        v = np.maximum(acc.astype(np.float32) * alpha, np.float32(0))
        x = (v - shift) * norm
        return np.clip(np.floor(x / step), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1).astype(
            np.int64
        ) + 2 ** (bits - 1)

    sense, limits = chain.step_limits(levels, count, bound, channels)
    acc = np.arange(-bound, bound + 1)[:, None]
    reached = (sense * acc[None] >= limits[:, None]).sum(axis=0)
    np.testing.assert_array_equal(reached, levels(acc))
    falling = (alpha * norm < 0) & (np.ptp(levels(acc), axis=0) > 0)
    assert np.array_equal(sense == -1, falling) and falling.any() and (~falling).any()


@pytest.mark.parametrize("bits", [1, 2, 3])
@pytest.mark.parametrize("pool", [chain.Pool((3, 3), (2, 2), ((0, 1), (0, 1))), None])
def test_k_bit_planes_are_the_levels_of_the_max_pool(pool, bits):
    """A k-bit consumer's planes from its threshold words alone, each max-pooled as signs
    (AND where the level rises with the input, OR where it falls): plane j is bit j of
    the level of the max-pooled input, stacked as level_accumulator stacks its planes."""
    rng = np.random.default_rng(bits)
    channels, count = 40, 2**bits - 1
    v = rng.standard_normal((2, 7, 7, channels)).astype(np.float32)
    falls = rng.random(channels) < 0.5

    def levels(values):
        scaled = np.where(falls, -values, values) * 2
        return np.clip(np.floor(scaled) + 2 ** (bits - 1), 0, count).astype(np.int64)

    below = [packing.pack_bits(jnp.asarray(levels(v) < t)) for t in range(1, count + 1)]
    expected = levels(v)
    if pool is not None:
        and_mask = jnp.asarray(chain.pool_mask(np.where(falls, -1, 1)))
        below = [chain.max_pool_words(w, and_mask, pool) for w in below]
        expected = levels(chain._np_max_pool(v, pool))
    planes = np.asarray(chain.level_planes(below))
    n = expected.shape[0]
    assert planes.shape[0] == bits * n
    for j in range(bits):
        negative = jnp.asarray((expected >> j) & 1 == 0)
        np.testing.assert_array_equal(planes[j * n : (j + 1) * n], packing.pack_bits(negative))


@pytest.mark.parametrize(
    "pool",
    [
        chain.Pool((3, 3), (2, 2), ((0, 0), (0, 0))),
        chain.Pool((2, 2), (2, 2), ((0, 0), (0, 0))),
        chain.Pool((3, 3), (2, 2), ((0, 1), (0, 1))),  # PyTorch's ceil_mode
        chain.Pool((3, 3), (2, 2), ((1, 1), (1, 1))),
    ],
)
@pytest.mark.parametrize("word_type", [np.uint32, np.uint64])
def test_max_pool_on_packed_words_is_the_sign_of_the_max_pool(pool, word_type):
    """sign(BN(max_pool(v))) from the packed signs of v alone: AND or OR of the bits."""
    with jax.enable_x64(word_type == np.uint64):
        check_max_pool(pool, word_type)


def check_max_pool(pool, word_type):
    rng = np.random.default_rng(1)
    channels = 70  # three 32-bit words (two 64-bit ones), the last one padded
    v = rng.standard_normal((2, 9, 9, channels)).astype(np.float32)
    tau = rng.uniform(-1, 1, channels).astype(np.float32)
    direction = np.where(rng.random(channels) < 0.5, -1, 1).astype(np.float32)

    def negative(values):  # bit 1 = sign -1
        return ~(direction * values >= direction * tau)

    words = packing.pack_bits(jnp.asarray(negative(v)), word_type)
    pooled = chain.max_pool_words(words, jnp.asarray(chain.pool_mask(direction)), pool)
    assert pooled.dtype == word_type
    padded = np.pad(v, ((0, 0), *pool.padding, (0, 0)), constant_values=-np.inf)
    (kh, kw), (sh, sw) = pool.window, pool.strides
    out_h, out_w = (padded.shape[1] - kh) // sh + 1, (padded.shape[2] - kw) // sw + 1
    maxed = np.max(
        [
            padded[:, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw]
            for i, j in itertools.product(range(kh), range(kw))
        ],
        axis=0,
    )
    expected = packing.pack_bits(jnp.asarray(negative(maxed)), word_type)
    np.testing.assert_array_equal(np.asarray(pooled), np.asarray(expected))


def test_threshold_words_pack_the_consumer_signs():
    acc = np.array([[[[-5, 0, 7, 2]]]], np.int32)
    sense = np.array([1, 1, -1, 1], np.int32)
    limit = np.array([-4, 1, -7, 3], np.int32)  # +1 iff acc >= -4, >= 1, <= 7, >= 3
    words = chain.threshold_words(jnp.asarray(acc), jnp.asarray(sense), jnp.asarray(limit))
    assert int(words[0, 0, 0, 0]) == 0b1011  # channels 0, 1 and 3 are -1


def test_auto_rule_and_float_lowering():
    assert arithmetic.choose("cpu") == "popcount"
    rule = arithmetic.xnor_arithmetic
    assert rule("cpu", native=True) == "native"  # convolutions and fully connected
    assert rule("cpu", native=False) == "popcount"  # no kernel built
    assert rule("gpu", native=True) == "int8"
    # A fully-connected unit's weights go on the unsplit AVX2 layout, a convolution's not.
    assert arithmetic.xnor_layout(True, "avx2") == "avx2_packed"
    assert arithmetic.xnor_layout(False, "avx2") == "avx2"
    assert arithmetic.xnor_layout(True, "avx512_vpopcntdq") == "avx512_vpopcntdq"
    assert arithmetic.xnor_layout(True, "portable") == "portable"
    assert arithmetic.choose("gpu") == arithmetic.choose("tpu") == "int8"
    model = models.create("alexnet", plan="float")
    found = {
        info.name: inference.geometry_2d(info)
        for info in tracing.trace_layers(model, (224, 224, 3))
    }
    assert found["fc6"].fully_connected and not found["conv5"].fully_connected
    lowering = {
        name: arithmetic.float_lowering(g.fully_connected, g.output_pixels(), "cpu")
        for name, g in found.items()
    }
    assert lowering == {
        "conv1": "conv", "conv2": "conv", "conv3": "matmul", "conv4": "matmul",
        "conv5": "matmul", "fc6": "matmul", "fc7": "matmul", "fc8": "matmul",
    }  # fmt: skip
    # Batch 8 moves the 13x13 maps (8 * 169 pixels) back to the convolution.
    assert arithmetic.float_lowering(False, 8 * found["conv3"].output_pixels(), "cpu") == "conv"
    assert arithmetic.float_lowering(True, 8, "cpu") == "matmul"
    assert arithmetic.float_lowering(False, found["conv3"].output_pixels(), "gpu") == "conv"
    assert arithmetic.float_lowering(True, 1, "gpu") == "matmul"
