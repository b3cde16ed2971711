"""Is the exported network really faster? float vs wbin vs the paper's hybrids vs fbin, end to end.

    python -m benchmarks.inference             # JSON: AlexNet 224, ResNet-18 224, Sketch-A-Net 225
    python -m benchmarks.inference --markdown  # the table docs/benchmarks.md shows
    python -m benchmarks.inference --small     # CI-sized: MiniSketchANet at 16x16, batch 1

For each network, in one process: the float32 model and its wbin, hybrid (the paper's
layer sets, docs/method.md section 10) and fbin variants with random weights and batch
norms, each exported to an ``.npz`` file, loaded back and run whole by
``binflax.export.integer_forward`` with packed activations between binary layers, three
ways: ``arithmetic="auto"`` (the default: binflax's native kernel on every XNOR layer,
the fully-connected ones on its packed AVX2 layout where the CPU's path is AVX2; before
that layout, XLA's popcount on them), ``"native"`` and
``"popcount"`` (XLA's) on every XNOR layer; without the native kernel, ``auto`` and
``popcount`` only. The float32 baseline is the faster of ``jax.jit(model.apply)`` with the
variables on the device and the float model's own export (batch norm folded,
fully-connected layers and small maps as matrix products):
``binflax.export.latency.float_calls``. Every variant of a network and both float runs
are timed interleaved, median of ``--repeats`` rounds, at each batch size.

Per variant and batch the JSON gives milliseconds, the speedup over the float32 baseline,
the speedup the paper's equivalent FLOPs predict (binary-input, binary-weight MACs at
1/58: ``binflax.cost``) and the fraction of it achieved, the same with binary MACs at
1/``binary_mac_limit().speedup`` - the most this CPU's instruction set can gain on a
binary MAC (13.1x with AVX2 on Zen 3, 24x with Zen 4's AVX-512 VPOPCNTDQ; docs/benchmarks.md), so
the best this network can do here if its float layers ran at float32 speed - and the
export's file size. Then the fbin network layer by layer (:func:`profile`): each
planned layer alone as its program runs it, on the kernel and on XLA's popcount, in G MAC/s
against this CPU's ceiling (:func:`benchmarks.binary_layers.binary_mac_limit` per cycle,
times the cores, times the clock measured in the same run by :mod:`benchmarks.clock`),
and the targets set for the native kernel (:data:`TARGETS`), met or missed, with the
layer that holds each back. The weights' values do not change any time measured here (no
arithmetic skips zeros), but random batch norms give the packed links realistic
thresholds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile

import jax
import numpy as np

from benchmarks import output
from benchmarks.binary_layers import binary_mac_limit, cpu_model
from benchmarks.clock import measure_ghz
from binflax import cost, export, models, native, packing
from binflax.export import chain, inference
from binflax.plan import Plan
from binflax.testing import random_variables


@dataclasses.dataclass(frozen=True)
class Network:
    input_shape: tuple[int, int, int]
    num_classes: int
    binarize_last_weights: bool  # the paper's setting for its wbin, hybrids and fbin
    hybrids: dict[str, tuple[str, ...]]  # float-input layers besides the first and last


# The paper's hybrids (docs/method.md section 10). ResNet-18's Hybrid1 and Hybrid2 also keep
# the three downsampling shortcuts float; ResNet-18 binarizes its classifier's weights.
RESNET_DOWNSAMPLES = ("layer2_0/downsample", "layer3_0/downsample", "layer4_0/downsample")
NETWORKS = {
    "alexnet": Network(
        (224, 224, 3), 1000, False, {"hybrid1": ("fc6", "fc7"), "hybrid2": ("fc7",)}
    ),
    "resnet18": Network(
        (224, 224, 3),
        1000,
        True,
        {
            "hybrid1": (
                *(
                    f"{block}/{conv}"
                    for block in ("layer3_1", "layer4_0", "layer4_1")
                    for conv in ("conv1", "conv2")
                ),  # fmt: skip
                *RESNET_DOWNSAMPLES,
            ),
            "hybrid2": ("layer4_1/conv1", "layer4_1/conv2", *RESNET_DOWNSAMPLES),
        },
    ),
    "sketchanet": Network(
        (225, 225, 1), 250, False, {"hybrid1": ("conv6", "conv7"), "hybrid2": ("conv7",)}
    ),
}
SMALL = {
    "mini_sketchanet": Network(
        (16, 16, 1), 10, False, {"hybrid1": ("conv4", "conv5"), "hybrid2": ("conv5",)}
    )
}


def variant_plans(name: str, network: Network) -> dict[str, Plan]:
    names = models.layer_names(models.create(name, num_classes=network.num_classes))
    last = network.binarize_last_weights
    plans = {"wbin": Plan.preset("wbin", names, binarize_last_weights=last)}
    for hybrid, float_inputs in network.hybrids.items():
        plans[hybrid] = Plan.hybrid(names, float_inputs, binarize_last_weights=last)
    plans["fbin"] = Plan.preset("fbin", names, binarize_last_weights=last)
    plans["fbin8"] = Plan.preset("fbin8", names, binarize_last_weights=last)
    return plans


# The targets set for the native kernel: whole networks at batch 1 against the fastest
# float32 lowering, and what makes a binary layer "large" for the per-layer ones (>= 100 M
# MACs per image).
TARGETS = {"alexnet": 5.0, "resnet18": 5.0, "sketchanet": 4.5}
# fbin with an 8-bit first layer (the fbin8 preset), by instruction set (issue 29).
TARGETS_FBIN8 = {
    "avx512": {"alexnet": 6.0, "resnet18": 5.0, "sketchanet": 5.0},
    "avx2": {"alexnet": 5.0, "resnet18": 4.5, "sketchanet": 4.5},
}
# The variants profiled layer by layer.
PROFILED = ("fbin", "fbin8")
LARGE_MACS = 100e6
LARGE_CEILING_FRACTION = 0.5
LARGE_NATIVE_OVER_XLA = 1.4


def arithmetics() -> list[str]:
    """The packed XNOR arithmetics compared: the native kernel where it builds, and XLA's."""
    return ["native", "popcount"] if native.available() else ["popcount"]


