"""binflax.distill: the loss against a NumPy KL, and no gradient into the teacher."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import distill


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_loss(student, teacher, labels, weight, t):
    """(1 - w) CE + w T^2 KL(p_t || p_s), written out in float64."""
    log_s = np_log_softmax(student.astype(np.float64))
    ce = -log_s[np.arange(len(labels)), labels]
    log_pt = np_log_softmax(teacher.astype(np.float64) / t)
    log_ps = np_log_softmax(student.astype(np.float64) / t)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(-1)
    return float(((1 - weight) * ce + weight * t**2 * kl).mean())


@pytest.mark.parametrize("weight,temperature", [(1.0, 1.0), (0.7, 2.5), (0.3, 4.0), (0.0, 3.0)])
def test_loss_against_numpy(weight, temperature):
    rng = np.random.default_rng(0)
    student = rng.normal(size=(6, 10)).astype(np.float32) * 3
    teacher = rng.normal(size=(6, 10)).astype(np.float32) * 3
    labels = rng.integers(0, 10, 6)
    got = distill.loss(jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(labels),
                       weight=weight, temperature=temperature)  # fmt: skip
    assert float(got) == pytest.approx(np_loss(student, teacher, labels, weight, temperature),
                                       rel=1e-5)  # fmt: skip


@pytest.mark.parametrize("weight", [0.0, 0.4, 1.0])
def test_the_same_distribution_costs_only_its_cross_entropy(weight):
    """Student = teacher: the KL term is 0 at any temperature, so the loss is (1 - w) times
    the cross-entropy, by hand: softmax(log p) = p, so an example costs -ln p[label]."""
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])
    logits = jnp.asarray(np.log(probs) + 3.0, jnp.float32)  # softmax ignores the shift
    labels = jnp.array([0, 2])
    got = distill.loss(logits, logits, labels, weight=weight, temperature=2.0)
    cross_entropy = (np.log(2) - np.log(0.7)) / 2
    assert float(got) == pytest.approx((1 - weight) * cross_entropy, rel=1e-6, abs=1e-6)


def test_no_gradient_reaches_the_teacher():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(3)(x)

    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 5)), jnp.float32)
    labels = jnp.array([0, 1, 2, 0])
    teacher_vars = Net().init(jax.random.key(0), x)
    student_vars = Net().init(jax.random.key(1), x)

    def total(student_params, teacher_params):
        teacher = distill.Teacher(Net(), {"params": teacher_params})
        student = Net().apply({"params": student_params}, x)
        return distill.loss(student, teacher.logits(x), labels, weight=0.5, temperature=2.0)

    g_student, g_teacher = jax.grad(total, argnums=(0, 1))(
        student_vars["params"], teacher_vars["params"]
    )
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_teacher))
    assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(g_student))
