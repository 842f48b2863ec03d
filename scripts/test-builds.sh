#!/usr/bin/env bash
# The test command's builds that its tests do not need until the end, run one after another:
# the packagers' release preset, clang-tidy over the dev build's sources, the AddressSanitizer +
# UBSan build (preset "asan") and the libFuzzer targets (preset "fuzz"). scripts/test.sh starts
# this at SCHED_IDLE beside the dev build's tests and e2e drills (it gets only CPU time they
# leave idle) and waits for it before the ASan tests. Each step's heading has the time since
# the script started; the first step that fails ends it with that step's status.
#   PS_SKIP_ASAN=1 / PS_SKIP_FUZZ=1   skip the ASan / fuzz build (as scripts/test.sh does)
#   $1                                 the dev build's directory (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-${BUILD_DIR:-build}}
step() { printf '== background: %s (at %dm%02ds)\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }
step "release build (the packagers' preset: no -Werror, -O3, no tests or benchmarks)"
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
step "clang-tidy"
bash scripts/tidy.sh "$build"
if [ "${PS_SKIP_ASAN:-0}" != 1 ]; then
  step "AddressSanitizer + UBSan build"
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j"$(nproc)"
fi
if [ "${PS_SKIP_FUZZ:-0}" != 1 ]; then
  step "libFuzzer targets"
  PS_FUZZ_BUILD_ONLY=1 bash scripts/fuzz.sh
fi
step "done"
