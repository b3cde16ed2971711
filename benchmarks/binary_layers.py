"""How fast is each exact arithmetic of a binary layer, against float32 and against the peaks?

    python -m benchmarks.binary_layers [--batch 1 --repeats 7 --models alexnet resnet18]
    python -m benchmarks.binary_layers --markdown   # the tables docs/export.md shows

For every binary-input layer of AlexNet, ResNet-18 and Sketch-A-Net under the fbin plan,
at their real shapes (224x224 and 225x225 inputs; layers of equal shape are timed once
and counted), times in one run on the same +-1 data:

- ``float32``: the float32 convolution of +-1 values - what the fake-quantized model runs;
- ``float32_matmul``: the same as im2col and a matrix product with the kernel stored
  (C_out, K); the float baseline of a layer is the faster of the two;
- ``int8``: ``binflax.packing.conv_int8``, an int8 convolution with int32 accumulation;
- ``int8_dot``: ``binflax.packing.conv_int8_dot``, im2col + one int8 matrix product;
- ``popcount_reference``: ``binflax.packing.conv_popcount``, XNOR + popcount per kernel
  tap on 32-bit words, padding masked in the graph (the export's popcount before);
- ``popcount``: ``binflax.packing.conv_xnor``, what ``arithmetic="auto"`` runs on a CPU
  (64-bit words, one im2col, padding folded into a base), its input packed beforehand as
  a producer with a packed link writes it;
- ``popcount_with_packing``: the same, thresholding and packing the float input inside
  the timed call, as a unit without a packed link does;
- ``native``: ``binflax.native.conv_xnor``, the C++ kernel behind ``jax.ffi`` on the same
  packed words (docs/native.md), when it builds on this machine, its weights laid out
  once beforehand for the path a loaded export's unit runs (``avx2_packed`` for a
  fully-connected layer on an AVX2 CPU), as ``binflax.export`` lays them out at load;
- ``popcount_2bit`` and ``native_2bit``: a 2-bit input on the same weights as the export
  runs it, two sign planes stacked in one call (docs/export.md, "Integer units"), summed
  by XLA after the popcount and inside the native call (``native_2bit_summed_after``:
  the native call's planes summed by XLA instead, the export's way before); each row's
  ``two_bit_over_one_bit`` is its time over the 1-bit twin's (target: at most 2.2x).

Each function is jit-compiled, checked to give the float32 result exactly (the 2-bit
ones that of the float32 convolution of the levels' odd integers), warmed up, and
timed as the median of ``--repeats`` interleaved calls. Per layer the JSON gives
milliseconds, speedups over the float baseline and the throughput of the float baseline
and the popcount in G MAC/s. ``--peaks`` adds the throughputs on one large, compute-bound
layer (a 3x3 conv, 28x28x512 -> 512): XLA's best float32 lowering against the popcount,
whose ratio is the measured limit of a binary layer's speedup here, which
docs/benchmarks.md compares with the instruction set's.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import output
from binflax import export, models, native, packing, provenance, tracing
from binflax.export import inference

LARGE_MACS = 100e6
FLOAT_BASELINES = ("float32", "float32_matmul")
TWO_BIT_TARGET = 2.2  # a 2-bit input layer's time over its 1-bit twin's, at most (issue 29)
# The 2-bit ratios each row reports: name -> (the 2-bit column, its 1-bit twin's column).
TWO_BIT_TWINS = {
    "native": ("native_2bit", "native"),
    "popcount": ("popcount_2bit", "popcount"),
    "native_summed_after": ("native_2bit_summed_after", "native"),
}


def layer_entry(model_name: str, info: tracing.LayerInfo) -> dict:
    """One traced layer of ``model_name`` as the benchmarks time it: its conv geometry."""
    g = inference.geometry_2d(info)
    return {
        "model": model_name,
        "name": info.name,
        "input_shape": tuple(info.input_shape[1:]),
        "kernel": tuple(info.kernel_shape),
        "strides": g.strides,
        "padding": g.padding,
        "output_shape": tuple(info.output_shape[1:]),
        "fully_connected": g.fully_connected,
    }


def binary_input_layers(name: str) -> list[dict]:
    """The binary-input layers of ``name`` under fbin, with their conv geometry."""
    model = models.create(name, plan="fbin")
    return [
        layer_entry(name, info)
        for info in tracing.trace_layers(model)
        if info.precision.binary_input
    ]


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


def time_interleaved(candidates: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each ``(jitted function, args)``, interleaved
    (:func:`binflax.export.time_calls`)."""
    calls = {key: functools.partial(fn, *args) for key, (fn, args) in candidates.items()}
    return export.time_calls(calls, repeats)


