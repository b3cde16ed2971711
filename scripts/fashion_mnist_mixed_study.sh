#!/usr/bin/env bash
# The mixed-precision Fashion-MNIST study of docs/reproduction.md: one hbn run per xnor
# seed (0, 1, 2) with configs/fashion_mnist_mixed_study.py. fbin and float are those of
# the binary study's run of the same seed (BINARY_RUNS/xnor_sS), copied once that run has
# finished (its results.json lists them): the same config and seed train them to the
# same weights.
#
#   scripts/fashion_mnist_mixed_study.sh [RUNS_DIR] [BINARY_RUNS] >> mixed.log 2>&1
#                                        # defaults: runs/mixed runs/study
#
# Run it again after an interruption: every variant resumes from its own checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/mixed}
binary=${2:-runs/study}
for seed in 0 1 2; do
  workdir="$runs/xnor_s$seed"
  mkdir -p "$workdir"
  for variant in fbin float; do
    source="$binary/xnor_s$seed/$variant"
    if [ ! -d "$workdir/$variant" ] && [ -d "$source" ] \
      && grep -q "\"$variant\": {" "$binary/xnor_s$seed/results.json" 2>/dev/null; then
      echo "== reusing $source (finished in the binary study)"
      cp -r "$source" "$workdir/$variant"
    fi
  done
  echo "== $(date -u +%FT%TZ) mixed xnor seed $seed ($(git rev-parse --short HEAD))"
  python main.py --config=configs/fashion_mnist_mixed_study.py --config.seed="$seed" \
    --workdir="$workdir"
done
