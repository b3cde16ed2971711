"""Every paper config runs the authors' experiment: their hybrids' costs, their recipe.

The authors' hybrids are written out here from docs/method.md section 10 (not imported
from binflax), and their costs come from the cost model at each config's own shapes;
the recipe is checked on the built model and optimizer, not on the config's text.
"""

import importlib
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import cli, cost, models, networks, optimizer, paper, select, variants
from binflax.layers import HBNConv
from binflax.plan import Plan
from tests.data import data_fakes
from tests.fakes import fake_variables

PAPER_CONFIGS = (
    "alexnet",
    "resnet18",
    "sketchanet_tuberlin",
    "sketchanet_sketchy",
    "resnet18_tuberlin",
    "resnet18_sketchy",
    "squeezenet_tuberlin",
)

# docs/method.md section 10: float-input layers besides the first and the classifier.
DOWNSAMPLES = ["layer2_0/downsample", "layer3_0/downsample", "layer4_0/downsample"]
FIRES = [f"fire{i}" for i in range(2, 10)]
SPEC_HYBRIDS = {
    "alexnet": {"Hybrid1": ["fc6", "fc7"], "Hybrid2": ["fc7"]},
    "sketchanet": {"Hybrid1": ["conv6", "conv7"], "Hybrid2": ["conv7"]},
    "resnet18": {
        "Hybrid1": [
            f"{block}/conv{i}" for block in ("layer3_1", "layer4_0", "layer4_1") for i in (1, 2)
        ]
        + DOWNSAMPLES,
        "Hybrid2": ["layer4_1/conv1", "layer4_1/conv2", *DOWNSAMPLES],
    },
    "squeezenet": {
        "Hybrid1": [
            f"{fire}/{conv}"
            for fire in FIRES
            for conv in ("squeeze", "expand1x1", "expand3x3")
            if conv != "expand3x3" or fire in ("fire2", "fire9")
        ],
        "Hybrid2": [f"{f}/{c}" for f in ("fire2", "fire9") for c in ("squeeze", "expand1x1")]
        + ["fire2/expand3x3", "fire9/expand3x3"]
        + [f"{fire}/expand1x1" for fire in FIRES[1:-1]],
        "Hybrid3": ["fire2/squeeze", "fire2/expand3x3"] + [f"{fire}/expand1x1" for fire in FIRES],
    },
}


def load(name, arg=None):
    return importlib.import_module(f"configs.{name}").get_config(arg)


def shape(config):
    return (config.image_size, config.image_size, config.channels)


def eq_flops(model, config):
    return cost.totals(cost.layer_costs(model, shape(config)))["eq_flops"]


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_each_authors_hybrid_has_a_budget_just_above_its_cost(name):
    config = load(name)
    fbin = networks.build_model(config, config.num_classes, "fbin")
    layers = models.layer_names(fbin)
    fbin_eq = eq_flops(fbin, config)
    budgets = config.hbn.budgets
    assert len(budgets) == len(SPEC_HYBRIDS[config.model])
    for hybrid, float_inputs in SPEC_HYBRIDS[config.model].items():
        plan = Plan.hybrid(layers, float_inputs, binarize_last_weights=config.binarize_last_weights)
        x_fbin = eq_flops(fbin.clone(plan=plan), config) / fbin_eq
        fitting = [b for b in budgets if x_fbin <= b <= 1.03 * x_fbin]
        assert fitting, f"{name}: no budget in [{x_fbin:.4f}, {1.03 * x_fbin:.4f}] for {hybrid}"
    # the summary's table of the authors' hybrids is the spec's
    listed = {h.name: sorted(h.float_inputs) for h in paper.AUTHORS_HYBRIDS[config.model]}
    assert listed == {h: sorted(layers) for h, layers in SPEC_HYBRIDS[config.model].items()}


def test_alexnet_costs_are_the_specs():
    config = load("alexnet")
    fbin = networks.build_model(config, 1000, "fbin")
    layers = models.layer_names(fbin)
    for float_inputs, expected in ((["fc6", "fc7"], 180.8e6), (["fc7"], 143.7e6), ([], 127.2e6)):
        hybrid = fbin.clone(plan=Plan.hybrid(layers, float_inputs))
        assert eq_flops(hybrid, config) == pytest.approx(expected, rel=5e-4)


