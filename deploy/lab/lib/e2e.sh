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
# PS_E2E_TAG (one or two lowercase letters) is put in front of the prefix, so two checkouts
# can run the same test at once without sharing namespaces.
e2e_init() {
  [ "$(id -u)" -eq 0 ] || { echo "FAIL: $E2E_NAME needs root (network namespaces)"; exit 1; }
  local prefix=${PS_E2E_TAG:-}$1
  export PS_LAB_PREFIX=$prefix
  export PS_LAB_STATE=/run/pathsentry-lab/e2e-${prefix%-}
  E2E_RESULTS=$(mktemp -d "/tmp/pathsentry-e2e-${prefix%-}.XXXXXX")
  export PS_LAB_RESULTS=$E2E_RESULTS
  # E2E_PROFILE (set by the test before e2e_init): the lab's timing profile, default fast
  export PS_LAB_PROFILE=${E2E_PROFILE:-fast}
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
    # PS_E2E_KEEP=1 keeps the drill data of a passed run too
    if [ "${PS_E2E_KEEP:-0}" = 1 ]; then
      echo "[$E2E_NAME] drill data kept in $E2E_RESULTS"
    else
      rm -rf -- "$E2E_RESULTS"
    fi
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
  grep 'warning' "$E2E_RESULTS/drill-$1.out" | sed 's/^/    /' || true
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

# ------------------------------------------------------------------ attribution tests (attr_*)
# The agent with both taps at 1000 probes/s (ICMP + STAMP) on the DC host, the reflector on the
# ECS, through one drill; then deploy/lab/attrcheck compares the agent's JSON lines with the
# drill's per-probe ground truth (deploy/lab/probetruth) and every assertion becomes a check.

# attr_init PREFIX BUILD_DIR [PROFILE]: e2e_init, the binaries, the lab up (profile fast or
# realistic), the reflector running.
attr_init() {
  local build=$2
  E2E_PROFILE=${3:-fast}
  ATTR_PROBE=$(realpath "$build/probe/pathsentry-probe" 2>/dev/null || true)
  ATTR_REFLECTOR=$(realpath "$build/probe/pathsentry-reflector" 2>/dev/null || true)
  if [ ! -x "$ATTR_PROBE" ] || [ ! -x "$ATTR_REFLECTOR" ]; then
    echo "FAIL: build pathsentry-probe and pathsentry-reflector in $build first"
    exit 1
  fi
  e2e_init "$1"
  e2e_log "lab up (profile $PS_LAB_PROFILE)"
  bash "$LAB" up >/dev/null
  eval "$(bash "$LAB" env | grep -E '^PS_LAB_[A-Z0-9_]+=[^ ]*$')"
  bash "$LAB" start reflector ecs "$ATTR_REFLECTOR" --allow "$PS_LAB_DC_NET" >/dev/null
  for _ in $(seq 50); do
    grep -q listening "$PS_LAB_STATE/logs/app-reflector.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "FAIL: the reflector did not start: $(cat "$PS_LAB_STATE/logs/app-reflector.out")"
  exit 1
}

# attr_start_agent: the agent on the DC host, records to $ATTR_OUT.
# ESP correlation window -200..+8000 us: wide enough for the lab's userspace ESP, whose delay
# reaches milliseconds right after a failover (a narrower window leaves those probes unknown or,
# if lost, undetermined: their outage then spans them). Probe sizes cycle across the agent's
# sessions (the agent's default with an ESP tap: 2 x rate x window = 33 sizes, a size recurs
# every 16 ms), so no two probes of one length share a window.
# PS_E2E_ESP_WINDOW=LO_US:HI_US tries another window; PS_E2E_AGENT_ARGS: more agent options
# (word-split).
# PS_E2E_TAP_DEFAULTS=1: the README's tap line exactly, IFACE:ipsec:esp:LOCAL:REMOTE (no
# transform: learned; the default window and size cycle).
attr_start_agent() {
  local transform window=${PS_E2E_ESP_WINDOW:--200:8000} extra=() inet
  read -r -a extra <<<"${PS_E2E_AGENT_ARGS:-}"
  case "$PS_LAB_ESP_PROPOSAL" in
    aes*-sha1 | aes*-sha256 | aes*-sha384 | aes*-sha512) transform=aes-cbc-${PS_LAB_ESP_PROPOSAL##*-} ;;
    aes*gcm*) transform=aes-gcm-${PS_LAB_ESP_PROPOSAL##*gcm} ;;
    *) transform=learn ;;
  esac
  inet="$PS_LAB_TAP_INET:$PS_LAB_TAP_INET_PATH:esp:$PS_LAB_TUNNEL_LOCAL:$PS_LAB_TUNNEL_REMOTE"
  if [ "${PS_E2E_TAP_DEFAULTS:-0}" = 1 ]; then
    transform="learned (the README's tap line)" window=default
  else
    inet="$inet:$transform:$window"
  fi
  ATTR_OUT=$E2E_RESULTS/agent.jsonl
  ATTR_LOG=$E2E_RESULTS/agent.log
  ATTR_SUMMARY=$E2E_RESULTS/agent-summary.json
  e2e_log "agent: 1000 probes/s ICMP + STAMP, ESP window $window us, transform $transform${extra[*]:+, ${extra[*]}}"
  bash "$LAB" start agent dc "$ATTR_PROBE" --target "$PS_LAB_ECS" --proto both --rate 1000 \
    --source "$PS_LAB_DC_HOST" --timeout-ms 500 --records "$ATTR_OUT" \
    --summary-json "$ATTR_SUMMARY" \
    --tap "$PS_LAB_TAP_EC:$PS_LAB_TAP_EC_PATH:clear" --tap "$inet" \
    "${extra[@]}" >/dev/null
  sleep 1.5 # sessions up, the first path established silently
}

