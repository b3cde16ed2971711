"""binflax.cost against MACs worked out by hand and the numbers of docs/method.md section 6."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import cost, models
from binflax.plan import Plan

M = 1e6


def out_size(size, kernel, stride=1, pad=0):
    return (size + 2 * pad - kernel) // stride + 1


def alexnet_layers():
    """(name, H_out, C_in, C_out, k) for AlexNet at 224x224x3, sizes derived by hand."""
    s1 = out_size(224, 11, 4, 2)  # 55
    p1 = out_size(s1, 3, 2)  # 27
    s2 = out_size(p1, 5, 1, 2)  # 27
    p2 = out_size(s2, 3, 2)  # 13
    s3 = out_size(p2, 3, 1, 1)  # 13
    p3 = out_size(s3, 3, 2)  # 6
    s6 = out_size(p3, 6)  # 1
    assert (s1, p1, s2, p2, s3, p3, s6) == (55, 27, 27, 13, 13, 6, 1)
    return [
        ("conv1", s1, 3, 96, 11),
        ("conv2", s2, 96, 256, 5),
        ("conv3", s3, 256, 384, 3),
        ("conv4", s3, 384, 384, 3),
        ("conv5", s3, 384, 256, 3),
        ("fc6", s6, 256, 4096, 6),
        ("fc7", s6, 4096, 4096, 1),
        ("fc8", s6, 4096, 1000, 1),
    ]


def formula_macs(layers):
    return {name: h * h * cout * cin * k * k for name, h, cin, cout, k in layers}


SPEC_ALEXNET_MACS = {  # docs/method.md section 5, in millions
    "conv1": 105.4,
    "conv2": 447.9,
    "conv3": 149.5,
    "conv4": 224.3,
    "conv5": 149.5,
    "fc6": 37.7,
    "fc7": 16.8,
    "fc8": 4.1,
}


def costs_by_name(model, input_shape=None, **kwargs):
    return {c.name: c for c in cost.layer_costs(model, input_shape, **kwargs)}


def test_alexnet_macs_per_layer_and_total():
    expected = formula_macs(alexnet_layers())
    got = costs_by_name(models.create("alexnet"))
    assert list(got) == list(SPEC_ALEXNET_MACS)
    for name, macs in expected.items():
        assert got[name].macs == macs
        assert abs(macs / M - SPEC_ALEXNET_MACS[name]) <= 0.05, name
    total = cost.totals(tuple(got.values()))["macs"]
    assert total == sum(expected.values())
    assert total / M == pytest.approx(1135.3, abs=0.05)


def resnet18_layers():
    """(name, H_out, C_in, C_out, k) for torchvision's ResNet-18 at 224x224x3."""
    layers = [("conv1", out_size(224, 7, 2, 3), 3, 64, 7)]
    size, cin = out_size(layers[0][1], 3, 2, 1), 64  # after the stem's max pool: 56
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            out = out_size(size, 3, stride, 1)
            prefix = f"layer{stage}_{block}/"
            layers.append((prefix + "conv1", out, cin, width, 3))
            layers.append((prefix + "conv2", out, width, width, 3))
            if stride != 1 or cin != width:
                layers.append((prefix + "downsample", out_size(size, 1, stride), cin, width, 1))
            size, cin = out, width
    assert size == 7
    return [*layers, ("fc", 1, 512, 1000, 1)]


