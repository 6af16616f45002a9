#!/usr/bin/env bash
# Loom replay service throughput: `loom-replay bench` starts `loom-replay serve` in its own
# process and measures it over loopback (127.0.0.1) for float32[100] steps and 84x84x4
# uint8 frames: insert (streaming writer), sample_b1, sample_b256 with each sampler
# selector, and ratio4 (SampleToInsertRatio 4, one inserter + one sampler process).
# Writes one JSON object per row and repeat (JSONL); Benchmarks' joiner takes medians.
#   bash Benchmarks/replay_loom.sh [OUT.jsonl] [--seconds S] [--repeats R] [other bench flags]
# Default OUT: replay_loom.jsonl. Release build under Services/ReplayService/.build-release
# (ignored by git); set LOOM_REPLAY_SCRATCH to build elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=Services/ReplayService
OUT=replay_loom.jsonl
if [[ $# -gt 0 && "$1" != -* ]]; then OUT=$1; shift; fi
SCRATCH=${LOOM_REPLAY_SCRATCH:-$PKG/.build-release}
swift build -c release --package-path "$PKG" --scratch-path "$SCRATCH" --product loom-replay >&2
BIN=$(swift build -c release --package-path "$PKG" --scratch-path "$SCRATCH" --show-bin-path)/loom-replay
: > "$OUT"
"$BIN" bench --out "$OUT" "$@" >/dev/null
cat "$OUT"
echo "replay_loom.sh: $(wc -l < "$OUT") rows in $OUT" >&2
