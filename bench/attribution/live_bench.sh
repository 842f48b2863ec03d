#!/usr/bin/env bash
# Live attribution bench (issue 4): the highest probe rate at which the agent's attribution
# still covers >= 99.9 % of the answered probes with zero probes on the wrong path, per path.
#
# On its own lab (PS_LAB_PREFIX, default psz-; fast profile) the reflector runs on the ECS and
# the agent on the DC host with both taps (Express Connect in clear, the internet uplink as
# ESP). Two steady states: Express Connect up (all traffic on the clear path) and the gateway's
# Express Connect port held down (all traffic through the strongSwan userspace IPsec, seen only
# as ESP). In each, the total probe rate (ICMP + STAMP, half each) is stepped; each step is one
# agent run of --step-s seconds. Per step: probes sent and answered (and the answered rate, the
# raw baseline), the share attributed to the up path per direction, wrong (attributed to the
# path that is down, which cannot have carried them), unknown, pcap drops, probe loss, the
# agent's missed pacing slots and the machine's load. Builds nothing; root.
#
# Usage: bash bench/attribution/live_bench.sh BUILD_DIR [options]
#   --rates "1000 2000 …"   total probes/s per step (default 1000 2000 5000 10000 20000 50000 100000)
#   --step-s S             seconds per step (default 5)
#   --states "ec-up ec-down"  which steady states (default both)
#   --window LO:HI[:RLO:RHI]  ESP window in us (default -200:800), or "auto:N" with --agent-args
#                          "--size-cycle N": per step LO = -200 and HI = min(20000, 0.9 x N / rate
#                          - 200) us, the widest window in which equal-sized probes stay apart
#                          (docs/attribution.md §2)
#   --agent-args "…"       extra agent flags (e.g. "--size-cycle 1" for fixed sizes)
#   --json FILE            also write the results as JSON (default: stdout after the table)
#   --keep                 leave the lab up at the end
set -euo pipefail
export TZ=UTC LC_ALL=C
REPO=$(cd "$(dirname "$0")/../.." && pwd)
LAB="$REPO/deploy/lab/lab"
[ "$(id -u)" -eq 0 ] || { echo "live_bench: needs root (the lab)" >&2; exit 1; }
BUILD=$(realpath "${1:?usage: live_bench.sh BUILD_DIR [options]}")
shift
RATES="1000 2000 5000 10000 20000 50000 100000"
STEP_S=5
STATES="ec-up ec-down"
WINDOW=-200:800
AGENT_ARGS=""
JSON_OUT=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rates) RATES=$2; shift 2 ;;
    --step-s) STEP_S=$2; shift 2 ;;
    --states) STATES=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    --agent-args) AGENT_ARGS=$2; shift 2 ;;
    --json) JSON_OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "live_bench: unknown option $1" >&2; exit 2 ;;
  esac
done
PROBE=$BUILD/probe/pathsentry-probe
REFLECTOR=$BUILD/probe/pathsentry-reflector
[ -x "$PROBE" ] && [ -x "$REFLECTOR" ] || {
  echo "live_bench: build pathsentry-probe and pathsentry-reflector in $BUILD first" >&2
  exit 1
}
export PS_LAB_PREFIX=${PS_LAB_PREFIX:-psz-}
export PS_LAB_PROFILE=fast
WORK=$(mktemp -d /var/tmp/pathsentry-live-bench.XXXXXX)
ROWS=$WORK/rows.jsonl
: >"$ROWS"

cleanup() {
  # Only what this bench changed: the Express Connect port back up, its apps, its lab.
  bash "$LAB" exec gw ip link set ec up 2>/dev/null || true
  bash "$LAB" stop reflector >/dev/null 2>&1 || true
  [ "$KEEP" = 1 ] || bash "$LAB" down >/dev/null 2>&1 || echo "live_bench: lab teardown failed" >&2
  rm -rf -- "$WORK"
}
trap cleanup EXIT

echo "live_bench: lab ${PS_LAB_PREFIX%-} up (fast profile)" >&2
bash "$LAB" up --profile fast >/dev/null
eval "$(bash "$LAB" env | grep -E '^PS_LAB_[A-Z0-9_]+=[^ ]*$')"
case "$PS_LAB_ESP_PROPOSAL" in
  aes128-sha256 | aes256-sha256) TRANSFORM=aes-cbc-sha256 ;;
  *) TRANSFORM=learn ;;
esac
# The reflector's per-source limit well above the highest step.
bash "$LAB" start reflector ecs "$REFLECTOR" --allow "$PS_LAB_DC_NET" --rate-limit 10000000 \
  --burst 1000000 >/dev/null
for _ in $(seq 50); do
  grep -q listening "$PS_LAB_STATE/logs/app-reflector.out" 2>/dev/null && break
  sleep 0.1