def network_arithmetics() -> list[str]:
    """What whole networks run with: the default ``auto`` (each XNOR layer by
    ``binflax.export.arithmetic``'s rule: the kernel where it builds, else XLA's
    popcount) and each of
    :func:`arithmetics` forced."""
    return ["auto", *arithmetics()]


def measure_network(
    name: str,
    network: Network,
    batches: list[int],
    repeats: int,
    directory: str,
    ceiling: dict,
) -> tuple[list[dict], list[dict]]:
    """Rows for one network (the two float32 runs, every variant with each packed
    arithmetic, at every batch) and the per-layer profile of its fbin variant."""
    shape = network.input_shape
    float_model = models.create(name, plan="float", num_classes=network.num_classes)
    float_variables = random_variables(float_model, shape)
    macs = cost.totals(cost.layer_costs(float_model, shape))["macs"]
    variants = {}
    for variant, plan in variant_plans(name, network).items():
        model = models.create(name, plan=plan, num_classes=network.num_classes)
        path = os.path.join(directory, f"{name}_{variant}.npz")
        report = export.export_model(model, random_variables(model, shape), path, input_shape=shape)
        eq_flops = cost.totals(cost.layer_costs(model, shape))["eq_flops"]
        limit_factor = binary_mac_limit().speedup
        limit = cost.totals(cost.layer_costs(model, shape, speedup=limit_factor))["eq_flops"]
        variants[variant] = {
            "exported": export.load(path),
            "file_bytes": report["file_bytes"],
            "program_bytes": report["program_bytes"],
            "float_inputs": [
                n for n in plan.float_inputs if n not in (plan.names[0], plan.names[-1])
            ],
            "eq_flops": eq_flops,
            "predicted_speedup": macs / eq_flops,
            "limit_speedup": macs / limit,
            "links": len(chain.find_links(model, shape)),
        }
    rows, profiles = [], []
    for batch in batches:
        images = jax.device_put(
            np.random.default_rng(batch).standard_normal((batch, *shape), np.float32)
        )
        calls = export.float_calls(float_model, float_variables, images, directory)
        float_file = os.path.join(directory, "float.npz")
        float_info = {
            "file_bytes": os.path.getsize(float_file),
            "program_bytes": export.load(float_file).program_bytes,
            "float_inputs": [],
            "eq_flops": macs,
            "predicted_speedup": 1.0,
            "limit_speedup": 1.0,
            "links": 0,
        }
        runs = {run: (run, "float32", float_info) for run in calls}
        for variant, info in variants.items():
            for arithmetic in network_arithmetics():
                key = f"{variant} [{arithmetic}]"
                calls[key] = lambda e=info["exported"], x=images, a=arithmetic: (
                    export.integer_forward(e, x, arithmetic=a)
                )
                runs[key] = (variant, arithmetic, info)
        ms = export.time_calls(calls, repeats)
        baseline = min(ms["float (model.apply)"], ms["float (exported)"])
        for key, (variant, arithmetic, info) in runs.items():
            speedup = baseline / ms[key]
            rows.append(
                {
                    "model": name,
                    "variant": variant,
                    "arithmetic": arithmetic,
                    "batch": batch,
                    "ms": round(ms[key], 3),
                    "speedup": round(speedup, 3),
                    "predicted_speedup": round(info["predicted_speedup"], 3),
                    "fraction_of_prediction": round(speedup / info["predicted_speedup"], 3),
                    "limit_speedup": round(info["limit_speedup"], 3),
                    "fraction_of_limit": round(speedup / info["limit_speedup"], 3),
                    "file_bytes": info["file_bytes"],
                    "program_bytes": info["program_bytes"],
                    "eq_flops": info["eq_flops"],
                    "float_inputs": info["float_inputs"],
                    "packed_links": info["links"],
                }
            )
        for variant in PROFILED:
            whole = {a: ms[f"{variant} [{a}]"] for a in network_arithmetics()}
            exported = variants[variant]["exported"]
            profiles.append(
                {"variant": variant}
                | profile(name, exported, batch, repeats, ceiling, whole, baseline)
            )
    return rows, profiles


