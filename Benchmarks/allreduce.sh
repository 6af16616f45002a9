#!/usr/bin/env bash
# Allreduce benchmark: bus bandwidth 4 KiB-64 MiB, our ring vs MPI_Allreduce in the same
# run (medians), and fused vs one-by-one allreduce of 200 tensors of 1-100 KiB.
# np 2 is the measurement (2 cores); np 4 oversubscribes and is reported as correctness
# only (the bench checks the ring's result at every size before timing it).
#   bash Benchmarks/allreduce.sh              # REPEATS=7 by default
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${REPEATS:-7}
CPU_FLAGS=$(grep -q ' avx2 ' /proc/cpuinfo && grep -q ' fma ' /proc/cpuinfo && echo "-Xswiftc -target-cpu -Xswiftc haswell" || true)
# shellcheck disable=SC2086
swift build -c release $CPU_FLAGS -Xswiftc -enable-testing --product loom >/dev/null
LOOM=$(swift build -c release $CPU_FLAGS -Xswiftc -enable-testing --show-bin-path)/loom
echo "## np 2"
"$LOOM" launch -np 2 -- allreduce-bench --repeats "$REPEATS"
echo
echo "## np 4 (oversubscribed: correctness only)"
"$LOOM" launch -np 4 -- allreduce-bench --repeats 3 --lazy-count 0
