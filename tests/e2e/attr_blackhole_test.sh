#!/usr/bin/env bash
# e2e: live path attribution through a silent black hole on the Express Connect line (both
# directions dropped, links up, until BFD moves the routes). The issue-8 case: the requests die
# on the line, so the loss is FORWARD (the fast profile: ~272 per session, a ~273 ms forward
# outage) and there is no reverse sample at all for those probes (no reply was ever sent: not a
# reverse loss). The agent (both taps, 1000 probes/s ICMP + STAMP) against the per-probe
# delivery truth (deploy/lab/attrcheck): the events per protocol and direction, outages within
# one probe interval plus the truth's resolution, proven losses within 2 % of the truth's in
# that direction, `undetermined` losses consistent with it (ICMP: the mirror only shows where a
# probe left), outage kinds, no `loss` the truth contradicts, zero probes on a contradicted path.
# Usage: bash tests/e2e/attr_blackhole_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init pstw5- "${1:-$E2E_REPO/build}"
attr_drill blackhole \
  --expect-switchovers 'forward=express-connect>ipsec,ipsec>express-connect' \
  --expect-switchovers 'reverse=express-connect>ipsec,ipsec>express-connect'
