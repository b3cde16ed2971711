"""benchmarks/k_bit_links.py at CI size: MiniSketchANet with 4-bit inputs on every binary
layer runs linked and unlinked on each packed arithmetic (measure raises where the
linked logits differ from the unlinked ones). No timing is asserted."""

import argparse

from benchmarks import k_bit_links
from benchmarks.inference import SMALL, arithmetics


def test_the_small_run_links_k_bit_layers_on_every_packed_arithmetic():
    args = argparse.Namespace(small=True, models=[], bits=[4], repeats=1)
    rows = k_bit_links.run(args)["rows"]
    assert {(r["plan"], r["arithmetic"]) for r in rows} == {
        (plan, a) for plan in ("a4", "fbin8") for a in arithmetics()
    }
    # conv2 -> conv3 -> conv4 -> conv5 in both plans, 4-bit links too (every link runs).
    assert all(r["links"] == 3 and r["ms_linked"] > 0 and r["ms_unlinked"] > 0 for r in rows)


def test_the_k_bit_plan_quantizes_every_binary_input_and_nothing_else():
    fbin8 = k_bit_links.fbin8_plan("mini_sketchanet", SMALL["mini_sketchanet"])
    plan = k_bit_links.k_bit_plan(fbin8, 4)
    inputs = [p.input for p in plan]
    assert inputs == ["int8", "int4", "int4", "int4", "int4", "float"]
    assert [p.weight for p in plan] == ["int8", *["binary"] * 4, "float"]
