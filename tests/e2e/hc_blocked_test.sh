#!/usr/bin/env bash
# e2e: only the health check fails (lab drill hc-blocked, fast profile: probes every 200 ms,
# 3 lost -> the cloud moves the return route). The gateway gets a blackhole route to the prober
# (no route back, as when the guide's host route via the line is missing); the line keeps
# carrying the agent's probes both ways. The agent (both taps, 1000 probes/s ICMP + STAMP) must
# say healthcheck_degraded, then healthcheck_blocked (the line works) before the return path
# really moves (delivery ground truth), healthcheck_failed, and healthcheck_recovered once the
# route is back; deploy/lab/attrcheck checks the (false) reverse switchover and its return
# against the per-probe truth. ~20 s.
# Usage: bash tests/e2e/hc_blocked_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init pshb- "${1:-$E2E_REPO/build}"
# The cloud's N is configured there, not observable: the agent is told the lab's (fast: 3).
HC_FALL=$(sed -n 's/^HC_FALL=//p' "$PS_LAB_STATE/profile.env")
export PS_E2E_AGENT_ARGS="--healthcheck-fall $HC_FALL"
attr_drill hc-blocked --expect-switchovers forward= \
  --expect-switchovers 'reverse=express-connect>ipsec,ipsec>express-connect'
check "health check: degraded, blocked before the return path's move, failed, recovered" \
  python3 "$E2E_REPO/deploy/lab/hccheck" "$ATTR_OUT" --result "$RESULT" \
  --expect healthcheck_degraded --expect healthcheck_blocked --expect healthcheck_failed \
  --expect healthcheck_recovered --forbid healthcheck_absent --blocked-before-move
