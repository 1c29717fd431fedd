#!/usr/bin/env bash
# The README's second command: install, build, and run the whole test suite.
#   scripts/test.sh            everything (~3 min cold build + ~1 min of tests on 2 cores)
#   scripts/test.sh -L kernels only one label (kernels, runtime, torch, slow, ...)
#   scripts/test.sh -LE slow   all but the slow ones
# Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
cd build/release
exec ctest --output-on-failure --timeout 900 -j"$(nproc)" "$@"
