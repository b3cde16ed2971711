"""binflax.plan: the presets as docs/method.md section 2 defines them, JSON, validation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import models
from binflax.plan import LayerPrecision, Plan, PlanError, resolve

NAMES = ("conv1", "conv2", "conv3", "conv4", "fc")
ALEXNET = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def table(plan):
    return {layer.name: (layer.input, layer.weight) for layer in plan}


# -- presets ---------------------------------------------------------------------------


def test_float_preset():
    for last in (False, True):
        plan = Plan.preset("float", NAMES, binarize_last_weights=last)
        assert table(plan) == {n: ("float", "float") for n in NAMES}
        assert plan.name == "float"


@pytest.mark.parametrize("last", [False, True])
def test_wbin_preset(last):
    """Binary weights except the first layer (and the last unless asked), float inputs."""
    plan = Plan.preset("wbin", NAMES, binarize_last_weights=last)
    expected = {n: ("float", "binary") for n in NAMES}
    expected["conv1"] = ("float", "float")
    expected["fc"] = ("float", "binary" if last else "float")
    assert table(plan) == expected
    assert plan.binary_inputs == () and plan.float_inputs == NAMES
    assert plan.name == "wbin"


@pytest.mark.parametrize("last", [False, True])
def test_fbin_preset(last):
    """As wbin, plus binary inputs everywhere but the first and the last layer."""
    plan = Plan.preset("fbin", NAMES, binarize_last_weights=last)
    expected = {n: ("binary", "binary") for n in NAMES}
    expected["conv1"] = ("float", "float")
    expected["fc"] = ("float", "binary" if last else "float")
    assert table(plan) == expected
    assert plan.binary_inputs == ("conv2", "conv3", "conv4")
    assert [layer.xnor for layer in plan] == [False, True, True, True, False]


def test_fbin8_preset_is_fbin_with_an_8_bit_first_layer():
    plan = Plan.preset("fbin8", NAMES)
    fbin = table(Plan.preset("fbin", NAMES))
    assert table(plan) == {**fbin, "conv1": ("int8", "int8")}
    assert plan.name == "fbin8" and plan.mixed
    assert plan.validate(NAMES) == plan  # the edge rule allows 8 bits


def test_unknown_preset_lists_presets():
    with pytest.raises(PlanError, match="'xnor'.*float, wbin, fbin, fbin8"):
        Plan.preset("xnor", NAMES)


def test_hybrid_is_fbin_with_some_float_inputs():
    plan = Plan.hybrid(NAMES, ["conv3"])
    fbin = Plan.preset("fbin", NAMES)
    for layer, ref in zip(plan, fbin, strict=True):
        if layer.name == "conv3":
            assert (layer.input, layer.weight) == ("float", "binary")
        else:
            assert layer == ref
    assert plan.float_inputs == ("conv1", "conv3", "fc")
    assert plan["conv3"] == LayerPrecision("conv3", "float", "binary")
    assert not plan["conv3"].xnor and plan["conv2"].xnor
    # every middle input float: the wbin preset
    assert Plan.hybrid(NAMES, NAMES[1:-1]) == Plan.preset("wbin", NAMES)
    assert Plan.hybrid(NAMES, []) == Plan.preset("fbin", NAMES)


def test_hybrid_names_an_unknown_layer():
    with pytest.raises(PlanError, match="'conv9'.*conv1, conv2, conv3, conv4, fc"):
        Plan.hybrid(NAMES, ["conv3", "conv9"])


# -- JSON ------------------------------------------------------------------------------


def test_save_load_and_dict_round_trips(tmp_path):
    plan = Plan.hybrid(ALEXNET, ["fc6", "fc7"], binarize_last_weights=True, name="hybrid1")
    assert Plan.from_dict(plan.to_dict()) == plan
    path = tmp_path / "plan.json"
    plan.save(path)
    assert json.loads(path.read_text()) == plan.to_dict()
    again = Plan.load(path)
    assert again == plan and again.names == ALEXNET and again.name == "hybrid1"
    assert Plan.load(str(path)) == plan
    assert plan.to_dict()["layers"]["fc7"] == {"input": "float", "weight": "binary"}


@pytest.mark.parametrize(
    "text,match",
    [
        ('{"format": "other", "version": 1, "layers": {}}', "not a binflax plan"),
        ('{"format": "binflax.plan", "version": 7, "layers": {}}', "version 7"),
        ('{"format": "binflax.plan", "version": 1, "layers": {"a": {"input": "float"}}}', "weight"),
        ("{not json", "not valid JSON"),
    ],
)
def test_load_rejects_bad_documents(text, match, tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(PlanError, match=match):
        Plan.load(path)


def test_load_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(PlanError, match="cannot read plan file .*nope.json"):
        Plan.load(tmp_path / "nope.json")


# -- validation ------------------------------------------------------------------------


def test_bad_precision_values_name_the_layer():
    with pytest.raises(PlanError, match="'conv2': input .*'bin'"):
        Plan([("conv1", "float", "float"), ("conv2", "bin", "binary"), ("fc", "float", "float")])
    with pytest.raises(PlanError, match="'conv2': weight .*'1bit'"):
        Plan([("conv1", "float", "float"), ("conv2", "binary", "1bit"), ("fc", "float", "float")])


@pytest.mark.parametrize("index", [0, -1])
def test_first_and_last_layer_keep_float_inputs(index):
    layers = [list(layer) for layer in Plan.preset("fbin", NAMES)]
    layers[index][1] = "binary"
    with pytest.raises(PlanError, match=f"'{NAMES[index]}'.*first and last"):
        Plan(layers).validate(NAMES)
    with pytest.raises(PlanError, match=f"'{ALEXNET[index]}'.*first and last"):
        binary = Plan.preset("fbin", ALEXNET).to_dict()
        binary["layers"][ALEXNET[index]]["input"] = "binary"
        models.create("alexnet", plan=Plan.from_dict(binary))


def test_a_plan_file_may_list_layers_in_any_order():
    """First and last are the network's: a plan JSON with sorted keys is still valid."""
    fbin = models.create("resnet18", plan="fbin").plan
    shuffled = Plan.from_dict(json.loads(json.dumps(fbin.to_dict(), sort_keys=True)))
    assert shuffled.names[-1] == "layer4_1/conv2"  # a binary-input layer
    assert models.create("resnet18", plan=shuffled).plan.names == fbin.names
    assert models.create("resnet18", plan=shuffled).plan == fbin