def test_sketchanet_budgets_select_the_authors_hybrids_from_their_errors(authors_sketchanet):
    config = load("sketchanet_tuberlin")
    fbin = networks.build_model(config, config.num_classes, "fbin")
    costs = cost.layer_costs(fbin, shape(config))
    errors = authors_sketchanet.errors
    macs = {c.name: c.macs for c in costs if c.name in errors}
    fixed = sum(c.macs for c in costs if c.name not in errors)
    chosen = [
        select.solve(
            errors,
            macs,
            fixed_macs=fixed,
            budget=budget,
            method=config.hbn.method,
            score=config.hbn.score,
            speedup=config.hbn.speedup,
        )
        for budget in config.hbn.budgets
    ]
    assert chosen == [("conv6", "conv7"), ("conv7",)]


def test_summary_shows_each_budget_and_the_authors_hybrid_it_admits(tmp_path, capsys):
    assert cli.run(load("alexnet"), mode="summary", workdir=str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "hybrid1: budget 1.43 x fbin -> at most 181.89 M eq. FLOPs" in out
    assert "the authors' Hybrid1 (fc6, fc7): 180.78 M = 1.421 x fbin" in out
    assert "the authors' Hybrid2 (fc7): 143.68 M = 1.130 x fbin" in out
    budgets = json.loads((tmp_path / "summary.json").read_text())["budgets"]
    assert [b["authors_hybrid"]["name"] for b in budgets] == ["Hybrid1", "Hybrid2"]


# -- the recipe, from the built model and optimizer ------------------------------------


def dropout_rates(config, variant):
    """The rate of every nn.Dropout the variant's model calls in a training forward pass."""
    vconfig = variants.variant_config(config, variant)
    plan = variant if variant in variants.PRESET_VARIANTS else "fbin"
    model = networks.build_model(vconfig, vconfig.num_classes, plan)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    rates = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Dropout) and context.method_name == "__call__":
            rates.append(context.module.rate)
        return next_fun(*args, **kwargs)

    x = jnp.zeros((1, *shape(vconfig)))
    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(rngs, x, train=True))
    return set(rates)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("sketchanet_tuberlin", {"float": 0.1, "wbin": 0.1, "fbin": 0.2, "hybrid": 0.2}),
        ("alexnet", {"wbin": 0.5, "fbin": 0.5, "hybrid": 0.5}),
        ("squeezenet_tuberlin", {"float": 0.2, "fbin": 0.2}),
    ],
)
def test_dropout_rate_per_variant(name, expected):
    config = load(name)
    for variant, rate in expected.items():
        assert dropout_rates(config, variant) == {rate}, variant


def authors_kernel_gradient(w, g_b):
    """The authors' updateBinaryGradWeight (code/utils.py), in HWIO: the gradient w.r.t.
    the binarized kernel times (alpha * 1[|W| < 1] + 1/n) * n * (1 - 1/cin)."""
    n, cin = np.prod(w.shape[:-1]), w.shape[-2]
    alpha = np.abs(w).reshape(n, -1).mean(0)
    m = alpha * (np.abs(w) < 1) + 1.0 / n
    return g_b * m * n * (1.0 - 1.0 / cin)


def model_unit(config, name):
    """The fbin model's own unit ``name``, unbound, as the model builds it."""
    model = networks.build_model(config, config.num_classes, "fbin")
    found = {}

    def capture(next_fun, args, kwargs, context):
        if isinstance(context.module, HBNConv) and context.module.name == name:
            found[name] = context.module.clone(parent=None)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(capture):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape(config)))))
    return found[name]


