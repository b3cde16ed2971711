"""Do packed links pay when the next layer takes k bits? Linked against unlinked, end to end.

    python -m benchmarks.k_bit_links [--models alexnet sketchanet --bits 2 4 --out DIR]
    python -m benchmarks.k_bit_links --small    # CI-sized: MiniSketchANet at 16x16

A k-bit input on binary weights runs as ``k`` sign planes (binflax.export.inference).
Unlinked, the layer before it ends in float (``acc * alpha``, ReLU, max pool) and the
k-bit layer normalises, quantizes and packs that float map. Linked
(binflax.export.chain), the producer counts the ``2**k - 1`` integer thresholds its
accumulator reaches, max-pools the levels and packs the planes: no float map between
them. For each network, every binary-input layer is given a k-bit input (the first
layer 8-bit, as fbin8; the last keeps its float input), the network is exported with
random weights and batch norms and run whole at batch 1 by
``binflax.export.integer_forward``: the native kernel and XLA's popcount, each linked
and unlinked, and fbin8 (1-bit links) for scale, timed interleaved in one run, median
of ``--repeats`` rounds (``binflax.export.time_calls``). Every linked program is
checked to give the unlinked one's logits bit for bit first. The export links a k-bit
consumer only where this measured it to pay (``arithmetic.link_pays``); here every
link runs, so the table says what each would cost linked (it is what set the rule).

Prints JSON: per network and bit-width the milliseconds, the links used, and unlinked
over linked (above 1: the links pay).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from unittest import mock

import jax
import numpy as np

from benchmarks import output
from benchmarks.inference import NETWORKS, SMALL, Network, arithmetics
from binflax import export, models
from binflax.export import arithmetic as arithmetic_lib
from binflax.plan import LayerPrecision, Plan
from binflax.testing import random_variables


def fbin8_plan(name: str, network: Network) -> Plan:
    names = models.layer_names(models.create(name, num_classes=network.num_classes))
    return Plan.preset("fbin8", names, binarize_last_weights=network.binarize_last_weights)


def k_bit_plan(fbin8: Plan, bits: int) -> Plan:
    """``fbin8`` with every binary input at ``bits`` bits."""
    return Plan(
        (LayerPrecision(p.name, f"int{bits}" if p.binary_input else p.input, p.weight)
         for p in fbin8),
        name=f"fbin8_a{bits}",
    )  # fmt: skip


def measure(name: str, network: Network, bits_list: list[int], repeats: int, directory: str):
    """Rows for one network: each k-bit plan on each packed arithmetic, linked and not."""
    shape = network.input_shape
    images = jax.device_put(np.random.default_rng(0).standard_normal((1, *shape), np.float32))
    fbin8 = fbin8_plan(name, network)
    plans = {**{f"a{bits}": k_bit_plan(fbin8, bits) for bits in bits_list}, "fbin8": fbin8}
    calls, exported = {}, {}
    for key, plan in plans.items():
        model = models.create(name, plan=plan, num_classes=network.num_classes)
        path = os.path.join(directory, f"{name}_{key}.npz")
        with mock.patch.object(arithmetic_lib, "link_pays", lambda *_: True):
            export.export_model(model, random_variables(model, shape), path, input_shape=shape)
        exported[key] = export.load(path)
        for arithmetic in arithmetics():
            for chain in (True, False):
                calls[key, arithmetic, chain] = lambda e=exported[key], a=arithmetic, c=chain: (
                    export.integer_forward(e, images, arithmetic=a, chain=c)
                )
    for (key, arithmetic, chain), call in calls.items():
        if chain:
            linked, unlinked = np.asarray(call()), np.asarray(calls[key, arithmetic, False]())
            if not np.array_equal(linked, unlinked):
                raise AssertionError(f"{name} {key} [{arithmetic}]: linked logits differ")
    ms = export.time_calls({f"{k} {a} {c}": f for (k, a, c), f in calls.items()}, repeats)
    rows = []
    for key in plans:
        for arithmetic in arithmetics():
            plan = exported[key].variant(f"{arithmetic}_chain")
            linked, unlinked = ms[f"{key} {arithmetic} True"], ms[f"{key} {arithmetic} False"]
            rows.append(
                {
                    "model": name,
                    "plan": key,
                    "arithmetic": arithmetic,
                    "links": len(plan.links),
                    "ms_linked": round(linked, 3),
                    "ms_unlinked": round(unlinked, 3),
                    "unlinked_over_linked": round(unlinked / linked, 3),
                }
            )
    return rows


def run(args: argparse.Namespace) -> dict:
    networks = SMALL if args.small else {m: NETWORKS[m] for m in args.models}
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, network in networks.items():
            rows += measure(name, network, args.bits, args.repeats, directory)
    return {
        "cpu": output.cpu_tag(),
        "batch": 1,
        "repeats": args.repeats,
        "max_linked_bits": arithmetic_lib.MAX_LINKED_BITS,
        "every_link_runs": True,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "sketchanet"],
                        choices=list(NETWORKS))  # fmt: skip
    parser.add_argument("--bits", nargs="+", type=int, default=[2, 4], choices=[2, 4])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--small", action="store_true")
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=1))
    output.write("k_bit_links", result, args.out)


if __name__ == "__main__":
    main()
