"""Copies a study's records (its small JSON and Markdown files, no checkpoints) into the
repository, so that what finished outlives the machine that trained it.

    python scripts/study_records.py runs/study docs/study

A study runs for days across sittings, and a sitting may land on a new machine that
holds none of the last one's runs: the checkpoints (megabytes a variant) stay behind,
the records are committed. It keeps the study's own logs (``*.log`` beside the run
directories: each variant's "done" line gives the test top-1 of the checkpoint the
holdout chose, which ``evaluations.json`` also keeps, under ``"chosen"``, only for
variants trained on a commit that has binflax.eval_history's ``record_chosen``), and per
run directory ``results.json``/``.md`` (written when a seed
finishes), the selection's ``select*.json`` and ``plan*.json``, and per variant
``evaluations.json`` (every holdout and periodic test evaluation) and
``provenance.json`` (commit, CPU and seconds of each sitting). A variant still training
is copied as far as it got; copying again brings it up to date.
"""

from __future__ import annotations

import argparse
import sys

from etils import epath

RUN_FILES = ("results.json", "results.md", "select*.json", "plan*.json")
VARIANT_FILES = ("evaluations.json", "provenance.json")


def records(runs: epath.Path) -> list[epath.Path]:
    """The record files under ``runs`` (``runs/<recipe>_s<seed>/...``), relative to it."""
    found = sorted(runs.glob("*.log"))
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        for pattern in RUN_FILES:
            found += sorted(run.glob(pattern))
        for name in VARIANT_FILES:  # a variant, or a two-stage variant's first stage
            found += sorted(run.glob(f"*/{name}")) + sorted(run.glob(f"*/stage1/{name}"))
    return [p.relative_to(runs) for p in found]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", help="the study's runs directory, e.g. runs/study")
    parser.add_argument("dest", help="where the records go, e.g. docs/study")
    args = parser.parse_args(argv)
    runs, dest = epath.Path(args.runs), epath.Path(args.dest)
    if not runs.is_dir():
        print(f"error: no runs directory at {runs}", file=sys.stderr)
        return 2
    copied = records(runs)
    for relative in copied:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((runs / relative).read_bytes())
    print(f"{len(copied)} record files from {runs} in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