def test_resnet18_macs_and_params():
    model = models.create("resnet18", num_classes=1000)
    got = costs_by_name(model, (224, 224, 3))
    expected = formula_macs(resnet18_layers())
    assert {n: c.macs for n, c in got.items()} == expected
    total = cost.totals(tuple(got.values()))
    assert total["macs"] / M == pytest.approx(1814, rel=1e-3)
    assert total["params"] / M == pytest.approx(11.69, rel=5e-3)
    # torchvision's ResNet-18 has 11,689,512 parameters; binflax adds the stem's bias
    assert total["params"] == 11_689_512 + 64


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "sketchanet", "squeezenet"])
def test_params_equal_the_initialised_parameter_count(name):
    """The cost model's parameter count equals the number of trainable parameters the model
    creates (batch norm's scale and bias: 2 per channel of the side it normalises; fbin
    has both sides)."""
    model = models.create(name, plan="fbin")
    x = jax.ShapeDtypeStruct((1, *model.default_input_shape), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    assert cost.totals(cost.layer_costs(model))["params"] == n_params


def test_sketchanet_total_macs():
    layers = [
        ("conv1", 71, 1, 64, 15),
        ("conv2", 31, 64, 128, 5),
        ("conv3", 15, 128, 256, 3),
        ("conv4", 15, 256, 256, 3),
        ("conv5", 15, 256, 256, 3),
        ("conv6", 1, 256, 512, 7),
        ("conv7", 1, 512, 512, 1),
        ("conv8", 1, 512, 250, 1),
    ]
    got = costs_by_name(models.create("sketchanet", num_classes=250))
    assert {n: c.macs for n, c in got.items()} == formula_macs(layers)
    assert sum(c.macs for c in got.values()) / M == pytest.approx(608, rel=5e-3)


# -- equivalent FLOPs ------------------------------------------------------------------


def formula_eq_flops(xnor_layers, speedup=58.0):
    macs = formula_macs(alexnet_layers())
    return sum(m / speedup if n in xnor_layers else m for n, m in macs.items())


ALEXNET_NAMES = tuple(SPEC_ALEXNET_MACS)
MIDDLE = ALEXNET_NAMES[1:-1]


@pytest.mark.parametrize(
    "plan,spec,xnor",
    [
        ("wbin", 1135.3, ()),
        (Plan.hybrid(ALEXNET_NAMES, ["fc6", "fc7"]), 180.8, MIDDLE[:-2]),
        (Plan.hybrid(ALEXNET_NAMES, ["fc7"]), 143.7, MIDDLE[:-1]),
        ("fbin", 127.2, MIDDLE),
    ],
)
def test_alexnet_equivalent_flops(plan, spec, xnor):
    """Binary input and binary weights count MACs / 58; anything else counts in full."""
    costs = cost.layer_costs(models.create("alexnet", plan=plan))
    eq = cost.totals(costs)["eq_flops"]
    assert abs(eq / M - spec) <= 0.2
    assert eq == pytest.approx(formula_eq_flops(xnor), rel=1e-12)
    # binarize_last_weights changes memory, not speed: the classifier's input stays float
    last = models.create("alexnet", plan=plan, binarize_last_weights=True)
    assert cost.totals(cost.layer_costs(last))["eq_flops"] == pytest.approx(eq, rel=1e-12)


def test_speedup_factor_is_a_parameter():
    model = models.create("alexnet", plan="fbin")
    for speedup in (32.0, 58.0, 1.0):
        eq = cost.totals(cost.layer_costs(model, speedup=speedup))["eq_flops"]
        assert eq == pytest.approx(formula_eq_flops(MIDDLE, speedup), rel=1e-12)
    assert cost.summary(model, speedup=32.0)["speedup"] == 32.0


# -- memory ----------------------------------------------------------------------------


def test_memory_binary_and_float_layers():
    """Binary kernel: 1 bit per weight + a float32 alpha per output channel; float kernel,
    bias and batch norm (2 per channel after folding): 4 bytes each."""
    fbin = costs_by_name(models.create("alexnet", plan="fbin"))
    wbin = costs_by_name(models.create("alexnet", plan="wbin", binarize_last_weights=True))
    flt = costs_by_name(models.create("alexnet", plan="float"))
    # conv3, binary input: batch norm on its 256 input channels
    assert fbin["conv3"].memory_bytes == 3 * 3 * 256 * 384 / 8 + 4 * 384 + 4 * 2 * 256
    # conv3, float input and binary weights: batch norm on its 384 output channels
    assert wbin["conv3"].memory_bytes == 3 * 3 * 256 * 384 / 8 + 4 * 384 + 4 * 2 * 384
    assert flt["conv3"].memory_bytes == 4 * (3 * 3 * 256 * 384 + 2 * 384)
    # first layer: float kernel, bias, batch norm
    assert fbin["conv1"].memory_bytes == 4 * (11 * 11 * 3 * 96 + 96 + 2 * 96)
    # classifier: bias, no batch norm; binary weights only with binarize_last_weights
    assert fbin["fc8"].memory_bytes == 4 * (4096 * 1000 + 1000)
    assert wbin["fc8"].memory_bytes == 4096 * 1000 / 8 + 4 * 1000 + 4 * 1000
    total = cost.totals(tuple(fbin.values()))
    assert total["memory_bytes"] == sum(c.memory_bytes for c in fbin.values())
    assert total["float32_memory_bytes"] == 4 * total["params"]


# -- summary ---------------------------------------------------------------------------


def test_summary_format():
    model = models.create("alexnet", plan="fbin")
    data = cost.summary(model)
    assert set(data) >= {"layers", "total"}
    assert [layer["name"] for layer in data["layers"]] == list(ALEXNET_NAMES)
    keys = {"name", "macs", "params", "input", "weight", "eq_flops", "memory_bytes"}
    for layer in data["layers"]:
        assert keys <= set(layer)
    conv3 = data["layers"][2]
    assert (conv3["input"], conv3["weight"]) == ("binary", "binary")
    assert conv3["macs"] == formula_macs(alexnet_layers())["conv3"]
    assert (data["layers"][0]["input"], data["layers"][0]["weight"]) == ("float", "float")
    assert {"macs", "params", "eq_flops", "memory_bytes"} <= set(data["total"])
    assert data["total"]["macs"] == sum(formula_macs(alexnet_layers()).values())
    assert json.loads(json.dumps(data)) == data  # summary.json is plain JSON


@pytest.mark.parametrize("name", ["resnet18", "mini_sketchanet"])
def test_format_summary_lists_every_layer(name):
    model = models.create(name, plan="fbin")
    text = cost.format_summary(cost.summary(model))
    for layer in models.layer_names(model):
        assert layer in text
    assert "total" in text and "binary" in text


def test_summary_needs_no_data_and_compiles_nothing():
    """From shapes alone: summarising ResNet-18 at 2048x2048 (a real forward pass would
    allocate hundreds of MiB) compiles no XLA program and creates no device array."""
    events = []

    def listen(event, duration, **kwargs):
        events.append(event)

    before = {id(a) for a in jax.live_arrays()}
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        data = cost.summary(models.create("resnet18", plan="fbin"), (2048, 2048, 3))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert not [e for e in events if "backend_compile" in e]
    assert not [a for a in jax.live_arrays() if id(a) not in before]
    assert data["layers"][0]["output_shape"] == [1024, 1024, 64]


SUMMARY_SNAPSHOT = """\
--------------------------------------------------------------------------------
layer    output   input  weight   params    MACs  eq. FLOPs      BOPs     memory
--------------------------------------------------------------------------------
conv1  16x16x48   float   float    1,344  0.31 M     0.31 M  314.57 M   5.25 KiB
conv2    8x8x64  binary  binary   27,744  1.77 M     0.03 M    1.77 M   4.00 KiB
conv3    8x8x64  binary  binary   36,992  2.36 M     0.04 M    2.36 M   5.25 KiB
conv4   1x1x128  binary  binary  131,200  0.13 M     0.00 M    0.13 M  17.00 KiB
conv5   1x1x128  binary  binary   16,640  0.02 M     0.00 M    0.02 M   3.50 KiB
fc       1x1x10   float   float    1,290  0.00 M     0.00 M    1.31 M   5.04 KiB
--------------------------------------------------------------------------------
total             4 bin   4 bin  215,210  4.58 M     0.38 M  320.16 M  40.04 KiB
--------------------------------------------------------------------------------
MiniSketchANet with plan 'fbin': equivalent FLOPs count binary-input, binary-weight MACs at 1/58
(b_x * b_w of them where inputs and weights have more bits); BOPs = MACs * b_x * b_w.
memory 40.04 KiB vs 840.66 KiB in float32 (21.0x smaller); speedup over float 12.0x"""


def test_summary_table_text_is_stable():
    """The whole table, as a user reads it (larq's summary tests do the same)."""
    model = models.create("mini_sketchanet", plan="fbin")
    assert cost.format_summary(cost.summary(model)) == SUMMARY_SNAPSHOT


# -- what the modern blocks add ------------------------------------------------------

# resnet18 with the CIFAR stem at 32x32x3, narrow: (spatial size, channels) per stage
SMALL_RESNET = dict(num_classes=10, stem="cifar", widths=(8, 16, 16, 32))
STAGES = {1: (32, 8), 2: (16, 16), 3: (8, 16), 4: (4, 32)}


def expected_block_costs(block):
    """Per block unit under fbin: (float ops, kernel weights, other floats) from the
    formulas of docs/method.md section 6 - one add per output element of each residual
    (xnor: conv2 only; bireal and reactnet: each conv), RPReLU's 4 ops per output element
    and 3 floats per output channel (reactnet: every binary-input unit), the input norm's
    floats per input channel (batch norm 2, RSign's threshold 1)."""
    rprelu = block == "reactnet"
    expected = {}
    cin = STAGES[1][1]
    for stage, (size, c) in STAGES.items():
        for b in range(2):
            units = [("conv1", 3, cin), ("conv2", 3, c)]
            if stage > 1 and b == 0:  # stride 2 (and, but in stage 3, more channels)
                units.append(("downsample", 1, cin))
            for unit, k, unit_cin in units:
                outputs = size * size * c
                adds = outputs if unit == "conv2" or (unit == "conv1" and block != "xnor") else 0
                ops = adds + (4 * outputs if rprelu else 0)
                norm = unit_cin if rprelu else 2 * unit_cin
                other = norm + (3 * c if rprelu else 0)
                expected[f"layer{stage}_{b}/{unit}"] = (ops, k * k * unit_cin * c, other)
            cin = c
    return expected


@pytest.mark.parametrize("block", ["xnor", "bireal", "reactnet"])
def test_shortcut_adds_and_rprelu_are_counted_by_formula(block):
    model = models.create("resnet18", plan="fbin", block=block, **SMALL_RESNET)
    costs = costs_by_name(model, (32, 32, 3))
    expected = expected_block_costs(block)
    assert set(expected) == set(costs) - {"conv1", "fc"}
    for name, (ops, kernel, other) in expected.items():
        c = costs[name]
        cout = c.output_shape[-1]
        # 1 bit per binary weight, a float32 alpha per output channel, 4 bytes per float
        assert (c.float_ops, c.params, c.memory_bytes) == (
            ops,
            kernel + other,
            kernel / 8 + 4 * cout + 4 * other,
        ), name
    assert costs["conv1"].float_ops == costs["fc"].float_ops == 0  # float stem and classifier
    total = cost.totals(tuple(costs.values()))
    assert total["float_ops"] == sum(ops for ops, _, _ in expected.values())
    assert "float ops besides the MACs" in cost.format_summary(cost.summary(model, (32, 32, 3)))


# -- bit-widths ------------------------------------------------------------------------


def test_mixed_precision_costs_by_formula():
    """eq-FLOPs: ``b_x * b_w`` binary planes at 1/58 each, at most a float MAC; BOPs:
    ``MACs * b_x * b_w``; memory: 8-bit weights a byte each plus a float32 scale per
    output channel, a k-bit input's step one float32 (docs/method.md section 6)."""
    macs = formula_macs(alexnet_layers())
    rules = [("conv1", 8, 8), ("conv2", 2, 1), ("conv3", 4, 8), ("conv4", 8, 8),
             ("conv5", 1, 8), ("fc8", "float", "float"), (".*", 1, 1)]  # fmt: skip
    costs = costs_by_name(models.create("alexnet", plan=Plan.from_rules(rules, list(macs))))
    bits = {"conv1": (8, 8), "conv2": (2, 1), "conv3": (4, 8), "conv4": (8, 8),
            "conv5": (1, 8), "fc6": (1, 1), "fc7": (1, 1), "fc8": (32, 32)}  # fmt: skip
    for name, (bx, bw) in bits.items():
        assert costs[name].bops == macs[name] * bx * bw
        planes = 1.0 if bx == 32 else min(1.0, bx * bw / 58)
        assert costs[name].eq_flops == pytest.approx(macs[name] * planes, rel=1e-12)
    assert costs["conv2"].eq_flops == pytest.approx(2 * macs["conv2"] / 58, rel=1e-12)
    assert costs["conv4"].eq_flops == macs["conv4"]  # 64 planes: no cheaper than float
    # conv3: 8-bit kernel + scales, input batch norm on 256 channels, the step
    assert costs["conv3"].memory_bytes == 3 * 3 * 256 * 384 + 4 * 384 + 4 * (2 * 256 + 1)
    assert costs["conv3"].params == 3 * 3 * 256 * 384 + 2 * 256 + 1
    # conv1 at 8 bits: kernel and bias, input batch norm on the image's 3 channels, step
    assert costs["conv1"].memory_bytes == 11 * 11 * 3 * 96 + 4 * 96 + 4 * (96 + 2 * 3 + 1)
    model = models.create("alexnet", plan=Plan.from_rules(rules, list(macs)))
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert sum(c.params for c in costs.values()) == sum(
        int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"])
    )
    summary = cost.summary(model)
    assert summary["total"]["bops"] == sum(macs[n] * bx * bw for n, (bx, bw) in bits.items())
    assert "int4" in cost.format_summary(summary)
