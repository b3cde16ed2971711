"""One run's directory: every path a run writes, and who may write it.

Why one owner: the training loop, the modes and the reports all write into the workdir,
and in a multi-process run only process 0 may (the others would race on every file). A
:class:`RunDir` names every file and folder of the layout below, and its ``write``
methods (:func:`binflax.outputs.write`) are the one way a run writes a file: from the
main process only, its directory created, local or ``gs://`` alike (``etils.epath``).

    WORKDIR/                          an ``hbn`` run (a ``train`` run is one variant)
      results.json, results.md, results.png
      summary.json                    --mode=summary
      metrics.json                    --mode=train: the variant's results entry
      select.json, plan.json, scores.png, frontier.png     the first hybrid's selection
      select_hybrid2.json, plan_hybrid2.json, ...          the others' and controls' plans
      <variant>/                      one trained variant, a RunDir of its own
        stage1/                       its first stage when two-stage (a RunDir too)
        checkpoints/, best/, damaged/ (binflax.checkpointing owns their layout)
        evaluations.json              (binflax.eval_history)
        provenance.json               code, machine and seconds of each sitting (binflax.provenance)
        tensorboard/                  (binflax.summaries)
        model.npz                     --mode=export

    >>> run = RunDir.of("runs/quickstart")
    >>> str(run.variant("fbin").export_file)
    'runs/quickstart/fbin/model.npz'
"""

from __future__ import annotations

import dataclasses

from etils import epath

from binflax import outputs

FIRST_HYBRID = "hybrid"  # its selection files carry no suffix (plan.json, select.json)


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The directory of one run (``path``), with the paths of everything it writes."""

    path: epath.Path

    @classmethod
    def of(cls, workdir: epath.PathLike | RunDir) -> RunDir:
        return workdir if isinstance(workdir, RunDir) else cls(epath.Path(workdir))

    def __str__(self) -> str:
        return str(self.path)

    def variant(self, name: str) -> RunDir:
        """The directory a variant of an ``hbn`` run trains in."""
        return RunDir(self.path / name)

    # -- an hbn run's files ------------------------------------------------------------

    @property
    def results_json(self) -> epath.Path:
        return self.path / "results.json"

    @property
    def results_md(self) -> epath.Path:
        return self.path / "results.md"

    @property
    def results_png(self) -> epath.Path:
        return self.path / "results.png"

    @property
    def summary_json(self) -> epath.Path:
        return self.path / "summary.json"

    @property
    def metrics_json(self) -> epath.Path:
        return self.path / "metrics.json"

    def selection(self, kind: str, variant: str, suffix: str = ".json") -> epath.Path:
        """``plan.json``/``select.json``/``scores.png``/``frontier.png`` for the first
        hybrid, ``plan_hybrid2.json``/... for the others and the controls."""
        tail = "" if variant == FIRST_HYBRID else f"_{variant}"
        return self.path / f"{kind}{tail}{suffix}"

    # -- a trained variant's files -----------------------------------------------------

    @property
    def first_stage(self) -> RunDir:
        """Where a two-stage variant trains its first stage; the second is the variant's."""
        return RunDir(self.path / "stage1")

    @property
    def evaluations_json(self) -> epath.Path:
        return self.path / "evaluations.json"

    @property
    def provenance_json(self) -> epath.Path:
        return self.path / "provenance.json"

    @property
    def tensorboard(self) -> epath.Path:
        return self.path / "tensorboard"

    @property
    def export_file(self) -> epath.Path:
        return self.path / "model.npz"

    # -- writing: only the main process, through binflax.outputs ----------------------

    write = staticmethod(outputs.write)
    write_json = staticmethod(outputs.write_json)
    write_text = staticmethod(outputs.write_text)
    write_bytes = staticmethod(outputs.write_bytes)