def test_duplicate_layers_are_refused():
    with pytest.raises(PlanError, match="conv2 more than once"):
        Plan([("conv1", "float", "float"), ("conv2", "float", "binary")] * 2)


def test_validate_unknown_and_missing_layers():
    plan = Plan.preset("fbin", NAMES)
    with pytest.raises(PlanError, match="'conv4'.*the network's layers: conv1, conv2, conv3, fc"):
        plan.validate(("conv1", "conv2", "conv3", "fc"))
    with pytest.raises(PlanError, match="does not cover layer.*conv5"):
        plan.validate((*NAMES[:-1], "conv5", "fc"))
    # validation returns the plan in the network's order
    shuffled = Plan([plan["conv1"], plan["conv3"], plan["conv2"], plan["conv4"], plan["fc"]])
    assert shuffled.validate(NAMES).names == NAMES


def test_lookup_of_a_missing_layer_lists_the_plan():
    with pytest.raises(PlanError, match="no layer 'conv9'; its layers: conv1, conv2"):
        Plan.preset("wbin", NAMES)["conv9"]


def test_resolve_presets_plans_and_paths(tmp_path):
    assert resolve("fbin", NAMES) == Plan.preset("fbin", NAMES)
    assert resolve("wbin", NAMES, binarize_last_weights=True)["fc"].weight == "binary"
    hybrid = Plan.hybrid(NAMES, ["conv2"])
    assert resolve(hybrid, NAMES) == hybrid
    hybrid.save(tmp_path / "h.json")
    assert resolve(str(tmp_path / "h.json"), NAMES) == hybrid
    with pytest.raises(PlanError, match="'hybrid7' is neither a preset"):
        resolve("hybrid7", NAMES)


def test_create_rejects_a_plan_naming_a_missing_layer(tmp_path):
    layers = [*Plan.preset("fbin", ALEXNET), LayerPrecision("conv6", "binary", "binary")]
    layers[-1], layers[-2] = layers[-2], layers[-1]  # keep fc8 last
    plan = Plan(layers)
    expected = "unknown layer.*'conv6'.*conv1, conv2, conv3, conv4, conv5, fc6, fc7, fc8"
    with pytest.raises(PlanError, match=expected):
        models.create("alexnet", plan=plan)
    plan.save(tmp_path / "plan.json")
    with pytest.raises(PlanError, match=expected):
        models.create("alexnet", plan=str(tmp_path / "plan.json"))


def test_create_rejects_a_plan_missing_a_layer():
    plan = Plan(layer for layer in Plan.preset("fbin", ALEXNET) if layer.name != "conv4")
    with pytest.raises(PlanError, match="does not cover layer.*conv4"):
        models.create("alexnet", plan=plan)


# -- hashing and jit -------------------------------------------------------------------


def test_plan_is_immutable_and_hashable():
    a, b = Plan.hybrid(NAMES, ["conv2"]), Plan.hybrid(NAMES, ["conv2"])
    assert a == b and hash(a) == hash(b)
    assert a != Plan.preset("fbin", NAMES)
    assert len({a, b, Plan.preset("fbin", NAMES)}) == 2
    with pytest.raises(AttributeError, match="immutable"):
        a.name = "x"


