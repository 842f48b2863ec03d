# shellcheck shell=bash
# Support for the collector drills (tests/e2e/collector_*_test.sh): the lab with its reflector
# (attr_init), the collector in the host's namespace reached by the agent through a Unix socket
# in the lab's state dir (no route between the lab and the host), an agent at 10 000 probes/s
# (ICMP + STAMP, both taps) shipping to it, and deploy/lab/shipcheck, which compares the agent's
# own JSON lines with the collector's database.
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib/e2e.sh"

# coll_init PREFIX BUILD_DIR: attr_init + the collector binary, its token, database and socket.
coll_init() {
  local build=$2
  COLL_BIN=$(realpath "$build/probe/pathsentry-collector" 2>/dev/null || true)
  [ -x "$COLL_BIN" ] || { echo "FAIL: build pathsentry-collector in $build first"; exit 1; }
  attr_init "$1" "$build"
  trap 'coll_exit' EXIT
  COLL_DB=$E2E_RESULTS/collector.db
  COLL_SOCK=$PS_LAB_STATE/collector.sock
  COLL_TOKEN=$E2E_RESULTS/ingest.token
  COLL_LOG=$E2E_RESULTS/collector.log
  COLL_SPOOL=$E2E_RESULTS/spool
  COLL_PID=
  COLL_RUNS=0
  (umask 077 && head -c 24 /dev/urandom | base64 >"$COLL_TOKEN")
}

# The collector is this test's own child (started and stopped by PID), not a lab app: the lab's
# lock is held by a running drill, and the collector is killed and restarted during one.
coll_exit() {
  local rc=$?
  coll_kill TERM
  (exit "$rc")
  e2e_exit
}

coll_start() {
  COLL_RUNS=$((COLL_RUNS + 1))
  rm -f "$COLL_SOCK"
  "$COLL_BIN" --db "$COLL_DB" --listen off --listen-unix "$COLL_SOCK" --token-file "$COLL_TOKEN" \
    >>"$COLL_LOG" 2>&1 </dev/null &
  COLL_PID=$!
  local _
  for _ in $(seq 100); do
    [ -S "$COLL_SOCK" ] && return 0
    kill -0 "$COLL_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "FAIL: the collector did not start:"
  tail -n 20 "$COLL_LOG"
  return 1
}

# coll_kill SIGNAL: signals our collector and waits for it to end.
coll_kill() {
  [ -n "${COLL_PID:-}" ] || return 0
  kill "-$1" "$COLL_PID" 2>/dev/null || true
  wait "$COLL_PID" 2>/dev/null || true
  COLL_PID=
}

# coll_agent_config FILE: the agent's [collector] section (TOML-only keys: the spool's bound is
# raised so that two minutes without a collector at 10 000 probes/s fit: nothing may be dropped).
coll_agent_config() {
  cat >"$1" <<EOF
[agent]
name = "lab-dc"
[collector]
url = "unix:$COLL_SOCK"
token_file = "$COLL_TOKEN"
spool_dir = "$COLL_SPOOL"
spool_max_mb = 4096
EOF
}

# coll_start_agent NAME RECORDS SUMMARY: the agent on the DC host at 5000/s ICMP + 5000/s STAMP
# with both taps, its JSON lines and summary kept for the comparison.
coll_start_agent() {
  local name=$1 records=$2 summary=$3 transform inet cfg=$E2E_RESULTS/agent.toml
  case "$PS_LAB_ESP_PROPOSAL" in
    aes*-sha1 | aes*-sha256 | aes*-sha384 | aes*-sha512) transform=aes-cbc-${PS_LAB_ESP_PROPOSAL##*-} ;;
    aes*gcm*) transform=aes-gcm-${PS_LAB_ESP_PROPOSAL##*gcm} ;;
    *) transform=learn ;;
  esac
  inet="$PS_LAB_TAP_INET:$PS_LAB_TAP_INET_PATH:esp:$PS_LAB_TUNNEL_LOCAL:$PS_LAB_TUNNEL_REMOTE:$transform:-200:8000"
  coll_agent_config "$cfg"
  e2e_log "agent $name: 5000/s ICMP + 5000/s STAMP, both taps, shipping to unix:$COLL_SOCK"
  bash "$LAB" start "$name" dc "$ATTR_PROBE" --config "$cfg" --target "$PS_LAB_ECS" \
    --proto both --rate 5000 --source "$PS_LAB_DC_HOST" --timeout-ms 500 --records "$records" \
    --summary-json "$summary" --metrics-listen off \
    --tap "$PS_LAB_TAP_EC:$PS_LAB_TAP_EC_PATH:clear" --tap "$inet" >/dev/null
}

# app_pid NAME: the PID of the lab app NAME while it runs.
app_pid() { bash "$LAB" pids | awk -v n="app-$1" '$1 == n && $4 == "running" { print $2 }'; }

# coll_stop_agent NAME: SIGTERM to the agent and wait (up to 60 s) for it to flush and exit
# (not `lab stop`, which kills after 3 s).
coll_stop_agent() {
  local pid _
  pid=$(app_pid "$1")
  [ -n "$pid" ] || { echo "       agent $1 was not running"; return 1; }
  kill -TERM "$pid"
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "       agent $1 still running 60 s after SIGTERM"
    return 1
  fi
  cp "$PS_LAB_STATE/logs/app-$1.out" "$E2E_RESULTS/$1.log"
}

# spool_files: batch files waiting in the spool (not rejected/).
spool_files() { find "$COLL_SPOOL" -maxdepth 1 -name '*.ndjson' 2>/dev/null | wc -l; }

# coll_wait_drained TIMEOUT_S: the agent's spool holds at most the batch being sent.
coll_wait_drained() {
  local t=0
  while [ "$(spool_files)" -gt 1 ] && [ "$t" -lt "$(($1 * 10))" ]; do
    sleep 0.1
    t=$((t + 1))
  done
  e2e_log "spool: $(spool_files) file(s) after $((t / 10)) s"
}
