#!/usr/bin/env bash
# e2e: live path attribution through the guide's test (ec-port: the DC gateway's Express Connect
# port down, then up). The agent runs on the DC host with both SPAN taps at 1000 probes/s ICMP +
# STAMP; deploy/lab/attrcheck compares its JSON lines with the drill's per-probe ground truth
# (captures at both end hosts and at the cloud router, where both paths are in clear):
# per protocol and direction exactly the events the truth implies (forward: switchover to ipsec
# and failback; reverse: the replies die on the line until BFD moves the return route, an
# outage, then the switchover and the failback), each outage within one probe interval plus
# the timestamp spread of the truth's, zero probes on a contradicted path, and the share of
# `unknown` on the ESP tap (reported; not all unknown).
# Usage: bash tests/e2e/attr_ec_port_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init pstw1- "${1:-$E2E_REPO/build}"
attr_drill ec-port \
  --expect-switchovers 'forward=express-connect>ipsec,ipsec>express-connect' \
  --expect-switchovers 'reverse=express-connect>ipsec,ipsec>express-connect'
