"""How much does a selection pass cost next to plain inference over the same batches?

    python -m benchmarks.select_pass [--model resnet18 --size 64 --batch 32 --batches 8]

Times, in one run and on the same device-resident batches, (a) the whole selection
pass - ``binflax.select.measure`` over N batches plus ``binflax.select.solve`` - and
(b) N plain jit-compiled forward passes of the same fbin model (an evaluation loop that
sums logits), and prints JSON with their ratio (target: <= 1.5). Both are warmed up
first, so compilation is excluded from the ratio; the cold first calls are reported
separately (``first_call_s``, ``forward_compile_s``). Each figure is the median of
``--repeats`` interleaved runs. The weights are random (shaped by
``jax.eval_shape(model.init, ...)``): timing does not depend on training, and compiling
``init`` itself takes long on a CPU.
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
from binflax import models, select
from binflax.testing import random_variables


def run(args: argparse.Namespace) -> dict:
    """The selection pass against as many forward passes, medians of ``args.repeats``."""
    model = models.create(args.model, plan="fbin", num_classes=args.classes)
    shape = (args.size, args.size, args.channels)
    variables = random_variables(model, shape)
    rng = np.random.default_rng(1)
    batches = [
        jnp.asarray(rng.standard_normal((args.batch, *shape), np.float32))
        for _ in range(args.batches)
    ]
    jax.block_until_ready(batches)

    # The baseline is an evaluation loop: each step reduces its logits into a running
    # sum, so steps run one after the other as measure's accumulating steps do.
    def eval_step(acc, v, x):
        return acc + jnp.sum(model.apply(v, x, train=False), axis=0)

    zeros = jnp.zeros(args.classes, jnp.float32)
    t0 = time.perf_counter()
    compiled = jax.jit(eval_step).lower(zeros, variables, batches[0]).compile()
    forward_compile = time.perf_counter() - t0

    def forward_pass():
        acc = zeros
        for x in batches:
            acc = compiled(acc, variables, x)
        jax.device_get(acc)

    def measure():
        return select.measure(model, variables, batches)

    def solve(m):
        return select.solve(
            m.errors,
            m.macs,
            total_macs=m.total_macs,
            fixed_macs=m.fixed_macs,
            budget=args.budget,
            method=args.method,
        )

    def selection_pass():
        return solve(measure())

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    first = {"forward": timed(forward_pass), "selection": timed(selection_pass)}
    measurement = measure()
    times = {"forward": [], "selection": [], "measure": [], "solve": []}
    for _ in range(args.repeats):
        times["forward"].append(timed(forward_pass))
        times["selection"].append(timed(selection_pass))
        times["measure"].append(timed(measure))
        times["solve"].append(timed(lambda: solve(measurement)))
    med = {k: statistics.median(v) for k, v in times.items()}
    chosen = solve(measurement)
    return {
        "benchmark": "select_pass",
        "device": f"{jax.devices()[0].platform} x{jax.device_count()} "
        f"({platform.processor() or platform.machine()})",
        "model": args.model,
        "input": list(shape),
        "batch": args.batch,
        "batches": args.batches,
        "repeats": args.repeats,
        "forward_s": round(med["forward"], 4),
        "selection_s": round(med["selection"], 4),
        "measure_s": round(med["measure"], 4),
        "solve_s": round(med["solve"], 4),
        "ratio": round(med["selection"] / med["forward"], 3),
        "target_ratio": 1.5,
        "forward_compile_s": round(forward_compile, 2),
        # cold first calls: forward after its AOT compile; selection including
        # layer tracing and the compiles of measure's step and solve's kernel
        "first_call_s": {k: round(v, 2) for k, v in first.items()},
        "float_layers": list(chosen),
        "all_times_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=1.1)
    parser.add_argument("--method", default="greedy")
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    output.write("select_pass", result, args.out)


if __name__ == "__main__":
    main()
