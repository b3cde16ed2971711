"""How many input bits should run as bit planes? k-bit inputs on binary weights, timed.

    python -m benchmarks.bit_planes [--models alexnet resnet18 --repeats 7 --out]

A k-bit input on binary (XNOR) weights runs in the export either as ``k`` sign planes on
the native XNOR kernel, summed inside the call (``binflax.native.conv_xnor(...,
bits=k)``), or, for an 8-bit input, as the native int8 kernel on the levels and the
weights' +-1 codes (``2 conv(i, w) + correction``, ``binflax.native.conv_int8``);
``binflax.export.arithmetic.max_planes`` is where the export switches from the first to
the second (4 bits for a convolution, 8 for a fully-connected layer). For every
binary-input layer of AlexNet, ResNet-18 and Sketch-A-Net at its real shape, batch 1,
on random levels, timed in one run, interleaved:

- ``planes_1``, ``planes_2``, ``planes_4``, ``planes_8``: the native XNOR kernel on 1, 2,
  4 and 8 planes, the weights laid out once beforehand (as an exported model's are);
- ``int8_8bit``: the native int8 kernel on the 8-bit levels and the +-1 codes, its
  weights laid out once beforehand, with the export's ``2 acc + correction``;
- ``float32``: XLA's float32 convolution of the same input, the float layer's cost.

Each is jit-compiled and checked equal to the float32 convolution of the odd integers
``2 i + 1`` (exactly), warmed up and timed as the median of ``--repeats`` interleaved
calls. Prints JSON: per layer the milliseconds, each plane count's time over one plane's,
8 planes over the int8 route, and the geometric means.
"""

from __future__ import annotations

import argparse
import json
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import output
from benchmarks.binary_layers import binary_input_layers, time_interleaved, unique_shapes
from benchmarks.native_kernel import cpu
from binflax import native, packing
from binflax.export import inference

PLANES = (1, 2, 4, 8)


def time_layer(layer: dict, repeats: int, rng: np.random.Generator) -> dict:
    """One layer's candidates, checked exact, then timed interleaved."""
    kh, kw, cin, cout = layer["kernel"]
    strides, pads = layer["strides"], layer["padding"]
    shape = (1, *layer["input_shape"])
    w = np.where(rng.random((kh, kw, cin, cout)) < 0.5, -1, 1).astype(np.int8)
    bits = packing.pack_signs(w.transpose(3, 0, 1, 2))  # OHWI, as the export stores it
    base = packing.xnor_base(bits, cin, layer["input_shape"][:2], strides, pads)
    kernel_words = packing.xnor_kernel(bits)
    word_type = np.uint64 if packing.packed_words(cin) % 2 == 0 else np.uint32
    laid = native.layout_kernel(kernel_words, isa=inference.native_layout(layer["fully_connected"]))
    int8_laid = native.layout_int8_kernel(w)
    # the kernel summed over the taps inside the map, per output pixel: a level i stands
    # for 2 i + 1 and a padded tap for nothing (inference.level_accumulator)
    ones = jnp.ones(shape, jnp.float32)
    dims = packing.DIMENSION_NUMBERS
    correction = lax.conv_general_dilated(ones, w.astype(np.float32), strides, pads,
                                          dimension_numbers=dims).astype(jnp.int32)  # fmt: skip

    def float32(x, kernel):
        return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=dims)

    def planes(k):
        def call(x_words, kernel, lay):
            return native.conv_xnor(x_words, kernel, base, (kh, kw), strides, pads,
                                    laid=lay, bits=k)  # fmt: skip

        return call

    def int8_8bit(levels, kernel, lay):
        return 2 * native.conv_int8(levels, kernel, strides, pads, laid=lay) + correction

    candidates, references = {}, {}
    with jax.enable_x64(True):
        for k in PLANES:
            levels = rng.integers(-(2 ** (k - 1)), 2 ** (k - 1), shape)
            unsigned = levels + 2 ** (k - 1)
            negative = np.concatenate([(unsigned >> j) & 1 == 0 for j in range(k)])
            words = packing.pack_bits(jnp.asarray(negative), word_type)
            candidates[f"planes_{k}"] = (planes(k), (words, kernel_words, laid))
            odd = (2 * levels + 1).astype(np.float32)
            references[f"planes_{k}"] = odd
            if k == 8:
                candidates["int8_8bit"] = (int8_8bit, (levels.astype(np.int8), w, int8_laid))
                references["int8_8bit"] = odd
                candidates["float32"] = (float32, (odd, w.astype(np.float32)))
                references["float32"] = odd
        candidates = {
            k: (jax.jit(fn), jax.device_put(args)) for k, (fn, args) in candidates.items()
        }
        reference_conv = jax.jit(float32)
        for key, (fn, args) in candidates.items():
            want = np.rint(np.asarray(reference_conv(references[key], w.astype(np.float32))))
            out = np.rint(np.asarray(fn(*args)))  # compile and warm up
            if not np.array_equal(out.astype(np.int64), want.astype(np.int64)):
                raise AssertionError(f"{layer['model']} {layer['name']}: {key} is not exact")
        ms = time_interleaved(candidates, repeats)
    return {
        "model": layer["model"],
        "name": layer["name"],
        "input_shape": list(layer["input_shape"]),
        "kernel": list(layer["kernel"]),
        "strides": list(strides),
        "fully_connected": layer["fully_connected"],
        "ms": {k: round(v, 4) for k, v in ms.items()},
        "over_one_plane": {k: round(ms[f"planes_{k}"] / ms["planes_1"], 3) for k in PLANES},
        "planes_8_over_int8": round(ms["planes_8"] / ms["int8_8bit"], 3),
        "planes_4_over_int8": round(ms["planes_4"] / ms["int8_8bit"], 3),
    }


