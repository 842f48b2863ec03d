#!/usr/bin/env bash
# Live attribution on a clear tap at high rates (issue 14 goals 4 and 6): the agent with two
# clear taps, one on the path its probes take and one on a path that carries none of them, at
# rising probe rates. Per step: probes sent and answered (the baseline: what the path and the
# reflector carried), the share of answered probes attributed to the path they took, per
# direction, "wrong" (attributed to the idle path, which cannot have carried them), "unknown",
# the taps' pcap drops (kernel ring full), the agent's CPU and max RSS (bench-runstat), and its
# resident RSS (median VmRSS over the step's second half, read every ~0.2 s). Each
# step also runs the same probes without taps: the agent's CPU and RSS beside it, same run.
#
# Usage: sudo bash bench/attribution/clear_tap_bench.sh BUILD_DIR [options]
#   --rates "20000 50000 100000"  total probes/s per step (ICMP + STAMP, half each)
#   --step-s S                    seconds per step (default 5)
#   --no-baseline                 skip the runs without taps
#   --agent-args "…"              extra flags for pathsentry-probe
#   --probe FILE                  the agent binary (default BUILD_DIR/probe/pathsentry-probe), e.g.
#                                 an older build for a before/after in one run
#   --json FILE                   also write the rows as JSON
#   --no-records                  run the agent without --records (its record writer and queue
#                                 are then not in its RSS); attribution is read from its
#                                 "attribution:" log line (per path and direction), exact for a
#                                 step without loss (a lost probe counts there too)
#
# Safety: two namespaces psct-<pid>-a and -b joined by one veth (198.18.0.1/24 <-> 198.18.0.2/24,
# static neighbours, no other link), plus a veth pair "idle"/"idle-peer" inside namespace a, with
# no address, for the idle tap: nothing can leave the machine. On exit it stops only the PIDs it started and deletes only
# those two namespaces. Builds nothing; root.
set -euo pipefail
export LC_ALL=C TZ=UTC
[ "$(id -u)" -eq 0 ] || { echo "clear_tap_bench: needs root (namespaces, capture)" >&2; exit 1; }
BUILD=$(realpath "${1:?usage: clear_tap_bench.sh BUILD_DIR [options]}")
shift
RATES="20000 50000 100000"
STEP_S=5
BASELINE=1
AGENT_ARGS=""
JSON_OUT=""
PROBE_BIN=""
RECORDS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rates) RATES=$2; shift 2 ;;
    --step-s) STEP_S=$2; shift 2 ;;
    --no-baseline) BASELINE=0; shift ;;
    --agent-args) AGENT_ARGS=$2; shift 2 ;;
    --probe) PROBE_BIN=$(realpath "$2"); shift 2 ;;
    --json) JSON_OUT=$2; shift 2 ;;
    --no-records) RECORDS=0; shift ;;
    *) echo "clear_tap_bench: unknown option $1" >&2; exit 2 ;;
  esac
done
PROBE=${PROBE_BIN:-$BUILD/probe/pathsentry-probe}
REFLECTOR=$BUILD/probe/pathsentry-reflector
RUNSTAT=$BUILD/bench/bench-runstat
for b in "$PROBE" "$REFLECTOR" "$RUNSTAT"; do
  [ -x "$b" ] || { echo "clear_tap_bench: build $(basename "$b") in $BUILD first" >&2; exit 1; }
