#!/usr/bin/env bash
# `loom replay serve` end to end: loom finds loom-replay (the service's test build), serves
# a table on a free loopback port (gRPC over HTTP/2, and the framed transport on another),
# and shuts down cleanly on SIGTERM after writing a checkpoint. Run by `make test` after the service's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
CPU_FLAGS=""
if grep -q ' avx2 ' /proc/cpuinfo && grep -q ' fma ' /proc/cpuinfo; then CPU_FLAGS="-Xswiftc -target-cpu -Xswiftc haswell"; fi
LOOM="$($SWIFT build -c release $CPU_FLAGS -Xswiftc -enable-testing --show-bin-path)/loom"
export LOOM_REPLAY="$(cd Services/ReplayService && $SWIFT build --show-bin-path)/loom-replay"
[ -x "$LOOM" ] || { echo "replay_check: $LOOM not built (run make test)"; exit 1; }
[ -x "$LOOM_REPLAY" ] || { echo "replay_check: $LOOM_REPLAY not built"; exit 1; }

work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/tables.yaml" <<'YAML'
tables:
  - name: replay
    sampler: {kind: uniform}
    remover: {kind: fifo}
    maxSize: 100
    rateLimiter: {samplesPerInsert: 1, minSizeToSample: 1, minDiff: -100, maxDiff: 100}
YAML

"$LOOM" replay --dry-run serve --config "$work/tables.yaml" | grep -q "loom-replay serve --config" \
  || { echo "replay_check: loom replay --dry-run did not name loom-replay"; exit 1; }

"$LOOM" replay serve --config "$work/tables.yaml" --port 0 --framed-port 0 --checkpoint-dir "$work/ckpt" --checkpoint-on-exit \
  > "$work/out.log" 2> "$work/err.log" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "serving replay on 127.0.0.1:" "$work/out.log" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "serving replay on 127.0.0.1:" "$work/out.log"; then
  echo "replay_check: the server did not start"; cat "$work/out.log" "$work/err.log"; exit 1
fi
echo "replay_check: $(head -1 "$work/out.log")"
grep -q "framed on 127.0.0.1:[0-9]" "$work/out.log" || { echo "replay_check: no framed port in the serving line"; exit 1; }
kill -TERM $pid
status=0; wait $pid || status=$?
if [ $status -ne 0 ]; then echo "replay_check: exit status $status after SIGTERM"; cat "$work/err.log"; exit 1; fi
grep -q "checkpoint written" "$work/err.log" || { echo "replay_check: no checkpoint on exit"; cat "$work/err.log"; exit 1; }
ls "$work/ckpt"/*/DONE > /dev/null 2>&1 || ls -R "$work/ckpt" | grep -q DONE \
  || { echo "replay_check: checkpoint has no DONE marker"; ls -R "$work/ckpt"; exit 1; }
echo "replay_check: ok (served, SIGTERM, checkpoint with DONE marker)"
