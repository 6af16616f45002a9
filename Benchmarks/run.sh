#!/usr/bin/env bash
# Runs Loom's op benchmarks and PyTorch's side by side, quiet and with a competing busy
# process, and prints Markdown tables (BENCHMARKS.md records their output).
#   bash Benchmarks/run.sh            # needs a venv with torch at $TORCH_PYTHON (default ./venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${TORCH_PYTHON:-./venv/bin/python}
REPEATS=${REPEATS:-7}
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "run.sh: $PY cannot import torch; create a venv and install a CPU-only torch (see BENCHMARKS.md)" >&2
    exit 1
fi
make build >/dev/null
LOOM=$(swift build -c release --show-bin-path)/loom
out=$(mktemp -d)
for mode in quiet busy; do
    flag=""
    [ "$mode" = busy ] && flag="--busy"
    OPENBLAS_NUM_THREADS=2 "$LOOM" bench --repeats "$REPEATS" --json "$out/loom-$mode.json" $flag >/dev/null
    "$PY" Benchmarks/torch_ops.py --threads 2 --repeats "$REPEATS" --json "$out/torch-$mode.json" $flag >/dev/null
    "$PY" Benchmarks/compare.py "$out/loom-$mode.json" "$out/torch-$mode.json" --title "$mode machine"
    echo
done
