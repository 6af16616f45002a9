#!/usr/bin/env bash
# Data-parallel throughput, Loom vs PyTorch DDP (gloo), on this machine in one run:
# 1 and 2 ranks, one BLAS thread per rank, Loom with overlap on and off. Prints each
# framework's images/s and its scaling efficiency (rate at 2 ranks / (2 x rate at 1)).
#   TORCH_PYTHON=/path/to/venv/bin/python bash Benchmarks/ddp_compare.sh [model] [batch-per-rank] [steps]
# (steps: timed steps per measurement, default 20; each side also runs 3 warm-up steps)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-convnet-bn}
BATCH=${2:-64}
STEPS=${3:-20}
PY=${TORCH_PYTHON:-python3}
CPU_FLAGS=$(grep -q ' avx2 ' /proc/cpuinfo && grep -q ' fma ' /proc/cpuinfo && echo "-Xswiftc -target-cpu -Xswiftc haswell" || true)
# shellcheck disable=SC2086
swift build -c release $CPU_FLAGS -Xswiftc -enable-testing --product loom >/dev/null
# shellcheck disable=SC2086
LOOM=$(swift build -c release $CPU_FLAGS -Xswiftc -enable-testing --show-bin-path)/loom
for np in 1 2; do
    echo "== loom, $np rank(s)"
    "$LOOM" launch -np "$np" -- ddp-bench --model "$MODEL" --batch-per-rank "$BATCH" --steps "$STEPS"
    echo "== torch, $np rank(s)"
    (cd Benchmarks && "$PY" torch_ddp.py --world "$np" --model "$MODEL" --batch-per-rank "$BATCH" --steps "$STEPS")
done
