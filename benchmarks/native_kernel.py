"""How fast is the native XNOR kernel against XLA's popcount, on the networks' binary layers?

    python -m benchmarks.native_kernel [--batch 1 --repeats 31 --all --isa avx2]
    python -m benchmarks.native_kernel --layers fc6 fc7 fc8 conv6 conv7 fc \
        --laid-isas avx2_packed --no-per-call

For the binary-input layers of AlexNet, ResNet-18 and Sketch-A-Net under the fbin plan
(the large ones, >= 100 M MACs per image, unless ``--all``; layers of equal shape once)
and a compute-bound 3x3 conv (28x28x512 -> 512), times in one run on the same +-1 data:

- ``xla``: ``binflax.packing.conv_xnor``, the popcount ``arithmetic="auto"`` runs today;
- ``native``: ``binflax.native.conv_xnor`` on the path ``--isa`` names (default: the best
  this CPU has), laying the kernel matrix out in every call (as before the layout at load,
  and as a program forced to another path does);
- ``native_laid``: the same with the kernel laid out once beforehand
  (``native.layout_kernel``, what ``prepare`` does when an exported model is loaded), so
  a call is the patches' layout and the arithmetic;
- ``native_laid_<path>`` for each path of ``--laid-isas`` (e.g. ``avx2_packed``): the
  kernel laid out for that path and the call forced to it, in the same interleaved run.

``--no-per-call`` leaves ``native`` out. ``--layers`` may also name the fully-connected
last layers the plans keep on float inputs (AlexNet's ``fc8``, ResNet-18's ``fc``, the
edge rule), timed as if they were XNOR layers (``"edge": true`` in their rows).

Both are jit-compiled, checked equal (the accumulators, exactly), warmed up and timed as
the median of ``--repeats`` interleaved calls. Prints JSON: per layer the milliseconds,
G binary MAC/s and native/XLA speedups, their geometric means over the layers, and the
machine (CPU model and flags, the path, the load average before and after, since a shared
machine's neighbours show in the figures).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import output
from benchmarks.binary_layers import (
    LARGE_MACS,
    PEAK_LAYER,
    binary_input_layers,
    layer_entry,
    layer_row,
    time_interleaved,
    unique_shapes,
)
from binflax import models, native, packing, tracing

MODELS = ("alexnet", "resnet18", "sketchanet")
FLAGS = ("avx2", "avx512f", "avx512_vpopcntdq")


def cpu() -> dict:
    """The CPU's model name and the flags that choose the kernel's path."""
    model, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "flags": [f for f in FLAGS if f in flags], "cores": os.cpu_count()}


def time_layer(
    layer: dict,
    batch: int,
    repeats: int,
    isa: str | None,
    laid_isas: tuple[str, ...] = (),
    per_call: bool = True,
) -> dict:
    kh, kw, cin, cout = layer["kernel"]
    strides, pads = layer["strides"], layer["padding"]
    rng = np.random.default_rng(0)
    x = np.where(rng.random((batch, *layer["input_shape"])) < 0.5, -1, 1).astype(np.int8)
    w = np.where(rng.random((kh, kw, cin, cout)) < 0.5, -1, 1).astype(np.int8)
    bits = packing.pack_signs(w.transpose(3, 0, 1, 2))  # OHWI, as the export stores it
    base = packing.xnor_base(bits, cin, layer["input_shape"][:2], strides, pads)
    geometry = ((kh, kw), tuple(strides), pads)
    with jax.enable_x64(True):
        kernel = jnp.asarray(packing.xnor_kernel(bits))
        x_words = packing.pack_bits(jnp.asarray(x < 0), packing.xnor_word_type(kernel, cin))
        laid = jnp.asarray(native.layout_kernel(np.asarray(kernel), isa=isa))

        def laid_call(path):
            return lambda a, k, lay: native.conv_xnor(a, k, base, *geometry, isa=path, laid=lay)

        functions = {
            "xla": lambda a, k, _: packing.conv_xnor(a, k, base, *geometry),
            "native": lambda a, k, _: native.conv_xnor(a, k, base, *geometry, isa=isa),
            "native_laid": laid_call(isa),
        }
        if not per_call:
            del functions["native"]
        candidates = {key: (jax.jit(fn), (x_words, kernel, laid)) for key, fn in functions.items()}
        for path in laid_isas:
            path_laid = jnp.asarray(native.layout_kernel(np.asarray(kernel), isa=path))
            candidates[f"native_laid_{path}"] = (
                jax.jit(laid_call(path)),
                (x_words, kernel, path_laid),
            )
        outputs = [np.asarray(fn(*args)) for fn, args in candidates.values()]
        if not all(np.array_equal(outputs[0], o) for o in outputs[1:]):
            raise AssertionError(f"{layer['name']}: native differs from conv_xnor")
        ms = time_interleaved(candidates, repeats)
    out_h, out_w = outputs[0].shape[1:3]
    macs = batch * out_h * out_w * kh * kw * cin * cout
    return {
        **layer_row(layer, strides, macs, ms),
        **({"edge": True} if layer.get("edge") else {}),
        "gmacs": {k: round(macs / v / 1e6, 1) for k, v in ms.items()},
        **{f"{k}_over_xla": round(ms["xla"] / v, 3) for k, v in ms.items() if k != "xla"},
    }


def edge_dense_layers(name: str) -> list[dict]:
    """The fully-connected layers of ``name`` under fbin whose input is not binary (the
    last layer, by the edge rule), in :func:`binary_input_layers`' form, marked ``edge``."""
    model = models.create(name, plan="fbin")
    entries = [
        layer_entry(name, info)
        for info in tracing.trace_layers(model)
        if not info.precision.binary_input
    ]
    return [
        {**entry, "same_shape": [entry["name"]], "edge": True}
        for entry in entries
        if entry["fully_connected"]
    ]


