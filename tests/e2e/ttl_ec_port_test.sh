#!/usr/bin/env bash
# e2e: the mirror-free TTL method during the guide's test. The agent runs on the DC host with NO
# taps: besides a light ICMP session, it sends UDP probes with IP TTL 2 to the ECS, which expire
# at the first cloud-side router of whichever path carries them (the VBR 10.1.0.1 on Express
# Connect, the VPN gateway, answering from 192.168.255.254, through the tunnel; docs/ttl.md).
# The ec-port drill shuts the gateway's Express Connect port and brings it back. From the agent's
# JSON lines: before the drill every answered TTL probe on express-connect, a forward switchover
# express-connect > ipsec and back, no TTL probe attributed to a path the drill's ground truth
# (result.json) contradicts; prints the agent's outage beside the ground truth's forward gap,
# the detection latency and the answer rate.
# The lab's routers police ICMP errors like Linux does by default (1/s per destination, burst 6),
# which makes 200 probes/s useless; this test lifts the limit in ITS OWN lab's router namespaces
# (net.ipv4.icmp_ratelimit=0) and says so. Real routers keep theirs: default --ttl-rate is 1/s.
# Usage: bash tests/e2e/ttl_ec_port_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
source "$E2E_REPO/deploy/lab/lib/topology.sh"
BUILD=${1:-$E2E_REPO/build}
PROBE=$(realpath "$BUILD/probe/pathsentry-probe")
[ -x "$PROBE" ] || {
  echo "FAIL: build pathsentry-probe in $BUILD first"
  exit 1
}
TTL_RATE=${PS_E2E_TTL_RATE:-200}
e2e_init pst-

e2e_log "lab up"
bash "$LAB" up >/dev/null
eval "$(bash "$LAB" env | grep -E '^PS_LAB_[A-Z0-9_]+=[^ ]*$')"

# What answers at TTL 1..4 on the Express Connect path, with the routers' default ICMP policing.
e2e_log "time-exceeded sources on Express Connect at TTL 1..4 (one probe each, default policing):"
bash "$LAB" exec dc python3 - "$PS_LAB_ECS" <<'PY' | sed 's/^/    /'
import select, socket, struct, sys, time
for ttl in range(1, 5):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.connect((sys.argv[1], 33434))
    s.send(b"x" * 28)
    what = "no answer"
    if select.select([s], [], [], 0.5)[0]:
        _, anc, _, _ = s.recvmsg(64, 256, 0x2000)  # MSG_ERRQUEUE
        for lvl, typ, d in anc:
            if lvl == socket.IPPROTO_IP and typ == 11:
                _, _, t, c = struct.unpack("=IBBB", d[:7])
                what = "%s icmp type %d code %d" % (socket.inet_ntoa(d[20:24]), t, c)
    print("ttl %d: %s" % (ttl, what))
PY

# Default policing, measured: 2 s of TTL probes at 100/s, count the answers.
e2e_log "answers to 100 TTL-2 probes/s for 2 s with the routers' default ICMP policing:"
bash "$LAB" exec dc "$PROBE" --target "$PS_LAB_ECS" --proto icmp --rate 1 --duration 2 --quiet \
  --ttl-probe 2 --ttl-hop "$EC_VBR=express-connect" --ttl-hop "$VPN_TS_ADDR=ipsec" \
  --ttl-rate 100 2>&1 | grep 'ttl=2:' | sed 's/^/    /'

# The agent's default rate (1/s) against the same default policing: every probe answered.
e2e_log "answers to TTL-2 probes at the default rate (1/s) for 8 s, default ICMP policing:"
DEFAULT_LINE=$(bash "$LAB" exec dc "$PROBE" --target "$PS_LAB_ECS" --proto icmp --rate 1 \
  --duration 8 --quiet --ttl-probe 2 --ttl-hop "$EC_VBR=express-connect" \
  --ttl-hop "$VPN_TS_ADDR=ipsec" 2>&1 | grep 'ttl=2:')
echo "    $DEFAULT_LINE"
default_all_answered() {
  local sent hop
  sent=$(grep -o 'sent [0-9]*' <<<"$DEFAULT_LINE" | awk '{print $2}')
  hop=$(grep -o 'hop answers [0-9]*' <<<"$DEFAULT_LINE" | awk '{print $3}')
  [ "${sent:-0}" -ge 7 ] && [ "$hop" = "$sent" ] || { echo "       $DEFAULT_LINE"; return 1; }
}
check "at the default 1/s the routers' default policing answers every TTL probe" default_all_answered

for n in "${LAB_ROUTERS[@]}"; do
  bash "$LAB" exec "$n" sysctl -qw net.ipv4.icmp_ratelimit=0
done
e2e_log "net.ipv4.icmp_ratelimit=0 on this lab's routers (${LAB_ROUTERS[*]})"

OUT=$E2E_RESULTS/agent.jsonl
LOG=$E2E_RESULTS/agent.log
e2e_log "agent: TTL 2 probes at $TTL_RATE/s, no taps (+ ICMP at 10/s, no paths)"
bash "$LAB" start agent dc "$PROBE" --target "$PS_LAB_ECS" --proto icmp --rate 10 \
  --source "$PS_LAB_DC_HOST" --timeout-ms 500 --records "$OUT" \
  --ttl-probe 2 --ttl-hop "$EC_VBR=express-connect" --ttl-hop "$VPN_TS_ADDR=ipsec" \
  --ttl-rate "$TTL_RATE" --ttl-timeout-ms 200 >/dev/null
