"""binflax.export's integer units that are not XNOR: k-bit inputs on binary weights (bit
planes) and 8-bit layers (int8 or exact float32), against NumPy and ``model.apply``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import binarize, export, models, native, packing, quantizers
from binflax.export import arithmetic, chain, fold, inference
from binflax.plan import LayerPrecision, Plan
from binflax.planned import BN_EPSILON
from binflax.testing import random_variables
from binflax.tracing import LayerInfo, trace_layers
from tests import user_nets
from tests.test_export import CASES, PATHS, exported_copy, numpy_conv

# Every kind of layer a mixed plan gives, on MiniSketchANet: an 8-bit first layer, 4- and
# 2-bit inputs on binary weights, a binary input on 8-bit weights, an XNOR conv5 and an
# 8-bit classifier.
MIXED_RULES = [
    ("conv1", 8, 8),
    ("conv2", 4, "binary"),
    ("conv3", 2, "binary"),
    ("conv4", "binary", 8),
    ("fc", 8, 8),
    (".*", 1, 1),
]
ISAS = native.supported_isas() if native.available() else []


def mixed_model(name="mini_sketchanet", rules=MIXED_RULES, **fields):
    names = models.layer_names(models.create(name, **fields))
    return models.create(name, plan=Plan.from_rules(rules, names), **fields)


def assert_every_path_exact(tmp_path, model, variables, input_shape, identical=True):
    """``model.apply``'s logits within relative 1e-5 on every path and, with
    ``identical``, the same logits bit for bit on all of them (the same int32
    accumulators, and float layers XLA compiles alike in every program)."""
    images = jax.random.normal(jax.random.key(1), (3, *input_shape))
    expected = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
    scale = float(np.max(np.abs(expected)))
    exported = exported_copy(tmp_path, model, variables, input_shape)
    first = None
    for arithmetic_name, linked in PATHS:
        logits = np.asarray(
            export.integer_forward(exported, images, arithmetic=arithmetic_name, chain=linked)
        )
        error = float(np.max(np.abs(logits - expected))) / scale
        assert error <= 1e-5, (arithmetic_name, linked, error)
        first = logits if first is None else first
        if identical:
            np.testing.assert_array_equal(logits, first, err_msg=f"{arithmetic_name}, {linked}")
    return exported


@pytest.mark.parametrize(
    "name,shape,rules,fields",
    [
        ("mini_sketchanet", (16, 16, 1), MIXED_RULES, {}),
        # the K map on a k-bit input: computed from the normalised input, as for binary
        ("mini_sketchanet", (16, 16, 1), MIXED_RULES, {"scale_inputs": True}),
        # ReActNet's learned shifts before 2- and 4-bit quantizers, and shortcuts
        pytest.param(
            "resnet18",
            (32, 32, 3),
            [("conv1", 8, 8), ("layer1_.*", 2, 1), ("layer2_0/.*", 4, 1), ("fc", 8, 8),
             (".*", 1, 1)],
            {"num_classes": 10, "stem": "cifar", "widths": (8, 16, 16, 32), "block": "reactnet"},
            marks=pytest.mark.slow,
        ),
        # 8-bit inputs on binary weights: a convolution (the int8 route) and a
        # fully-connected layer (8 bit planes, arithmetic.max_planes)
        ("mini_sketchanet", (16, 16, 1),
         [("conv1", 8, 8), ("conv2", 8, "binary"), ("conv4", 8, "binary"), ("fc", 8, 8),
          (".*", 1, 1)], {}),
    ],
)  # fmt: skip
def test_mixed_plans_export_exactly_on_every_path(tmp_path, name, shape, rules, fields):
    model = mixed_model(name, rules, **fields)
    assert model.plan.mixed
    variables = random_variables(model, shape)
    exported = assert_every_path_exact(tmp_path, model, variables, shape)
    kinds = {info.name: inference.layer_kind(info) for info in exported.layers}
    assert "integer" in kinds.values() and "xnor" in kinds.values()
    if rules is MIXED_RULES:
        want = {f"conv{i}": "integer" for i in range(1, 5)}
        assert kinds == {**want, "conv5": "xnor", "fc": "integer"}
    if native.available():  # the 8-bit layers ran on the native int8 kernel too
        plan = exported.variant("native")
        eight_bit = [i.name for i in exported.layers if i.precision.weight == "int8"]
        assert eight_bit and all(plan.computation(n) == "native_int8" for n in eight_bit)
        assert exported.header["variants"]["native"]["native"]
        if ("conv4", 8, "binary") in rules:  # fully connected: 8 planes, not the codes
            assert plan.computation("conv2") == "native_int8"
            assert plan.computation("conv4") == "native"


# Packed links into and out of k-bit inputs: XNOR -> k bits, k bits -> k bits through a
# max pool, k bits -> XNOR.
def linked_rules(bits: int) -> list:
    return [("conv1", 8, 8), ("conv3", bits, 1), ("conv4", bits, 1), ("fc", 8, 8), (".*", 1, 1)]


@pytest.mark.parametrize("bits", [2, 4])
def test_k_bit_links_export_exactly_and_bit_for_bit(tmp_path, monkeypatch, bits):
    """Every path exact, the linked programs' logits identical to the unlinked ones (the
    producers' thresholds give every consumer the levels its own quantizer gives), and
    the links into and out of k-bit layers used (every one, on both packed arithmetics,
    though the export runs only those that pay). The random batch norm scales have both
    signs, so conv4's pooled levels rise with the input in some channels and fall in
    others."""
    monkeypatch.setattr(arithmetic, "link_pays", lambda *_: True)
    model = mixed_model(rules=linked_rules(bits))
    variables = random_variables(model, (16, 16, 1))
    exported = assert_every_path_exact(tmp_path, model, variables, (16, 16, 1))
    plan = exported.variant("popcount_chain")
    links = {(k.producer, k.consumer) for k in plan.links}
    assert links == {("conv2", "conv3"), ("conv3", "conv4"), ("conv4", "conv5")}
    prepared = inference.prepare(exported.layers, exported.layer_arrays(), plan)
    out = {info.name: info.kernel_shape[-1] for info in exported.layers}
    assert prepared["conv3"]["to"]["conv4"]["limit"].shape == (2**bits - 1, out["conv3"])
    # A binary consumer's limits keep the (C,) of the files written before k-bit links.
    assert prepared["conv4"]["to"]["conv5"]["limit"].shape == (out["conv4"],)
    rises = packing.unpack_signs(prepared["conv3"]["to"]["conv4"]["and_mask"], out["conv3"]) < 0
    assert rises.any() and (~rises).any()
    if native.available():
        assert exported.variant("native_chain").links == plan.links


@pytest.mark.parametrize("bits", [2, 4])
def test_k_bit_links_run_where_they_pay(bits):
    """Links into binary consumers everywhere; into 2-bit ones on the native kernel only;
    into 4-bit ones nowhere (arithmetic.link_pays)."""
    model = mixed_model(rules=linked_rules(bits))
    layers = trace_layers(model, (16, 16, 1))
    links = chain.find_links(model, (16, 16, 1))
    every = [(k.producer, k.consumer) for k in links]
    into_binary = [("conv4", "conv5")]
    assert len(every) == 3 and into_binary[0] in every
    used = {
        name: [(k.producer, k.consumer) for k in inference.variant(layers, links, name, True).links]
        for name in ("popcount", "native")
    }
    assert used["popcount"] == into_binary
    assert used["native"] == (every if bits == 2 else into_binary)


def test_a_binarized_network_with_groups_and_k_bit_inputs_exports_exactly(tmp_path):
    """A user network's grouped conv with 2-bit inputs: one set of bit planes per group.
    (Its mean pooling before the head compiles to differently ordered sums in different
    programs: the logits agree to rounding, the accumulators exactly - tested below.)"""
    shape = (8, 8, 3)
    net = binarize(
        user_nets.GroupedNet(),
        [("Conv_0", 8, 8), ("Conv_1", 2, 1), ("Dense_0", "float", 8), (".*", 1, 1)],
        input_shape=shape,
    )
    layers = trace_layers(net, shape)
    assert any(info.geometry.groups > 1 and info.precision.input == "int2" for info in layers)
    assert_every_path_exact(tmp_path, net, random_variables(net, shape), shape, identical=False)


def numpy_levels(info: LayerInfo, arrays: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spec's levels in float64: ``floor(BN(x) / step)`` clipped to the k-bit range,
    and how far each value is from its nearest level boundary (in steps)."""
    x = x.astype(np.float64)
    if "norm_mean" in arrays:
        m = arrays["norm_scale"] / np.sqrt(arrays["norm_var"].astype(np.float64) + BN_EPSILON)
        x = (x - arrays["norm_mean"]) * m + arrays["norm_bias"]
    elif "input_shift" in arrays:
        x = x - arrays["input_shift"]
    lo, hi = quantizers.input_levels(info.precision.input_bits)
    v = x / float(arrays["input_step"][0])
    return np.clip(np.floor(v), lo, hi).astype(np.int32), np.abs(v - np.round(v))


