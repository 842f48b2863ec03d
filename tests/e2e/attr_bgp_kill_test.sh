#!/usr/bin/env bash
# e2e: live path attribution through bgp-kill (the DC gateway's BGP session to the VBR shut,
# Cease sent, then re-enabled). Both speakers withdraw at once, so both directions move to the
# tunnel within milliseconds and back without loss. The agent (both taps, 1000 probes/s ICMP +
# STAMP) against the per-probe ground truth (deploy/lab/attrcheck): exactly the events the truth
# implies per protocol and direction (switchover to ipsec, failback; an asymmetric blip only if
# the truth shows one), outages within one probe interval plus the timestamp spread, zero
# probes on a contradicted path, the ESP tap's `unknown` share reported.
# Usage: bash tests/e2e/attr_bgp_kill_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init pstw2- "${1:-$E2E_REPO/build}"
attr_drill bgp-kill \
  --expect-switchovers 'forward=express-connect>ipsec,ipsec>express-connect' \
  --expect-switchovers 'reverse=express-connect>ipsec,ipsec>express-connect'
