"""Measured memory: every config's exported file against its float32 checkpoint.

    python -m benchmarks.export_sizes [--configs alexnet sketchanet_tuberlin ...] [--markdown]

For each config in configs/ (its model, classes, input size and options, as
``binflax.networks.build_model`` builds them) and each of the wbin, fbin and hybrid plans,
with the config's own ``binarize_last_weights`` and with binary last-layer weights, this
exports the model's weights to a temporary file (``binflax.export.memory_report``; zero
weights of the right shapes, since sizes do not depend on values; the programs, code that
does not grow with the weights, left out) and prints JSON: the file's measured bytes,
the float32 Flax checkpoint's measured bytes, the cost model's prediction, and their
ratios. ``--markdown`` prints the table docs/export.md shows.

The hybrid is illustrative - a trained hybrid's plan comes from ``select`` - and keeps
the inputs of the last two binary-input layers float, which is the authors' choice on
AlexNet (fc6, fc7) and Sketch-A-Net (conv6, conv7); a hybrid's size hardly depends on
which inputs stay float.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os

from benchmarks import output
from binflax import export, models, networks
from binflax.plan import Plan

NOT_EXPERIMENTS = ("default", "imagenet_common", "sketch_common")


def experiment_configs() -> list[str]:
    names = (os.path.basename(p)[:-3] for p in glob.glob("configs/*.py"))
    return sorted(n for n in names if n not in NOT_EXPERIMENTS and not n.startswith("_"))


def plans(model: models.BinaryNet, binarize_last_weights: bool) -> dict[str, Plan]:
    names = models.layer_names(model)
    fbin = Plan.preset("fbin", names, binarize_last_weights=binarize_last_weights)
    return {
        "wbin": Plan.preset("wbin", names, binarize_last_weights=binarize_last_weights),
        "fbin": fbin,
        "hybrid": Plan.hybrid(
            names, fbin.binary_inputs[-2:], binarize_last_weights=binarize_last_weights
        ),
    }


def measure(config_name: str) -> list[dict]:
    config = importlib.import_module(f"configs.{config_name}").get_config()
    num_classes, image_shape = networks.config_shapes(config)
    rows = []
    for last in sorted({bool(config.binarize_last_weights), True}):
        config.binarize_last_weights = last
        base = networks.build_model(config, num_classes, plan="float")
        for plan_name, plan in plans(base, last).items():
            model = networks.build_model(config, num_classes, plan=plan)
            report = export.memory_report(model, input_shape=image_shape)
            rows.append(
                {
                    "config": config_name,
                    "model": config.model,
                    "input_shape": list(image_shape),
                    "num_classes": num_classes,
                    "plan": plan_name,
                    "binarize_last_weights": last,
                    "weights_bytes": report["weights_bytes"],
                    "float32_bytes": report["float32_bytes"],
                    "predicted_bytes": report["predicted_bytes"],
                    "payload_bytes": report["payload_bytes"],
                    "channel_padding_bytes": report["channel_padding_bytes"],
                    "compression": round(report["compression"], 2),
                    "prediction_error": round(report["prediction_error"], 5),
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| config | plan | last-layer weights | export (MiB) | float32 (MiB) | smaller by | "
        "file vs cost model | of which channel padding | of which container |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['plan']} | {'binary' if r['binarize_last_weights'] else 'float'}"
            f" | {r['weights_bytes'] / 2**20:.2f} | {r['float32_bytes'] / 2**20:.1f} | "
            f"{r['compression']:.1f}x | {100 * r['prediction_error']:+.2f}% | "
            f"{100 * r['channel_padding_bytes'] / r['predicted_bytes']:.2f}% | "
            f"{100 * (r['weights_bytes'] - r['payload_bytes']) / r['predicted_bytes']:.2f}% |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    """The exports of ``args.configs`` (default: every experiment config)."""
    return {
        "exports": [row for name in args.configs or experiment_configs() for row in measure(name)]
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=None)
    parser.add_argument("--markdown", action="store_true")
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(markdown(result["exports"]) if args.markdown else json.dumps(result, indent=1))
    output.write("export_sizes", result, args.out)


if __name__ == "__main__":
    main()