def numpy_accumulator(info: LayerInfo, arrays: dict, levels: np.ndarray) -> np.ndarray:
    """``sum((2 i + 1) w)`` over each patch, zero padding contributing nothing, with the
    file's weights: the +-1 signs of ``kernel_bits`` or the ``kernel_int8`` codes."""
    g = inference.geometry_2d(info)
    if "kernel_int8" in arrays:
        weights = arrays["kernel_int8"].astype(np.int64)
    else:
        cin = info.kernel_shape[-2]
        weights = packing.unpack_signs(arrays["kernel_bits"], cin).astype(np.int64)
    return numpy_conv(g, 2 * levels.astype(np.int64) + 1, weights)


def integer_layers(model, shape):
    layers = trace_layers(model, shape)
    variables = random_variables(model, shape)
    stored = {}
    for key, array in fold.fold_variables(layers, variables).items():
        layer, field = key.rsplit("/", 1)
        stored.setdefault(layer, {})[field] = array
    return [info for info in layers if inference.layer_kind(info) == "integer"], stored


def test_k_bit_levels_follow_the_quantizer_formula():
    """Levels from the unfolded norm and the step: the float64 formula's wherever it is not
    within 1e-4 of a step of a boundary (there, float32 rounding may decide either way)."""
    model = mixed_model(scale_inputs=False)
    layers, stored = integer_layers(model, (16, 16, 1))
    rng = np.random.default_rng(0)
    checked = 0
    for info in layers:
        if info.precision.binary_input:
            continue
        shape = (2, *info.input_shape[1:])
        spread = rng.choice([0.5, 5.0, 500.0], shape)  # inside, across and past every clip
        x = (rng.standard_normal(shape) * spread).astype(np.float32)
        arrays = dict(stored[info.name])  # no zero gain, so that the input reaches both clips
        if "norm_scale" in arrays:
            arrays["norm_scale"] = np.abs(arrays["norm_scale"]) + np.float32(0.5)
        got, _ = jax.jit(lambda a, x, info=info: inference.input_levels(info, a, x))(
            {k: jnp.asarray(v) for k, v in arrays.items()}, x
        )
        want, distance = numpy_levels(info, arrays, x)
        clear = (distance > 1e-4).reshape(want.shape)
        assert clear.mean() > 0.99
        np.testing.assert_array_equal(np.asarray(got).reshape(want.shape)[clear], want[clear])
        lo, hi = quantizers.input_levels(info.precision.input_bits)
        assert {lo, hi} <= set(np.unique(want).tolist()), "the test data reach both clips"
        checked += 1
    assert checked == 4  # conv1, conv2, conv3 and fc


