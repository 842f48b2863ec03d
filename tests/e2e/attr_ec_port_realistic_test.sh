#!/usr/bin/env bash
# e2e: ec-port in the realistic profile (no BFD, BGP hold 90 s, the CEN health check every 2 s,
# 8 lost -> the return route moves). Shutting the DC gateway's Express Connect port moves the
# forward direction at once (a switchover, no loss: `bound` ~1 ms), but the VBR does not see the
# port go down: every reply dies on the line until the health check moves the return route,
# ~17.8 s later (a measured reverse outage, ~17 800 replies lost per session at 1000/s: the
# requests all reached the ECS). The agent (both taps, 1000 probes/s ICMP + STAMP) against the
# per-probe delivery truth (deploy/lab/attrcheck): events, outages within one probe interval
# plus the truth's resolution, losses within 2 % or consistently undetermined, outage kinds, no
# `loss` the truth contradicts, zero probes on a contradicted path. ~1 minute.
# Usage: bash tests/e2e/attr_ec_port_realistic_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
attr_init pstw6- "${1:-$E2E_REPO/build}" realistic
attr_drill ec-port \
  --expect-switchovers 'forward=express-connect>ipsec,ipsec>express-connect' \
  --expect-switchovers 'reverse=express-connect>ipsec,ipsec>express-connect'
# The cloud's health check (docs/healthcheck.md): the port down, its probes stop reaching the
# gateway; the agent counts them lost (the line no longer carries its probes) and announces the
# return path's move before it happens; the prediction's error against the real move (delivery
# truth) is printed.
check "health check: the return path's move announced before it happens (prediction error printed)" \
  python3 "$E2E_REPO/deploy/lab/hccheck" "$ATTR_OUT" --result "$RESULT" \
  --expect healthcheck_degraded --expect healthcheck_failed --forbid healthcheck_blocked \
  --announced-before-move
