"""How fast is an 8-bit layer as integers: the native int8 kernel against XLA's convolutions?

    python -m benchmarks.int8_layers [--batches 1 8 --repeats 21 --isa avx2 --out]

An exported integer unit (quantized input, 8-bit weights) needs ``conv(i, w)`` of int8
levels and int8 codes with exact int32 sums (binflax.export.inference.level_accumulator).
For the first layers of AlexNet, ResNet-18 and Sketch-A-Net, a few middle layers and two
fully-connected ones (as 1x1 convolutions of a 1x1 map), on random int8 data, timed in
one run, interleaved:

- ``native``: ``binflax.native.conv_int8`` with the weights laid out once beforehand
  (``native.layout_int8_kernel``, what an exported model does when it is loaded), on the
  path ``--isa`` names (default: the CPU's best);
- ``float32``: XLA's float32 convolution of the same integers, what ``"exact_float"``
  runs (exact below 2**24);
- ``int8``: XLA's int8 convolution with int32 accumulation (``packing.conv_int8``).

All three are jit-compiled and checked equal (the accumulators, exactly), warmed up and
timed as the median of ``--repeats`` interleaved calls. Prints JSON: per layer and batch
the milliseconds, G MAC/s, native's speedups over both, and the machine (CPU, the path,
the load average before and after: a shared machine's neighbours show in the figures).
"""

from __future__ import annotations

import argparse
import json
import math
import os

import jax
import numpy as np
from jax import lax

from benchmarks import output
from benchmarks.binary_layers import time_interleaved
from benchmarks.native_kernel import cpu
from binflax import native, packing

# name: (input H, W, C_in), (kh, kw, C_out), strides, padding
LAYERS = {
    "alexnet_conv1": ((224, 224, 3), (11, 11, 64), (4, 4), "SAME"),
    "resnet18_conv1": ((224, 224, 3), (7, 7, 64), (2, 2), "SAME"),
    "sketchanet_conv1": ((225, 225, 1), (15, 15, 64), (3, 3), "VALID"),
    "resnet18_layer1_3x3": ((56, 56, 64), (3, 3, 64), (1, 1), "SAME"),
    "mid_28x28_64": ((28, 28, 64), (3, 3, 64), (1, 1), "SAME"),
    "alexnet_conv2_5x5": ((27, 27, 64), (5, 5, 192), (1, 1), "SAME"),
    "resnet18_layer3_3x3": ((14, 14, 256), (3, 3, 256), (1, 1), "SAME"),
    "resnet18_layer4_3x3": ((7, 7, 512), (3, 3, 512), (1, 1), "SAME"),
    "fc_4096": ((1, 1, 4096), (1, 1, 4096), (1, 1), "VALID"),
    "fc_512_to_10": ((1, 1, 512), (1, 1, 10), (1, 1), "VALID"),
}
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni")


def cpu_flags() -> set[str]:
    """/proc/cpuinfo's flags (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return set()


def time_layer(name: str, batch: int, repeats: int, isa: str | None) -> dict:
    (h, w, cin), (kh, kw, cout), strides, padding = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (batch, h, w, cin)).astype(np.int8)
    kernel = rng.integers(-127, 128, (kh, kw, cin, cout)).astype(np.int8)
    laid = native.layout_int8_kernel(kernel, isa=isa)
    dims = packing.DIMENSION_NUMBERS

    def native_conv(a, k, lay):
        return native.conv_int8(a, k, strides, padding, laid=lay, isa=isa)

    def float32(a, k):
        return lax.conv_general_dilated(a, k, strides, padding, dimension_numbers=dims)

    def int8(a, k):
        return packing.conv_int8(a, k, strides, padding)

    candidates = {
        "native": (jax.jit(native_conv), (x, kernel, laid)),
        "float32": (jax.jit(float32), (x.astype(np.float32), kernel.astype(np.float32))),
        "int8": (jax.jit(int8), (x, kernel)),
    }
    outputs = {key: np.asarray(fn(*args)) for key, (fn, args) in candidates.items()}
    if not (
        np.array_equal(outputs["native"], outputs["int8"])
        and np.array_equal(outputs["native"], outputs["float32"].astype(np.int32))
    ):
        raise AssertionError(f"{name}: the accumulators differ")
    ms = time_interleaved(candidates, repeats)
    out_h, out_w = outputs["native"].shape[1:3]
    macs = batch * out_h * out_w * kh * kw * cin * cout
    return {
        "layer": name,
        "batch": batch,
        "input": [h, w, cin],
        "kernel": [kh, kw, cin, cout],
        "strides": list(strides),
        "padding": padding,
        "macs": macs,
        "ms": {k: round(v, 3) for k, v in ms.items()},
        "gmacs": {k: round(macs / v / 1e6, 1) for k, v in ms.items()},
        "native_over_float32": round(ms["float32"] / ms["native"], 3),
        "native_over_int8": round(ms["int8"] / ms["native"], 3),
    }


def run(args: argparse.Namespace) -> dict:
    if not native.available():
        raise SystemExit("the native kernel is unavailable (see the warning above)")
    load_before = os.getloadavg()
    rows = [
        time_layer(name, batch, args.repeats, args.isa)
        for batch in args.batches
        for name in args.layers
    ]
    machine = cpu()
    machine["flags"] = [f for f in CPU_FLAGS if f in cpu_flags()]
    return {
        "machine": {
            **machine,
            "int8_isa": native.int8_isa(args.isa),
            "jax": jax.__version__,
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "repeats": args.repeats,
        "layers": rows,
        **{
            f"geomean_{key}_batch{batch}": round(
                math.exp(
                    sum(math.log(r[key]) for r in rows if r["batch"] == batch)
                    / sum(r["batch"] == batch for r in rows)
                ),
                3,
            )
            for key in ("native_over_float32", "native_over_int8")
            for batch in args.batches
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--isa", choices=sorted(native.INT8_ISAS), help="force the int8 path")
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    report = run(args)
    print(json.dumps(report, indent=1))
    output.write("int8_layers", report, args.out)


if __name__ == "__main__":
    main()