def layer_call(exported, name: str, arithmetic: str, batch: int, prepared: dict):
    """A call of one planned layer of ``exported`` as its ``arithmetic`` program runs it:
    from packed words where a producer writes them, to packed words where it writes its
    consumers' (then its float output is never computed), else to its float output."""
    plan = exported.variant(f"{arithmetic}_chain")
    info = {i.name: i for i in exported.layers}[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *info.input_shape[1:])).astype(np.float32)
    outgoing, words = {}, None
    for link in plan.links:
        if link.producer == name:
            outgoing[link] = packing.xnor_word_type(
                prepared[link.consumer]["kernel_words"][0], info.kernel_shape[-1]
            )
        if link.consumer == name:
            cin = info.kernel_shape[-2]
            word_type = packing.xnor_word_type(prepared[name]["kernel_words"][0], cin)
            count = packing.packed_words(cin) // (2 if word_type == np.uint64 else 1)
            words = rng.integers(
                0, np.iinfo(word_type).max, (batch, *info.input_shape[1:3], count), word_type,
                endpoint=True,
            )  # fmt: skip

    def forward(arrays, x, words):
        y, packed = inference.run_layer(info, arrays, x, plan.computation(name), words, outgoing)
        return packed or y

    with jax.enable_x64(True):
        jitted = jax.jit(forward)
        arrays, x, words = jax.device_put((prepared[name], x, words))

    def call():
        with jax.enable_x64(True):
            return jitted(arrays, x, words)

    return call


