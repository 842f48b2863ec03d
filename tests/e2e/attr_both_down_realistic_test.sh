#!/usr/bin/env bash
# e2e: both-down in the realistic profile (no BFD, BGP hold 90 s, DPD 10 s, the CEN health
# check every 2 s). Both DC gateway uplinks are shut for ~20 s: nothing gets through either way,
# DPD tears the tunnel down, and the forward direction resumes directly on the line when BGP
# returns (an outage ended on express-connect, no switchover) while the health check's override
# keeps the return direction in the dead tunnel until 3 of its probes are answered (an outage
# ended on ipsec, then the failback). Most probes are lost FORWARD (requests never leave the
# gateway): no reverse sample for them. The agent (both taps, 1000 probes/s ICMP + STAMP)
# against the per-probe delivery truth (deploy/lab/attrcheck), as attr_both_down_test. ~2 min.
# Usage: bash tests/e2e/attr_both_down_realistic_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init pstw8- "${1:-$E2E_REPO/build}" realistic
attr_drill both-down
