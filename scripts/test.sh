#!/usr/bin/env bash
# The README's test command: installs what is missing, builds (dev and release presets), checks
# formatting and clang-tidy, and runs every test:
# unit, integration, privileged (raw sockets, namespaces: needs root) and the e2e lab drills;
# then the unit and integration tests again built with AddressSanitizer + UBSan (preset
# "asan", build-asan/; PS_SKIP_ASAN=1 skips that stage for a quick local run); then every
# libFuzzer target for PS_FUZZ_SECONDS (default 10) each from its seed corpus (scripts/fuzz.sh,
# preset "fuzz", build-fuzz/; PS_SKIP_FUZZ=1 skips it). A crash fails the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# stage NAME: a stage's heading with the time since the start, so a log shows where the wall
# time went (the whole command must stay well inside CI's 90 minutes). The stages run one after
# another: the builds beside the drills, even at SCHED_IDLE, made the drills twice as slow on a
# 2-vCPU VM and saved no time (README.md, "Every test").
stage() { printf '== %s (at %dm%02ds)\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }
stage "dependencies"
bash scripts/deps.sh
stage "dev build"
# Line tables only (-g1: file:line in backtraces, perf and sanitizer reports; no variables or
# types) in the test command's dev build: full -g cost a quarter of the compile time of the
# Beast-heavy files (collector/src/server.cpp 122 s -> 94 s, compiled side by side). Still
# RelWithDebInfo (-O2) and -Werror; scripts/build.sh alone keeps full -g.
bash scripts/build.sh -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG"
build=${BUILD_DIR:-build}
stage "release build (the packagers' preset: no -Werror, -O3, no tests or benchmarks)"
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
stage "format check"
bash scripts/format.sh --check
stage "clang-tidy"
bash scripts/tidy.sh "$build"
stage "tests (unit, integration, privileged)"
# Unit, integration and privileged tests run once. The e2e lab drills run real BGP and IPsec
# timers whose phases differ from run to run: a drill that fails is run once more (ctest
# --repeat until-pass:2), its first attempt's output kept in the log and named again at the
# end, so a flaky drill stays visible without losing the whole run. A failing test's own output
# sits in the middle of a long log; on failure its failed checks (e2e "FAIL" lines with the
# detail printed before each, Catch2 "FAILED:" blocks) are printed again at the very end, where
# a log's tail shows them. Arguments go to both ctest runs (e.g. -R NAME).
mkdir -p "$build/test-logs"
# failed_checks LOG...: the failed checks in ctest logs, the last N (120 by default) lines
failed_checks() {
  grep -a -h -B2 -A3 -E '^  FAIL |FAILED:$|^FAIL: ' "$@" | cut -c1-700 | tail -n "${N:-120}" || true
}
# Each test case is its own CTest test (its own process) here; "whole" (one process per test
# executable, for the sanitizer stage) is left out. Unit, integration, browser and Prometheus
# tests run two at a time (the ASan stage runs them so too); the privileged ones (namespaces,
# raw sockets, a full disk) one at a time.
ctest_rc=0
(
  rc=0
  cd "$build"
  ctest --output-on-failure -j"$(nproc)" -LE 'e2e|whole|privileged' "$@" || rc=$?
  ctest --output-on-failure -j1 -L privileged "$@" || rc=$?
  exit "$rc"
) 2>&1 | tee "$build/test-logs/ctest.log" || ctest_rc=$?
stage "e2e lab drills"
(cd "$build" && ctest --output-on-failure -j1 -L e2e --repeat until-pass:2 "$@") 2>&1 |
  tee "$build/test-logs/ctest-e2e.log" || ctest_rc=$?
retried=$(grep -a -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*\*\*\*(Failed|Timeout)' \
  "$build/test-logs/ctest-e2e.log" | sed -E 's/.*Test +#[0-9]+: ([^ ]+) .*/\1/' | sort -u || true)
if [ -n "$retried" ]; then
  echo "== e2e drills that failed a first attempt (output above; run again):"
  printf '   %s\n' $retried
  N=80 failed_checks "$build/test-logs/ctest-e2e.log"
fi
if [ "$ctest_rc" -ne 0 ]; then
  echo "== failed checks (again, from $build/test-logs)"
  failed_checks "$build/test-logs/ctest.log" "$build/test-logs/ctest-e2e.log"
  exit "$ctest_rc"
fi
if [ "${PS_SKIP_ASAN:-0}" != 1 ]; then
  stage "unit and integration tests under AddressSanitizer + UBSan"
  # Line tables only, as in the dev build: ASan and UBSan reports name file and line; full -g
  # costs about a quarter of the compile time of the Beast-heavy files.
  cmake --preset asan -DCMAKE_CXX_FLAGS_DEBUG="-g1" >/dev/null
  cmake --build --preset asan -j"$(nproc)"
  # Each test executable's unit and integration cases in one process ("whole", 12 processes;
  # per test case, 539 processes took 157 s, mostly ASan's start-up), and the few unit and
  # integration tests that are scripts, two at a time (no test may assert on timing; the few
  # that must run alone are RUN_SERIAL).
  ctest --preset asan -j"$(nproc)"
fi
if [ "${PS_SKIP_FUZZ:-0}" != 1 ]; then
  stage "fuzzing: each libFuzzer target for ${PS_FUZZ_SECONDS:-10} s from its seed corpus"
  bash scripts/fuzz.sh
fi
stage "done"