def profile(
    name: str,
    exported,
    batch: int,
    repeats: int,
    ceiling: dict,
    whole_ms: dict[str, float],
    baseline_ms: float,
) -> dict:
    """The fbin network's layers timed alone, every packed arithmetic interleaved: where
    the time goes (``share``: of the layers' sum), each layer's G MAC/s against this
    CPU's ceiling, and ``rest_ms``, the whole network minus its layers: the pools, ReLUs
    and shortcuts, less what a layer alone costs more than inside the network (its
    operands cold in cache, its own thread wake-up), so it can be negative. Each layer's
    time is net of an empty jitted call's (``dispatch_ms``)."""
    calls, macs = {}, {}
    for arithmetic in arithmetics():
        with jax.enable_x64(True):
            prepared = inference.prepare(
                exported.layers, exported.layer_arrays(), exported.variant(f"{arithmetic}_chain")
            )
        for info in exported.layers:
            calls[(info.name, arithmetic)] = layer_call(
                exported, info.name, arithmetic, batch, prepared
            )
            macs[info.name] = cost.layer_cost(info).macs
    # What one jitted call costs with nothing in it, subtracted from every layer's time:
    # inside the network the layers share one dispatch.
    nothing = jax.jit(lambda x: x + 1)
    one = jax.device_put(np.zeros(8, np.float32))
    calls["dispatch"] = lambda: nothing(one)
    ms = export.time_calls(calls, repeats)
    dispatch = ms.pop("dispatch")
    ms = {key: max(t - dispatch, 1e-4) for key, t in ms.items()}
    totals = {a: sum(ms[(info.name, a)] for info in exported.layers) for a in arithmetics()}
    layers = []
    for info in exported.layers:
        xnor = info.precision.xnor
        # an integer layer's own ceiling is not derived: held to float32's
        peak = ceiling["binary_gmacs"] if xnor else ceiling["float_gmacs"]
        kind = inference.layer_kind(info)
        row = {
            "layer": info.name,
            "kind": "float input" if kind == "float" else kind,
            "macs": macs[info.name],
            "large": xnor and macs[info.name] >= LARGE_MACS,
        }
        for arithmetic in arithmetics():
            t = ms[(info.name, arithmetic)]
            gmacs = macs[info.name] * batch / t / 1e6
            row[arithmetic] = {
                "ms": round(t, 4),
                "gmacs": round(gmacs, 1),
                "fraction_of_ceiling": round(gmacs / peak, 3),
                "share": round(t / totals[arithmetic], 3),
            }
        if "native" in row:
            row["native_over_xla"] = round(row["popcount"]["ms"] / row["native"]["ms"], 3)
        layers.append(row)
    rest = {a: round(whole_ms[a] - sum(r[a]["ms"] for r in layers), 3) for a in arithmetics()}
    if "auto" in whole_ms:  # each layer's time on what auto runs it with
        has_auto = "auto_chain" in exported.header["variants"]  # not without the kernel
        auto = exported.variant("auto_chain" if has_auto else "popcount_chain")
        for row in layers:
            # the time measured under the program that runs the layer as auto does
            computation = auto.computation(row["layer"])
            pick = next(
                a
                for a in arithmetics()
                if exported.variant(f"{a}_chain").computation(row["layer"]) == computation
            )
            row["auto"] = row[pick] | {"arithmetic": computation}
        total = sum(row["auto"]["ms"] for row in layers)
        for row in layers:
            row["auto"]["share"] = round(row["auto"]["ms"] / total, 3)
        rest["auto"] = round(whole_ms["auto"] - sum(r["auto"]["ms"] for r in layers), 3)
    return {
        "model": name,
        "batch": batch,
        "dispatch_ms": round(dispatch, 4),
        "whole_ms": {a: round(t, 3) for a, t in whole_ms.items()},
        "float32_ms": round(baseline_ms, 3),
        "layers": layers,
        "rest_ms": rest,
    }


def variant_targets(isa: str) -> dict[str, dict[str, float]]:
    """Variant -> model -> the speedup targeted at batch 1 on this instruction set."""
    fbin8 = TARGETS_FBIN8["avx512" if isa.startswith("AVX-512") else "avx2"]
    return {"fbin": TARGETS, "fbin8": fbin8}


def targets(result: dict) -> list[dict]:
    """Each target (:func:`variant_targets`) against this run: met or by how much it is
    missed, and which layer holds it back (the largest share of the network's time)."""
    out = []
    best = network_arithmetics()[0]
    goals = variant_targets(result["binary_mac_limit"]["isa"])
    for p in result["profiles"]:
        variant = p.get("variant", "fbin")
        if p["batch"] != 1 or p["model"] not in goals[variant]:
            continue
        row = next(
            r
            for r in result["rows"]
            if (r["model"], r["variant"], r["arithmetic"], r["batch"])
            == (p["model"], variant, best, 1)
        )
        slowest = max(p["layers"], key=lambda r: r[best]["ms"])
        target = goals[variant][p["model"]]
        large = [r for r in p["layers"] if r["large"]]
        out.append(
            {
                "model": p["model"],
                "variant": variant,
                "target": target,
                "speedup": row["speedup"],
                "met": row["speedup"] >= target,
                "shortfall": round(target / row["speedup"], 3),
                "slowest_layer": slowest["layer"],
                "slowest_share": slowest[best]["share"],
                "large_layers": len(large),
                "large_at_half_ceiling": sum(
                    r[best]["fraction_of_ceiling"] >= LARGE_CEILING_FRACTION for r in large
                ),
                "large_1_4x_xla": sum(
                    r.get("native_over_xla", 0) >= LARGE_NATIVE_OVER_XLA for r in large
                ),
            }
        )
    return out


