#!/usr/bin/env bash
# e2e: the other drills behave as the scenario says, on one lab (fast profile):
#   bgp-kill   both directions move to the tunnel and back;
#   ipsec-down the line carries everything, nothing lost, no switchover;
#   blackhole  a silent line failure (links up) is detected (BFD) and both directions move;
#   flap       the port flaps; traffic follows and ends on Express Connect.
# Usage: bash tests/e2e/lab_drills_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
e2e_init pst5-

e2e_log "lab up"
bash "$LAB" up >/dev/null

run_drill bgp-kill
for d in forward reverse; do
  check "bgp-kill $d: ec>ipsec then ipsec>ec" rj_is "$RESULT" "switches('$d')" '["ec>ipsec", "ipsec>ec"]'
done

run_drill ipsec-down
for d in forward reverse; do
  check "ipsec-down $d: everything on Express Connect" rj_is "$RESULT" "runs('$d')" '["ec"]'
  check "ipsec-down $d: nothing lost" rj_true "$RESULT" "r['$d']['delivered'] == r['$d']['sent'] > 100"
done
check "ipsec-down: the tunnel was re-established" bash -c 'bash "$1" status | grep -q INSTALLED' sh "$LAB"

run_drill blackhole
for d in forward reverse; do
  check "blackhole $d: ec>ipsec then ipsec>ec" rj_is "$RESULT" "switches('$d')" '["ec>ipsec", "ipsec>ec"]'
  check "blackhole $d: the silent failure lost probes until BFD noticed (gap >= 100 ms)" \
    rj_true "$RESULT" "r['$d']['events'][0]['gap_ms'] >= 100 and r['$d']['events'][0]['lost'] > 0"
done
check "blackhole forward: the lost probes had left the gateway on the line" \
  rj_true "$RESULT" "r['forward']['events'][0]['lost_by_path'].get('ec', 0) > 0"
check "blackhole reverse: the lost probes never reached the gateway" \
  rj_true "$RESULT" "r['reverse']['events'][0]['lost_by_path'].get('none', 0) > 0"

run_drill flap
check "flap forward: at least one round trip to the tunnel" \
  rj_true "$RESULT" "switches('forward')[:2] == ['ec>ipsec', 'ipsec>ec']"
for d in forward reverse; do
  check "flap $d: ends on Express Connect" rj_true "$RESULT" "runs('$d')[-1] == 'ec'"
done