def test_model_with_plan_is_a_jit_static_argument():
    traces = []

    def forward(model, variables, x):
        traces.append(model.plan.name)
        return model.apply(variables, x)

    jitted = jax.jit(forward, static_argnums=0)
    x = jnp.ones((1, *models.MiniSketchANet.default_input_shape))
    small = dict(num_classes=3)
    m1 = models.create("mini_sketchanet", plan="fbin", **small)
    m2 = models.create("mini_sketchanet", plan="fbin", **small)  # equal, distinct object
    shapes = jax.eval_shape(m1.init, jax.random.key(0), x)  # no RNG compile: values are moot
    variables = jax.tree.map(lambda s: jnp.full(s.shape, 0.5, s.dtype), shapes)
    y1, y2 = jitted(m1, variables, x), jitted(m2, variables, x)
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    assert traces == ["fbin"]  # the second call hit the cache
    # a different plan is a different static argument (same parameter shapes here)
    other = models.create("mini_sketchanet", plan="fbin", binarize_last_weights=True, **small)
    jitted(other, variables, x)
    assert traces == ["fbin", "fbin"]


# -- bit-widths ------------------------------------------------------------------------


def test_bit_widths_are_names_in_a_plan_and_in_rules():
    rules = [("conv1", 8, 8), ("conv2", 4, 1), ("conv3", "int2", "int8"), ("fc", 32, 32)]
    plan = Plan.from_rules([*rules, (".*", 1, "binary")], NAMES).validate(NAMES)
    assert table(plan) == {
        "conv1": ("int8", "int8"),
        "conv2": ("int4", "binary"),
        "conv3": ("int2", "int8"),
        "conv4": ("binary", "binary"),
        "fc": ("float", "float"),
    }
    assert [layer.input_bits for layer in plan] == [8, 4, 2, 1, 32]
    assert [layer.weight_bits for layer in plan] == [8, 1, 8, 1, 32]
    assert [layer.quantized_input for layer in plan] == [True, True, True, True, False]
    assert plan.mixed and not Plan.preset("fbin", NAMES).mixed
    assert plan.binary_inputs == ("conv4",) and plan.float_inputs == ("fc",)


def test_a_plan_with_bit_widths_round_trips_through_json(tmp_path):
    plan = Plan([(n, 4, 8) if n == "conv3" else (n, "float", "float") for n in NAMES])
    plan.save(tmp_path / "plan.json")
    assert Plan.load(tmp_path / "plan.json") == plan
    assert plan.to_dict()["layers"]["conv3"] == {"input": "int4", "weight": "int8"}


def test_a_version_1_plan_file_of_binary_and_float_loads_unchanged(tmp_path):
    """A file written before bit-widths existed, byte for byte."""
    text = (
        '{"format": "binflax.plan", "version": 1, "name": "hybrid1", "layers": {'
        '"conv1": {"input": "float", "weight": "float"}, '
        '"conv2": {"input": "binary", "weight": "binary"}, '
        '"conv3": {"input": "float", "weight": "binary"}, '
        '"conv4": {"input": "binary", "weight": "binary"}, '
        '"fc": {"input": "float", "weight": "float"}}}'
    )
    (tmp_path / "old.json").write_text(text)
    assert Plan.load(tmp_path / "old.json") == Plan.hybrid(NAMES, ["conv3"])


@pytest.mark.parametrize(
    "inp,weight,match",
    [
        (3, "binary", "input precision must be one of binary, int2, int4, int8, float .*got 3"),
        ("int4", 4, "weight precision must be one of binary, int8, float .*got 4"),
        ("int16", "float", "got 'int16'"),
        (True, "float", "got True"),
    ],
)
def test_an_unknown_bit_width_names_the_layer_and_the_choices(inp, weight, match):
    with pytest.raises(PlanError, match=f"layer 'conv2': .*{match}"):
        Plan([("conv2", inp, weight)])
    with pytest.raises(PlanError, match=f"rule 0 .*: .*{match}"):
        Plan.from_rules([("conv2", inp, weight)], ["conv2"])


def test_edge_layers_may_take_eight_bits_but_not_fewer():
    layers = {n: (n, "binary", "binary") for n in NAMES}
    layers["conv1"], layers["fc"] = ("conv1", 8, 8), ("fc", 8, "float")
    assert Plan(layers.values()).validate(NAMES)["conv1"].input == "int8"
    layers["fc"] = ("fc", 4, "float")
    with pytest.raises(PlanError, match="'fc'.*first and last.*not 'int4'"):
        Plan(layers.values()).validate(NAMES)
