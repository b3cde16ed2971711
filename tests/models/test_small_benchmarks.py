"""LeNet-5, VGG-Small and ResNet-18's CIFAR stem, layer by layer, against formulas.

Each expected layer is written out as ``(name, k, C_in, C_out, H_out)`` from the files
the models' docstrings name, with output sizes from the conv and pool arithmetic
(``(H + 2 * pad - k) // stride + 1``). From those alone: MACs = H_out * W_out * k * k *
C_in * C_out; parameters = the kernel, a bias in the first layer and the classifier, and
batch norm's scale and offset on the input channels of a binary-input unit, on the output
channels of any other, none in the classifier. Everything is traced from shapes
(``jax.eval_shape``); nothing is compiled.
"""

import jax
import jax.numpy as jnp
import pytest

from binflax import cost, models
from tests.fakes import variable_shapes


def out(size, k, stride=1, pad=0):
    return (size + 2 * pad - k) // stride + 1


def lenet5_layers(size, channels, classes):
    """XNOR-Net-PyTorch's LeNet_5: conv 20 5x5, pool 2, conv 50 5x5, pool 2, fc 500, fc."""
    s1 = out(size, 5)
    s2 = out(out(s1, 2, 2), 5)
    return [
        ("conv1", 5, channels, 20, s1),
        ("conv2", 5, 20, 50, s2),
        ("fc1", out(s2, 2, 2), 50, 500, 1),  # spans the map the second pool leaves
        ("fc", 1, 500, classes, 1),
    ]


def vgg_small_layers(width, size, channels, classes):
    """BinaryNet's 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-1024FC-1024FC-classes, scaled."""
    w, s1 = width, out(size, 3, 1, 1)
    s2 = out(s1, 2, 2)
    s3 = out(s2, 2, 2)
    return [
        ("conv1", 3, channels, w, s1),
        ("conv2", 3, w, w, s1),
        ("conv3", 3, w, 2 * w, s2),
        ("conv4", 3, 2 * w, 2 * w, s2),
        ("conv5", 3, 2 * w, 4 * w, s3),
        ("conv6", 3, 4 * w, 4 * w, s3),
        ("fc1", out(s3, 2, 2), 4 * w, 8 * w, 1),
        ("fc2", 1, 8 * w, 8 * w, 1),
        ("fc", 1, 8 * w, classes, 1),
    ]


def resnet18_layers(stem, size, classes):
    """torchvision's resnet18; the CIFAR stem is a 3x3 stride-1 conv and no max pool."""
    if stem == "imagenet":
        s = out(size, 7, 2, 3)
        layers = [("conv1", 7, 3, 64, s)]
        s = out(s, 3, 2, 1)
    else:
        s = out(size, 3, 1, 1)
        layers = [("conv1", 3, 3, 64, s)]
    cin = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            name, stride = f"layer{stage}_{block}", (2 if stage > 1 and block == 0 else 1)
            s_out = out(s, 3, stride, 1)
            layers += [(f"{name}/conv1", 3, cin, width, s_out)]
            layers += [(f"{name}/conv2", 3, width, width, s_out)]
            if cin != width:
                layers += [(f"{name}/downsample", 1, cin, width, out(s, 1, stride))]
            cin, s = width, s_out
    return [*layers, ("fc", 1, 512, classes, 1)]


# name, fields, input (H, W, C), expected layers, the docstring's (M MACs, M params)
CASES = [
    ("lenet5", {}, (28, 28, 1), lenet5_layers(28, 1, 10), (2.29, 0.43)),
    ("lenet5", {"num_classes": 7}, (32, 32, 1), lenet5_layers(32, 1, 7), None),
    ("vgg_small", {}, (32, 32, 3), vgg_small_layers(128, 32, 3, 10), (617, 14.0)),
    ("vgg_small", {"width": 16}, (28, 28, 1), vgg_small_layers(16, 28, 1, 10), None),
    ("resnet18", {}, (224, 224, 3), resnet18_layers("imagenet", 224, 1000), (1814, 11.69)),
    (
        "resnet18",
        {"stem": "cifar", "num_classes": 10},
        (32, 32, 3),
        resnet18_layers("cifar", 32, 10),
        (555, 11.17),
    ),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in fields.items()) for name, fields, *_ in CASES]


def expected_params(k, cin, cout, edge, last, binary_input):
    bias = cout if edge else 0
    norm = 0 if last else 2 * (cin if binary_input else cout)
    return k * k * cin * cout + bias + norm


