#!/usr/bin/env bash
# e2e: live path attribution during the guide's test. The agent runs on the DC host with both
# SPAN taps (Express Connect in clear, the internet port as ESP-in-UDP between the tunnel
# endpoints) at 1000 probes/s ICMP + STAMP to the ECS's reflector while the ec-port drill shuts
# the gateway's Express Connect port and brings it back. From the agent's JSON lines: both
# directions on express-connect before the drill, a switchover to ipsec and a failback in each
# direction, and no probe attributed to a path the lab's own ground truth (result.json, from the
# mirrors and end hosts) contradicts. Prints the agent's outage per direction beside the ground
# truth's, and the share of `unknown` among the probes that crossed the tunnel.
# Usage: bash tests/e2e/attr_ec_port_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
BUILD=${1:-$E2E_REPO/build}
PROBE=$(realpath "$BUILD/probe/pathsentry-probe")
REFLECTOR=$(realpath "$BUILD/probe/pathsentry-reflector")
[ -x "$PROBE" ] && [ -x "$REFLECTOR" ] || {
  echo "FAIL: build pathsentry-probe and pathsentry-reflector in $BUILD first"
  exit 1
}
e2e_init pstw-

e2e_log "lab up"
bash "$LAB" up >/dev/null
eval "$(bash "$LAB" env | grep -E '^PS_LAB_[A-Z0-9_]+=[^ ]*$')"
case "$PS_LAB_ESP_PROPOSAL" in
  aes128-sha256 | aes256-sha256) transform=aes-cbc-sha256 ;;
  *) transform=learn ;;
esac

bash "$LAB" start reflector ecs "$REFLECTOR" --allow "$PS_LAB_DC_NET" >/dev/null
for _ in $(seq 50); do
  grep -q listening "$PS_LAB_STATE/logs/app-reflector.out" 2>/dev/null && break
  sleep 0.1
done

OUT=$E2E_RESULTS/agent.jsonl
LOG=$E2E_RESULTS/agent.log
# Correlation window -200..+800 us: narrower than the 1 ms between two equal-sized probes
# (PS_E2E_ESP_WINDOW=LO_US:HI_US to try another).
window=${PS_E2E_ESP_WINDOW:--200:800}
bash "$LAB" start agent dc "$PROBE" --target "$PS_LAB_ECS" --proto both --rate 1000 \
  --source "$PS_LAB_DC_HOST" --timeout-ms 500 --records "$OUT" \
  --tap "$PS_LAB_TAP_EC:$PS_LAB_TAP_EC_PATH:clear" \
  --tap "$PS_LAB_TAP_INET:$PS_LAB_TAP_INET_PATH:esp:$PS_LAB_TUNNEL_LOCAL:$PS_LAB_TUNNEL_REMOTE:$transform:$window" \
  >/dev/null
sleep 1.5
run_drill ec-port
R=$RESULT
sleep 1
bash "$LAB" stop agent >/dev/null
cp "$PS_LAB_STATE/logs/app-agent.out" "$LOG"
e2e_log "agent log (events and last lines):"
grep -E '^event|attribution:|^tap |pathsentry-probe:' "$LOG" | sed 's/^/    /' | tail -n 30

# Analysis of the agent's JSON lines against the ground truth.
python3 - "$OUT" "$R" >"$E2E_RESULTS/analysis.json" <<'PY'
import json, sys
recs, evs = [], []
for line in open(sys.argv[1]):
    o = json.loads(line)
    (recs if o["type"] == "probe" else evs).append(o)
