"""What does binarization cost the training step? float vs fbin vs hybrid vs reactnet, one run.

    python -m benchmarks.train_step [--models resnet18,sketchanet --batch 16 --repeats 5]

Times binflax's real train step (``binflax.train.train_step`` under ``jax.jit``, with
Adam and the binary-kernel projection) for the float, fbin and hybrid plans of each
model, interleaved in one process on the same batch, and prints JSON with the ratios
fbin/float and hybrid/float (target on the CPU: <= 1.25). The hybrid keeps float inputs
for the layers the paper's selection picks on each network's shape (Sketch-A-Net:
conv6, conv7; ResNet-18: the last stage's convs). Binarization is simulated in float
arithmetic during training, so the ratio measures its overhead (sign, alpha, the extra
batch norm), not XNOR speed: see benchmarks/binary_layers.py for that.

Two rows measure today's recipe (``config.recipe="reactnet"``, binflax.recipe_presets) on
the fbin plan: ``reactnet`` (RSign, approx_sign, RPReLU, Bi-Real shortcuts where the
model has a block) and ``reactnet_distill`` (the same step with the float teacher's
forward pass and the distillation loss inside it), so distillation's own cost is
``reactnet_distill / reactnet``. Two stages cost no step time: they split the steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import output
from binflax import distill, models, networks, train
from binflax.plan import Plan
from configs import default

HYBRID_FLOAT_INPUTS = {
    "sketchanet": ("conv6", "conv7"),
    "resnet18": ("layer4_1/conv1", "layer4_1/conv2"),
    "alexnet": ("fc6", "fc7"),
    "mini_sketchanet": ("conv4", "conv5"),
}
NUM_CLASSES = {"sketchanet": 250, "resnet18": 1000, "alexnet": 1000, "mini_sketchanet": 10}


def make_state(model_name: str, plan, image_shape, batch: int, recipe: str = "xnor"):
    config = default.base()
    config.model = model_name
    config.plan = "float"
    config.recipe = recipe
    model = networks.build_model(config, NUM_CLASSES[model_name], plan)
    state = train.init_state(config, model, image_shape, steps_per_epoch=100)
    rng = np.random.default_rng(0)
    data = {
        "image": jnp.asarray(rng.normal(size=(batch, *image_shape)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, NUM_CLASSES[model_name], batch), jnp.int32),
    }
    return state, data


def time_steps(state, data, steps: int, distillation: dict) -> tuple[float, object]:
    key = jax.random.key(0)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = train.train_step(state, data, key, **distillation)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / steps, state


def float_model(name: str):
    config = default.base()
    config.model = name
    return networks.build_model(config, NUM_CLASSES[name], "float")


def bench_model(name: str, size: int | None, batch: int, steps: int, repeats: int) -> dict:
    model_cls = models.MODELS[name]
    h, w, c = model_cls.default_input_shape
    image_shape = (size, size, c) if size else (h, w, c)
    names = models.layer_names(model_cls(num_classes=NUM_CLASSES[name]))
    plans = {  # variant: (plan, recipe, distills)
        "float": ("float", "xnor", False),
        "fbin": ("fbin", "xnor", False),
        "hybrid": (Plan.hybrid(names, HYBRID_FLOAT_INPUTS[name]), "xnor", False),
        "reactnet": ("fbin", "reactnet", False),
        "reactnet_distill": ("fbin", "reactnet", True),
    }
    states, compile_s, distillation = {}, {}, {}
    for variant, (plan, recipe, distills) in plans.items():
        state, data = make_state(name, plan, image_shape, batch, recipe)
        distillation[variant] = {}
        if distills:  # the float variant's model and (freshly initialised) variables
            float_state = states["float"][0]
            teacher_variables = jax.tree.map(  # copies: the float row's steps donate its state
                lambda a: jnp.array(a, copy=True),
                float_state.variables,
            )
            distillation[variant] = {
                "teacher": distill.Teacher(float_model(name), teacher_variables),
                "distill_weight": 1.0,
                "temperature": 1.0,
            }
        start = time.perf_counter()
        _, state = time_steps(state, data, 1, distillation[variant])  # compile + first step
        compile_s[variant] = time.perf_counter() - start
        states[variant] = (state, data)
    samples = {variant: [] for variant in plans}
    for _ in range(repeats):  # interleaved, so drift hits every variant alike
        for variant in plans:
            state, data = states[variant]
            seconds, state = time_steps(state, data, steps, distillation[variant])
            states[variant] = (state, data)
            samples[variant].append(seconds)
    step_s = {v: statistics.median(s) for v, s in samples.items()}
    return {
        "model": name,
        "input_shape": list(image_shape),
        "batch": batch,
        "step_seconds": step_s,
        "images_per_second": {v: batch / s for v, s in step_s.items()},
        "first_call_seconds": compile_s,
        "fbin_over_float": step_s["fbin"] / step_s["float"],
        "hybrid_over_float": step_s["hybrid"] / step_s["float"],
        "reactnet_over_float": step_s["reactnet"] / step_s["float"],
        "reactnet_distill_over_float": step_s["reactnet_distill"] / step_s["float"],
        "distillation_overhead": step_s["reactnet_distill"] / step_s["reactnet"],
        "hybrid_float_inputs": list(HYBRID_FLOAT_INPUTS[name]),
    }


def run(args: argparse.Namespace) -> dict:
    """The steps of every model of ``args.models``, interleaved per model."""
    results = [
        bench_model(name, args.size, args.batch, args.steps, args.repeats)
        for name in args.models.split(",")
    ]
    return {
        "benchmark": "train_step",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "devices": [str(d) for d in jax.devices()],
        },
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,sketchanet")
    parser.add_argument("--size", type=int, default=None, help="square input size override")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed sample")
    parser.add_argument("--repeats", type=int, default=5)
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    output.write("train_step", result, args.out)


if __name__ == "__main__":
    main()