def time_layer(layer: dict, batch: int, repeats: int, rng: np.random.Generator) -> dict:
    kh, kw, cin, cout = layer["kernel"]
    strides, pads = layer["strides"], layer["padding"]
    x = np.where(rng.random((batch, *layer["input_shape"])) < 0.5, -1, 1).astype(np.int8)
    w = np.where(rng.random((kh, kw, cin, cout)) < 0.5, -1, 1).astype(np.int8)
    bits = packing.pack_signs(w.transpose(3, 0, 1, 2))  # OHWI, as the export stores it
    base = packing.xnor_base(bits, cin, layer["input_shape"][:2], strides, pads)
    kernel_words = packing.xnor_kernel(bits)
    word_type = np.uint64 if packing.packed_words(cin) % 2 == 0 else np.uint32

    def float32(x, w):
        return lax.conv_general_dilated(
            x, w, strides, pads, dimension_numbers=packing.DIMENSION_NUMBERS
        )

    def float32_matmul(x, w_matrix):
        patches = packing.im2col(x, (kh, kw), strides, pads)
        return lax.dot_general(patches, w_matrix, (((3,), (1,)), ((), ())))

    def popcount(x_words, kernel_words):
        return packing.conv_xnor(x_words, kernel_words, base, (kh, kw), strides, pads)

    def popcount_with_packing(x, kernel_words):
        return popcount(packing.pack_bits(x < 0, word_type), kernel_words)

    def popcount_reference(x_words, w_words):
        return packing.conv_popcount(x_words, w_words, cin, strides, pads)

    def native_kernel(x_words, kernel_words, laid):
        return native.conv_xnor(x_words, kernel_words, base, (kh, kw), strides, pads, laid=laid)

    def popcount_2bit(x_words, kernel_words):
        """A 2-bit input on the same binary weights, as the export runs it on XLA: its two
        sign planes stacked on the batch axis, their accumulators summed ``acc_0 + 2 acc_1``."""
        return packing.sum_bit_planes(popcount(x_words, kernel_words), 2)

    def native_2bit(x_words, kernel_words, laid):
        """The same on the native kernel, which sums the planes in the call."""
        return native.conv_xnor(
            x_words, kernel_words, base, (kh, kw), strides, pads, laid=laid, bits=2
        )

    def native_2bit_summed_after(x_words, kernel_words, laid):
        """The native kernel on both planes as a batch, summed by XLA after the call (the
        export's way before the call summed them): what summing in the call saves."""
        return packing.sum_bit_planes(native_kernel(x_words, kernel_words, laid), 2)

    # 2-bit levels i in [-2, 1] (the input 2 i + 1 in half steps), bit j of i + 2 a plane
    levels = rng.integers(-2, 2, (batch, *layer["input_shape"]))
    negative = np.concatenate([((levels + 2) >> j) & 1 == 0 for j in range(2)])
    x_float = x.astype(np.float32)
    with jax.enable_x64(True):
        candidates = {
            "float32": (float32, (x_float, w.astype(np.float32))),
            "float32_matmul": (float32_matmul, (x_float, w.reshape(-1, cout).T.astype(np.float32))),
            "int8": (lambda a, b: packing.conv_int8(a, b, strides, pads), (x, w)),
            "int8_dot": (lambda a, b: packing.conv_int8_dot(a, b, strides, pads), (x, w)),
            "popcount_reference": (popcount_reference,
                                   (packing.pack_signs(x), bits.transpose(1, 2, 3, 0))),
            "popcount": (popcount, (packing.pack_bits(jnp.asarray(x < 0), word_type),
                                    kernel_words)),
            "popcount_with_packing": (popcount_with_packing, (x_float, kernel_words)),
        }  # fmt: skip
        plane_words = (packing.pack_bits(jnp.asarray(negative), word_type), kernel_words)
        candidates["popcount_2bit"] = (popcount_2bit, plane_words)
        if native.available():
            # laid out once for the path a loaded export's unit runs (inference.prepare)
            isa = inference.native_layout(layer["fully_connected"])
            laid = native.layout_kernel(kernel_words, isa=isa)
            candidates["native"] = (native_kernel, (*candidates["popcount"][1], laid))
            candidates["native_2bit"] = (native_2bit, (*plane_words, laid))
            candidates["native_2bit_summed_after"] = (
                native_2bit_summed_after,
                (*plane_words, laid),
            )
        candidates = {
            key: (jax.jit(fn), jax.device_put(args)) for key, (fn, args) in candidates.items()
        }
        reference = np.rint(np.asarray(candidates["float32"][0](*candidates["float32"][1])))
        two_bit_reference = np.rint(
            np.asarray(jax.jit(float32)((2 * levels + 1).astype(np.float32), w.astype(np.float32)))
        )
        for key, (fn, args) in candidates.items():
            out = np.asarray(fn(*args))  # compile and warm up
            want = two_bit_reference if "_2bit" in key else reference
            if not np.array_equal(np.rint(out).astype(np.int64), want.astype(np.int64)):
                raise AssertionError(f"{layer['name']}: {key} differs from float32")
        ms = time_interleaved(candidates, repeats)
    out_h, out_w = layer["output_shape"][:2]
    macs = batch * out_h * out_w * kh * kw * cin * cout
    baseline = min(ms[k] for k in FLOAT_BASELINES)
    return {
        **layer_row(layer, strides, macs, ms),
        "speedup_vs_float32": {
            k: round(baseline / v, 3) for k, v in ms.items() if k not in FLOAT_BASELINES
        },
        "float32_gmacs": round(macs / baseline / 1e6, 1),
        "popcount_gmacs": round(macs / ms["popcount"] / 1e6, 1),
        "native_gmacs": round(macs / ms["native"] / 1e6, 1) if "native" in ms else None,
        # the time of a 2-bit input's planes over its 1-bit twin's, both on packed words
        "two_bit_over_one_bit": {
            name: round(ms[two_bit] / ms[one_bit], 3)
            for name, (two_bit, one_bit) in TWO_BIT_TWINS.items()
            if one_bit in ms
        },
    }


