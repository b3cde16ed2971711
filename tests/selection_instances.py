"""Random selection problems, and their costs worked out by hand, for the selection tests
(tests/test_select.py, tests/test_controls.py)."""

import numpy as np

SPEEDUP = 58.0


def random_instance(rng: np.random.Generator, n: int):
    """``(errors, macs, fixed_macs)`` of ``n`` candidate layers ``l0``...``l{n-1}``."""
    names = [f"l{i}" for i in range(n)]
    errors = dict(zip(names, rng.uniform(0.05, 1.0, n).tolist(), strict=True))
    macs = dict(zip(names, rng.integers(10_000, 5_000_000, n).tolist(), strict=True))
    fixed = float(rng.integers(100_000, 3_000_000))
    return errors, macs, fixed


def costs_of(macs, subset) -> float:
    """What keeping ``subset``'s inputs float adds to fbin's equivalent FLOPs."""
    return sum(macs[n] for n in subset) * (1 - 1 / SPEEDUP)


def fbin_of(macs, fixed) -> float:
    return fixed + sum(macs.values()) / SPEEDUP
