#!/usr/bin/env bash
# e2e (issue 10): an agent restart loses nothing and doubles nothing. The agent (10 000
# probes/s, both taps) ships to the collector through a Unix socket; the collector is stopped,
# the agent is restarted while it is down (what the first run could not deliver stays in the
# spool), the collector comes back, and the second run sends the first run's batches before its
# own. deploy/lab/shipcheck: the database holds exactly each run's probes and events, once.
# Usage: bash tests/e2e/collector_agent_restart_test.sh [build-dir]
source "$(dirname "$0")/lib_collector.sh"
coll_init pstcr- "${1:-$E2E_REPO/build}"

coll_start
coll_start_agent agent1 "$E2E_RESULTS/agent1.jsonl" "$E2E_RESULTS/agent1-summary.json"
sleep 15
coll_kill KILL
e2e_log "collector SIGKILLed; agent1 runs on for 15 s, then restarts"
sleep 15
check "agent1 flushed and exited on SIGTERM" coll_stop_agent agent1
e2e_log "spool after agent1: $(spool_files) file(s)"
check "agent1 left its unacknowledged batches in the spool" test "$(spool_files)" -gt 0
coll_start_agent agent2 "$E2E_RESULTS/agent2.jsonl" "$E2E_RESULTS/agent2-summary.json"
sleep 10
coll_start
e2e_log "collector back; agent2 runs on for 15 s"
sleep 15
coll_wait_drained 120
check "agent2 flushed and exited on SIGTERM" coll_stop_agent agent2
check "the spool is empty: every batch of both runs was acknowledged" test "$(spool_files)" -eq 0
e2e_log "shipcheck (both runs' JSON lines vs the collector's database)"
while IFS=$'\t' read -r st what detail; do
  check "$what" attr_assert_ok "$st" "$detail"
done < <(python3 "$E2E_REPO/deploy/lab/shipcheck" "$COLL_DB" \
  "$E2E_RESULTS/agent1.jsonl:$E2E_RESULTS/agent1-summary.json" \
  "$E2E_RESULTS/agent2.jsonl:$E2E_RESULTS/agent2-summary.json" || true)