PEAK_LAYER = {
    "model": "peak",
    "name": "3x3 conv, 28x28x512 -> 512",
    "input_shape": (28, 28, 512),
    "kernel": (3, 3, 512, 512),
    "strides": (1, 1),
    "padding": ((1, 1), (1, 1)),
    "output_shape": (28, 28, 512),
    "fully_connected": False,
    "same_shape": [],
}


def layer_row(layer: dict, strides, macs: int, ms: dict[str, float]) -> dict:
    """The fields every per-layer benchmark reports: the layer, its MACs, each candidate's ms."""
    return {
        "model": layer["model"],
        "name": layer["name"],
        "same_shape": layer["same_shape"],
        "input_shape": list(layer["input_shape"]),
        "kernel": list(layer["kernel"]),
        "strides": list(strides),
        "macs": macs,
        "ms": {k: round(v, 3) for k, v in ms.items()},
    }


def measure_peaks(batch: int, repeats: int) -> dict:
    """Throughputs on a layer large enough to be compute-bound (1.85 G MACs per image, the
    popcount kernel's 288 KiB of words fit L2): XLA's best float32 lowering against the
    popcount. Their ratio is the measured limit of a binary layer's speedup here."""
    row = time_layer(PEAK_LAYER, batch, repeats, np.random.default_rng(0))
    return {
        "layer": PEAK_LAYER["name"],
        "float32_gmacs": row["float32_gmacs"],
        "popcount_gmacs": row["popcount_gmacs"],
        "ratio": round(row["popcount_gmacs"] / row["float32_gmacs"], 2),
    }


