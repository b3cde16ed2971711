"""Is the exact integer path of a binary layer faster than the float32 conv it replaces?

    python benchmarks/binary_layers.py [--batch 1 --repeats 7 --models alexnet resnet18]
    python benchmarks/binary_layers.py --markdown   # the table docs/export.md shows

For every binary-input layer of AlexNet and ResNet-18 under the fbin plan, at their real
shapes (224x224 inputs; ResNet-18's layers of equal shape are timed once and counted),
times in one run on the same +-1 data:

- ``float32``: the float32 convolution of +-1 values - what the fake-quantized model runs;
- ``int8``: ``binflax.packing.conv_int8``, an int8 convolution with int32 accumulation -
  what ``binflax.export.integer_forward`` runs by default;
- ``int8_dot``: ``binflax.packing.conv_int8_dot``, im2col + one int8 matrix product;
- ``popcount``: ``binflax.packing.conv_popcount``, XNOR + population count on packed
  uint32 words (the reference), its input packed beforehand, as an engine whose
  previous layer writes bits would have it;
- ``popcount_with_packing``: the same, packing the int8 signs inside the timed call.

Each function is jit-compiled, checked to give the float32 result exactly, warmed up,
and timed as the median of ``--repeats`` interleaved calls. The JSON gives milliseconds
and the speedups over float32 per layer, and their geometric means over the large
layers (>= 100 M MACs) and over all layers. Kernels are HWIO, the layout XLA's CPU
convolutions take directly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from binflax import models, packing
from binflax.layers import HBNConv

LARGE_MACS = 100e6


def binary_input_layers(name: str) -> list[dict]:
    """The binary-input units of ``name`` under fbin, with their conv geometry."""
    model = models.create(name, plan="fbin")
    found = []

    def record(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, HBNConv) and context.method_name == "__call__":
            out = next_fun(*args, **kwargs)
            if module.precision.binary_input:
                kh, kw = module.kernel_size
                x = args[0]
                found.append(
                    {
                        "model": name,
                        "name": "/".join(module.scope.path),
                        "input_shape": tuple(x.shape[1:]),
                        "kernel": (kh, kw, x.shape[-1], module.features),
                        "strides": tuple(module.strides),
                        "padding": packing.explicit_padding(
                            x.shape[1:3], module.kernel_size, module.strides, module.padding
                        ),
                        "output_shape": tuple(out.shape[1:]),
                    }
                )
            return out
        return next_fun(*args, **kwargs)

    shape = model.default_input_shape
    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape))))
    return found


def unique_shapes(layers: list[dict]) -> list[dict]:
    """One entry per distinct geometry, listing the layers that share it."""
    groups: dict[tuple, dict] = {}
    for layer in layers:
        key = (layer["input_shape"], layer["kernel"], layer["strides"], layer["padding"])
        if key in groups:
            groups[key]["same_shape"].append(layer["name"])
        else:
            groups[key] = {**layer, "same_shape": [layer["name"]]}
    return list(groups.values())


def time_layer(layer: dict, batch: int, repeats: int, rng: np.random.Generator) -> dict:
    kh, kw, cin, cout = layer["kernel"]
    strides, pads = layer["strides"], layer["padding"]
    x = np.where(rng.random((batch, *layer["input_shape"])) < 0.5, -1, 1).astype(np.int8)
    w = np.where(rng.random((kh, kw, cin, cout)) < 0.5, -1, 1).astype(np.int8)

    def float32(x, w):
        return lax.conv_general_dilated(
            x, w, strides, pads, dimension_numbers=packing.DIMENSION_NUMBERS
        )

    def popcount(x_words, w_words):
        return packing.conv_popcount(x_words, w_words, cin, strides, pads)

    def popcount_with_packing(x, w_words):
        return popcount(packing.pack_signs(x), w_words)

    w_words = packing.pack_signs(w.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    candidates = {
        "float32": (jax.jit(float32), (x.astype(np.float32), w.astype(np.float32))),
        "int8": (jax.jit(lambda a, b: packing.conv_int8(a, b, strides, pads)), (x, w)),
        "int8_dot": (jax.jit(lambda a, b: packing.conv_int8_dot(a, b, strides, pads)), (x, w)),
        "popcount": (jax.jit(popcount), (packing.pack_signs(x), w_words)),
        "popcount_with_packing": (jax.jit(popcount_with_packing), (x, w_words)),
    }
    args = {k: jax.device_put(a) for k, (_, a) in candidates.items()}
    reference = None
    for key, (fn, _) in candidates.items():
        out = np.asarray(fn(*args[key]))  # compile and warm up
        reference = out if reference is None else reference
        if not np.array_equal(out.astype(np.int64), reference.astype(np.int64)):
            raise AssertionError(f"{layer['name']}: {key} differs from float32")
    times = {key: [] for key in candidates}
    for _ in range(repeats):
        for key, (fn, _) in candidates.items():
            start = time.perf_counter()
            fn(*args[key]).block_until_ready()
            times[key].append(time.perf_counter() - start)
    ms = {key: 1e3 * statistics.median(t) for key, t in times.items()}
    out_h, out_w = layer["output_shape"][:2]
    return {
        "model": layer["model"],
        "name": layer["name"],
        "same_shape": layer["same_shape"],
        "input_shape": list(layer["input_shape"]),
        "kernel": list(layer["kernel"]),
        "strides": list(strides),
        "macs": out_h * out_w * kh * kw * cin * cout,
        "ms": {k: round(v, 3) for k, v in ms.items()},
        "speedup_vs_float32": {
            k: round(ms["float32"] / v, 3) for k, v in ms.items() if k != "float32"
        },
    }


def geometric_means(rows: list[dict]) -> dict:
    if not rows:
        return {}
    keys = rows[0]["speedup_vs_float32"]
    return {
        k: round(math.exp(statistics.fmean(math.log(r["speedup_vs_float32"][k]) for r in rows)), 3)
        for k in keys
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return platform.processor()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    simd = sorted(f for f in flags if f.startswith(("avx", "sse4")) or f in ("popcnt",))
    return f"{names[0] if names else platform.processor()} ({' '.join(simd)})"


def markdown(result: dict) -> str:
    keys = list(result["layers"][0]["speedup_vs_float32"])
    lines = [
        "| layer | x | MACs (M) | float32 ms | "
        + " | ".join(f"{k} ms (speedup)" for k in keys)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(keys),
    ]
    for r in result["layers"]:
        cells = [f"{r['ms'][k]:.2f} ({r['speedup_vs_float32'][k]:.2f}x)" for k in keys]
        lines.append(
            f"| {r['model']} {r['name']} | {len(r['same_shape'])} | {r['macs'] / 1e6:.0f} | "
            f"{r['ms']['float32']:.2f} | " + " | ".join(cells) + " |"
        )
    for label, means in result["geomean_speedup_vs_float32"].items():
        lines.append(
            f"| geometric mean, {label} | | | | "
            + " | ".join(f"{means[k]:.2f}x" for k in keys)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "resnet18"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rows = []
    for name in args.models:
        for layer in unique_shapes(binary_input_layers(name)):
            rows.append(time_layer(layer, args.batch, args.repeats, rng))
    large = [r for r in rows if r["macs"] >= LARGE_MACS]
    result = {
        "benchmark": "binary_layers",
        "device": jax.devices()[0].device_kind,
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "batch": args.batch,
        "repeats": args.repeats,
        "layers": rows,
        "geomean_speedup_vs_float32": {
            f"large_layers (>= {LARGE_MACS / 1e6:.0f} M MACs, n={len(large)})": geometric_means(
                large
            ),
            f"all_layers (n={len(rows)})": geometric_means(rows),
        },
    }
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
