#!/usr/bin/env bash
# clang-tidy (.clang-tidy) over the project's own sources: every .cpp of the modules and apps in
# the build's compile_commands.json (not tests, benchmarks or generated files). Prints the
# findings and exits non-zero when there is any. Usage: scripts/tidy.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-${BUILD_DIR:-build}}
[ -f "$build/compile_commands.json" ] || { echo "tidy: no $build/compile_commands.json"; exit 2; }
mapfile -t files < <(python3 - "$build/compile_commands.json" "$PWD" "$build" <<'PY'
import json, os, sys
root = sys.argv[2]
build = os.path.realpath(sys.argv[3])
seen = set()
for e in json.load(open(sys.argv[1])):
    f = os.path.realpath(os.path.join(e["directory"], e["file"]))
    rel = os.path.relpath(f, root)
    # <build>/tests/ too: the files that precompile Catch2's header for the tests (a GCC .gch,
    # which clang cannot read).
    if rel.startswith(("tests/", "bench/", "..")) or f in seen or \
            os.path.relpath(f, build).startswith("tests/"):
        continue
    seen.add(f)
    print(rel)
PY
)
echo "clang-tidy: ${#files[@]} files"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
printf '%s\n' "${files[@]}" | xargs -P"$(nproc)" -n4 clang-tidy -p "$build" --quiet >"$out" 2>/dev/null ||
  status=$?
if grep -qE '(warning|error):' "$out"; then
  grep -E '(warning|error):' "$out"
  echo "clang-tidy: $(grep -cE '(warning|error):' "$out") finding(s)"
  exit 1
fi
[ "$status" -eq 0 ] || { cat "$out"; echo "clang-tidy failed (status $status)"; exit 1; }
echo "clang-tidy: no findings"