done

run_step() { # STATE RATE
  local state=$1 rate=$2 half dir=$WORK/step
  rm -rf "$dir"
  mkdir -p "$dir"
  half=$(python3 -c "print($rate / 2)")
  local load0 window=$WINDOW
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  if [[ $WINDOW == auto:* ]]; then
    window=$(python3 -c "print('-200:%d' % min(20000, int(0.9 * ${WINDOW#auto:} * 1e6 / $rate) - 200))")
  fi
  echo "$window" >"$dir/window"
  # shellcheck disable=SC2086
  bash "$LAB" exec dc "$PROBE" --target "$PS_LAB_ECS" --proto both --rate "$half" \
    --duration "$STEP_S" --source "$PS_LAB_DC_HOST" --timeout-ms 500 --quiet \
    --records "$dir/records.jsonl" --summary-json "$dir/summary.json" \
    --tap "$PS_LAB_TAP_EC:$PS_LAB_TAP_EC_PATH:clear" \
    --tap "$PS_LAB_TAP_INET:$PS_LAB_TAP_INET_PATH:esp:$PS_LAB_TUNNEL_LOCAL:$PS_LAB_TUNNEL_REMOTE:$TRANSFORM:$window" \
    $AGENT_ARGS >"$dir/agent.log" 2>&1 || echo "live_bench: agent exited $? ($state $rate/s)" >&2
  python3 - "$dir" "$state" "$rate" "$STEP_S" "$load0 -> $(cut -d' ' -f1-3 /proc/loadavg)" \
    "$PS_LAB_TAP_EC_PATH" "$PS_LAB_TAP_INET_PATH" >>"$ROWS" <<'PY'
import json, re, sys
d, state, rate, step_s, load, ec, ipsec = sys.argv[1:8]
up, down = (ec, ipsec) if state == "ec-up" else (ipsec, ec)
recs = {}
try:
    for line in open(d + "/records.jsonl"):
        o = json.loads(line)
        if o.get("type") == "probe":
            recs[(o["session_id"], o["seq"])] = o  # a late re-emission replaces the record
except FileNotFoundError:
    pass
summary = {}
try:
    summary = json.load(open(d + "/summary.json"))
except (FileNotFoundError, json.JSONDecodeError):
    pass
sess = summary.get("sessions", [])
row = {"state": state, "up_path": up, "rate": int(rate), "step_s": float(step_s), "load": load,
       "sent": sum(s["sent"] for s in sess), "received": sum(s["received"] for s in sess),
       "lost": sum(s["lost"] for s in sess), "missed_slots": sum(s["missed_slots"] for s in sess),
       "duration_s": summary.get("duration_s"), "records": len(recs),
       "window_us": open(d + "/window").read().strip()}
answered = [r for r in recs.values() if r["rx_ns"] is not None]
row["answered"] = len(answered)
row["answered_per_s"] = round(len(answered) / float(step_s))
row["loss_pct"] = round(100.0 * row["lost"] / max(1, row["sent"]), 3)
for key, name in (("fwd_path", "fwd"), ("rev_path", "rev")):
    n = len(answered)
    on_up = sum(1 for r in answered if r[key] == up)
    wrong = sum(1 for r in answered if r[key] == down)
    unknown = sum(1 for r in answered if r[key] == "unknown")
    other = n - on_up - wrong - unknown
    # lost probes attributed to the down path are wrong too (forward sightings of lost probes)
    wrong_lost = sum(1 for r in recs.values() if r["rx_ns"] is None and r[key] == down)
    row[name] = {"attributed_pct": round(100.0 * on_up / max(1, n), 3), "wrong": wrong + wrong_lost,
                 "unknown": unknown, "other": other}
taps = {}
for line in open(d + "/agent.log", errors="replace"):
    m = re.search(r"tap (\S+) \(([^)]*)\): frames (\d+), decoded (\d+), pcap drops (\d+)/(\d+)", line)
    if m:
        t = {"frames": int(m.group(3)), "pcap_drops": int(m.group(5)),
             "if_drops": int(m.group(6))}
        for k in ("matched", "unmatched", "ambiguous", "esp seq gaps"):
            g = re.search(r"[ ,;]%s (\d+)" % k, line)
            if g:
                t[k.replace(" ", "_")] = int(g.group(1))
        for dn in ("fwd", "rev"):
            g = re.search(dn + r" delay us min/mean/max (-?\d+)/(-?\d+)/(-?\d+) \((\d+) of", line)
            if g:
                t[dn + "_delay_us"] = [int(g.group(i)) for i in (1, 2, 3)]
                t[dn + "_near_window_end"] = int(g.group(4))
        taps[m.group(2)] = t
row["taps"] = taps
row["pcap_drops"] = sum(t["pcap_drops"] + t["if_drops"] for t in taps.values())
row["ok"] = (row["answered"] > 0 and row["fwd"]["wrong"] == 0 and row["rev"]["wrong"] == 0 and
             row["fwd"]["attributed_pct"] >= 99.9 and row["rev"]["attributed_pct"] >= 99.9)
print(json.dumps(row))
PY
  python3 - "$ROWS" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
print("  %-7s %7d/s (window %s us): sent %7d answered %7d (%6d/s) loss %6.3f%% missed %5d | fwd %7.3f%% wrong %d unk %d | rev %7.3f%% wrong %d unk %d | pcap drops %d | load %s | %s" % (
    r["state"], r["rate"], r["window_us"], r["sent"], r["answered"], r["answered_per_s"], r["loss_pct"],
    r["missed_slots"], r["fwd"]["attributed_pct"], r["fwd"]["wrong"], r["fwd"]["unknown"],
    r["rev"]["attributed_pct"], r["rev"]["wrong"], r["rev"]["unknown"], r["pcap_drops"],
    r["load"], "ok" if r["ok"] else "below"), file=sys.stderr)
for path, t in r["taps"].items():
    if "fwd_delay_us" in t or "rev_delay_us" in t:
        print("            tap %s: ESP frames %d, matched %d, unmatched %d, ambiguous %d, seq gaps %d;"
              " delay us fwd %s (%s near the window's end), rev %s (%s near the end)" % (
                  path, t["frames"], t.get("matched", 0), t.get("unmatched", 0),
                  t.get("ambiguous", 0), t.get("esp_seq_gaps", 0),
                  "/".join(map(str, t.get("fwd_delay_us", []))), t.get("fwd_near_window_end"),
                  "/".join(map(str, t.get("rev_delay_us", []))), t.get("rev_near_window_end")),
              file=sys.stderr)
PY
}