def layers(models: list[str], everything: bool, only: list[str] | None = None) -> list[dict]:
    """The networks' distinct binary-input layers (the large ones unless ``everything``;
    only those named in ``only``, without the peak layer, where given)."""
    found = []
    for name in models:
        if only is not None:
            found += [layer for layer in edge_dense_layers(name) if layer["name"] in only]
        for layer in unique_shapes(binary_input_layers(name)):
            kh, kw, cin, cout = layer["kernel"]
            out_h, out_w = layer["output_shape"][:2]
            if only is not None:
                if layer["name"] in only:
                    found.append(layer)
            elif everything or out_h * out_w * kh * kw * cin * cout >= LARGE_MACS:
                found.append(layer)
    return found if only is not None else [*found, PEAK_LAYER]


def run(args: argparse.Namespace) -> dict:
    """The kernel against XLA's popcount on each layer of ``args.models``."""
    if not native.available():
        raise SystemExit("the native kernel is unavailable (see the warning above)")
    load_before = os.getloadavg()
    laid_isas = tuple(args.laid_isas or ())
    rows = [
        time_layer(layer, args.batch, args.repeats, args.isa, laid_isas, not args.no_per_call)
        for layer in layers(args.models, args.all, args.layers)
    ]
    network_rows = [row for row in rows if row["model"] != "peak"]
    report = {
        "machine": {
            **cpu(),
            "native_isa": native.isa(args.isa),
            "jax": jax.__version__,
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "batch": args.batch,
        "repeats": args.repeats,
        "layers": rows,
        **{
            f"geomean_{key}": round(
                math.exp(sum(math.log(r[key]) for r in network_rows) / len(network_rows)), 3
            )
            for key in network_rows[0]
            if key.endswith("_over_xla")
        },
    }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--all", action="store_true", help="every binary layer, not only large")
    parser.add_argument("--isa", choices=sorted(native.ISAS), help="force the native path")
    parser.add_argument("--layers", nargs="+", help="only these layers (e.g. fc6 fc7), by name")
    parser.add_argument(
        "--laid-isas",
        nargs="+",
        choices=sorted(native.ISAS),
        help="also time the kernel laid out for (and forced to) each of these paths",
    )
    parser.add_argument("--no-per-call", action="store_true", help="leave the per-call layout out")
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    report = run(args)
    print(json.dumps(report, indent=1))
    output.write("native_kernel", report, args.out)


if __name__ == "__main__":
    main()
