"""Training speed on one accelerator at the paper's sizes: each plan in float32 and bfloat16.

    python -m benchmarks.accelerator [--models alexnet,resnet18,sketchanet] [--batch N]
    python -m benchmarks.accelerator --small     # CPU-sized, so that CI runs it

Times binflax's real train step (``binflax.train.train_step``, compiled: the
loss, its gradient, Adam and the binary-kernel projection) of AlexNet 224, ResNet-18 224
and Sketch-A-Net 225 for the plans float, wbin, fbin and the authors' first hybrid, each
computing in float32 and in bfloat16 (``config.half_precision``), on synthetic batches
already on the device: the figure is the accelerator's, not the input pipeline's. The
four plans of one dtype are resident together and timed interleaved, so their ratios
(fbin/float, hybrid/float) share the same conditions; the two dtypes are timed one after
the other. ``--batch`` defaults to the config's per-device batch (its global batch over
this host's devices). Binarization is simulated in float arithmetic while training, so
the plans cost about the same MACs; the ratios measure the overhead of binarizing.

For every plan and dtype it prints: step time and images per second; the model FLOPs
utilisation (MFU: 6 x MACs x batch per step, over the device's peak dense bfloat16
FLOP/s, for both dtypes; null where the peak is not in :data:`PEAK_BF16_FLOPS`); the
FLOPs XLA counts in the compiled step; the step's memory from XLA's compiled memory
analysis (arguments + outputs + temporaries - donated); and how many host cores the
input pipeline needs to keep up (images per second over the pipeline's per-core rate,
measured on this host in the same run, ``benchmarks/input_pipeline.py``). The device's
own peak memory (``memory_stats``, where the backend reports it) is printed once: it is
a maximum over the whole run.

``--small`` runs a CPU-sized stand-in, the quickstart's MiniSketchANet at 16x16, with
few steps (``--small --models resnet18,mini_sketchanet`` adds ResNet-18 at 32x32, minutes
more on a CPU); AlexNet and Sketch-A-Net exist only at their full input sizes (their
fc6/conv6 kernels cover the whole feature map).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Sequence
from types import ModuleType

import jax
import ml_collections
import numpy as np

from benchmarks import output
from benchmarks.binary_layers import cpu_model
from binflax import cost, models, networks, paper, train
from binflax.plan import Plan
from configs import alexnet, quickstart, resnet18, sketchanet_tuberlin

PLANS = ("float", "wbin", "fbin", "hybrid")
DTYPES = {"float32": False, "bfloat16": True}  # name -> config.half_precision

# model -> (config module, input pipeline kind); the hybrid is the authors' Hybrid1.
FULL = {
    "alexnet": (alexnet, "imagenet"),
    "resnet18": (resnet18, "imagenet"),
    "sketchanet": (sketchanet_tuberlin, "sketch"),
}
# --small: CPU-sized stand-ins -> (config module, pipeline kind, image size, batch)
SMALL = {
    "resnet18": (resnet18, "imagenet", 32, 2),
    "mini_sketchanet": (quickstart, "sketch", 16, 8),
}
SMALL_DEFAULT = ("mini_sketchanet",)  # what --small runs unless --models says more (CI time)
# the layers the quickstart's selection keeps float (docs/reproduction.md)
MINI_HYBRID = ("conv4", "conv5")

# Peak dense bfloat16 FLOP/s of one JAX device, by a substring of ``device_kind``, first
# match wins. Vendors' figures without sparsity: Cloud TPU system-architecture pages
# (per chip; a v2/v3 JAX device is one of a chip's two TensorCores) and NVIDIA's data
# sheets (SXM boards unless named).
PEAK_BF16_FLOPS = (
    ("TPU v2", 22.5e12),
    ("TPU v3", 61.5e12),
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5", 459e12),
    ("TPU v6 lite", 918e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("B200", 2250e12),
)


def peak_bf16_flops(device_kind: str) -> float | None:
    """The device's peak dense bfloat16 FLOP/s, or None when it is not in the table."""
    return next((peak for name, peak in PEAK_BF16_FLOPS if name in device_kind), None)


def model_config(module: ModuleType, size: int | None) -> ml_collections.ConfigDict:
    config = module.get_config()
    if size is not None:
        config.image_size = size
    return config


def hybrid_float_inputs(model: str) -> tuple[str, ...]:
    if model == "mini_sketchanet":
        return MINI_HYBRID
    return paper.AUTHORS_HYBRIDS[model][0].float_inputs


def build(config: ml_collections.ConfigDict, plan: str, half: bool, image_shape, batch: int):
    """A train state, a device-resident batch and the compiled step for one variant."""
    config = copy.deepcopy(config)
    config.half_precision = half
    if plan == "hybrid":
        plan = Plan.hybrid(
            models.layer_names(networks.build_model(config, config.num_classes, "fbin")),
            hybrid_float_inputs(config.model),
            binarize_last_weights=config.binarize_last_weights,
        )
    model = networks.build_model(config, config.num_classes, plan)
    state = train.init_state(config, model, image_shape, steps_per_epoch=1000)
    rng = np.random.default_rng(0)
    data = jax.device_put(
        {
            "image": rng.normal(size=(batch, *image_shape)).astype(np.float32),
            "label": rng.integers(0, config.num_classes, batch).astype(np.int32),
        }
    )
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = train.train_step.lower(state, data, key).compile()
    compile_seconds = time.perf_counter() - start
    return model, state, data, compiled, compile_seconds


def xla_flops(compiled) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, Sequence):  # older JAX: one dict per program
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None