def geometric_means(rows: list[dict]) -> dict:
    if not rows:
        return {}
    keys = rows[0]["speedup_vs_float32"]
    return {
        k: round(statistics.geometric_mean(r["speedup_vs_float32"][k] for r in rows), 3)
        for k in keys
    }


def cpu_model() -> str:
    name, _, flags = provenance.cpuinfo()  # the reader each provenance.json records
    return f"{name} ({' '.join(output.simd_flags(flags))})"


@dataclasses.dataclass(frozen=True)
class BinaryMacLimit:
    """The most a core can gain on a binary MAC over a float32 MAC, from its instruction
    set: peak XNOR-popcount binary MACs per cycle over peak float32 FMA MACs per cycle
    (docs/benchmarks.md derives each)."""

    isa: str
    binary_macs_per_cycle: float
    float_macs_per_cycle: float

    @property
    def speedup(self) -> float:
        return self.binary_macs_per_cycle / self.float_macs_per_cycle

    def binary_gmacs(self, cores: int, ghz: float) -> float:
        """The ceiling in G binary MAC/s for ``cores`` cores at ``ghz``."""
        return self.binary_macs_per_cycle * cores * ghz


# AVX2 on Zen 3: the vector stream of binflax.native's kernel, 2 vpxor + 2 vpshufb +
# 2 vpaddb per 256 binary MACs on 4 pipes (~171 per cycle), plus scalar xor + popcnt + add
# per 64 on the ~2 dispatch slots per cycle it leaves (~+40), against two 8-lane FMA pipes.
AVX2_LIMIT = BinaryMacLimit("AVX2", 210.0, 16.0)
# AVX-512 VPOPCNTDQ on Zen 4: 512-bit ops run as two 256-bit halves, so vpxorq + vpopcntq
# + vpaddq are 6 uops per 512 binary MACs on 4 vector pipes (vpopcntq on 2 of them):
# ~1.5 cycles, ~341 per cycle; the scalar popcnt on the 2 dispatch slots left, ~+43. The two
# 256-bit FMA pipes still give 16 float32 MACs per cycle.
ZEN4_LIMIT = BinaryMacLimit("AVX-512 VPOPCNTDQ (256-bit datapaths)", 512 / 1.5 + 128 / 3, 16.0)
# AVX-512 VPOPCNTDQ with 512-bit datapaths (Ice Lake and later Intel server cores): one
# vpopcntq per cycle, against two 16-lane FMA pipes (the vector stream only).
AVX512_LIMIT = BinaryMacLimit("AVX-512 VPOPCNTDQ", 512.0, 32.0)


def binary_mac_limit() -> BinaryMacLimit:
    """The limit for this machine's CPU; CPUs without AVX2 get AVX2's (an upper bound)."""
    _, vendor, flags = provenance.cpuinfo()
    if "avx512_vpopcntdq" in flags:
        return ZEN4_LIMIT if vendor == "AuthenticAMD" else AVX512_LIMIT
    return AVX2_LIMIT


