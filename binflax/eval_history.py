"""Every evaluation of a training run, kept on disk so that a resumed run reports the same.

Why: a run reports three figures, and only one of them is honest (docs/method.md
section 9):

- the **headline**: test accuracy at the checkpoint chosen on *held-out* data;
- the **final** step's test accuracy;
- the authors' **best test epoch**, the maximum over every test evaluation - optimistic,
  since the test set picks the epoch, and reported only labelled as such.

The last two need the test evaluations of the whole run, including those made before an
interruption, so each evaluation is appended to ``WORKDIR/evaluations.json``
(``{"holdout": {step: metrics}, "test": {step: metrics}}``). Every process keeps the same
history in memory (evaluations are collective, so every process makes the same ones);
only process 0 writes the file.
"""

from __future__ import annotations

import json

from etils import epath

from binflax import outputs

SPLITS = ("holdout", "test")


class EvalHistory:
    """The evaluations of one run, by split and step, mirrored to the JSON file ``path``
    (a run's ``RunDir.evaluations_json``)."""

    def __init__(self, path: str | epath.PathLike):
        self.path = epath.Path(path)
        self._runs: dict[str, dict[int, dict]] = {split: {} for split in SPLITS}
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            for split in SPLITS:
                self._runs[split] = {int(step): m for step, m in saved.get(split, {}).items()}

    def record(self, split: str, step: int, metrics: dict) -> None:
        """Adds (or replaces, after a resume) the evaluation of ``split`` at ``step``."""
        self._runs[split][int(step)] = dict(metrics)
        outputs.write_json(
            self.path, {s: {str(k): v for k, v in sorted(r.items())} for s, r in self._runs.items()}
        )

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