def test_a_link_gives_the_unlinked_level_on_every_boundary():
    """``unsigned_level`` (what a producer's thresholds are found from) on inputs exactly at
    the quantizer's level boundaries, for steps whose LSQ gradient scale rounds the step's
    last bit differently per input shape: the unlinked program's ``input_levels``, level
    for level, though the link sees its values in a (count, C) array, not the layer's."""
    model = mixed_model(scale_inputs=False)
    layers, _ = integer_layers(model, (16, 16, 1))
    info = next(i for i in layers if i.name == "conv3")  # 2 bits on a 8x8x16 input
    shape = (1, *info.input_shape[1:])
    rng = np.random.default_rng(4)
    levels = jax.jit(lambda a, x: inference.input_levels(info, a, x)[0])
    linked = jax.jit(lambda a, x: inference.unsigned_level(info, a, x))
    for step in rng.uniform(0.05, 1, 40).astype(np.float32):
        arrays = {"input_step": jnp.asarray([step])}
        true_step = quantizers.lsq_step(jnp.zeros(shape), jnp.float32(step), 2)
        x = jnp.broadcast_to(jnp.arange(-3, 4, dtype=jnp.float32)[:, None] * true_step, (7, 16))
        want = np.asarray(levels(arrays, jnp.resize(x, shape))).reshape(-1)[:112] + 2
        np.testing.assert_array_equal(np.asarray(linked(arrays, x)).reshape(-1), want)


