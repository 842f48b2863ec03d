#!/usr/bin/env bash
# e2e: live path attribution through ipsec-down (the IPsec tunnel torn down and re-initiated
# while the Express Connect line is up). The tunnel carries nothing while the line works, so the
# agent (both taps, 1000 probes/s ICMP + STAMP) must emit no switchover, outage or asymmetry
# event and attribute every probe that got through to express-connect in both directions, as
# the per-probe ground truth says (deploy/lab/attrcheck).
# Usage: bash tests/e2e/attr_ipsec_down_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init pstw4- "${1:-$E2E_REPO/build}"
attr_drill ipsec-down --expect-switchovers forward= --expect-switchovers reverse= \
  --only-path express-connect
check "the agent emitted no event at all" bash -c '! grep -q "\"type\":\"event\"" "$1"' sh "$ATTR_OUT"
check "no health-check event: the cloud's health check kept being answered" \
  python3 "$E2E_REPO/deploy/lab/hccheck" "$ATTR_OUT" --none