for state in $STATES; do
  case "$state" in
    ec-up) bash "$LAB" exec gw ip link set ec up ;;
    ec-down) bash "$LAB" exec gw ip link set ec down ;;
    *) echo "live_bench: unknown state $state" >&2; exit 2 ;;
  esac
  # BGP/BFD and the return route's health check move within a few seconds (fast profile).
  sleep 8
  echo "live_bench: $state (window $WINDOW us${AGENT_ARGS:+, $AGENT_ARGS})" >&2
  for rate in $RATES; do run_step "$state" "$rate"; done
done
bash "$LAB" exec gw ip link set ec up

python3 - "$ROWS" "$JSON_OUT" "$WINDOW" "$AGENT_ARGS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out_file, window, args = sys.argv[2], sys.argv[3], sys.argv[4]
print("| state (path up) | rate/s | window us | sent | answered/s | loss % | fwd attributed % | fwd wrong | fwd unknown | rev attributed % | rev wrong | rev unknown | pcap drops | load (1/5/15 min, before -> after) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s (%s) | %d | %s | %d | %d | %.3f | %.3f | %d | %d | %.3f | %d | %d | %d | %s |" % (
        r["state"], r["up_path"], r["rate"], r["window_us"], r["sent"], r["answered_per_s"],
        r["loss_pct"], r["fwd"]["attributed_pct"], r["fwd"]["wrong"], r["fwd"]["unknown"],
        r["rev"]["attributed_pct"], r["rev"]["wrong"], r["rev"]["unknown"], r["pcap_drops"],
        r["load"]))
best = {}
for state in dict.fromkeys(r["state"] for r in rows):
    ok = [r for r in rows if r["state"] == state and r["ok"]]
    b = max(ok, key=lambda r: r["rate"]) if ok else None
    best[state] = None if b is None else {
        "path": b["up_path"], "rate": b["rate"], "window_us": b["window_us"],
        "answered_per_s": b["answered_per_s"],
        "loss_pct": b["loss_pct"], "fwd_attributed_pct": b["fwd"]["attributed_pct"],
        "rev_attributed_pct": b["rev"]["attributed_pct"]}
    if b is None:
        print("\n%s: no step reached >= 99.9 %% attributed with zero wrong" % state)
    else:
        print("\n%s: highest rate with >= 99.9 %% of answered probes attributed and 0 wrong: "
              "%d probes/s on %s (answered %d/s, loss %.3f %%, fwd %.3f %%, rev %.3f %%)" % (
                  state, b["rate"], b["up_path"], b["answered_per_s"], b["loss_pct"],
                  b["fwd"]["attributed_pct"], b["rev"]["attributed_pct"]))
doc = {"window_us": window, "agent_args": args, "steps": rows, "highest_ok": best}
if out_file:
    json.dump(doc, open(out_file, "w"), indent=1)
print()
print(json.dumps(doc))
PY