def test_alpha_is_a_constant_in_the_backward_pass_as_the_authors_gradient():
    unit = model_unit(load("sketchanet_tuberlin"), "conv3").clone(norm=False)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 8, 8, 128)), jnp.float32)
    w = rng.uniform(-0.9, 0.9, size=(3, 3, 128, 256)).astype(np.float32)
    g = jnp.asarray(rng.normal(size=(4, 8, 8, 256)), jnp.float32)

    def loss(kernel):
        return jnp.sum(unit.apply({"params": {"kernel": kernel}}, x) * g)

    latent = np.asarray(jax.grad(loss)(jnp.asarray(w)))
    # dL/dW_b: the same conv, differentiated w.r.t. the kernel it actually uses
    signs = jnp.where(x >= 0, 1.0, -1.0)

    def conv_loss(binary_kernel):
        y = jax.lax.conv_general_dilated(
            signs,
            binary_kernel,
            (1, 1),
            ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return jnp.sum(y * g)

    g_b = np.asarray(jax.grad(conv_loss)(jnp.asarray(w)))
    alpha = np.abs(w).reshape(-1, 256).mean(0)
    np.testing.assert_allclose(latent, g_b * alpha, rtol=1e-4, atol=1e-4)
    # the authors' hand-written gradient is this one times a per-layer constant, to 2%
    # (their factor n * (1 - 1/cin) * (1 + 1 / (n * alpha_o)), which Adam normalizes away)...
    authors = authors_kernel_gradient(w, g_b)
    assert spread(authors / latent) < 1.02
    # ...which the gradient through alpha is not
    n = w[..., 0].size
    through_alpha = latent + np.sign(w) / n * (g_b * np.sign(w)).reshape(n, -1).sum(0)
    assert spread(authors / through_alpha) > 1.5


def spread(ratios):
    """max / min of element-wise ratios of two gradients (1.0: one is a scaled copy)."""
    ratios = np.abs(ratios[np.isfinite(ratios)])
    return float(np.quantile(ratios, 0.99) / np.quantile(ratios, 0.01))


def test_resnet18_config_binarizes_the_classifier_kernel():
    """Changing the classifier kernel's magnitudes but not its signs or per-filter mean |W|
    leaves the logits unchanged exactly when its weights are binary."""
    for name, binary in (("resnet18_tuberlin", True), ("resnet18", True), ("quickstart", False)):
        config = load(name)
        model = networks.build_model(config, 10, "fbin")
        size = 32 if config.model == "resnet18" else config.image_size
        x = jnp.asarray(np.random.default_rng(1).normal(size=(2, size, size, config.channels)))
        classifier = models.layer_names(model)[-1]
        variables = fake_variables(model, x)
        kernel = np.asarray(variables["params"][classifier]["kernel"])
        flat = kernel.reshape(-1, kernel.shape[-1])
        shuffled = np.sign(flat) * np.abs(flat)[::-1]  # same mean |W| per output filter
        params = dict(variables["params"])
        params[classifier] = {**params[classifier], "kernel": shuffled.reshape(kernel.shape)}
        apply = jax.jit(model.apply)
        before = apply(variables, x)
        after = apply({**variables, "params": params}, x)
        assert np.allclose(before, after, atol=1e-5) == binary, name


def test_squeezenet_has_a_relu_after_conv10():
    config = load("squeezenet_tuberlin")
    model = networks.build_model(config, 10, "fbin")
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 64, 64, 1)), jnp.float32)
    variables = fake_variables(model, x)
    params = dict(variables["params"])
    params["conv10"] = {**params["conv10"], "bias": jnp.full((10,), -1e3)}
    logits = np.asarray(jax.jit(model.apply)({**variables, "params": params}, x))
    np.testing.assert_array_equal(logits, 0.0)  # without the ReLU they would be near -1000


def test_imagenet_schedule_is_the_authors_imagenetscheduler():
    config = load("alexnet")
    steps = 10  # per epoch
    lr = optimizer.learning_rate_schedule(config, steps)
    wd = optimizer.weight_decay_schedule(config, steps)
    # (epoch, lr, weight decay) from the authors' utils.py, epoch 0 from run_imagenet_3.sh
    authors = [(0, 8e-5, 0.0), (1, 1e-3, 5e-5), (18, 1e-3, 5e-5), (19, 5e-4, 5e-5),
               (29, 5e-4, 5e-5), (30, 1e-4, 0.0), (43, 1e-4, 0.0), (44, 5e-5, 0.0),
               (52, 5e-5, 0.0), (53, 2e-5, 0.0), (89, 2e-5, 0.0)]  # fmt: skip
    for epoch, expected_lr, expected_wd in authors:
        for step in (epoch * steps, epoch * steps + steps - 1):  # first and last step
            assert float(lr(step)) == pytest.approx(expected_lr, rel=1e-6), epoch
            assert float(wd(step)) == pytest.approx(expected_wd, rel=1e-6), epoch


