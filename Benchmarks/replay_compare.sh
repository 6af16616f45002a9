#!/usr/bin/env bash
# Replay-service throughput, Loom vs DeepMind Reverb, on this machine in one run (issue 6):
# Loom's side (Benchmarks/replay_loom.sh), Reverb's side (Benchmarks/reverb_bench.py), then
# one Markdown table of medians (Benchmarks/replay_table.py). Prints each command and the
# machine load (uptime) before it runs.
#   bash Benchmarks/replay_compare.sh [--seconds S] [--repeats R] [--transport http2|framed]
# --transport picks the wire of Loom's clients: http2 (gRPC over HTTP/2, the default) or framed
# (the same RPCs over Loom's framed TCP transport, `loom-replay serve --framed-port`).
# Environment (all optional):
#   REVERB_PYTHON    Python with dm-reverb[tensorflow]==0.14.0 (default: python3 on PATH; a venv with `pip install 'dm-reverb[tensorflow]==0.14.0'`)
#   PYTHON           Python for the joiner, stdlib only (default python3)
#   REPLAY_OUT_DIR   where the two JSONL files go (default: a new temporary directory)
#   SKIP_LOOM=1 / SKIP_REVERB=1   reuse that side's JSONL already in REPLAY_OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_ROW=3
REPEATS=3
TRANSPORT=http2
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) SECONDS_PER_ROW=${2:?--seconds needs a value}; shift 2 ;;
        --seconds=*) SECONDS_PER_ROW=${1#*=}; shift ;;
        --repeats) REPEATS=${2:?--repeats needs a value}; shift 2 ;;
        --repeats=*) REPEATS=${1#*=}; shift ;;
        --transport) TRANSPORT=${2:?--transport needs a value}; shift 2 ;;
        --transport=*) TRANSPORT=${1#*=}; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "replay_compare.sh: unknown argument '$1' (expected --seconds S, --repeats R, --transport http2|framed)" >&2; exit 2 ;;
    esac
done

REVERB_PYTHON=${REVERB_PYTHON:-python3}
PYTHON=${PYTHON:-python3}
OUT_DIR=${REPLAY_OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/replay-compare.XXXXXX")}
mkdir -p "$OUT_DIR"
LOOM_OUT=$OUT_DIR/replay_loom.jsonl
REVERB_OUT=$OUT_DIR/replay_reverb.jsonl

run() {  # print the load and the command, then run it
    echo "== load: $(uptime)"
    echo "+ $*"
    "$@"
}

status=0
if [[ ${SKIP_LOOM:-0} == 1 ]]; then
    echo "== Loom: reusing $LOOM_OUT (SKIP_LOOM=1)"
elif [[ ! -f Benchmarks/replay_loom.sh ]]; then
    echo "replay_compare.sh: Benchmarks/replay_loom.sh is missing (Loom's side of the benchmark);" \
         "the table will show only Reverb's numbers" >&2
    : > "$LOOM_OUT"
    status=1
else
    echo "== Loom side"
    if ! run bash Benchmarks/replay_loom.sh "$LOOM_OUT" --seconds "$SECONDS_PER_ROW" --repeats "$REPEATS" --transport "$TRANSPORT"; then
        echo "replay_compare.sh: Loom's side failed; the table will show what it wrote" >&2
        status=1
    fi
fi

if [[ ${SKIP_REVERB:-0} == 1 ]]; then
    echo "== Reverb: reusing $REVERB_OUT (SKIP_REVERB=1)"
elif ! "$REVERB_PYTHON" -c "import reverb" >/dev/null 2>&1; then
    echo "replay_compare.sh: $REVERB_PYTHON cannot import reverb; create a venv and run" \
         "pip install 'dm-reverb[tensorflow]==0.14.0' (see BENCHMARKS.md), or set REVERB_PYTHON" >&2
    : > "$REVERB_OUT"
    status=1
else
    echo "== Reverb side"
    if ! run "$REVERB_PYTHON" Benchmarks/reverb_bench.py --out "$REVERB_OUT" \
            --seconds "$SECONDS_PER_ROW" --repeats "$REPEATS"; then
        echo "replay_compare.sh: Reverb's side failed; the table will show what it wrote" >&2
        status=1
    fi
fi

[[ -f $LOOM_OUT ]] || : > "$LOOM_OUT"
[[ -f $REVERB_OUT ]] || : > "$REVERB_OUT"
echo "== load: $(uptime)"
echo
"$PYTHON" Benchmarks/replay_table.py "$LOOM_OUT" "$REVERB_OUT" \
    --title "Replay throughput, Loom over ${TRANSPORT}, ${SECONDS_PER_ROW} s per row, ${REPEATS} repeat(s), $(nproc) cores"
echo
echo "JSONL: $LOOM_OUT $REVERB_OUT"
exit $status
