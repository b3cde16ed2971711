#!/usr/bin/env bash
# The converged Fashion-MNIST study of docs/reproduction.md: one hbn run per (recipe, seed),
# in order of priority (three xnor seeds, three reactnet seeds, then xnor seeds 3 and 4).
# reactnet runs the larger budget only, with one random control (its float
# teacher is trained first, as the recipe distills from it).
#
#   scripts/fashion_mnist_study.sh [RUNS_DIR [JOB ...]] >> study.log 2>&1
#
# RUNS_DIR defaults to runs/study; a JOB is RECIPE:SEED (e.g. xnor:2), all eight in the
# order below by default (name the ones left when a new machine continues a study).
#
# Run it again after an interruption: each variant resumes from its own checkpoint and a
# finished variant is not trained again, so the study continues where it stopped. Start
# it from a clone of its own, so that edits to the working tree never reach a run midway.
# A new machine holds none of the last one's checkpoints: commit the records as variants
# finish (python scripts/study_records.py RUNS_DIR docs/study).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/study}
jobs=("${@:2}")
if [ ${#jobs[@]} -eq 0 ]; then
  jobs=(xnor:0 xnor:1 xnor:2 reactnet:0 reactnet:1 reactnet:2 xnor:3 xnor:4)
fi
for job in "${jobs[@]}"; do  # all checked before the first one trains for hours
  if ! [[ "$job" =~ ^(xnor|reactnet):[0-9]+$ ]]; then
    echo "error: a job is RECIPE:SEED with RECIPE xnor or reactnet, not '$job'" >&2
    exit 2
  fi
done
for job in "${jobs[@]}"; do
  recipe=${job%:*}
  seed=${job#*:}
  extra=()
  if [ "$recipe" = reactnet ]; then
    extra=(--config.hbn.budgets='(9.0,)' --config.hbn.num_random=1)
  fi
  echo "== $(date -u +%FT%TZ) $recipe seed $seed ($(git rev-parse --short HEAD))"
  python main.py --config=configs/fashion_mnist_study.py --config.recipe="$recipe" \
    --config.seed="$seed" --workdir="$runs/${recipe}_s$seed" "${extra[@]}"
done
