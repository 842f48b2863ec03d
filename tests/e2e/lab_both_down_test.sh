#!/usr/bin/env bash
# e2e: with both of the DC gateway's uplinks down nothing reaches the ECS and nothing comes back;
# once they return, traffic flows again and ends on Express Connect.
# Usage: bash tests/e2e/lab_both_down_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
e2e_init pst4-

e2e_log "lab up"
bash "$LAB" up >/dev/null
run_drill both-down
R=$RESULT
# The window in which both ports were really down: from the later "admin down" to the earlier
# "up" the gateway's port monitor saw (the actions are logged as they start).
t_down=$(rj "$R" "max(e['t'] for e in r['timeline'] if e['source'] == 'link' and e['node'] == 'gw' and e['text'] in ('ec admin down', 'inet admin down'))")
t_up=$(rj "$R" "min(e['t'] for e in r['timeline'] if e['source'] == 'link' and e['node'] == 'gw' and e['text'] in ('ec up', 'inet up') and e['t'] > $t_down)")
e2e_log "both ports down from $t_down to $t_up"
# By arrival time: probes sent during the outage may wait in a neighbour (ARP) queue and arrive
# once the ports are back; a probe sent just before the ports went down may still be in flight.
for d in forward reverse; do
  check "$d: no probe arrived while both uplinks were down" \
    rj_true "$R" "not [x for x in r['$d']['runs'] if x['state'] in ('ec', 'ipsec') and x['last_arrival_t'] > $t_down + 0.005 and x['first_arrival_t'] < $t_up]"
  check "$d: delivered again after the uplinks came back, ending on Express Connect" \
    rj_true "$R" "r['$d']['runs'][-1]['state'] == 'ec' and r['$d']['runs'][-1]['count'] > 50"
done
check "forward: the outage lost every probe sent while both were down" \
  rj_true "$R" "sum(x['count'] for x in r['forward']['runs'] if x['state'] == 'lost') >= ($t_up - $t_down) / (r['stream']['interval_ms'] / 1000) * 0.9"
check "the IPsec tunnel came back" bash -c 'bash "$1" status | grep -q INSTALLED' sh "$LAB"
