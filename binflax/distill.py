"""Distillation from a float teacher: the loss, and the teacher a run trains against.

Why: since ReActNet (Liu et al., ECCV 2020) a binary network is trained against its
float counterpart's output distribution, not only the labels; Real-to-Binary (Martinez et
al., ICLR 2020) and Larq Zoo's recipes do the same. With ``config.distill.weight = w``
and ``config.distill.temperature = T`` the loss is Hinton et al.'s

    (1 - w) * CE(labels, student) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))

and ReActNet's distributional loss is ``w = 1, T = 1``. The teacher is the float variant
the hbn pipeline trains first (``teacher = "float"``, its checkpoint chosen on the
holdout) or the workdir of a float run. It runs inside the jitted train step, in
inference mode, with no gradient and no optimizer state, replicated over the mesh like
the student's parameters.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

FLOAT_TEACHER = "float"


@struct.dataclass
class Teacher:
    """A trained float network (static) and its variables (``params`` and
    ``batch_stats``): a pytree, so the jitted train step takes it as an argument."""

    model: nn.Module = struct.field(pytree_node=False)
    variables: Any = None

    def logits(self, images: jax.Array) -> jax.Array:
        """The teacher's float32 logits, as a constant of the student's gradient."""
        logits = self.model.apply(jax.lax.stop_gradient(self.variables), images, train=False)
        return jax.lax.stop_gradient(logits.astype(jnp.float32))


def loss(
    student: jax.Array,
    teacher: jax.Array,
    labels: jax.Array,
    *,
    weight: float,
    temperature: float,
) -> jax.Array:
    """The mean over the batch of ``(1 - w) CE + w T^2 KL(teacher || student)`` at
    temperature ``T``, from float32 logits."""
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(student, labels)
    if weight == 0:
        return cross_entropy.mean()
    t = temperature
    target = jax.nn.softmax(teacher / t)
    kl = jnp.sum(target * (jax.nn.log_softmax(teacher / t) - jax.nn.log_softmax(student / t)), -1)
    return ((1 - weight) * cross_entropy + weight * t**2 * kl).mean()
