#!/usr/bin/env bash
# The README's main command, after scripts/run.sh has installed the packages and built: brings
# the lab up, starts the reflector on the ECS and the agent on the DC host (when built), runs
# the Express Connect drill (the guide's "shut the port, ping again"), prints what the lab's own
# ground truth and pathsentry saw, and leaves everything running.
#
#   deploy/lab/demo.sh [--profile realistic|fast]
#
# realistic (default): CEN's health check as the guide configures it (a probe every 2 s, 8 lost
# move the return route): the forward direction switches at once, the return direction ~16 s
# later. fast: BFD and a 200 ms health check, for a quick look.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export TZ=UTC

LAB=deploy/lab/lab
BUILD_DIR=${BUILD_DIR:-build}
profile=${PS_DEMO_PROFILE:-realistic}
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs realistic or fast}; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces); run with sudo" >&2; exit 1; }

if [ -t 1 ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi

# find_bin NAME: the executable in the build dir, if it was built.
find_bin() {
  local f
  for f in "$BUILD_DIR/probe/$1" "$BUILD_DIR/collector/$1" "$BUILD_DIR/$1"; do
    [ -x "$f" ] && { echo "$f"; return 0; }
  done
  f=$(find "$BUILD_DIR" -maxdepth 3 -type f -name "$1" -perm -u+x 2>/dev/null | head -n1)
  [ -n "$f" ] && echo "$f"
}

step "1/5 the lab (profile $profile)"
bash "$LAB" up --profile "$profile"
eval "$(bash "$LAB" env | grep -E '^PS_LAB_[A-Z0-9_]+=[^ ]*$')"

step "2/5 pathsentry-reflector on the ECS ($PS_LAB_ECS, namespace $PS_LAB_REFLECTOR_NS)"
reflector=$(find_bin pathsentry-reflector || true)
if [ -n "$reflector" ]; then
  if bash "$LAB" start reflector ecs "$(realpath "$reflector")" --allow "$PS_LAB_DC_NET"; then
    for _ in $(seq 50); do
      grep -q "listening" "$PS_LAB_STATE/logs/app-reflector.out" 2>/dev/null && break
      sleep 0.1
    done
    grep "listening" "$PS_LAB_STATE/logs/app-reflector.out" || echo "reflector: no 'listening' line yet"
  fi
else
  echo "pathsentry-reflector is not built in $BUILD_DIR: the ECS answers ICMP only (no STAMP)"
fi

step "3/5 pathsentry-collector (the host's namespace) and pathsentry-probe (the agent) on the DC host ($PS_LAB_DC_HOST, namespace $PS_LAB_AGENT_NS)"
# The collector runs in the machine's own namespace, so its page opens in a browser here; the
# agent in the lab reaches it through a Unix socket in the lab's state dir (a file: no route,
# bridge or NAT between the lab and the machine). Its database and token live in the state dir.
collector=$(find_bin pathsentry-collector || true)
collector_url=
ship_args=()
if [ -n "$collector" ]; then
  token=$PS_LAB_STATE/ingest.token
  [ -s "$token" ] || (umask 077 && head -c 24 /dev/urandom | base64 >"$token")
  listen=${PS_DEMO_LISTEN:-127.0.0.1:9780}
  if bash "$LAB" start collector host "$(realpath "$collector")" --db "$PS_LAB_STATE/collector.db" \
    --listen "$listen" --listen-unix "$PS_LAB_STATE/collector.sock" --token-file "$token"; then
    for _ in $(seq 50); do
      [ -S "$PS_LAB_STATE/collector.sock" ] && break
      sleep 0.1
    done
    collector_url="http://$listen/"
    ship_args=(--collector-url "unix:$PS_LAB_STATE/collector.sock" --collector-token-file "$token"
      --spool-dir "$PS_LAB_STATE/spool" --agent-name lab-dc)
    echo "the page and the API: $collector_url (database $PS_LAB_STATE/collector.db)"
  fi
else
  echo "pathsentry-collector is not built in $BUILD_DIR: the agent writes JSON lines only"
fi
probe=$(find_bin pathsentry-probe || true)
probe_log=
if [ -n "$probe" ]; then
  # The README's tap line as a new user writes it: only the tunnel's endpoints; the agent learns
  # the ESP transform and uses its default correlation window.
  transform="learned from the lengths seen"
  probe_records=$PS_LAB_STATE/agent-records.jsonl
  if bash "$LAB" start probe dc "$(realpath "$probe")" --target "$PS_LAB_ECS" --proto both \
    --rate 1000 --source "$PS_LAB_DC_HOST" --records "$probe_records" --metrics-listen off \
    --summary-json "$PS_LAB_STATE/agent-summary.json" \
    --tap "$PS_LAB_TAP_EC:$PS_LAB_TAP_EC_PATH:clear" \
    --tap "$PS_LAB_TAP_INET:$PS_LAB_TAP_INET_PATH:esp:$PS_LAB_TUNNEL_LOCAL:$PS_LAB_TUNNEL_REMOTE" \
    "${ship_args[@]}"; then
    probe_log=$PS_LAB_STATE/logs/app-probe.out
  fi
  echo "its taps: $PS_LAB_TAP_EC (Express Connect SPAN, clear, path $PS_LAB_TAP_EC_PATH) and" \
    "$PS_LAB_TAP_INET (internet SPAN, path $PS_LAB_TAP_INET_PATH: ESP-in-UDP $PS_LAB_ESP_UDP_PORT" \
    "between $PS_LAB_TUNNEL_LOCAL and $PS_LAB_TUNNEL_REMOTE, $transform);" \
    "records and events as JSON lines in $probe_records; all topology facts in $PS_LAB_STATE/lab.env"
else
  echo "pathsentry-probe is not built in $BUILD_DIR: only the lab's own ground truth will be shown"
fi

step "4/5 the drill: shut the DC gateway's Express Connect port, then bring it back"
bash "$LAB" drill ec-port
result=$(cat "$PS_LAB_STATE/last-drill" 2>/dev/null || true)

step "5/5 what pathsentry saw"
if [ -n "$probe_log" ] && [ -n "$result" ] && [ -f "$result/result.json" ]; then
  # the agent's per-second lines (HH:MM:SS, UTC) during the drill's stream
  read -r from to < <(python3 -c '
import json, sys, time
r = json.load(open(sys.argv[1]))
f = lambda t: time.strftime("%H:%M:%S", time.gmtime(t))
print(f(r["stream"]["start"]), f(r["stream"]["end"]))' "$result/result.json")
  echo "pathsentry-probe, per second, $from..$to UTC (from $probe_log):"
  awk -v a="$from" -v b="$to" '$1 >= a && $1 <= b' "$probe_log" | sed 's/^/  /'
  # the detector's events since the drill's stream started, from the agent's JSON lines
  echo "pathsentry-probe's path events (from $probe_records):"
  python3 - "$probe_records" "$result/result.json" <<'PY' || echo "  (could not read the agent's events)"
import json, sys, time
start = json.load(open(sys.argv[2]))["stream"]["start"]
n = 0
for line in open(sys.argv[1]):
    if '"type":"event"' not in line:
        continue
    e = json.loads(line)
    if e["ts_ns"] / 1e9 < start:
        continue
    n += 1
    t = time.strftime("%H:%M:%S", time.gmtime(e["ts_ns"] / 1e9)) + ".%03d" % (e["ts_ns"] // 1000000 % 1000)
    if e["event"] == "switchover":
        print("  %s %-5s %-7s %s -> %s: outage %.1f ms, %d probes lost%s" % (
            t, e["proto"], e["direction"], e["from"], e["to"], e["outage_ns"] / 1e6,
            e["probes_lost"], " (failback)" if e["failback"] else ""))
    elif e["event"] in ("outage_begin", "outage_end"):
        extra = ", %.1f ms, %d probes lost" % (e["outage_ns"] / 1e6, e["probes_lost"]) \
            if e["event"] == "outage_end" else ""
        print("  %s %-5s %-7s %s (%s -> %s)%s" % (t, e["proto"], e["direction"], e["event"],
                                                e["from"], e["to"], extra))
    else:
        print("  %s %-5s %s fwd %s rev %s" % (t, e["proto"], e["event"], e["fwd_path"],
                                            e["rev_path"]))
if n == 0:
    print("  (no path event: the agent saw no change)")
PY
  # The agent's events and outages beside the per-probe ground truth the drill took at the
  # cloud router, where both paths are in clear (independent of the agent's taps).
  if [ -f "$result/probes.json" ]; then
    echo "beside the ground truth of the agent's own probes (captured at the cloud router;"
    echo "agent ms / truth ms; deploy/lab/attrcheck, docs/lab.md):"
    python3 "$(dirname "$0")/attrcheck" "$probe_records" "$result/probes.json" \
      --summary "$PS_LAB_STATE/agent-summary.json" 2>&1 |
      sed -n '/proto direction/,/assertions/p' | sed 's/^ */  /' ||
      echo "  (could not compare with the ground truth)"
  fi
elif [ -n "$probe_log" ]; then
  echo "see $probe_log"
else
  echo "no agent ran; the ground truth above is the lab's own measurement from its mirrors"
fi

if [ -n "$collector_url" ] && [ -n "$result" ] && [ -f "$result/result.json" ]; then
  sleep 2 # the agent's last batch of the drill
  since=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["stream"]["start"] * 1e9))' \
    "$result/result.json")
  echo "the drill's events as the collector stored them:"
  echo "  curl -s '${collector_url}api/v1/events?since=$since' | python3 -m json.tool"
  python3 - "${collector_url}api/v1/events?since=$since" <<'PY' || echo "  (the collector did not answer)"
import json, sys, urllib.request
events = json.load(urllib.request.urlopen(sys.argv[1], timeout=5))["events"]
for e in sorted(events, key=lambda e: (e["ts_ns"], e["id"])):
    what = e["event"]
    if "outage_ns" in e:
        what += " %s %s %s -> %s, outage %.1f ms (%s), %d probes lost, %d direction undetermined" % (
            e.get("proto", ""), e.get("direction", ""), e["from"], e["to"], e["outage_ns"] / 1e6,
            e["outage_kind"], e["probes_lost"], e["probes_lost_undetermined"])
    print("  #%d %s" % (e["id"], what))
print("  %d event(s)" % len(events))
PY
fi

cat <<EOF

Everything is still running (profile $profile):
  the page:  ${collector_url:-(collector not built)}   (live: run another drill and watch)
  look:      $LAB status          (routes, BGP, tunnel, health check, processes)
             $LAB exec dc tcpdump -ni $PS_LAB_TAP_INET     (the internet port's mirror)
             $LAB drill bgp-kill|both-down|ipsec-down|flap|blackhole
             this drill's captures and timeline: ${result:-?}
  tear down: $LAB down
EOF
