"""Every evaluation of a training run, kept on disk so that a resumed run reports the same.

Why: a run reports three figures, and only one of them is honest (docs/method.md
section 9):

- the **headline**: test accuracy at the checkpoint chosen on *held-out* data;
- the **final** step's test accuracy;
- the authors' **best test epoch**, the maximum over every test evaluation - optimistic,
  since the test set picks the epoch, and reported only labelled as such.

The last two need the test evaluations of the whole run, including those made before an
interruption, so each evaluation is appended to ``WORKDIR/evaluations.json``
(``{"holdout": {step: metrics}, "test": {step: metrics}}``). The headline's test
evaluation is kept there too, under ``"chosen"`` (``{"step": step, "test": metrics}``):
the holdout often picks a step whose test set was never evaluated periodically, and
without it the headline lived only in the log and in ``results.json``, which a study
writes once per seed. It is kept apart from the periodic ones so that it cannot move the
optimistic best. Every process keeps the same history in memory (evaluations are
collective, so every process makes the same ones); only process 0 writes the file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from etils import epath

from binflax import outputs

SPLITS = ("holdout", "test")


class EvalHistory:
    """The evaluations of one run, by split and step, mirrored to the JSON file ``path``
    (a run's ``RunDir.evaluations_json``)."""

    def __init__(self, path: str | epath.PathLike):
        self.path = epath.Path(path)
        self._runs: dict[str, dict[int, dict]] = {split: {} for split in SPLITS}
        self._chosen: dict | None = None
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            for split in SPLITS:
                self._runs[split] = {int(step): m for step, m in saved.get(split, {}).items()}
            self._chosen = saved.get("chosen")

    def record(self, split: str, step: int, metrics: dict) -> None:
        """Adds (or replaces, after a resume) the evaluation of ``split`` at ``step``."""
        self._runs[split][int(step)] = dict(metrics)
        self._write()

    def record_chosen(self, step: int, test_metrics: dict) -> None:
        """Keeps the test evaluation of the checkpoint chosen at ``step`` (the headline)."""
        self._chosen = {"step": int(step), "test": dict(test_metrics)}
        self._write()

    def chosen_test(self, step: int) -> dict | None:
        """The recorded test evaluation of the checkpoint chosen at ``step``, if any."""
        if self._chosen is None or self._chosen["step"] != int(step):
            return None
        return self._chosen["test"]

    def _write(self) -> None:
        saved = {s: {str(k): v for k, v in sorted(r.items())} for s, r in self._runs.items()}
        if self._chosen is not None:
            saved["chosen"] = self._chosen
        outputs.write_json(self.path, saved)

    def get(self, split: str, step: int) -> dict | None:
        return self._runs[split].get(int(step))

    def best(self, split: str, key: str = "top1") -> tuple[int, dict] | None:
        """``(step, metrics)`` of the highest ``key`` on ``split``; the latest step on ties,
        as Orbax's best-checkpoint policy keeps."""
        runs = self._runs[split]
        if not runs:
            return None
        step = max(sorted(runs, reverse=True), key=lambda s: runs[s][key])
        return step, runs[step]

    def curve(self, split: str, key: str = "top1") -> list[tuple[int, float]]:
        """``(step, key)`` of every evaluation of ``split``, in step order."""
        return [(step, m[key]) for step, m in sorted(self._runs[split].items())]


def plateau(values: Sequence[float], window: int = 3, tolerance: float = 0.3) -> int | None:
    """The index of the first evaluation that ends ``window`` consecutive evaluations
    spanning less than ``tolerance`` (max - min): where a curve "stops moving", the
    convergence criterion of docs/reproduction.md (3 epochs, 0.3 points). None when no
    such run of evaluations exists yet.

    >>> plateau([80.0, 88.0, 90.0, 91.5, 91.6, 91.7, 91.6])
    5
    """
    for end in range(window - 1, len(values)):
        recent = values[end - window + 1 : end + 1]
        # rounded: top-1 has two decimals, and 91.3 - 91.0 is 0.29999999999999716
        if round(max(recent) - min(recent), 9) < tolerance:
            return end
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m binflax.eval_history RUN/VARIANT/evaluations.json``: a run's curve on
    ``--split`` (one line per evaluation) and where it reached its plateau."""
    parser = argparse.ArgumentParser(description=main.__doc__.split("\n\n")[0])
    parser.add_argument("evaluations", help="a variant's evaluations.json")
    parser.add_argument("--split", default="holdout", choices=SPLITS)
    parser.add_argument("--window", type=int, default=3, help="evaluations in the plateau")
    parser.add_argument("--tolerance", type=float, default=0.3, help="top-1 points")
    args = parser.parse_args(argv)
    points = EvalHistory(args.evaluations).curve(args.split)
    for step, top1 in points:
        print(f"step {step}: {args.split} top-1 {top1:.2f}")
    end = plateau([top1 for _, top1 in points], args.window, args.tolerance)
    if end is None:
        print(f"no plateau: no {args.window} evaluations within {args.tolerance:g} points")
    else:
        print(
            f"plateau from step {points[end - args.window + 1][0]} to step {points[end][0]}: "
            f"{args.window} evaluations within {args.tolerance:g} points"
        )


if __name__ == "__main__":
    main()
