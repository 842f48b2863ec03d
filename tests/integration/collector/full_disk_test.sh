#!/usr/bin/env bash
# Privileged (issue 13): a full disk under the collector's database, then under the agent's spool,
# on small tmpfs mounts in a private mount namespace (unshare -m: nothing leaks to the host).
# An agent probes 127.0.0.1 (ICMP, 200/s) and ships to a collector on loopback.
#  1. The database's tmpfs filled up: ingest answers 503 with Retry-After, the agent keeps its
#     batches spooled; space freed: the spool drains and the database holds every probe the agent
#     sent exactly once (deploy/lab/shipcheck against the agent's own records).
#  2. The spool's tmpfs filled up: the agent says "cannot spool batch ...: No space left on
#     device" and counts it (its summary's "spool unwritable"), and the collector still gets
#     what could be spooled once space returns.
# Usage: full_disk_test.sh BUILD_DIR REPO_DIR      (exit 77 = skipped: not root)
set -euo pipefail
build=$(cd "$1" && pwd)
repo=$(cd "$2" && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root (mounts tmpfs in a private mount namespace)"
  exit 77
fi
if [ -z "${PS_FULLDISK_NS:-}" ]; then
  PS_FULLDISK_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi

collector=$build/probe/pathsentry-collector
probe=$build/probe/pathsentry-probe
work=$(mktemp -d /tmp/pathsentry-fulldisk-XXXXXX)
coll_pid=
agent_pid=
fails=0
cleanup() {
  [ -n "$agent_pid" ] && kill -KILL "$agent_pid" 2>/dev/null
  [ -n "$coll_pid" ] && kill -KILL "$coll_pid" 2>/dev/null
  wait 2>/dev/null
  umount "$work/db" "$work/spool" 2>/dev/null
  if [ "$fails" -eq 0 ]; then rm -rf "$work"; else echo "(kept $work)"; fi
}
trap cleanup EXIT
check() {
  local what=$1
  shift
  if "$@"; then echo "  ok    $what"; else echo "  FAIL  $what"; fails=$((fails + 1)); fi
}
# wait_for SECONDS CMD...: polls CMD every 0.1 s.
wait_for() {
  local n=$(($1 * 10))
  shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}
fill() { dd if=/dev/zero of="$1/filler" bs=64k 2>/dev/null || true; }
spool_files() { find "$work/spool" -maxdepth 1 -name '*.ndjson' | wc -l; }
spool_empty() { [ "$(spool_files)" -eq 0 ]; }
log_has() { grep -q "$2" "$1"; }
db_has_probes() { [ "$(sqlite3 "$work/db/c.db" 'SELECT count(*) FROM probes' 2>/dev/null || echo 0)" -gt 0 ]; }

mkdir -p "$work/db" "$work/spool"
mount -t tmpfs -o size=4m tmpfs "$work/db"
printf 'fulldisk-token-0123456789abcdef\n' >"$work/token"
chmod 600 "$work/token"

start_collector() {
  "$collector" --listen 127.0.0.1:0 --token-file "$work/token" --db "$work/db/c.db" \
    >"$work/coll.out" 2>>"$work/coll.err" &
  coll_pid=$!
  wait_for 20 log_has "$work/coll.out" "listening" || { cat "$work/coll.err"; exit 1; }
  port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/coll.out" | head -1)
}
start_agent() {  # start_agent RUN
  "$probe" --target 127.0.0.1 --proto icmp --rate 200 --timeout-ms 200 --quiet \
    --metrics-listen off --records "$work/agent$1.jsonl" --summary-json "$work/summary$1.json" \
    --collector-url "http://127.0.0.1:$port" --collector-token-file "$work/token" \
    --spool-dir "$work/spool" 2>"$work/agent$1.log" &
  agent_pid=$!
}
stop_agent() {
  kill -TERM "$agent_pid"
  wait "$agent_pid" || true
  agent_pid=
}
shipcheck() {  # shipcheck RUN_FILES...: every assertion of deploy/lab/shipcheck holds
  python3 "$repo/deploy/lab/shipcheck" "$work/db/c.db" "$@" >"$work/shipcheck.out" 2>&1
  local rc=$?
  sed 's/^/        /' "$work/shipcheck.out" | grep -v '^        ok' || true
  return $rc
}

echo "== 1. the collector's database on a full disk"
start_collector
start_agent 1
check "the agent ships (probes in the database)" wait_for 20 db_has_probes
sleep 3
fill "$work/db"
check "ingest refused with 503 while the disk is full (collector log)" \
  wait_for 20 log_has "$work/coll.err" "refused (503, the agent keeps it spooled).*disk is full"
code=$(curl -s -o "$work/direct.body" -D "$work/direct.head" -w '%{http_code}' \
  -H "Authorization: Bearer $(cat "$work/token")" --data-binary @<(
    printf '{"type":"batch","agent":"direct","run":"00000000000000aa","batch":1,"created_ns":1,"version":"t"}\n'
    printf '{"type":"rollup","target":"127.0.0.1","proto":"icmp","session_id":1,"second_ns":1000000000,"direction":"forward","path":"","sent":1,"received":1,"lost_forward":0,"lost_reverse":0,"lost_undetermined":0,"rtt_min_ns":1,"rtt_mean_ns":1,"rtt_p50_ns":1,"rtt_p99_ns":1,"rtt_max_ns":1,"jitter_ns":0}\n'
  ) "http://127.0.0.1:$port/api/v1/ingest")
check "a direct ingest gets 503 (got $code)" test "$code" = 503
check "... with Retry-After" grep -qi '^Retry-After: ' "$work/direct.head"
sleep 3
kept=$(spool_files)
check "the agent keeps its batches spooled ($kept file(s))" test "$kept" -ge 2
rm -f "$work/db/filler"
check "space back: the spool drains" wait_for 60 spool_empty
stop_agent
check "after the agent's stop the spool is empty" spool_empty
check "nothing lost, nothing doubled (shipcheck)" shipcheck "$work/agent1.jsonl:$work/summary1.json"

echo "== 2. the agent's spool on a full disk"
mount -t tmpfs -o size=1m tmpfs "$work/spool"
start_agent 2
sleep 2
fill "$work/spool"
check "the agent says it cannot spool (disk full)" \
  wait_for 20 log_has "$work/agent2.log" "cannot spool batch .*No space left on device"
sleep 2
rm -f "$work/spool/filler"
check "and that it can again once space returns" \
  wait_for 20 log_has "$work/agent2.log" "the spool can be written again"
check "space back: the spool drains" wait_for 60 spool_empty
stop_agent
unwritable=$(grep -o 'spool unwritable [0-9]*' "$work/agent2.log" | tail -1 | awk '{print $3}')
echo "  (agent summary: $(grep -o 'raw records dropped [^;]*' "$work/agent2.log" | tail -1))"
check "the agent's summary reports what the full spool cost (spool unwritable ${unwritable:-?})" \
  test -n "$unwritable"
check "what the agent shipped is in the database once (shipcheck)" \
  shipcheck "$work/agent1.jsonl:$work/summary1.json" "$work/agent2.jsonl:$work/summary2.json"
kill -TERM "$coll_pid"
wait "$coll_pid" || true
coll_pid=
[ "$fails" -eq 0 ] && echo "OK" || { echo "$fails check(s) failed"; exit 1; }