def geometric_mean(values: list[float]) -> float:
    return round(statistics.geometric_mean(values), 3)


def run(args: argparse.Namespace) -> dict:
    if not native.available():
        raise SystemExit("the native kernel is unavailable (see the warning above)")
    rng = np.random.default_rng(0)
    rows = [
        time_layer(layer, args.repeats, rng)
        for name in args.models
        for layer in unique_shapes(binary_input_layers(name))
    ]
    return {
        "benchmark": "bit_planes",
        "cpu": cpu(),
        "native_isa": native.isa(),
        "native_int8_isa": native.int8_isa(),
        "jax": jax.__version__,
        "batch": 1,
        "repeats": args.repeats,
        "layers": rows,
        "geomean_over_one_plane": {
            k: geometric_mean([r["over_one_plane"][k] for r in rows]) for k in PLANES
        },
        "geomean_planes_8_over_int8": geometric_mean([r["planes_8_over_int8"] for r in rows]),
        "geomean_planes_4_over_int8": geometric_mean([r["planes_4_over_int8"] for r in rows]),
        "layers_where_8_planes_beat_int8": sum(r["planes_8_over_int8"] < 1 for r in rows),
        # arithmetic.max_planes' two cases: convolutions and fully-connected layers
        "planes_8_over_int8_by_kind": {
            kind: {
                "layers": len(ratios),
                "min": min(ratios),
                "max": max(ratios),
                "geomean": geometric_mean(ratios),
                "under_1x": sum(r < 1 for r in ratios),
            }
            for kind, dense in (("convolutions", False), ("fully_connected", True))
            if (ratios := [r["planes_8_over_int8"] for r in rows if r["fully_connected"] == dense])
        },
    }


def markdown(result: dict) -> str:
    keys = [f"planes_{k}" for k in PLANES] + ["int8_8bit", "float32"]
    lines = [
        "| layer | " + " | ".join(f"{k} ms" for k in keys) + " | 8 planes / int8 |",
        "|---|" + "---:|" * (len(keys) + 1),
    ]
    for r in result["layers"]:
        cells = " | ".join(f"{r['ms'][k]:.3f}" for k in keys)
        lines.append(f"| {r['model']} {r['name']} | {cells} | {r['planes_8_over_int8']:.2f}x |")
    means = result["geomean_over_one_plane"]
    lines += [
        "",
        "Over one plane (geometric means): "
        + ", ".join(f"{k} planes {v:.2f}x" for k, v in means.items())
        + f". 8 planes over the int8 route: {result['geomean_planes_8_over_int8']:.2f}x "
        f"(faster on {result['layers_where_8_planes_beat_int8']} of {len(result['layers'])} "
        f"layers); 4 planes over it: {result['geomean_planes_4_over_int8']:.2f}x.",
    ]
    for kind, s in result["planes_8_over_int8_by_kind"].items():
        lines.append(
            f"8 planes over the int8 route, {kind} (n={s['layers']}): {s['min']:.2f}-"
            f"{s['max']:.2f}x, geometric mean {s['geomean']:.2f}x, {s['under_1x']} under 1x."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "resnet18", "sketchanet"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))
    output.write("bit_planes", result, args.out)


if __name__ == "__main__":
    main()