@pytest.mark.parametrize(
    "name, lr, halve_every, epochs, batch",
    [
        ("sketchanet_tuberlin", 2e-3, 50, 600, {"float": 256, "fbin": 256}),
        ("sketchanet_sketchy", 2e-3, 50, 400, {"float": 256, "fbin": 256}),
        ("resnet18_tuberlin", 2e-3, 40, 400, {"float": 256, "fbin": 160, "hybrid": 160}),
        ("resnet18_sketchy", 2e-3, 40, 400, {"float": 256, "fbin": 128}),
        ("squeezenet_tuberlin", 2e-3, 40, 400, {"float": 128, "fbin": 128}),
    ],
)
def test_sketch_schedules_halve_on_the_authors_interval(name, lr, halve_every, epochs, batch):
    config = load(name)
    steps = 7
    schedule = optimizer.learning_rate_schedule(variants.variant_config(config, "fbin"), steps)
    for epoch in (0, halve_every - 1, halve_every, 3 * halve_every, epochs - 1):
        expected = max(lr * 0.5 ** (epoch // halve_every), 5e-5)
        assert float(schedule(epoch * steps)) == pytest.approx(expected, rel=1e-6), epoch
    for variant, size in batch.items():
        resolved = variants.variant_config(config, variant)
        assert resolved.batch_size == size and resolved.num_epochs == epochs, variant


def test_float_sketchanet_has_its_own_learning_rate_and_weight_decay():
    config = load("sketchanet_tuberlin")
    float_config = variants.variant_config(config, "float")
    assert float(optimizer.learning_rate_schedule(float_config, 1)(0)) == pytest.approx(5e-3)
    assert optimizer.weight_decay_schedule(float_config, 1) == pytest.approx(5e-4)
    assert optimizer.weight_decay_schedule(variants.variant_config(config, "fbin"), 1) == 0.0


# -- a smoke run of a paper config on generated sketches -------------------------------


@pytest.fixture(scope="module")
def tiny_tu_berlin(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_tu_berlin")
    data_fakes.tu_berlin_tree(root / "manual", data_fakes.TU_CLASSES, data_fakes.TU_PER_CLASS)
    return root


@pytest.mark.slow
@pytest.mark.exhaustive
def test_runlocal_hbn_of_a_paper_config_trains_every_hybrid(tiny_tu_berlin, capsys):
    """The paper's TU-Berlin config end to end at full size (Sketch-A-Net at 225 px, its
    10-crop evaluation): `exhaustive`, since CI checks each piece on its own (the hbn
    pipeline on the quickstart in test_cli and test_controls, the TU-Berlin pipeline in
    tests/data, 10-crop evaluation in test_augment and test_select, the full-size
    Sketch-A-Net's training step in tests/models) and this run costs ~2.5 min of CI's 2
    cores."""
    config = load("sketchanet_tuberlin", "runlocal")
    config.update(
        data_dir=str(tiny_tu_berlin / "data"),
        manual_dir=str(tiny_tu_berlin / "manual"),
        num_classes=len(data_fakes.TU_CLASSES),
        holdout_fraction=0.2,  # of 24 sketches: 3 held out, 12 to train on, 9 to test
        batch_size=4,  # 3 steps per epoch: 2 epochs (of tf.data startup and evaluations)
        eval_batch_size=4,
    )
    workdir = tiny_tu_berlin / "run"
    with data_fakes.tiny_tu_berlin():
        assert cli.run(config, mode="hbn", workdir=str(workdir)) == 0
    results = json.loads((workdir / "results.json").read_text())
    assert list(results["variants"]) == ["hybrid1", "hybrid2", "fbin"]
    table = (workdir / "results.md").read_text()
    for name in ("hybrid1", "hybrid2", "fbin"):
        assert f"| {name} |" in table
        assert (workdir / name / "checkpoints").is_dir()
    for name in ("hybrid1", "hybrid2"):
        assert (workdir / f"plan_{name}.json").exists() and (
            workdir / f"select_{name}.json"
        ).exists()
        chosen = results["selection"]["hybrids"][name]
        entry = results["variants"][name]
        assert entry["eq_flops"] <= chosen["max_eq_flops"] * (1 + 1e-9)
        assert entry["plan"] == name
    assert (workdir / "results.png").exists()
    # the headline checkpoint is the holdout's best evaluation, never the test's
    for name, entry in results["variants"].items():
        history = json.loads((workdir / name / "evaluations.json").read_text())
        holdout = {int(step): m["top1"] for step, m in history["holdout"].items()}
        best = max(sorted(holdout, reverse=True), key=holdout.get)  # the latest on ties
        assert entry["checkpoint_step"] == best, name
        assert entry["holdout_top1"] == holdout[best]
        assert entry["final_top1"] == history["test"][str(entry["steps"])]["top1"]
        best_test = max(m["top1"] for m in history["test"].values())
        assert math.isclose(entry["best_test_top1_optimistic"], best_test)
        # the headline is kept beside the periodic evaluations, whichever step it is
        assert history["chosen"]["step"] == entry["checkpoint_step"]
        assert history["chosen"]["test"]["top1"] == entry["top1"]
