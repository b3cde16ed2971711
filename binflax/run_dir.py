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

What a run trained is read back from this layout too (:meth:`RunDir.trained_runs`), not
from the config that asks: ``eval`` and ``export`` find every variant an ``hbn`` run
trained, whatever the config now lists.
"""

from __future__ import annotations

import dataclasses

from etils import epath

from binflax import checkpointing, outputs, variants

FIRST_HYBRID = "hybrid"  # its selection files carry no suffix (plan.json, select.json)


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """One trained variant found in a workdir: where it trained, its name, its plan (a
    preset's name, or the plan file its selection wrote, or a ``train`` run's plan)."""

    run: RunDir
    variant: str
    plan: str


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

    def trained_runs(self, plan: str) -> list[TrainedRun]:
        """Every variant trained here, in the paper's row order (``variants.report_order``).

        A ``train`` workdir (checkpoints of its own) is one run of ``plan``, the config's:
        a ``train`` run writes no plan file. An ``hbn`` workdir is read from its layout,
        not from the config: each sub-directory named after a variant with checkpoints
        of its own, a hybrid or control with the plan file its selection wrote. Why: the
        config may have changed since (``config.hbn.controls`` emptied, a budget
        dropped), and a row it no longer lists was trained all the same.
        """
        if checkpointing.has_checkpoints(self.path):
            return [TrainedRun(self, variants.of_plan(plan), plan)]
        trained = {}
        for child in self.path.iterdir() if self.path.is_dir() else ():
            try:
                variant = variants.parse(child.name)
            except ValueError:  # a folder of the user's, not a variant's
                continue
            if checkpointing.has_checkpoints(child):
                trained[variant.name] = variant
        if not trained:
            raise checkpointing.CheckpointError(
                f"no trained checkpoints under {self}; train first (--mode=train or hbn)"
            )
        runs = []
        for name in variants.report_order(trained):
            if trained[name].kind == "baseline":
                runs.append(TrainedRun(self.variant(name), name, name))
                continue
            plan_file = self.selection("plan", name)
            if not plan_file.exists():
                raise checkpointing.CheckpointError(
                    f"{self.variant(name)} trained, but its plan {plan_file} is missing; "
                    "--mode=select writes it again from fbin (a control's, while "
                    "config.hbn.controls lists it)"
                )
            runs.append(TrainedRun(self.variant(name), name, str(plan_file)))
        return runs

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
