#!/usr/bin/env bash
# e2e: live path attribution through both-down (both DC gateway uplinks shut, then restored).
# Nothing gets through either way while the ports are down: an outage in both directions; in
# the fast profile the tunnel outlives it, so traffic resumes on ipsec (switchover from
# express-connect, outage = the whole gap) and fails back to the line when BGP returns. The
# agent (both taps, 1000 probes/s ICMP + STAMP) against the per-probe ground truth
# (deploy/lab/attrcheck): exactly the events the truth implies per protocol and direction,
# outages within one probe interval plus the timestamp spread, zero probes on a contradicted
# path, the ESP tap's `unknown` share reported.
# Usage: bash tests/e2e/attr_both_down_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init pstw3- "${1:-$E2E_REPO/build}"
attr_drill both-down \
  --expect-switchovers 'forward=express-connect>ipsec,ipsec>express-connect' \
  --expect-switchovers 'reverse=express-connect>ipsec,ipsec>express-connect'
