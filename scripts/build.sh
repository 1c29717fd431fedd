#!/usr/bin/env bash
# Configures and builds one preset (default: release). Used by demo.sh and test.sh.
#   scripts/build.sh [preset] [extra cmake --build args...]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
shift || true
if [ ! -f "build/$preset/build.ninja" ]; then
  cmake --preset "$preset" >/dev/null
fi
cmake --build "build/$preset" -j"$(nproc)" "$@"