sleep 1.5
run_drill ec-port
R=$RESULT
sleep 1
bash "$LAB" stop agent >/dev/null
cp "$PS_LAB_STATE/logs/app-agent.out" "$LOG"
e2e_log "agent log (events and TTL lines):"
grep -E '^event|pathsentry-probe:' "$LOG" | sed 's/^/    /' | tail -n 20

python3 - "$OUT" "$R" "$TTL_RATE" >"$E2E_RESULTS/analysis.json" <<'PY'
import json, sys
recs, evs = [], []
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o.get("proto") != "ttl":
        continue
    (recs if o["type"] == "probe" else evs).append(o)
gt = json.load(open(sys.argv[2]))
rate = float(sys.argv[3])
down_t = gt["actions"][0]["t"]
lab_path = {"ec": "express-connect", "ipsec": "ipsec"}
MARGIN = 0.010  # s: ground truth resolves a change to its 5 ms stream interval
runs = [r for r in gt["forward"]["runs"] if r["state"] in lab_path]
def truth(t):
    for r in runs:
        if r["first_t"] + MARGIN <= t <= r["last_t"] - MARGIN:
            return lab_path[r["state"]]
    return None
t0 = min(x["tx_ns"] for x in recs) / 1e9
t1 = max(x["tx_ns"] for x in recs) / 1e9
before = [x for x in recs if x["tx_ns"] / 1e9 < down_t]
contra = [x for x in recs if x["fwd_path"] in lab_path.values() and truth(x["tx_ns"] / 1e9)
          not in (None, x["fwd_path"])]
sw = [e for e in evs if e["event"] == "switchover"]
gts = [e for e in gt["forward"]["events"] if e["kind"] == "switchover"]
count = lambda p: sum(1 for x in recs if x["fwd_path"] == p)
print(json.dumps({
    "records": len(recs), "duration_s": round(t1 - t0, 2), "rate": rate,
    "paths": {p: count(p) for p in ("express-connect", "ipsec", "unknown", "none")},
    "before": len(before), "before_ec": sum(1 for x in before if x["fwd_path"] == "express-connect"),
    "before_none": sum(1 for x in before if x["fwd_path"] == "none"),
    "contradictions": len(contra), "contra_sample": contra[:3],
    "switches": ["%s>%s" % (e["from"], e["to"]) for e in sw],
    "outage_ms": [round(e["outage_ns"] / 1e6, 1) for e in sw],
    "lost": [e["probes_lost"] for e in sw],
    "detect_ms": [round((e["detected_ns"] - e["ts_ns"]) / 1e6, 1) for e in sw],
    "detect_after_first_new_ms": [round((e["detected_ns"] - e["first_ok_on_new_ns"]) / 1e6, 1)
                                  for e in sw],
    "truth_gap_ms": [e["gap_ms"] for e in gts], "truth_lost": [e["lost"] for e in gts],
    "other_events": ["%s %s>%s" % (e["event"], e.get("from"), e.get("to")) for e in evs
                     if e["event"] != "switchover"],
}))
PY
A=$E2E_RESULTS/analysis.json
aj() { python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); print(json.dumps(eval(sys.argv[2])))' "$A" "$1"; }
aj_true() { [ "$(aj "$1")" = true ] || { echo "       not true: $1 ($(aj "${2:-None}"))"; return 1; }; }

e2e_log "TTL records $(aj 'a["records"]') over $(aj 'a["duration_s"]') s at $(aj 'a["rate"]')/s: paths $(aj 'a["paths"]')"
e2e_log "answered $(aj 'round(100.0 * (a["records"] - a["paths"]["none"]) / max(1, a["records"]), 1)') % of TTL probes"
e2e_log "forward switchovers $(aj 'a["switches"]'), outage ms $(aj 'a["outage_ms"]'), TTL probes lost $(aj 'a["lost"]')"
e2e_log "ground truth forward gaps ms $(aj 'a["truth_gap_ms"]'), lost $(aj 'a["truth_lost"]')"
e2e_log "detected (ms after the confirming probe left) $(aj 'a["detect_ms"]'); after the first probe on the new path $(aj 'a["detect_after_first_new_ms"]')"
e2e_log "other TTL events: $(aj 'a["other_events"]')"
check "before the drill every answered TTL probe on express-connect" \
  aj_true "a['before'] > 100 and a['before_ec'] == a['before'] - a['before_none'] and a['before_ec'] > 0.9 * a['before']" \
  "{k: a[k] for k in ('before', 'before_ec', 'before_none')}"
check "forward switchover express-connect>ipsec, then failback ipsec>express-connect" \
  aj_true "a['switches'] == ['express-connect>ipsec', 'ipsec>express-connect']" "a['switches']"
check "no TTL probe attributed to a path the ground truth contradicts" \
  aj_true "a['contradictions'] == 0" "a['contra_sample']"
check "the agent's outage is within 2 probe intervals + 10 ms of the ground truth's gap" \
  aj_true "len(a['outage_ms']) == len(a['truth_gap_ms']) == 2 and all(abs(x - y) <= 2000.0 / a['rate'] + 10 for x, y in zip(a['outage_ms'], a['truth_gap_ms']))" \
  "[a['outage_ms'], a['truth_gap_ms']]"
check "no TTL probe answered by an unmapped router or the target" \
  aj_true "a['paths']['unknown'] == 0" "a['paths']"
check "the events were logged live on the agent's output" grep -q '^event switchover forward .* ttl' "$LOG"
check "the per-second lines carry the TTL path (express-connect, then ipsec)" \
  bash -c 'grep -q "ttl=2 .*fwd=express-connect" "$1" && grep -q "ttl=2 .*fwd=ipsec" "$1"' sh "$LOG"