@pytest.mark.parametrize("isa", [None, *ISAS])
def test_integer_accumulators_equal_the_numpy_formula(isa, monkeypatch):
    """Every integer unit's accumulator, from its levels, on every arithmetic that runs it
    (bit planes on the native kernel - each ISA path this CPU has - and on XLA's popcount,
    8-bit weights on the native int8 kernel - each path too -, XLA's int8 convolution,
    float32 where exact): NumPy's, equal, not close."""
    if isa is not None:
        monkeypatch.setenv(native.ISA_ENV, isa)
    model = mixed_model()
    layers, stored = integer_layers(model, (16, 16, 1))
    rng = np.random.default_rng(1)
    for info in layers:
        lo, hi = quantizers.input_levels(info.precision.input_bits)
        g = inference.geometry_2d(info)
        levels = rng.integers(lo, hi + 1, (2, *g.input_spatial, info.input_shape[-1]))
        want = numpy_accumulator(info, stored[info.name], levels)
        computations = ["int8", "exact_float"]
        if info.precision.binary_weight:
            computations += ["popcount", *(["native"] if native.available() else [])]
        elif native.available():
            computations += ["native_int8"]
        if isa is not None:
            computations = [c for c in computations if c in inference.NATIVE]
        for computation in computations:
            plan = inference.Variant(((info.name, computation),))
            prepared = inference.prepare([info], stored, plan)[info.name]
            with jax.enable_x64(True):
                got = jax.jit(
                    lambda p, i, info=info, c=computation: inference.level_accumulator(
                        info, p, i, c
                    )
                )(prepared, jnp.asarray(levels, jnp.int32))
            np.testing.assert_array_equal(
                np.asarray(got), want, err_msg=f"{info.name} on {computation} ({isa})"
            )


