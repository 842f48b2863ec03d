# shellcheck shell=bash
# Support for the lab's end-to-end tests (tests/e2e/lab_*_test.sh). A test sources this file,
# calls e2e_init with its own namespace prefix, and uses check/rj; the lab it brings up is torn
# down on exit whatever happens, and the test fails if any check failed.
set -euo pipefail
export TZ=UTC LC_ALL=C

E2E_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
LAB="$E2E_REPO/deploy/lab/lab"
E2E_FAILS=0
E2E_CHECKS=0
E2E_NAME=$(basename "$0" .sh)

e2e_log() { printf '[%s] %s\n' "$E2E_NAME" "$*"; }

# e2e_init PREFIX: a private lab (namespace prefix, state dir, results dir) for this test.
e2e_init() {
  [ "$(id -u)" -eq 0 ] || { echo "FAIL: $E2E_NAME needs root (network namespaces)"; exit 1; }
  export PS_LAB_PREFIX=$1
  export PS_LAB_STATE=/run/pathsentry-lab/e2e-${1%-}
  E2E_RESULTS=$(mktemp -d "/tmp/pathsentry-e2e-${1%-}.XXXXXX")
  export PS_LAB_RESULTS=$E2E_RESULTS
  export PS_LAB_PROFILE=fast
  trap e2e_exit EXIT
  # a lab left by an earlier, killed run of this very test
  bash "$LAB" down >/dev/null
}

e2e_exit() {
  local rc=$?
  bash "$LAB" down >/dev/null 2>&1 || echo "[$E2E_NAME] WARNING: teardown failed"
  if [ "$rc" -ne 0 ] || [ "$E2E_FAILS" -ne 0 ]; then
    echo "[$E2E_NAME] FAILED: $E2E_FAILS of $E2E_CHECKS checks failed (exit $rc);" \
      "drill data kept in $E2E_RESULTS"
    [ "$rc" -ne 0 ] || rc=1
  else
    rm -rf -- "$E2E_RESULTS"
    echo "[$E2E_NAME] PASSED: $E2E_CHECKS checks"
  fi
  exit "$rc"
}

# check DESCRIPTION CMD...: one assertion.
check() {
  local what=$1
  shift
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if "$@"; then
    echo "  ok   $what"
  else
    echo "  FAIL $what"
    E2E_FAILS=$((E2E_FAILS + 1))
  fi
}

# rj FILE EXPR: evaluates a Python expression over a drill's result.json (bound to r); prints it.
rj() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def runs(d):
    return [x["state"] for x in r[d]["runs"]]
def switches(d):
    return ["%s>%s" % (e["from"], e["to"]) for e in r[d]["events"] if e["kind"] == "switchover"]
def actions():
    return [a["t"] for a in r["actions"]]
v = eval(sys.argv[2])
print(json.dumps(v) if not isinstance(v, str) else v)
PY
}
# rj_is FILE EXPR EXPECTED: the expression's value printed as JSON equals EXPECTED.
rj_is() {
  local got
  got=$(rj "$1" "$2") || return 1
  [ "$got" = "$3" ] || { echo "       $2 = $got, expected $3"; return 1; }
}
# rj_true FILE EXPR: the expression is true.
rj_true() {
  local got
  got=$(rj "$1" "$2") || return 1
  [ "$got" = true ] || { echo "       not true: $2"; return 1; }
}

# run_drill NAME: runs a drill on the test's lab; sets RESULT to its result.json.
run_drill() {
  e2e_log "drill $1"
  bash "$LAB" drill "$1" >"$E2E_RESULTS/drill-$1.out" 2>&1 || {
    cat "$E2E_RESULTS/drill-$1.out"
    return 1
  }
  sed -n '/^== per direction/,$p' "$E2E_RESULTS/drill-$1.out" | sed 's/^/    /'
  RESULT="$(cat "$PS_LAB_STATE/last-drill")/result.json"
  [ -f "$RESULT" ]
}

lab_ns_names() { ip netns list | awk '{print $1}' | grep "^${PS_LAB_PREFIX}" || true; }
# processes whose network namespace is one of the given inodes
procs_in_netns() {
  local inode p
  for p in /proc/[0-9]*; do
    inode=$(stat -L -c %i "$p/ns/net" 2>/dev/null) || continue
    for want in "$@"; do
      if [ "$inode" = "$want" ]; then
        # zombies are already dead, waiting for their parent
        [ "$(awk '{print $3}' "$p/stat" 2>/dev/null)" = Z ] || echo "${p#/proc/}"
      fi
    done
  done
}
root_links() { ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; }
