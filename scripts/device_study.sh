#!/usr/bin/env bash
# One command for a lent GPU (issue 25, item 7; docs/reproduction.md, "A GPU run"): the
# accelerator benchmark at ResNet-18's paper size, then the converged study's whole xnor
# table for one seed (fbin, the two hybrids, their random controls, float) on
# Fashion-MNIST's own files, inside the device tool's 10-minute command.
#
#   scripts/device_study.sh OUT [DATA_DIR [SECONDS [FLAG ...]]]
#
# OUT receives at most 8 files (the tool's limit): device.txt, accelerator.json,
# accelerator.err, study.log, results.json, results.md, results.png. DATA_DIR (default
# shared/fashion-mnist) holds the four MNIST-format files (config.dataset=idx:DIR, read
# without TensorFlow, which the device image lacks). SECONDS (default 420) bounds the
# study; a study cut short leaves each finished variant's "done" line in study.log. FLAGs
# go to main.py, and BENCHMARK_FLAGS replace the benchmark's model choice (a CPU rehearsal
# shortens both with them).
#
# The device image has JAX, Flax, Optax and Orbax but not ml-collections: put its wheel
# in .whl/ first (docs/reproduction.md has the pip download line); binflax runs from
# this tree, not installed.
set -uo pipefail
out=${1:?usage: scripts/device_study.sh OUT [DATA_DIR [SECONDS [FLAG ...]]]}
data=${2:-shared/fashion-mnist}
seconds=${3:-420}
flags=("${@:4}")
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
data=$(cd "$data" && pwd) || exit 2
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/binflax-site .whl/*.whl || exit 2
  export PYTHONPATH=/tmp/binflax-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
{
  date -u +%FT%TZ
  nvidia-smi -L 2> /dev/null
  python3 -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'
  git rev-parse --short HEAD 2> /dev/null
} > "$out/device.txt" 2>&1
# shellcheck disable=SC2086  # BENCHMARK_FLAGS is a list of flags
timeout 150 python3 -m benchmarks.accelerator ${BENCHMARK_FLAGS:---models resnet18} \
  --pipeline_images 0 > "$out/accelerator.json" 2> "$out/accelerator.err"
echo "accelerator: exit $?" >> "$out/device.txt"
runs=$(mktemp -d)
SECONDS=0
timeout "$seconds" python3 main.py --config=configs/fashion_mnist_study.py \
  --config.dataset="idx:$data" --workdir="$runs/xnor_s0" "${flags[@]}" > "$out/study.log" 2>&1
echo "study: exit $? after ${SECONDS} s" >> "$out/device.txt"
for name in results.json results.md results.png; do
  [ -f "$runs/xnor_s0/$name" ] && cp "$runs/xnor_s0/$name" "$out/"
done
exit 0