def compiled_memory_bytes(compiled) -> int | None:
    """What the step holds at once by XLA's static analysis (donated state counted once)."""
    memory = compiled.memory_analysis()
    if memory is None:
        return None
    return int(
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
        + memory.temp_size_in_bytes
    )


def run_steps(compiled, state, data, steps: int):
    key = jax.random.key(0)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, data, key)
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - start) / steps, state


def bench_dtype(
    config: ml_collections.ConfigDict,
    half: bool,
    image_shape: tuple[int, int, int],
    batch: int,
    steps: int,
    repeats: int,
    peak: float | None,
    pipeline_per_core: float | None,
) -> dict:
    """The four plans in one dtype, resident together and timed interleaved."""
    built = {plan: build(config, plan, half, image_shape, batch) for plan in PLANS}
    states = {}
    for plan, (_, state, data, compiled, _) in built.items():
        _, states[plan] = run_steps(compiled, state, data, 1)  # warm-up
    samples = {plan: [] for plan in PLANS}
    for _ in range(repeats):  # interleaved, so drift hits every plan alike
        for plan in PLANS:
            _, _, data, compiled, _ = built[plan]
            seconds, states[plan] = run_steps(compiled, states[plan], data, steps)
            samples[plan].append(seconds)
    out = {}
    for plan in PLANS:
        model, _, _, compiled, compile_seconds = built[plan]
        step = statistics.median(samples[plan])
        macs = cost.totals(cost.layer_costs(model, image_shape))["macs"]
        model_flops = 6.0 * macs * batch  # forward 2 x MACs, backward twice that
        rate = batch / step
        out[plan] = {
            "step_seconds": step,
            "images_per_second": rate,
            "compile_seconds": compile_seconds,
            "model_flops_per_step": model_flops,
            "xla_flops_per_step": xla_flops(compiled),
            "mfu": model_flops / step / peak if peak else None,
            "compiled_memory_bytes": compiled_memory_bytes(compiled),
            "host_cores_needed": rate / pipeline_per_core if pipeline_per_core else None,
        }
    out["fbin_over_float"] = out["fbin"]["step_seconds"] / out["float"]["step_seconds"]
    out["hybrid_over_float"] = out["hybrid"]["step_seconds"] / out["float"]["step_seconds"]
    return out


def bench_model(
    name: str,
    module: ModuleType,
    kind: str,
    size: int | None,
    batch: int | None,
    args: argparse.Namespace,
    peak: float | None,
    pipeline: dict,
) -> dict:
    config = model_config(module, size)
    image_shape = (config.image_size, config.image_size, config.channels)
    batch = batch or max(1, config.batch_size // jax.device_count())
    result = {
        "model": name,
        "config": module.__name__,
        "input_shape": list(image_shape),
        "batch": batch,
        "hybrid_float_inputs": list(hybrid_float_inputs(config.model)),
        "pipeline": kind,
    }
    per_core = pipeline[kind]["images_per_sec_per_core"] if pipeline else None
    for dtype, half in DTYPES.items():
        result[dtype] = bench_dtype(
            config, half, image_shape, batch, args.steps, args.repeats, peak, per_core
        )
    result["bfloat16_speedup"] = {
        plan: result["float32"][plan]["step_seconds"] / result["bfloat16"][plan]["step_seconds"]
        for plan in PLANS
    }
    return result


def device_peak_bytes(device: jax.Device) -> int | None:
    """The device's peak memory in use so far, where the backend reports it."""
    stats = device.memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def host_description() -> str:
    """The host's CPU (model and SIMD flags, as benchmarks/binary_layers.py reports it) and
    the cores this process may use."""
    return f"{cpu_model()}, {output.host_cores()} cores"


def run(args: argparse.Namespace, table: dict, names: list[str]) -> dict:
    """Every model of ``names`` (rows of ``table``) on the first device, and the host's
    input pipeline per core."""
    images = args.pipeline_images
    device = jax.devices()[0]
    peak = peak_bf16_flops(device.device_kind)
    pipeline = {}  # 0 images: not measured, and neither TFDS nor TensorFlow imported
    if images:
        from benchmarks import input_pipeline

        pipeline = input_pipeline.per_core_rates(images, repeats=2, trials=1 if args.small else 3)
    results = []
    for name in names:
        module, kind, size, batch = table[name]
        results.append(
            bench_model(name, module, kind, size, args.batch or batch, args, peak, pipeline)
        )
    report = {
        "benchmark": "accelerator",
        "small": args.small,
        "device": {
            "platform": device.platform,
            "kind": device.device_kind,
            "count": jax.device_count(),
            "peak_bf16_flops": peak,
            "peak_bytes_in_use": device_peak_bytes(device),
        },
        "host": host_description(),
        "jax": jax.__version__,
        "pipeline": pipeline,
        "results": results,
    }
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized stand-ins (CI)")
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    parser.add_argument("--batch", type=int, default=None, help="default: per-device batch")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed sample")
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per plan")
    parser.add_argument(
        "--pipeline_images",
        type=int,
        default=None,
        help="images per input-pipeline timing (0: skip it, and TensorFlow with it)",
    )
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    table = SMALL if args.small else {k: (*v, None, None) for k, v in FULL.items()}
    names = args.models.split(",") if args.models else list(SMALL_DEFAULT if args.small else table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {sorted(table)}")
    args.steps = args.steps or (2 if args.small else 10)
    args.repeats = args.repeats or (2 if args.small else 5)
    if args.pipeline_images is None:
        args.pipeline_images = 4 if args.small else 32
    report = run(args, table, names)
    print(json.dumps(report, indent=1))
    output.write("accelerator", report, args.out)
    return report


if __name__ == "__main__":
    main()