def test_auto_picks_bit_planes_for_binary_weights_and_float32_only_where_exact():
    """The rule - bit planes for binary weights up to 4 bits on a convolution, 8 on a
    fully-connected layer - and float32's exact integers at their boundary: 8-bit levels
    (at most 128) on 8-bit weights (127) stay below 2**24 for up to 1032 taps."""
    on_cpu = {"backend": "cpu", "fully_connected": False}
    assert arithmetic.integer_arithmetic("auto", 4, True, True, **on_cpu) == "native"
    assert arithmetic.integer_arithmetic("popcount", 4, True, True, **on_cpu) == "popcount"
    assert arithmetic.integer_arithmetic("auto", 4, False, True, **on_cpu) == "exact_float"
    assert arithmetic.integer_arithmetic("auto", 4, False, False, **on_cpu) == "int8"
    assert arithmetic.integer_arithmetic("int8_dot", 4, True, True, **on_cpu) == "int8"
    assert arithmetic.integer_arithmetic("auto", 4, True, True, "gpu", False) == "int8"
    # an 8-bit input on binary weights: a convolution's 8 planes measured no faster than
    # the integer routes, a fully-connected layer's (which streams its weights) faster
    assert arithmetic.integer_arithmetic("auto", 8, True, True, **on_cpu) == "exact_float"
    assert arithmetic.integer_arithmetic("popcount", 8, True, True, **on_cpu) == "exact_float"
    dense = {"backend": "cpu", "fully_connected": True, "native_int8": False}
    assert arithmetic.integer_arithmetic("auto", 8, True, True, **dense) == "native"
    assert arithmetic.integer_arithmetic("popcount", 8, True, True, **dense) == "popcount"
    assert arithmetic.integer_arithmetic("auto", 16, True, True, **dense) == "exact_float"
    # 8-bit weights where the native int8 kernel runs the layer (one group, built): the
    # "native" programs always; "auto" except on a fully-connected layer beyond float32's
    # exact range (XLA's int8 product measured faster there); never a portable program.
    for exact in (True, False):
        for fully_connected in (True, False):
            where = {"backend": "cpu", "fully_connected": fully_connected, "native_int8": True}
            native_int8 = arithmetic.integer_arithmetic("native", 8, False, exact, **where)
            auto = arithmetic.integer_arithmetic("auto", 8, False, exact, **where)
            assert native_int8 == "native_int8"
            assert auto == ("int8" if fully_connected and not exact else "native_int8")
            for name in ("popcount", "int8", "int8_dot"):
                chosen = arithmetic.integer_arithmetic(name, 8, False, exact, **where)
                assert chosen == ("exact_float" if exact and name == "popcount" else "int8")
    on_gpu = {"backend": "gpu", "fully_connected": False, "native_int8": True}
    assert arithmetic.integer_arithmetic("auto", 8, False, True, **on_gpu) == "int8"
    # an 8-bit input on binary weights takes the int8 kernel where it runs, as 8-bit weights
    where = {"backend": "cpu", "fully_connected": False, "native_int8": True}
    assert arithmetic.integer_arithmetic("auto", 8, True, True, **where) == "native_int8"

    def info(taps, cin, bits, weight):
        precision = LayerPrecision("x", f"int{bits}", weight)
        return LayerInfo("x", precision, (*taps, cin, 8), (), (), False, False)

    for cin, exact in ((1032, True), (1033, False)):  # 128 * 127 * cin against 2**24
        assert inference.exact_in_float(info((1, 1), cin, 8, "int8")) is exact
        assert (128 * 127 * cin < 2**24) is exact
    assert inference.exact_in_float(info((3, 3), 4096, 4, "binary"))


def test_8_bit_kernels_are_stored_as_codes_and_a_scale():
    """``kernel_int8 * scale`` is the model's quantized kernel (``quantize_weights_int8``),
    and the 8-bit layers' weights take a quarter of float32's bytes."""
    model = mixed_model()
    variables = random_variables(model, (16, 16, 1))
    layers = trace_layers(model, (16, 16, 1))
    arrays = fold.fold_variables(layers, variables)
    for info in layers:
        if info.precision.weight != "int8":
            continue
        kernel = variables["params"][info.name]["kernel"]
        want = np.asarray(quantizers.quantize_weights_int8(kernel))
        codes = arrays[f"{info.name}/kernel_int8"].transpose(1, 2, 3, 0)  # OHWI -> HWIO
        got = codes.reshape(kernel.shape) * arrays[f"{info.name}/scale"]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
        assert codes.dtype == np.int8 and codes.nbytes == kernel.size  # float32's / 4
        assert f"{info.name}/kernel" not in arrays


