#!/usr/bin/env bash
# e2e: the TTL method as a cross-check of the taps during the guide's test. The agent runs on the
# DC host with both SPAN taps (as in attr_ec_port_test.sh) at 1000 ICMP probes/s AND TTL-2 probes
# at 200/s (this lab's routers' ICMP policing lifted, see ttl_ec_port_test.sh); the ec-port drill
# shuts the gateway's Express Connect port and brings it back. Checks: the agent's cross-check
# counted agreements and no disagreement, and both methods saw the forward switchover and the
# failback. Prints the cross-check counters and both methods' forward outage figures.
# Usage: bash tests/e2e/ttl_crosscheck_ec_port_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
source "$E2E_REPO/deploy/lab/lib/topology.sh"
BUILD=${1:-$E2E_REPO/build}
PROBE=$(realpath "$BUILD/probe/pathsentry-probe")
[ -x "$PROBE" ] || {
  echo "FAIL: build pathsentry-probe in $BUILD first"
  exit 1
}
e2e_init pstx-

e2e_log "lab up"
bash "$LAB" up >/dev/null
eval "$(bash "$LAB" env | grep -E '^PS_LAB_[A-Z0-9_]+=[^ ]*$')"
case "$PS_LAB_ESP_PROPOSAL" in
  aes128-sha256 | aes256-sha256) transform=aes-cbc-sha256 ;;
  *) transform=learn ;;
esac
for n in "${LAB_ROUTERS[@]}"; do
  bash "$LAB" exec "$n" sysctl -qw net.ipv4.icmp_ratelimit=0
done
e2e_log "net.ipv4.icmp_ratelimit=0 on this lab's routers (${LAB_ROUTERS[*]})"

OUT=$E2E_RESULTS/agent.jsonl
LOG=$E2E_RESULTS/agent.log
bash "$LAB" start agent dc "$PROBE" --target "$PS_LAB_ECS" --proto icmp --rate 1000 \
  --source "$PS_LAB_DC_HOST" --timeout-ms 500 --records "$OUT" \
  --tap "$PS_LAB_TAP_EC:$PS_LAB_TAP_EC_PATH:clear" \
  --tap "$PS_LAB_TAP_INET:$PS_LAB_TAP_INET_PATH:esp:$PS_LAB_TUNNEL_LOCAL:$PS_LAB_TUNNEL_REMOTE:$transform:-200:800" \
  --ttl-probe 2 --ttl-hop "$EC_VBR=$PS_LAB_TAP_EC_PATH" --ttl-hop "$VPN_TS_ADDR=$PS_LAB_TAP_INET_PATH" \
  --ttl-rate 200 --ttl-timeout-ms 200 >/dev/null
sleep 1.5
run_drill ec-port
sleep 1
bash "$LAB" stop agent >/dev/null
cp "$PS_LAB_STATE/logs/app-agent.out" "$LOG"
e2e_log "agent log (events, cross-check and TTL lines):"
grep -E '^event switchover forward|cross-check|ttl=2:' "$LOG" | sed 's/^/    /' | tail -n 20

python3 - "$OUT" >"$E2E_RESULTS/analysis.json" <<'PY'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
evs = [e for e in evs if e["type"] == "event" and e["event"] == "switchover"
       and e["direction"] == "forward"]
out = {}
for p in ("icmp", "ttl"):
    sw = [e for e in evs if e["proto"] == p]
    out[p] = {"switches": ["%s>%s" % (e["from"], e["to"]) for e in sw],
              "outage_ms": [round(e["outage_ns"] / 1e6, 1) for e in sw]}
print(json.dumps(out))
PY
A=$E2E_RESULTS/analysis.json
aj() { python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); print(json.dumps(eval(sys.argv[2])))' "$A" "$1"; }
line=$(grep -m1 'ttl cross-check with the taps' "$LOG" || true)
e2e_log "${line#pathsentry-probe: }"
for p in icmp ttl; do
  e2e_log "$p forward switchovers $(aj "a['$p']['switches']"), outage ms $(aj "a['$p']['outage_ms']")"
done
num() { grep -o " $1 [0-9]*" <<<"$line" | head -n 1 | awk '{print $2}'; }
check "the cross-check ran and counted agreements" bash -c '[ "${1:-0}" -gt 100 ]' sh "$(num agree)"
check "no TTL probe disagreed with the taps" bash -c '[ "$1" = 0 ]' sh "$(num disagree)"
for p in icmp ttl; do
  check "$p: forward switchover express-connect>ipsec, then failback" \
    bash -c '[ "$1" = "[\"express-connect>ipsec\", \"ipsec>express-connect\"]" ]' sh "$(aj "a['$p']['switches']")"
done