def markdown(result: dict) -> str:
    keys = list(result["layers"][0]["speedup_vs_float32"])
    lines = [
        "| layer | x | MACs (M) | float32 ms (G MAC/s) | "
        + " | ".join(f"{k} ms (speedup)" for k in keys)
        + " | popcount G MAC/s | native G MAC/s |",
        "|---|---:|---:|---:|" + "---:|" * (len(keys) + 2),
    ]
    for r in result["layers"]:
        cells = [f"{r['ms'][k]:.2f} ({r['speedup_vs_float32'][k]:.2f}x)" for k in keys]
        baseline = min(r["ms"][k] for k in FLOAT_BASELINES)
        lines.append(
            f"| {r['model']} {r['name']} | {len(r['same_shape'])} | {r['macs'] / 1e6:.0f} | "
            f"{baseline:.2f} ({r['float32_gmacs']:.0f}) | "
            + " | ".join(cells)
            + f" | {r['popcount_gmacs']:.0f} | "
            + (f"{r['native_gmacs']:.0f} |" if r["native_gmacs"] is not None else "- |")
        )
    for label, means in result["geomean_speedup_vs_float32"].items():
        if not means:
            continue
        lines.append(
            f"| geometric mean, {label} | | | | "
            + " | ".join(f"{means[k]:.2f}x" for k in keys)
            + " | | |"
        )
    for k, ratios in result["two_bit_over_one_bit"].items():
        lines.append(
            f"\n2-bit input over its 1-bit twin ({k}, target <= {TWO_BIT_TARGET}x): max "
            f"{ratios['max']:.2f}x ({ratios['slowest']}), geometric mean {ratios['geomean']:.2f}x."
        )
    if "peaks" in result:
        peaks = result["peaks"]
        lines.append(
            f"\nPeaks ({peaks['layer']}): float32 {peaks['float32_gmacs']:.0f} G MAC/s, "
            f"popcount {peaks['popcount_gmacs']:.0f} G MAC/s: ratio {peaks['ratio']:.1f}x."
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    """Every layer of ``args.models`` timed, with the geometric means (and the peaks)."""
    rng = np.random.default_rng(0)
    rows = []
    for name in args.models:
        for layer in unique_shapes(binary_input_layers(name)):
            rows.append(time_layer(layer, args.batch, args.repeats, rng))
    large = [r for r in rows if r["macs"] >= LARGE_MACS * args.batch]
    result = {
        "benchmark": "binary_layers",
        "device": jax.devices()[0].device_kind,
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        # the path native.conv_xnor runs (BINFLAX_NATIVE_ISA forces one), None without it
        "native_isa": native.isa() if native.available() else None,
        "batch": args.batch,
        "repeats": args.repeats,
        "layers": rows,
        "geomean_speedup_vs_float32": {
            f"large_layers (>= {LARGE_MACS / 1e6:.0f} M MACs per image, n={len(large)})": (
                geometric_means(large)
            ),
            f"all_layers (n={len(rows)})": geometric_means(rows),
        },
    }
    result["two_bit_over_one_bit"] = two_bit_ratios(rows)
    if args.peaks:
        result["peaks"] = measure_peaks(args.batch, args.repeats)
    return result


def two_bit_ratios(rows: list[dict]) -> dict:
    """Per packed arithmetic, the largest and the geometric mean over the layers of a
    2-bit input's time over its 1-bit twin's, and the layer of the largest."""
    out = {}
    for k in rows[0]["two_bit_over_one_bit"] if rows else ():
        ratios = {f"{r['model']} {r['name']}": r["two_bit_over_one_bit"][k] for r in rows}
        slowest = max(ratios, key=ratios.get)
        out[k] = {
            "max": ratios[slowest],
            "slowest": slowest,
            "geomean": round(statistics.geometric_mean(ratios.values()), 3),
            "met": ratios[slowest] <= TWO_BIT_TARGET,
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "resnet18", "sketchanet"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--peaks", action="store_true", help="also measure the peaks")
    parser.add_argument("--markdown", action="store_true")
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))
    output.write("binary_layers", result, args.out)


if __name__ == "__main__":
    main()
