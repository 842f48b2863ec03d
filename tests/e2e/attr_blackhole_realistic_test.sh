#!/usr/bin/env bash
# e2e: blackhole in the realistic profile (no BFD, BGP hold 90 s, the CEN health check every
# 2 s). The line drops everything both ways with its links up: the requests die on the line
# until the gateway's BGP hold timer expires (60-90 s after the failure, depending on the last
# keepalive): a measured FORWARD outage of that length, every probe of it lost forward. No
# reply is sent meanwhile, so the reverse direction has no sample: the health check moves the
# return route after ~18 s unseen, and the agent must report no reverse loss (a `bound`
# switchover). The agent (both taps, 1000 probes/s ICMP + STAMP) against the per-probe delivery
# truth (deploy/lab/attrcheck), as attr_blackhole_test. ~2.5 minutes.
# Usage: bash tests/e2e/attr_blackhole_realistic_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init pstw7- "${1:-$E2E_REPO/build}" realistic
attr_drill blackhole \
  --expect-switchovers 'forward=express-connect>ipsec,ipsec>express-connect' \
  --expect-switchovers 'reverse=express-connect>ipsec,ipsec>express-connect'