def param_counts(model, input_shape):
    """Parameters per planned layer, from the parameter tree's shapes."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    leaves = jax.tree_util.tree_leaves_with_path(variable_shapes(model, x)["params"])
    paths = {"/".join(p.key for p in path): leaf.size for path, leaf in leaves}
    return {
        name: sum(n for p, n in paths.items() if p.startswith(f"{name}/"))
        for name in model.plan.names
    }


@pytest.mark.parametrize("name,fields,input_shape,layers,totals", CASES, ids=IDS)
@pytest.mark.parametrize("plan", ["float", "fbin"])
def test_macs_and_params_per_layer_match_the_formulas(
    name, fields, input_shape, layers, totals, plan
):
    model = models.create(name, plan=plan, **fields)
    infos = models.trace_layers(model, input_shape)
    costs = {c.name: c for c in cost.layer_costs(model, input_shape)}
    counted = param_counts(model, input_shape)
    assert [info.name for info in infos] == [layer[0] for layer in layers]
    for info, (layer, k, cin, cout, h_out) in zip(infos, layers, strict=True):
        assert info.precision == model.plan[layer]  # the unit runs as its plan entry says
        assert info.kernel_shape == (k, k, cin, cout), layer
        assert info.output_shape == (1, h_out, h_out, cout), layer
        macs = h_out * h_out * k * k * cin * cout
        assert info.macs == costs[layer].macs == macs, layer
        edge, last = layer in (layers[0][0], layers[-1][0]), layer == layers[-1][0]
        params = expected_params(k, cin, cout, edge, last, model.plan[layer].binary_input)
        assert counted[layer] == costs[layer].params == params, layer
    if totals is not None:  # the rounded figures the model's docstring quotes
        total = cost.totals(tuple(costs.values()))
        assert (total["macs"] / 1e6, total["params"] / 1e6) == pytest.approx(totals, rel=5e-3)


@pytest.mark.parametrize("name,fields,input_shape,layers,totals", CASES, ids=IDS)
def test_fbin_keeps_the_first_and_last_layers_float(name, fields, input_shape, layers, totals):
    """As for the other models: the stem sees float inputs and weights, the classifier a
    float input (its weights are binary with binarize_last_weights), the rest is XNOR."""
    fbin = models.create(name, plan="fbin", **fields).plan
    assert fbin.names == tuple(layer[0] for layer in layers)
    first, *middle, last = fbin.layers
    assert (first.input, first.weight, last.input, last.weight) == ("float",) * 4
    assert all(layer.xnor for layer in middle)
    last = models.create(name, plan="fbin", binarize_last_weights=True, **fields).plan[last.name]
    assert (last.input, last.weight) == ("float", "binary")


@pytest.mark.parametrize("name,fields,input_shape,layers,totals", CASES, ids=IDS)
def test_logits_have_one_score_per_class(name, fields, input_shape, layers, totals):
    model = models.create(name, plan="fbin", **fields)
    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
    logits = jax.eval_shape(model.apply, variable_shapes(model, x), x)
    assert logits.shape == (2, layers[-1][3])


def test_defaults_are_the_source_files():
    """The files' input sizes, 10 classes and no dropout; BinaryNet's 128-256-512 stages;
    ResNet-18's ImageNet stem, which the paper configs use."""
    for m, shape in ((models.LeNet5(), (28, 28, 1)), (models.VGGSmall(), (32, 32, 3))):
        assert (m.default_input_shape, m.num_classes, m.dropout_rate) == (shape, 10, 0.0)
    assert models.VGGSmall().width == 128 and models.ResNet18().stem == "imagenet"


def test_vgg_small_width_scales_every_hidden_layer():
    """Doubling the width doubles each layer's channels: 4x the MACs of every layer
    between the image and the classes, 2x those of conv1 and fc."""
    narrow, wide = (
        {c.name: c.macs for c in cost.layer_costs(models.create("vgg_small", width=w))}
        for w in (16, 32)
    )
    assert list(narrow) == list(wide)
    ratios = {layer: wide[layer] / narrow[layer] for layer in narrow}
    assert ratios == {layer: 2.0 if layer in ("conv1", "fc") else 4.0 for layer in narrow}


def test_resnet18_cifar_stem_keeps_32x32_maps_and_the_plan_names():
    model = models.create("resnet18", stem="cifar")
    infos = {info.name: info for info in models.trace_layers(model, (32, 32, 3))}
    assert infos["conv1"].kernel_shape == (3, 3, 3, 64)
    assert infos["conv1"].output_shape == (1, 32, 32, 64)
    assert infos["conv1"].macs == 32 * 32 * 3 * 3 * 3 * 64
    assert infos["layer1_0/conv1"].input_shape == (1, 32, 32, 64)  # no max pool
    assert infos["layer4_1/conv2"].output_shape == (1, 4, 4, 512)
    imagenet = models.layer_names(models.create("resnet18"), (32, 32, 3))
    assert tuple(infos) == imagenet


def test_resnet18_unknown_stem_names_the_field():
    expected = "unknown ResNet18 stem='cifar10'; stem is one of 'imagenet', 'cifar'"
    with pytest.raises(models.ModelError, match=expected):
        models.create("resnet18", stem="cifar10")
