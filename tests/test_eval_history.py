"""EvalHistory's curve and the plateau criterion of the converged study."""

import json

import numpy as np

from binflax import eval_history


def brute_plateau(values, window, tolerance):
    """The first end index whose window's spread is under tolerance, by NumPy."""
    values = np.asarray(values)
    for end in range(len(values)):
        if (
            end + 1 >= window
            and round(float(np.ptp(values[end + 1 - window : end + 1])), 9) < tolerance
        ):
            return end
    return None


def test_plateau_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    for _ in range(200):
        values = list(np.round(90 + np.cumsum(rng.normal(0, 0.4, rng.integers(1, 12))), 2))
        window = int(rng.integers(2, 5))
        assert eval_history.plateau(values, window, 0.3) == brute_plateau(values, window, 0.3)


def test_plateau_is_strictly_under_the_tolerance():
    assert eval_history.plateau([91.0, 91.3, 91.2], 3, 0.3) is None  # spread 0.3
    assert eval_history.plateau([91.0, 91.29, 91.2], 3, 0.3) == 2
    assert eval_history.plateau([91.0, 91.1], 3, 0.3) is None  # fewer than the window


def test_main_prints_the_curve_and_its_plateau(tmp_path, capsys):
    path = tmp_path / "evaluations.json"
    holdout = {
        str(445 * (i + 1)): {"top1": v} for i, v in enumerate([89.9, 91.6, 92.4, 92.5, 92.6])
    }
    path.write_text(json.dumps({"holdout": holdout, "test": {}}))
    eval_history.main([str(path)])
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["step 445: holdout top-1 89.90", "step 890: holdout top-1 91.60"]
    assert out[-1] == "plateau from step 1335 to step 2225: 3 evaluations within 0.3 points"


def test_the_chosen_checkpoints_test_figure_is_kept_apart_and_reloaded(tmp_path):
    path = tmp_path / "evaluations.json"
    history = eval_history.EvalHistory(path)
    history.record("test", 890, {"top1": 90.0})
    history.record("test", 1335, {"top1": 91.0})
    history.record_chosen(445, {"top1": 93.0})  # the holdout chose a step never tested
    reloaded = eval_history.EvalHistory(path)
    assert reloaded.chosen_test(445) == {"top1": 93.0}
    assert reloaded.chosen_test(890) is None  # another step's figure is not this one's
    assert reloaded.best("test") == (1335, {"top1": 91.0})  # the optimistic best unmoved
    reloaded.record("holdout", 445, {"top1": 92.0})  # later writes keep it
    saved = json.loads(path.read_text())
    assert saved["chosen"] == {"step": 445, "test": {"top1": 93.0}}
    assert set(saved["test"]) == {"890", "1335"}