gt = json.load(open(sys.argv[2]))
down_t = gt["actions"][0]["t"]
name = {"forward": "fwd_path", "reverse": "rev_path"}
lab_path = {"ec": "express-connect", "ipsec": "ipsec"}
out = {"records": len(recs), "events": evs, "dirs": {}}
MARGIN = 0.010  # s: ground truth resolves a change to its 5 ms stream interval
for d, key in name.items():
    runs = [r for r in gt[d]["runs"] if r["state"] in lab_path]
    def truth(t):
        for r in runs:
            if r["first_t"] + MARGIN <= t <= r["last_t"] - MARGIN:
                return lab_path[r["state"]]
        return None
    first_esp = min((r["first_t"] for r in runs if r["state"] == "ipsec"), default=None)
    before = [x for x in recs if x["tx_ns"] / 1e9 < down_t and x["rx_ns"] is not None]
    contra, early_ipsec, on_ipsec, unknown_ipsec = 0, 0, 0, 0
    for x in recs:
        t = x["tx_ns"] / 1e9
        p = x[key]
        want = truth(t)
        if p in ("express-connect", "ipsec") and want is not None and p != want:
            contra += 1
        if p == "ipsec" and first_esp is not None and t < first_esp - MARGIN:
            early_ipsec += 1
        if want == "ipsec" and x["rx_ns"] is not None:
            on_ipsec += 1
            unknown_ipsec += p == "unknown"
    sw = [e for e in evs if e["event"] == "switchover" and e["direction"] == d]
    gts = [e for e in gt[d]["events"] if e["kind"] == "switchover"]
    out["dirs"][d] = {
        "before": len(before),
        "before_ec": sum(1 for x in before if x[key] == "express-connect"),
        "before_ipsec": sum(1 for x in before if x[key] == "ipsec"),
        "contradictions": contra, "ipsec_before_first_esp": early_ipsec,
        "on_ipsec": on_ipsec, "unknown_on_ipsec": unknown_ipsec,
        "switches": {p: ["%s>%s" % (e["from"], e["to"]) for e in sw if e["proto"] == p]
                     for p in ("icmp", "stamp")},
        "agent_outage_ms": {p: [round(e["outage_ns"] / 1e6, 1) for e in sw if e["proto"] == p]
                            for p in ("icmp", "stamp")},
        "agent_lost": {p: [e["probes_lost"] for e in sw if e["proto"] == p]
                       for p in ("icmp", "stamp")},
        "detect_ms": {p: [round((e["detected_ns"] - e["ts_ns"]) / 1e6, 1) for e in sw
                          if e["proto"] == p] for p in ("icmp", "stamp")},
        "truth_gap_ms": [e["gap_ms"] for e in gts], "truth_lost": [e["lost"] for e in gts],
    }
print(json.dumps(out))
PY
A=$E2E_RESULTS/analysis.json
aj() { python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); print(json.dumps(eval(sys.argv[2])))' "$A" "$1"; }
aj_true() { [ "$(aj "$1")" = true ] || { echo "       not true: $1 ($(aj "${2:-None}"))"; return 1; }; }

e2e_log "ESP window $window us; $(aj 'a["records"]') probe records, $(aj 'len(a["events"])') events"
for d in forward reverse; do
  e2e_log "$d: agent switchovers $(aj "a['dirs']['$d']['switches']"), outage ms $(aj "a['dirs']['$d']['agent_outage_ms']"), lost $(aj "a['dirs']['$d']['agent_lost']")"
  e2e_log "$d: switchovers detected (ms after the confirming probe left) $(aj "a['dirs']['$d']['detect_ms']")"
  e2e_log "$d: ground truth gaps ms $(aj "a['dirs']['$d']['truth_gap_ms']"), lost $(aj "a['dirs']['$d']['truth_lost']")"
  e2e_log "$d: unknown on the ESP tap: $(aj "a['dirs']['$d']['unknown_on_ipsec']") of $(aj "a['dirs']['$d']['on_ipsec']") answered probes that crossed the tunnel ($(aj "round(100.0 * a['dirs']['$d']['unknown_on_ipsec'] / max(1, a['dirs']['$d']['on_ipsec']), 1)") %)"
  check "$d: before the drill every answered probe on express-connect" \
    aj_true "a['dirs']['$d']['before'] > 1000 and a['dirs']['$d']['before_ec'] == a['dirs']['$d']['before']" \
    "a['dirs']['$d']"
  for p in icmp stamp; do
    check "$d $p: switchover express-connect>ipsec, then failback ipsec>express-connect" \
      aj_true "a['dirs']['$d']['switches']['$p'] == ['express-connect>ipsec', 'ipsec>express-connect']" \
      "a['dirs']['$d']['switches']"
  done
  check "$d: no probe attributed to a path the ground truth contradicts" \
    aj_true "a['dirs']['$d']['contradictions'] == 0" "a['dirs']['$d']"
  check "$d: no probe attributed ipsec before the first ground-truth ESP packet" \
    aj_true "a['dirs']['$d']['ipsec_before_first_esp'] == 0" "a['dirs']['$d']"
  check "$d: probes that crossed the tunnel are attributed (some ipsec)" \
    aj_true "a['dirs']['$d']['on_ipsec'] > 100 and a['dirs']['$d']['unknown_on_ipsec'] < a['dirs']['$d']['on_ipsec']" \
    "a['dirs']['$d']"
done
check "the events were logged live on the agent's output" grep -q '^event switchover' "$LOG"
check "the per-second lines carry the paths (express-connect, then ipsec)" \
  bash -c 'grep -q "fwd=express-connect rev=express-connect" "$1" && grep -q "fwd=ipsec rev=ipsec" "$1"' sh "$LOG"