attr_stop_agent() {
  bash "$LAB" stop agent >/dev/null
  cp "$PS_LAB_STATE/logs/app-agent.out" "$ATTR_LOG"
  e2e_log "agent log (events, attribution and tap lines):"
  grep -E '^event|attribution:|^tap |pathsentry-probe:' "$ATTR_LOG" | sed 's/^/    /' | tail -n 40
}

# attr_drill DRILL [ATTRCHECK ARGS...]: agent started, drill run, agent stopped, the comparison
# printed and every one of its assertions checked. Sets ATTR_JSON (attrcheck's output).
attr_drill() {
  local drill=$1
  shift
  attr_start_agent
  run_drill "$drill"
  local dir
  dir=$(cat "$PS_LAB_STATE/last-drill")
  sleep 1 # the agent's last windows and records
  attr_stop_agent
  [ -f "$dir/probes.json" ] || {
    check "per-probe ground truth written (probes.json)" false
    return 1
  }
  ATTR_JSON=$E2E_RESULTS/attrcheck.json
  # the detector's rules the agent implements (deploy/lab/probetruth's Model, --rules)
  # the host's time sync may step the realtime clock mid-drill (the agent says so at exit)
  local stepped=()
  if grep -q 'realtime clock stepped' "$ATTR_LOG"; then stepped=(--clock-stepped); fi
  python3 "$E2E_REPO/deploy/lab/attrcheck" "$ATTR_OUT" "$dir/probes.json" --json "$ATTR_JSON" \
    --summary "$ATTR_SUMMARY" "${stepped[@]}" \
    --rules "${PS_E2E_RULES:-2}" "$@" | sed 's/^/    /'
  # every assertion a check: one line each, "ok|fail<TAB>what<TAB>detail"
  local n=0 st what detail
  while IFS=$'\t' read -r st what detail; do
    n=$((n + 1))
    check "$what" attr_assert_ok "$st" "$detail"
  done < <(python3 -c 'import json, sys
for a in json.load(open(sys.argv[1]))["assertions"]:
    print("%s\t%s\t%s" % ("ok" if a["ok"] else "fail", a["what"].replace("\t", " "),
                          a["detail"].replace("\t", " ").replace("\n", " ")[:600]))' "$ATTR_JSON")
  [ "$n" -gt 0 ] || { check "attrcheck made assertions" false; return 1; }
  check "the events were logged live on the agent's output" attr_log_has_events
}
attr_assert_ok() {
  [ "$1" = ok ] || { echo "       $2"; return 1; }
}
# The agent logs an `event ...` line per event it emitted in its JSON lines.
attr_log_has_events() {
  local n_json n_log
  n_json=$(grep -c '"type":"event"' "$ATTR_OUT" || true)
  n_log=$(grep -c '^event ' "$ATTR_LOG" || true)
  [ "$n_json" = "$n_log" ] || { echo "       $n_json events in the JSON lines, $n_log on the log"; return 1; }
}
