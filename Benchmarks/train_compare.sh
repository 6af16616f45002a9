#!/usr/bin/env bash
# Training throughput, Loom vs PyTorch on the same shapes (random inputs, SGD momentum),
# quiet and with a busy core. Prints one line per run; BENCHMARKS.md records them.
#   TORCH_PYTHON=venv/bin/python bash Benchmarks/train_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${TORCH_PYTHON:-./venv/bin/python}
make build >/dev/null
LOOM=$(swift build -c release --show-bin-path)/loom
for busy in "" "--busy"; do
    for spec in "lenet5 64 20" "convnet-bn 128 5"; do
        set -- $spec
        "$LOOM" train-bench --model "$1" --batch-size "$2" --steps "$3" $busy
        "$PY" Benchmarks/torch_train.py --model "$1" --batch-size "$2" --steps "$3" --threads 2 $busy
    done
done
