#!/usr/bin/env bash
# Installs the Debian packages Loom needs, only those that are missing.
# Uses sudo when not root. Safe to run repeatedly.
set -euo pipefail

packages=(libopenblas-dev zlib1g-dev dataset-fashion-mnist pkg-config libopenmpi-dev openmpi-bin)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "setup: the Swift toolchain (6.x) is required and was not found on PATH" >&2
    exit 1
fi
