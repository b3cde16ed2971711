"""binflax.select.sensitivity against NumPy: the per-bit error, the Fisher and Hessian scores."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import binarize, models, select
from binflax.select import sensitivity


class Chain(nn.Module):
    """dense -> binary-input dense -> dense, no activation: the loss's gradient and
    Hessian with respect to the binary layer's input have a closed form."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Dense(4, name="d0")(x.reshape(len(x), -1))
        x = nn.Dense(5, name="d1")(x)
        return nn.Dense(3, name="d2")(x)


def chain(seed=0):
    model = binarize(
        Chain(),
        [("d1", "binary", "binary"), (".*", "float", "float")],
        input_shape=(1, 1, 6),
        input_norm="none",
    )
    rng = np.random.default_rng(seed)
    variables = model.init(jax.random.key(seed), jnp.zeros((1, 1, 1, 6)))
    variables = jax.tree.map(
        lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), variables
    )
    images = rng.normal(size=(16, 1, 1, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 16)
    return model, variables, images, labels


def np_chain(variables, images, labels):
    """x (the binary layer's input), dL/dx per example and each example's Tr(H_x)."""
    p = jax.tree.map(np.asarray, variables["params"])
    x = images.reshape(len(images), -1) @ p["d0"]["kernel"] + p["d0"]["bias"]
    w1 = p["d1"]["kernel"]
    wb = np.abs(w1).mean(0) * np.where(w1 >= 0, 1.0, -1.0)
    m = wb @ p["d2"]["kernel"]  # (4, 3): logits = sign(x) @ m + const
    logits = np.where(x >= 0, 1.0, -1.0) @ m + p["d1"]["bias"] @ p["d2"]["kernel"] + p["d2"]["bias"]
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    mask = (np.abs(x) <= 1).astype(np.float64)  # the sign's straight-through gradient
    grad = mask * ((prob - np.eye(3)[labels]) @ m.T)
    traces = []
    for b in range(len(x)):
        s = np.diag(prob[b]) - np.outer(prob[b], prob[b])  # the softmax cross-entropy's
        traces.append(np.sum(mask[b] * np.diag(m @ s @ m.T)))
    return x, grad, np.array(traces)


def np_error(x, bits):
    if bits == 1:
        return np.where(x >= 0, 1.0, -1.0) - x
    half, step = 2 ** (bits - 1), sensitivity.quantizers.gaussian_step(bits)
    return step * (np.clip(np.floor(x / step), -half, half - 1) + 0.5) - x


def test_error_fisher_and_hessian_against_closed_forms():
    model, variables, images, labels = chain()
    batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}
    got = select.measure_precisions(model, variables, [batch], hutchinson_samples=400)
    x, grad, traces = np_chain(variables, images, labels)
    assert got.precisions == (1, 2, 4, 8, 32) and got.num_samples == 16
    for bits in (1, 2, 4, 8):
        d = np_error(x, bits)
        assert got.scores["error"]["d1"][bits] == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-5)
        fisher = 0.5 * np.mean(np.sum((grad * d) ** 2, axis=1))
        assert got.scores["fisher"]["d1"][bits] == pytest.approx(fisher, rel=1e-4)
        hessian = 0.5 * traces.sum() / (16 * 4) * np.mean(np.sum(d**2, axis=1))
        # Hutchinson's estimate: 400 Rademacher vectors, within a few per cent
        assert got.scores["hessian"]["d1"][bits] == pytest.approx(hessian, rel=0.05)
    for score in sensitivity.SENSITIVITIES:
        assert got.scores[score]["d1"][32] == 0.0
        values = [got.scores[score]["d1"][b] for b in (1, 2, 4, 8)]
        assert values == sorted(values, reverse=True)  # more bits, less damage


def test_one_bit_error_is_measure_s_rmse_and_masked_examples_do_not_count():
    model, variables, images, labels = chain(1)
    mask = np.arange(16) < 10
    full = {"image": jnp.asarray(images), "label": jnp.asarray(labels), "mask": jnp.asarray(mask)}
    head = {"image": jnp.asarray(images[:10]), "label": jnp.asarray(labels[:10])}
    masked = select.measure_precisions(model, variables, [full], precisions=(1, 32))
    kept = select.measure_precisions(model, variables, [head], precisions=(1, 32))
    assert masked.num_samples == 10
    for score in ("error", "fisher"):
        assert masked.scores[score]["d1"][1] == pytest.approx(kept.scores[score]["d1"][1], rel=1e-5)
    rmse = select.measure(model, variables, [head]).errors["d1"]
    assert kept.scores["error"]["d1"][1] == pytest.approx(rmse, rel=1e-6)


def test_without_labels_only_the_error_is_measured():
    model, variables, images, _ = chain()
    got = select.measure_precisions(model, variables, [jnp.asarray(images)], precisions=(1, 4, 32))
    assert set(got.scores) == {"error"}
    assert set(got.sensitivity("error")["d1"]) == {1, 4, 32}
    with pytest.raises(sensitivity.SensitivityError, match="'fisher' was not measured.*labels"):
        got.sensitivity("fisher")


def test_a_binflax_model_is_measured_on_every_binary_input_layer():
    model = models.create("mini_sketchanet", plan="fbin", num_classes=4)
    shape = model.default_input_shape
    variables = model.init(jax.random.key(0), jnp.zeros((1, *shape)))
    rng = np.random.default_rng(2)
    batch = {
        "image": jnp.asarray(rng.normal(size=(4, *shape)), jnp.float32),
        "label": jnp.arange(4),
    }
    got = select.measure_precisions(model, variables, [batch], hutchinson_samples=1)
    assert tuple(got.macs) == model.plan.binary_inputs
    assert "input_probes" not in variables  # only the measurement adds probes
    for score in sensitivity.SENSITIVITIES:
        assert all(np.isfinite(list(v.values())).all() for v in got.scores[score].values())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"precisions": (1, 3)}, "precisions must be input bit-widths among 1, 2, 4, 8, 32"),
        ({"precisions": (1, 1)}, "repeat"),
        ({"hutchinson_samples": 0}, "hutchinson_samples must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    model, variables, images, labels = chain()
    with pytest.raises(sensitivity.SensitivityError, match=match):
        select.measure_precisions(model, variables, [jnp.asarray(images)], **kwargs)


def test_a_score_of_your_own_plugs_in_by_registry_or_from_the_kept_statistics(monkeypatch):
    """A score is a function of the per-layer statistics: registered, it is measured
    with the others; ``rescored`` adds one to a measurement without another pass."""
    model, variables, images, labels = chain()
    batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}

    def gradient_weighted(stats, bits):  # Fisher over the squared error: a mean g^2
        return stats.fisher[bits] / stats.squared_error[bits]

    monkeypatch.setitem(
        select.SENSITIVITIES, "g2", select.Sensitivity(gradient_weighted, True, "mean g^2")
    )
    got = select.measure_precisions(model, variables, [batch], hutchinson_samples=1)
    x, grad, _ = np_chain(variables, images, labels)
    for bits in (1, 2, 4, 8):
        d2 = np_error(x, bits) ** 2
        expected = np.sum(grad**2 * d2) / np.sum(d2)
        assert got.scores["g2"]["d1"][bits] == pytest.approx(expected, rel=1e-4)
    again = got.rescored("twice", lambda stats, bits: 2 * sensitivity.error(stats, bits))
    assert again.scores["twice"]["d1"] == pytest.approx(
        {b: 2 * v for b, v in got.scores["error"]["d1"].items()}
    )
