#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, preset "fuzz": clang++ with ASan+UBSan, build-fuzz/) and
# runs each for a bounded time from its seed corpus fuzz/corpus/<target>/ (docs/testing.md
# "Fuzzing"). The seeds, and every input that once crashed (kept there), run first; new inputs
# go to build-fuzz/fuzz-work/<target>/, never into the repository. A crash, a sanitizer report,
# an uncaught exception, a timeout or a memory blow-up fails the run: the input is written to
# build-fuzz/crashes/<target>-crash-… and the exit status is 1.
#   PS_FUZZ_SECONDS  seconds per target (default 10)
#   PS_FUZZ_JOBS     targets run at once (default: the number of CPUs)
#   arguments        target names (decode_frame, stamp, …) to run only those
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${PS_FUZZ_SECONDS:-10}
jobs=${PS_FUZZ_JOBS:-$(nproc)}
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake --preset fuzz "${launcher[@]}" >/dev/null
cmake --build --preset fuzz -j"$(nproc)" --target fuzz_all

bin=build-fuzz/fuzz
crashes=build-fuzz/crashes
work=build-fuzz/fuzz-work
rm -rf "$work"
mkdir -p "$crashes" "$work"
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for d in fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi
for t in "${targets[@]}"; do
  [ -x "$bin/fuzz_$t" ] || { echo "fuzz: no target fuzz_$t (fuzz/CMakeLists.txt)" >&2; exit 2; }
done

# One target: its log in $work/<t>.log, its exit status in $work/<t>.rc.
run_one() {
  local t=$1
  mkdir -p "$work/$t"
  set +e
  "$bin/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$crashes/$t-" "$work/$t" "fuzz/corpus/$t" </dev/null >"$work/$t.log" 2>&1
  echo $? >"$work/$t.rc"
}

running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=()
for t in "${targets[@]}"; do
  rc=$(cat "$work/$t.rc")
  execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$work/$t.log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1)
  if [ "$rc" = 0 ]; then
    printf 'fuzz: %-18s ok      %10s executions in %ss (%s)\n' "$t" "${execs:-?}" "$secs" "$cov"
  else
    printf 'fuzz: %-18s FAILED  (exit %s) after %s executions\n' "$t" "$rc" "${execs:-?}"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*Test unit written|.*uncaught)' \
      "$work/$t.log" | head -5 | sed 's/^/    /'
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}; inputs in $crashes/, logs in $work/" >&2
  echo "fuzz: reproduce with $bin/fuzz_<target> $crashes/<file>" >&2
  exit 1
fi
