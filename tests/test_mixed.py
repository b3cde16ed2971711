"""binflax.select.mixed: bit-widths per layer under a budget, their plan and controls."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from binflax import cost, models, select
from binflax.select import mixed
from binflax.select.sensitivity import PrecisionMeasurement

BITS = (1, 2, 4, 8, 32)
MACS = {"conv2": 4_000_000, "conv3": 2_000_000, "conv4": 500_000, "conv5": 100_000}
FIXED = 300_000


def measurement(seed=0, bits=BITS):
    """Sensitivities falling with bits (more bits, less damage), random per layer."""
    rng = np.random.default_rng(seed)
    scores = {}
    for score in ("error", "fisher"):
        table = {}
        for name in MACS:
            falling = np.sort(rng.uniform(0, 1, len(bits)))[::-1]
            table[name] = {
                b: (0.0 if b == 32 else float(v)) for b, v in zip(bits, falling, strict=True)
            }
        scores[score] = table
    names = ("conv1", *MACS, "fc")
    return PrecisionMeasurement(
        precisions=bits,
        scores=scores,
        macs=dict(MACS),
        fixed_macs=FIXED,
        total_macs=FIXED + sum(MACS.values()),
        layer_names=names,
        num_samples=8,
    )


def eq(macs, bits):
    return macs if bits == 32 else macs * bits / 58


def brute_force(m, budget, score="error", choices=BITS):
    fbin = FIXED + sum(MACS.values()) / 58
    best = None
    for combo in itertools.product(choices, repeat=len(MACS)):
        bits = dict(zip(MACS, combo, strict=True))
        flops = FIXED + sum(eq(MACS[n], b) for n, b in bits.items())
        if flops > budget * fbin * (1 + 1e-9):
            continue
        value = sum(m.scores[score][n][b] for n, b in bits.items())
        if best is None or value < best[0] - 1e-12:
            best = (value, bits)
    return best


def test_costs_are_eq_flops_of_k_planes_on_binary_weights():
    costs = mixed.precision_costs(measurement())
    for name, macs in MACS.items():
        assert costs[name] == pytest.approx({b: eq(macs, b) for b in BITS}, rel=1e-12)
    assert mixed.fbin_eq_flops(measurement()) == pytest.approx(FIXED + sum(MACS.values()) / 58)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget", [1.0, 1.5, 3.0, 8.0, 40.0])
def test_the_pick_is_brute_force_s_within_the_budget(seed, budget):
    m = measurement(seed)
    picked = mixed.select_precisions(m, budget)
    value, _ = brute_force(m, budget)
    assert picked.sensitivity == pytest.approx(value, abs=1e-9)
    assert picked.eq_flops <= budget * picked.fbin_eq_flops * (1 + 1e-9)
    assert picked.eq_flops == pytest.approx(
        FIXED + sum(eq(MACS[n], b) for n, b in picked.bits.items()), rel=1e-12
    )


def test_binary_float_control_is_the_exact_hbn_hybrid():
    m = measurement(3)
    hybrid = mixed.select_precisions(m, 3.0)
    controls = mixed.mixed_controls(m, hybrid, controls=("binary_float",), num_random=1, seed=0)
    errors = {n: m.scores["error"][n][1] for n in MACS}
    float_layers = select.solve(errors, MACS, fixed_macs=FIXED, budget=3.0, method="exact")
    assert controls["binary_float"] == {n: 32 if n in float_layers else 1 for n in MACS}


def test_uniform_control_takes_the_largest_bit_width_that_fits():
    m = measurement(1)
    fbin = FIXED + sum(MACS.values()) / 58
    for budget in (1.0, 2.5, 5.0, 9.0, 60.0):
        hybrid = mixed.select_precisions(m, budget)
        got = mixed.mixed_controls(m, hybrid, controls=("uniform",), num_random=1, seed=0)
        (k,) = set(got["uniform"].values())
        fits = [b for b in BITS if FIXED + sum(eq(c, b) for c in MACS.values()) <= budget * fbin]
        assert k == max(fits)


def test_random_controls_are_distinct_within_the_budget_and_above_the_floor():
    m = measurement(2)
    hybrid = mixed.select_precisions(m, 6.0)
    kwargs = {"controls": ("random",), "num_random": 4, "seed": 5}
    got = mixed.mixed_controls(m, hybrid, **kwargs)
    assert list(got) == ["random0", "random1", "random2", "random3"]
    draws = list(got.values())
    assert all(a != b for a, b in itertools.combinations(draws, 2))
    for bits in draws:
        control = mixed.selection_of(m, bits, "error", 6.0)
        assert control.eq_flops <= 6.0 * control.fbin_eq_flops * (1 + 1e-9)
        spent, hybrid_spent = control.eq_flops - FIXED, hybrid.eq_flops - FIXED
        assert spent >= 0.95 * hybrid_spent
    assert mixed.mixed_controls(m, hybrid, **kwargs) == got  # seeded


def test_score_controls_are_each_score_s_own_pick_and_unmeasured_ones_are_refused():
    m = measurement(4)
    hybrid = mixed.select_precisions(m, 4.0)
    got = mixed.mixed_controls(m, hybrid, controls=("error", "fisher"), num_random=1, seed=0)
    assert list(got) == ["fisher"]  # the hybrid's own score is the hybrid
    assert got["fisher"] == mixed.select_precisions(m, 4.0, score="fisher").bits
    with pytest.raises(select.ControlError, match="'hessian' needs the hessian score"):
        mixed.mixed_controls(m, hybrid, controls=("hessian",), num_random=1, seed=0)
    with pytest.raises(select.ControlError, match="unknown mixed-precision control"):
        mixed.mixed_controls(m, hybrid, controls=("cost_only",), num_random=1, seed=0)


def test_select_with_precisions_returns_a_mixed_plan_within_the_budget():
    model = models.create("mini_sketchanet", plan="fbin", num_classes=4)
    shape = model.default_input_shape
    variables = model.init(jax.random.key(0), jnp.zeros((1, *shape)))
    rng = np.random.default_rng(0)
    batches = [
        {"image": jnp.asarray(rng.normal(size=(4, *shape)), jnp.float32), "label": jnp.arange(4)}
    ]
    plan, chosen = select.select(model, variables, batches, budget=4.0, precisions=BITS)
    assert isinstance(chosen, select.MixedSelection) and plan.name == "mixed"
    for layer in plan:
        if layer.name in chosen.bits:
            assert layer.input_bits == chosen.bits[layer.name] and layer.weight == "binary"
        else:
            assert layer == model.plan[layer.name]
    planned = cost.totals(
        cost.layer_costs(models.create("mini_sketchanet", plan=plan, num_classes=4))
    )
    fbin = cost.totals(cost.layer_costs(model))["eq_flops"]
    assert planned["eq_flops"] == pytest.approx(chosen.eq_flops, rel=1e-9)
    assert planned["eq_flops"] <= 4.0 * fbin * (1 + 1e-9)
    with pytest.raises(ValueError, match="takes a budget"):
        select.select(model, variables, batches, precisions=BITS)


def test_a_budget_below_the_cheapest_assignment_says_so_in_multiples_of_fbin():
    with pytest.raises(select.PrecisionError, match=r"budget 0.9 x fbin is below .* 1 x fbin"):
        mixed.select_precisions(measurement(), 0.9)
    with pytest.raises(select.PrecisionError, match=r"of 2, 32 bits, 1.275 x fbin"):
        mixed.select_precisions(measurement(), 1.2, precisions=(2, 32))


def latency(seed=0):
    """A latency table's rows (ms) that do not follow the equivalent FLOPs: more bits cost
    more, 8 bits dearer than float on conv3 (as the 8 planes of a binary-weight layer)."""
    rng = np.random.default_rng(seed)
    ms = {n: {b: float(v) for b, v in zip(BITS, np.sort(rng.uniform(0.1, 2.0, 5)), strict=True)}
          for n in MACS}  # fmt: skip
    ms["conv3"][8] = ms["conv3"][32] + 1.0
    ms["conv1"], ms["fc"] = {32: 0.7, 8: 0.4}, {32: 0.05}
    return ms, {"conv1": 32, **dict.fromkeys(MACS, 1), "fc": 32}


def test_a_latency_table_prices_the_choices_and_the_budget():
    """The budget is a multiple of fbin's summed layer times; the pick is the exact optimum
    under them (brute force), and its controls sit within the same budget."""
    m = measurement()
    ms, plan_bits = latency()
    costs = select.CostTable.from_latency(ms, plan_bits, m)
    assert costs.unit == "ms" and costs.fixed == pytest.approx(0.7 + 0.05)
    assert costs.fbin == pytest.approx(0.75 + sum(ms[n][1] for n in MACS))
    for budget in (1.2, 1.6, 2.5):
        picked = mixed.select_precisions(m, budget, costs=costs)
        best = None
        for combo in itertools.product(BITS, repeat=len(MACS)):
            bits = dict(zip(MACS, combo, strict=True))
            if costs.of(bits) > budget * costs.fbin * (1 + 1e-9):
                continue
            value = sum(m.scores["error"][n][b] for n, b in bits.items())
            best = (value, bits) if best is None or value < best[0] - 1e-12 else best
        assert picked.bits == best[1] and picked.cost_unit == "ms"
        assert picked.cost == pytest.approx(costs.of(picked.bits))
        assert picked.eq_flops == pytest.approx(
            FIXED + sum(eq(MACS[n], b) for n, b in best[1].items())
        )
        kwargs = {"controls": ("uniform", "random", "binary_float"), "num_random": 2, "seed": 0}
        for bits in mixed.mixed_controls(m, picked, costs=costs, **kwargs).values():
            assert costs.of(bits) <= budget * costs.fbin * (1 + 1e-6)
    assert "x fbin in ms" in str(picked)


def test_a_latency_table_without_a_layer_or_a_bit_width_is_refused():
    m = measurement()
    ms, plan_bits = latency()
    del ms["conv4"][4]
    with pytest.raises(ValueError, match=r"no \[4\] bits for layer 'conv4'"):
        select.CostTable.from_latency(ms, plan_bits, m)
    ms, plan_bits = latency()
    del ms["fc"]
    with pytest.raises(ValueError, match="no layer.*fc"):
        select.CostTable.from_latency(ms, plan_bits, m)
