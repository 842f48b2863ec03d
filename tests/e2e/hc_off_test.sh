#!/usr/bin/env bash
# e2e: the health check switched off (lab drill hc-off, fast profile: the prober paused for
# 6 intervals + the hold, then resumed) while the line works. The agent must say
# healthcheck_absent, then healthcheck_recovered (probes resumed), and never count the missing
# probes as unanswered (no degraded, failed or blocked: the line carried the agent's probes);
# the paths never move (attrcheck). ~20 s.
# Usage: bash tests/e2e/hc_off_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init psho- "${1:-$E2E_REPO/build}"
# The cloud's N is configured there, not observable: the agent is told the lab's (fast: 3).
HC_FALL=$(sed -n 's/^HC_FALL=//p' "$PS_LAB_STATE/profile.env")
export PS_E2E_AGENT_ARGS="--healthcheck-fall $HC_FALL"
attr_drill hc-off --expect-switchovers forward= --expect-switchovers reverse= \
  --only-path express-connect
check "health check: absent, then recovered; no countdown" \
  python3 "$E2E_REPO/deploy/lab/hccheck" "$ATTR_OUT" --result "$RESULT" \
  --expect healthcheck_absent --expect healthcheck_recovered --forbid healthcheck_degraded \
  --forbid healthcheck_failed --forbid healthcheck_blocked
