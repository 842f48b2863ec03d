#!/usr/bin/env bash
# e2e (issue 10): nothing lost, nothing doubled when the collector dies. The agent runs at
# 10 000 probes/s (ICMP + STAMP, both taps) on the DC host and ships to the collector in the
# host's namespace through a Unix socket; during the Express Connect drill the collector is
# killed with SIGKILL every 10 s for a minute, then stopped for two minutes, then started again.
# Afterwards deploy/lab/shipcheck compares the agent's own JSON lines and summary with the
# database: exactly one row per probe the agent sent, equal to its record, and every event once.
# Usage: bash tests/e2e/collector_fault_test.sh [build-dir]
source "$(dirname "$0")/lib_collector.sh"
coll_init pstcf- "${1:-$E2E_REPO/build}"
PS_E2E_DOWN_S=${PS_E2E_DOWN_S:-120}

coll_start
coll_start_agent agent "$E2E_RESULTS/agent.jsonl" "$E2E_RESULTS/agent-summary.json"
sleep 2
e2e_log "drill ec-port in the background; the collector SIGKILLed every 10 s for 60 s"
bash "$LAB" drill ec-port >"$E2E_RESULTS/drill.out" 2>&1 &
drill=$!
for i in 1 2 3 4 5 6; do
  sleep 10
  coll_kill KILL
  e2e_log "  SIGKILL $i (spool: $(spool_files) file(s))"
  coll_start
done
coll_kill TERM
e2e_log "collector stopped for ${PS_E2E_DOWN_S} s"
sleep "$PS_E2E_DOWN_S"
e2e_log "collector back (spool: $(spool_files) file(s), $(du -sm "$COLL_SPOOL" | cut -f1) MiB)"
coll_start
wait "$drill" || { echo "  (the drill failed: $(tail -n 5 "$E2E_RESULTS/drill.out"))"; }
coll_wait_drained 120
check "the agent flushed and exited on SIGTERM" coll_stop_agent agent
check "the spool is empty: every batch was acknowledged" test "$(spool_files)" -eq 0
check "no batch was refused (spool rejected/ empty)" \
  test "$(find "$COLL_SPOOL/rejected" -type f 2>/dev/null | wc -l)" -eq 0
grep -iE 'retry|failed|unavailable|spool' "$E2E_RESULTS/agent.log" | tail -n 5 | sed 's/^/    /' || true
e2e_log "shipcheck (agent's JSON lines vs the collector's database)"
while IFS=$'\t' read -r st what detail; do
  check "$what" attr_assert_ok "$st" "$detail"
done < <(python3 "$E2E_REPO/deploy/lab/shipcheck" "$COLL_DB" \
  "$E2E_RESULTS/agent.jsonl:$E2E_RESULTS/agent-summary.json" || true)
check "the collector was restarted $((COLL_RUNS - 1)) times" test "$COLL_RUNS" -eq 8
