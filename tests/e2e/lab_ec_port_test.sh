#!/usr/bin/env bash
# e2e: the guide's test, measured. Before the drill DC<->ECS traffic crosses the Express Connect
# link in both directions (EC mirror, nothing on the internet mirror); with the gateway's EC port
# shut it crosses the tunnel as ESP-in-UDP in both directions (internet mirror); once the port is
# back it returns to the line in both directions.
# Usage: bash tests/e2e/lab_ec_port_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
e2e_init pst3-

e2e_log "lab up"
bash "$LAB" up >/dev/null
run_drill ec-port
R=$RESULT
down_t=$(rj "$R" 'actions()[0]')
for d in forward reverse; do
  check "$d: Express Connect, then the tunnel, then Express Connect again" \
    rj_is "$R" "[s for s in runs('$d') if s != 'lost']" \
    '["ec", "ipsec", "ec"]'
  check "$d: two switchovers, ec>ipsec then ipsec>ec" rj_is "$R" "switches('$d')" '["ec>ipsec", "ipsec>ec"]'
  check "$d: on Express Connect until the port went down" \
    rj_true "$R" "r['$d']['runs'][0]['state'] == 'ec' and r['$d']['runs'][0]['count'] > 100 and r['$d']['runs'][0]['last_t'] <= $down_t + 0.05"
  check "$d: no probe on the tunnel before the port went down" \
    rj_true "$R" "all(x['first_t'] >= $down_t for x in r['$d']['runs'] if x['state'] == 'ipsec')"
  check "$d: the tunnel carried probes as ESP of the stream's length" \
    rj_true "$R" "r['$d']['by_path'].get('ipsec', 0) > 20 and r['$d']['esp_stream'] >= r['$d']['by_path']['ipsec']"
  check "$d: back on Express Connect after the port came up" \
    rj_true "$R" "r['$d']['runs'][-1]['state'] == 'ec' and r['$d']['runs'][-1]['count'] > 50 and r['$d']['runs'][-1]['first_t'] > actions()[1]"
  check "$d: failback lost nothing" \
    rj_true "$R" "[e['lost'] for e in r['$d']['events'] if e['kind'] == 'switchover'][-1] == 0"
done
check "forward: the switch to the tunnel lost at most 2 probes (the port's routes go at once)" \
  rj_true "$R" "r['forward']['events'][0]['lost'] <= 2"
check "no stream packet crossed the internet port in clear" rj_is "$R" 'r["stream_in_clear_on_inet"]' 0
check "the lab is back on Express Connect" \
  bash -c 'bash "$1" status | grep -q "forward (DC->ECS) ec, reverse (ECS->DC) ec"' sh "$LAB"