def markdown(result: dict) -> str:
    """The whole-network table, the targets, then each fbin profile."""
    limit = result["binary_mac_limit"]
    lines = [
        "| network | variant | arithmetic | batch | ms | speedup vs float32 "
        f"| eq-FLOPs prediction (58x) | of prediction | {limit['isa']} limit "
        f"({limit['speedup']:.1f}x) | of limit | weights (MiB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['arithmetic']} | {r['batch']} | "
            f"{r['ms']:.2f} | {r['speedup']:.2f}x | {r['predicted_speedup']:.2f}x | "
            f"{100 * r['fraction_of_prediction']:.0f}% | {r['limit_speedup']:.2f}x | "
            f"{100 * r['fraction_of_limit']:.0f}% | "
            f"{(r['file_bytes'] - r['program_bytes']) / 2**20:.2f} |"
        )
    ceiling = result["ceiling"]
    isa = ceiling.get("isa", limit["isa"])  # the instruction set the ceiling is for
    if result["targets"]:
        lines += [
            "",
            "| target (batch 1) | measured | met? | missed by | slowest layer (share) "
            f"| large layers >= 50% of {isa} ceiling | >= 1.4x XLA's popcount |",
            "|---|---:|---|---:|---|---:|---:|",
        ]
        for t in result["targets"]:
            missed = "-" if t["met"] else f"{t['shortfall']:.2f}x"
            lines.append(
                f"| {t['model']} {t['variant']} >= {t['target']}x | {t['speedup']:.2f}x | "
                f"{'yes' if t['met'] else 'no'} | {missed} | "
                f"{t['slowest_layer']} ({100 * t['slowest_share']:.0f}%) | "
                f"{t['large_at_half_ceiling']} of {t['large_layers']} | "
                f"{t['large_1_4x_xla']} of {t['large_layers']} |"
            )
    for p in result["profiles"]:
        names = arithmetics() if "auto" not in p["whole_ms"] else ["auto", *arithmetics()]
        lines += [
            "",
            f"{p['model']} {p['variant']}, batch {p['batch']}: whole network "
            + ", ".join(f"{a} {p['whole_ms'][a]:.2f} ms" for a in names)
            + f"; float32 {p['float32_ms']:.2f} ms. {isa} ceiling {ceiling['binary_gmacs']:.0f} G "
            f"binary MAC/s, {ceiling['float_gmacs']:.0f} G float32 MAC/s.",
            "",
            "| layer | kind | M MACs | "
            + " | ".join(f"{a} ms (share) | G MAC/s (of {isa} ceiling)" for a in names)
            + " |",
            "|---|---|---:|" + "---:|---:|" * len(names),
        ]
        for r in p["layers"]:
            cells = []
            for a in names:
                pick = (
                    f"{r[a]['arithmetic']} " if a == "auto" and r["kind"] != "float input" else ""
                )
                cells.append(
                    f"{pick}{r[a]['ms']:.3f} ({100 * r[a]['share']:.0f}%) | "
                    f"{r[a]['gmacs']:.0f} ({100 * r[a]['fraction_of_ceiling']:.0f}%)"
                )
            lines.append(
                f"| {r['layer']} | {r['kind']} | {r['macs'] / 1e6:.0f} | {' | '.join(cells)} |"
            )
        rest = " | ".join(
            f"{p['rest_ms'][a]:.3f} ({100 * p['rest_ms'][a] / p['whole_ms'][a]:.0f}%) | "
            for a in names
        )
        lines.append(f"| whole network minus the layers alone | | | {rest}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    """Every network of ``args`` (or the small one) measured, profiled and held to the
    targets."""
    networks = SMALL if args.small else {name: NETWORKS[name] for name in args.models}
    batches, repeats = ([1], 3) if args.small else (args.batches, args.repeats)
    limit = binary_mac_limit()
    ghz, clock = measure_ghz()
    cores = os.cpu_count()
    ceiling = {
        "isa": limit.isa,
        "ghz": round(ghz, 3),
        "clock": clock,
        "cores": cores,
        "binary_gmacs": round(limit.binary_gmacs(cores, ghz), 1),
        "float_gmacs": round(limit.float_macs_per_cycle * cores * ghz, 1),
    }
    rows, profiles = [], []
    with tempfile.TemporaryDirectory() as directory:
        for name, network in networks.items():
            more_rows, more_profiles = measure_network(
                name, network, batches, repeats, directory, ceiling
            )
            rows += more_rows
            profiles += more_profiles
    result = {
        "benchmark": "inference",
        "device": jax.devices()[0].device_kind,
        "cpu": cpu_model(),
        "binary_mac_limit": dataclasses.asdict(limit) | {"speedup": limit.speedup},
        "ceiling": ceiling,
        "native_isa": native.isa() if native.available() else None,
        "platform": platform.platform(),
        "cpu_count": cores,
        "jax": jax.__version__,
        "repeats": repeats,
        "rows": rows,
        "profiles": profiles,
    }
    result["targets"] = targets(result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(NETWORKS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--small", action="store_true", help="MiniSketchANet at 16x16, batch 1, 3 repeats"
    )
    parser.add_argument("--markdown", action="store_true")
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))
    output.write("inference", result, args.out)


if __name__ == "__main__":
    main()
