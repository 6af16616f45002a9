#!/usr/bin/env bash
# Regenerates Sources/ReplayServiceProto/Generated from Protos/replay.proto.
#
# Builds protoc-gen-swift and protoc-gen-grpc-swift-2 from this package's own
# dependencies (so the generated code matches the runtime versions) and runs Debian's
# protoc (package protobuf-compiler, installed here when missing). SCRATCH_PATH, when
# set, is passed to `swift build --scratch-path` (reuse an existing build directory).
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null 2>&1; then
  echo "protoc not found; installing protobuf-compiler" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y protobuf-compiler || { $SUDO apt-get update && $SUDO apt-get install -y protobuf-compiler; }
fi

OUT=Sources/ReplayServiceProto/Generated
mkdir -p "$OUT"
# SwiftPM refuses a package with an empty target: keep a placeholder while bootstrapping.
if ! ls "$OUT"/*.swift >/dev/null 2>&1; then
  echo "// Placeholder while scripts/generate.sh runs." > "$OUT/Placeholder.swift"
fi

SCRATCH=()
if [ -n "${SCRATCH_PATH:-}" ]; then SCRATCH=(--scratch-path "$SCRATCH_PATH"); fi
swift build "${SCRATCH[@]}" --product protoc-gen-swift
swift build "${SCRATCH[@]}" --product protoc-gen-grpc-swift-2
BIN="$(swift build "${SCRATCH[@]}" --show-bin-path)"

rm -f "$OUT"/*.pb.swift "$OUT"/*.grpc.swift "$OUT/Placeholder.swift"
protoc \
  --plugin=protoc-gen-swift="$BIN/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift="$BIN/protoc-gen-grpc-swift-2" \
  --swift_out="$OUT" \
  --swift_opt=Visibility=Public \
  --grpc-swift_out="$OUT" \
  --grpc-swift_opt=Visibility=Public,Server=true,Client=true \
  -I Protos \
  Protos/replay.proto
echo "generated: $(ls "$OUT")"