def test_an_all_8_bit_plan_has_a_float_baseline_of_its_own(tmp_path):
    """No binary layer at all: the float32 baseline is the float network, not the plan's
    own program, and the latency runs against it."""
    names = models.layer_names(models.create("mini_sketchanet"))
    model = models.create("mini_sketchanet", plan=Plan.from_rules([(".*", 8, 8)], names))
    variables = random_variables(model, (16, 16, 1))
    exported = exported_copy(tmp_path, model, variables, (16, 16, 1))
    assert exported.header["float_baseline"] != exported.header["variants"]["int8"]["program"]
    measured = export.latency(exported, jnp.zeros((1, 16, 16, 1)), repeats=1)
    assert measured["float_ms"] > 0 and measured["ms"] > 0


# CI: MiniSketchANet (an 8-bit first layer feeding a packed chain). The full-size models'
# 8-bit first layers are the same unit on other shapes (the native int8 kernel's
# geometries are pinned in test_native_int8, and an 8-bit first layer on ResNet's
# shortcuts in test_mixed_plans_export_exactly_on_every_path): `exhaustive`.
FBIN8_MARKS = {
    n: (pytest.mark.slow, pytest.mark.exhaustive)
    for n in ("resnet18", "squeezenet", "sketchanet", "alexnet")
}


@pytest.mark.parametrize(
    "name,input_shape,fields",
    [pytest.param(n, s, f, marks=FBIN8_MARKS.get(n, ()), id=n) for n, s, f in CASES],
)
def test_every_model_under_fbin8_gives_the_fake_quantized_logits(
    tmp_path, name, input_shape, fields
):
    """The 8-bit first-layer preset on every registered model: its first layer an integer
    unit, the logits ``model.apply``'s within relative 1e-5 on the default path and on the
    int8 convolution."""
    names = models.layer_names(models.create(name, **fields))
    model = models.create(name, plan=Plan.preset("fbin8", names), **fields)
    variables = random_variables(model, input_shape)
    images = jax.random.normal(jax.random.key(1), (2, *input_shape))
    expected = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
    exported = exported_copy(tmp_path, model, variables, input_shape)
    assert inference.layer_kind(exported.layers[0]) == "integer"
    for arithmetic_name in ("auto", "int8"):
        logits = np.asarray(export.integer_forward(exported, images, arithmetic=arithmetic_name))
        error = float(np.max(np.abs(logits - expected))) / float(np.max(np.abs(expected)))
        assert error <= 1e-5, (arithmetic_name, error)


@pytest.mark.skipif(len(ISAS) < 2, reason="one native code path on this CPU")
def test_a_file_runs_on_every_code_path_this_cpu_has(tmp_path, monkeypatch):
    """A mixed plan's file, written where the best path runs, loaded and run with each
    other path forced (a layout for that path at load, the programs' own choice at run
    time): the same logits, bit for bit."""
    model = mixed_model()
    variables = random_variables(model, (16, 16, 1))
    export.export_model(model, variables, tmp_path / "m.npz")
    images = jax.random.normal(jax.random.key(2), (2, 16, 16, 1))
    logits = {}
    for isa in [None, *ISAS]:
        if isa is None:
            monkeypatch.delenv(native.ISA_ENV, raising=False)
        else:
            monkeypatch.setenv(native.ISA_ENV, isa)
        loaded = export.load(tmp_path / "m.npz")  # laid out at load for the forced path
        logits[isa] = np.asarray(export.integer_forward(loaded, images, arithmetic="native"))
    for isa in ISAS:
        np.testing.assert_array_equal(logits[isa], logits[None], err_msg=isa)