done
NS_A=psct-$$-a
NS_B=psct-$$-b
A4=198.18.0.1
B4=198.18.0.2
WORK=$(mktemp -d /var/tmp/pathsentry-clear-tap.XXXXXX)
ROWS=$WORK/rows.jsonl
: >"$ROWS"
REFL_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$REFL_PID" ]; then
    kill -TERM "$REFL_PID" 2>/dev/null || true
    wait "$REFL_PID" 2>/dev/null || true
  fi
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  rm -rf -- "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$NS_A"
ip netns add "$NS_B"
ip -n "$NS_A" link add va type veth peer name vb netns "$NS_B"
ip -n "$NS_A" addr add "$A4/24" dev va
ip -n "$NS_B" addr add "$B4/24" dev vb
ip -n "$NS_A" link add idle type veth peer name idle-peer
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set va up
ip -n "$NS_B" link set vb up
ip -n "$NS_A" link set idle up
ip -n "$NS_A" link set idle-peer up
mac_a=$(ip -n "$NS_A" -o link show va | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
mac_b=$(ip -n "$NS_B" -o link show vb | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
ip -n "$NS_A" neigh replace "$B4" lladdr "$mac_b" dev va nud permanent
ip -n "$NS_B" neigh replace "$A4" lladdr "$mac_a" dev vb nud permanent

# The reflector's limits far above the highest step: it is the path, not the thing measured.
ip netns exec "$NS_B" "$REFLECTOR" --allow 198.18.0.0/24 --bind "$B4" --rate-limit 100000000 \
  --burst 1000000 --global-rate-limit 100000000 --global-burst 1000000 \
  --metrics-listen off --log-level warn >"$WORK/reflector.log" 2>&1 &
REFL_PID=$!
sleep 0.5
kill -0 "$REFL_PID" 2>/dev/null || { cat "$WORK/reflector.log" >&2; exit 1; }

echo "clear_tap_bench: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), commit" \
  "$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)" >&2

run_step() { # RATE TAPS(0|1)
  local rate=$1 taps=$2 half dir=$WORK/step load0
  rm -rf "$dir"
  mkdir -p "$dir"
  half=$(python3 -c "print($rate / 2)")
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  local tapargs=()
  if [ "$taps" = 1 ]; then tapargs=(--tap va:direct:clear --tap idle:other:clear); fi
  local recargs=()
  if [ "$RECORDS" = 1 ]; then recargs=(--records "$dir/records.jsonl"); fi
  # shellcheck disable=SC2086
  "$RUNSTAT" --out "$dir/runstat.json" -- ip netns exec "$NS_A" "$PROBE" --target "$B4" \
    --proto both --rate "$half" --duration "$STEP_S" --source "$A4" --timeout-ms 500 --quiet \
    --metrics-listen off "${recargs[@]}" --summary-json "$dir/summary.json" \
    "${tapargs[@]}" $AGENT_ARGS >"$dir/agent.log" 2>&1 &
  # The agent's VmRSS about every 0.2 s (runstat's child: `ip netns exec` execs the agent in
  # place): the "resident" figure is the median over the second half of the step, what the
  # agent holds once running; runstat's max RSS also counts short peaks given back at once.
  local rs_pid=$! agent_pid="" rc=0
  : >"$dir/rss.txt"
  while kill -0 "$rs_pid" 2>/dev/null; do
    [ -n "$agent_pid" ] || agent_pid=$(pgrep -P "$rs_pid" | head -n 1 || true)
    if [ -n "$agent_pid" ]; then
      awk '/^VmRSS:/ {print $2}' "/proc/$agent_pid/status" >>"$dir/rss.txt" 2>/dev/null || true
    fi
    sleep 0.2
  done
  wait "$rs_pid" || rc=$?
  [ "$rc" = 0 ] || echo "clear_tap_bench: agent exited $rc at $rate/s (taps $taps)" >&2
  python3 - "$dir" "$rate" "$taps" "$STEP_S" "$load0 -> $(cut -d' ' -f1-3 /proc/loadavg)" \
    >>"$ROWS" <<'PY'
import json, re, sys
d, rate, taps, step_s, load = sys.argv[1:6]
recs = {}
try:
    for line in open(d + "/records.jsonl"):
        o = json.loads(line)
        if o.get("type") == "probe":
            recs[(o["session_id"], o["seq"])] = o
except FileNotFoundError:
    pass
try:
    summary = json.load(open(d + "/summary.json"))
except (FileNotFoundError, json.JSONDecodeError):
    summary = {}
sess = summary.get("sessions", [])
try:
    rs = json.load(open(d + "/runstat.json"))
except (FileNotFoundError, json.JSONDecodeError):
    rs = {}
row = {"rate": int(rate), "taps": taps == "1", "step_s": float(step_s), "load": load,
       "sent": sum(s["sent"] for s in sess), "received": sum(s["received"] for s in sess),
       "lost": sum(s["lost"] for s in sess), "missed_slots": sum(s["missed_slots"] for s in sess),
       "records": len(recs), "cpu_pct": round(rs["cpu_pct"]) if "cpu_pct" in rs else None, "max_rss_mb":
       round(rs["max_rss_kb"] / 1024, 1) if "max_rss_kb" in rs else None}
try:
    kb = [int(x) for x in open(d + "/rss.txt").read().split()]
except (FileNotFoundError, ValueError):
    kb = []
half = sorted(kb[len(kb) // 2:])
row["resident_mb"] = round(half[len(half) // 2] / 1024, 1) if half else None
answered = [r for r in recs.values() if r["rx_ns"] is not None]
row["answered"] = len(answered)
row["answered_per_s"] = round(len(answered) / float(step_s))
stats = None
for line in open(d + "/agent.log", errors="replace"):
    m = re.search(r"attribution: (\d+) records; direct fwd (\d+) rev (\d+); other fwd (\d+) rev (\d+); "
                  r"unknown fwd (\d+) rev (\d+)", line)
    if m:
        stats = [int(x) for x in m.groups()]
if row["taps"] and not recs and stats:
    # No records written: the agent's own counts (every record, lost ones too).
    row["from_log"] = True
    row["answered"] = row["received"]
    row["answered_per_s"] = round(row["received"] / float(step_s))
    n = max(1, row["received"])
    row["fwd"] = {"attributed_pct": round(100.0 * min(stats[1], n) / n, 3), "wrong": stats[3],
                  "unknown": stats[5], "other": 0}
    row["rev"] = {"attributed_pct": round(100.0 * min(stats[2], n) / n, 3), "wrong": stats[4],
                  "unknown": stats[6], "other": 0}
elif row["taps"]:
    for key, name in (("fwd_path", "fwd"), ("rev_path", "rev")):
        n = len(answered)
        on = sum(1 for r in answered if r[key] == "direct")
        wrong = sum(1 for r in recs.values() if r[key] == "other")
        unknown = sum(1 for r in answered if r[key] == "unknown")
        row[name] = {"attributed_pct": round(100.0 * on / max(1, n), 3), "wrong": wrong,
                     "unknown": unknown, "other": n - on - unknown}
if row["taps"]:
    drops = 0
    for line in open(d + "/agent.log", errors="replace"):
        m = re.search(r"tap (\S+) \(([^)]*)\): frames (\d+), decoded (\d+), pcap drops (\d+)/(\d+)",
                      line)
        if m:
            row.setdefault("tap_frames", {})[m.group(1)] = int(m.group(3))
            drops += int(m.group(5)) + int(m.group(6))
        m = re.search(r"polls held back by a lagging capture (\d+)", line)
        if m:
            row["lagging_polls"] = int(m.group(1))
    row["pcap_drops"] = drops
    row["ok"] = (row["answered"] > 0 and (not row.get("from_log") or row["lost"] == 0) and row["fwd"]["wrong"] == 0 and row["rev"]["wrong"] == 0
                 and row["fwd"]["attributed_pct"] >= 99.9 and row["rev"]["attributed_pct"] >= 99.9
                 and drops == 0)
print(json.dumps(row))
PY
  python3 - "$ROWS" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
line = ("  %7d/s %-7s sent %7d answered %7d (%6d/s) lost %d missed %d | cpu %s%% rss %s MB"
        " resident %s MB") % (
    r["rate"], "taps" if r["taps"] else "no taps", r["sent"], r["answered"], r["answered_per_s"],
    r["lost"], r["missed_slots"], r["cpu_pct"], r["max_rss_mb"], r.get("resident_mb"))
if r["taps"]:
    line += " | fwd %.3f%% wrong %d unk %d | rev %.3f%% wrong %d unk %d | pcap drops %d | %s" % (
        r["fwd"]["attributed_pct"], r["fwd"]["wrong"], r["fwd"]["unknown"],
        r["rev"]["attributed_pct"], r["rev"]["wrong"], r["rev"]["unknown"], r["pcap_drops"],
        "ok" if r["ok"] else "below")
print(line + " | load " + r["load"], file=sys.stderr)
PY
  rm -rf "$dir"
}

for rate in $RATES; do
  [ "$BASELINE" = 1 ] && run_step "$rate" 0
  run_step "$rate" 1
done

python3 - "$ROWS" "$JSON_OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| rate/s | taps | sent | answered/s | lost | missed slots | fwd attributed % | rev attributed % | wrong | unknown fwd/rev | pcap drops | agent cpu % | max RSS MB | resident MB | load |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["taps"]:
        t = ("%.3f" % r["fwd"]["attributed_pct"], "%.3f" % r["rev"]["attributed_pct"],
             str(r["fwd"]["wrong"] + r["rev"]["wrong"]),
             "%d / %d" % (r["fwd"]["unknown"], r["rev"]["unknown"]), str(r["pcap_drops"]))
    else:
        t = ("-",) * 5
    print("| %d | %s | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % tuple(
        (r["rate"], "yes" if r["taps"] else "no", r["sent"], r["answered_per_s"], r["lost"],
         r["missed_slots"]) + t + (r["cpu_pct"], r["max_rss_mb"], r.get("resident_mb"),
                                   r["load"])))
ok = [r for r in rows if r["taps"] and r["ok"]]
print("\nhighest rate with >= 99.9 %% of answered probes attributed, 0 wrong, 0 pcap drops: %s" % (
    "%d probes/s" % max(r["rate"] for r in ok) if ok else "none"))
if sys.argv[2]:
    json.dump(rows, open(sys.argv[2], "w"), indent=1)
PY
