"""Is the exported network really faster? float vs wbin vs the paper's hybrids vs fbin, end to end.

    python -m benchmarks.inference             # JSON: AlexNet 224, ResNet-18 224, Sketch-A-Net 225
    python -m benchmarks.inference --markdown  # the table docs/benchmarks.md shows
    python -m benchmarks.inference --small     # CI-sized: MiniSketchANet at 16x16, batch 1

For each network, in one process: the float32 model and its wbin, hybrid (the paper's
layer sets, docs/method.md section 10) and fbin variants with random weights and batch
norms, each exported to an ``.npz`` file, loaded back and run whole by
``binflax.export.integer_forward`` (``arithmetic="auto"``, packed activations between
binary layers). The float32 baseline is the faster of ``jax.jit(model.apply)`` with the
variables on the device and the float model's own export (batch norm folded,
fully-connected layers and small maps as matrix products):
``binflax.export.latency.float_calls``. Every variant of a network and both float runs
are timed interleaved, median of ``--repeats`` rounds, at each batch size.

Per variant and batch the JSON gives milliseconds, the speedup over the float32 baseline,
the speedup the paper's equivalent FLOPs predict (binary-input, binary-weight MACs at
1/58: ``binflax.cost``) and the fraction of it achieved, the same with binary MACs at
1/``binary_mac_limit().speedup`` - the most this CPU's instruction set can gain on a
binary MAC (8x with AVX2, ~21x with Zen 4's AVX-512 VPOPCNTDQ; docs/benchmarks.md), so
the best this network can do here if its float layers ran at float32 speed - and the
export's file size. The weights' values do not change any time measured here (no arithmetic skips
zeros), but random batch norms give the packed links realistic thresholds.
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

from benchmarks.binary_layers import binary_mac_limit, cpu_model
from binflax import cost, export, models
from binflax.export import chain
from binflax.plan import Plan


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


def random_variables(model: models.BinaryNet, input_shape, seed: int = 0) -> dict:
    """He-scaled kernels, batch norms far from identity: shapes from ``zero_variables``."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        field = str(getattr(path[-1], "key", path[-1]))
        if field == "kernel":
            fan_in = np.prod(leaf.shape[:-1])
            return (rng.standard_normal(leaf.shape, np.float32) * np.sqrt(2 / fan_in)).astype(
                np.float32
            )
        if field == "var":
            return rng.uniform(0.5, 2.0, leaf.shape).astype(np.float32)
        if field == "scale":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return (0.3 * rng.standard_normal(leaf.shape)).astype(np.float32)  # means, biases

    return jax.tree_util.tree_map_with_path(fill, export.zero_variables(model, input_shape))


def variant_plans(name: str, network: Network) -> dict[str, Plan]:
    names = models.layer_names(models.create(name, num_classes=network.num_classes))
    last = network.binarize_last_weights
    plans = {"wbin": Plan.preset("wbin", names, binarize_last_weights=last)}
    for hybrid, float_inputs in network.hybrids.items():
        plans[hybrid] = Plan.hybrid(names, float_inputs, binarize_last_weights=last)
    plans["fbin"] = Plan.preset("fbin", names, binarize_last_weights=last)
    return plans


def measure_network(
    name: str, network: Network, batches: list[int], repeats: int, directory: str
) -> list[dict]:
    """Rows for one network: the two float32 runs and every variant, at every batch."""
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
    rows = []
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
        infos = {run: float_info for run in calls}
        for variant, info in variants.items():
            calls[variant] = lambda e=info["exported"], x=images: export.integer_forward(e, x)
            infos[variant] = info
        ms = export.time_calls(calls, repeats)
        baseline = min(ms["float (model.apply)"], ms["float (exported)"])
        for variant, info in infos.items():
            speedup = baseline / ms[variant]
            rows.append(
                {
                    "model": name,
                    "variant": variant,
                    "batch": batch,
                    "ms": round(ms[variant], 3),
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
    return rows


def markdown(result: dict) -> str:
    limit = result["binary_mac_limit"]
    lines = [
        "| network | variant | batch | ms | speedup vs float32 | eq-FLOPs prediction (58x) "
        f"| of prediction | {limit['isa']} limit ({limit['speedup']:.1f}x) | of limit "
        "| weights (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['batch']} | {r['ms']:.2f} | "
            f"{r['speedup']:.2f}x | {r['predicted_speedup']:.2f}x | "
            f"{100 * r['fraction_of_prediction']:.0f}% | {r['limit_speedup']:.2f}x | "
            f"{100 * r['fraction_of_limit']:.0f}% | "
            f"{(r['file_bytes'] - r['program_bytes']) / 2**20:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(NETWORKS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--small", action="store_true", help="MiniSketchANet at 16x16, batch 1, 3 repeats"
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    networks = SMALL if args.small else {name: NETWORKS[name] for name in args.models}
    batches, repeats = ([1], 3) if args.small else (args.batches, args.repeats)
    limit = binary_mac_limit()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, network in networks.items():
            rows.extend(measure_network(name, network, batches, repeats, directory))
    result = {
        "benchmark": "inference",
        "device": jax.devices()[0].device_kind,
        "cpu": cpu_model(),
        "binary_mac_limit": dataclasses.asdict(limit) | {"speedup": limit.speedup},
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "repeats": repeats,
        "rows": rows,
    }
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
