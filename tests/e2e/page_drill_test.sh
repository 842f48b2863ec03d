#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2153 # COLL_* are set and used by lib_collector.sh
# e2e (issue 11): the status page in a real headless browser after a real lab drill. The lab with
# its reflector; the collector in the host's namespace on 127.0.0.1:PORT (the page) and a Unix
# socket in the lab's state dir (ingest); the agent on the DC host (1000 probes/s ICMP + STAMP,
# both taps, as deploy/lab/demo.sh) shipping to it. After the Express Connect drill,
# tests/browser/run.mjs (chromium + playwright-core) opens the page and checks the failover and
# the failback with their outage figures and the current path per direction (Express Connect
# both ways after the failback); while the page is open a second drill (bgp-kill) runs, and a
# new event must appear without reload. Screenshots are kept in the results dir
# (PS_E2E_KEEP=1 keeps a passed run's).
# Usage: bash tests/e2e/page_drill_test.sh [build-dir]
#   PS_E2E_PAGE_PORT: the page's port on 127.0.0.1 (default 19781)
source "$(dirname "$0")/lib_collector.sh"
coll_init pstpg- "${1:-$E2E_REPO/build}"
PORT=${PS_E2E_PAGE_PORT:-19781}
URL="http://127.0.0.1:$PORT/"
ART=$E2E_RESULTS/screenshots

if ss -Hltn "sport = :$PORT" | grep -q .; then
  echo "FAIL: 127.0.0.1:$PORT is in use (set PS_E2E_PAGE_PORT)"
  exit 1
fi
command -v node >/dev/null || { echo "FAIL: node is missing (scripts/deps.sh)"; exit 1; }

# The collector: this test's child, stopped by PID (coll_exit), the page on loopback.
rm -f "$COLL_SOCK"
"$COLL_BIN" --db "$COLL_DB" --listen "127.0.0.1:$PORT" --listen-unix "$COLL_SOCK" \
  --token-file "$COLL_TOKEN" >>"$COLL_LOG" 2>&1 </dev/null &
COLL_PID=$!
for _ in $(seq 100); do
  [ -S "$COLL_SOCK" ] && curl -fs -o /dev/null "$URL" && break
  sleep 0.05
done
check "the collector serves the page on $URL" curl -fs -o /dev/null "$URL"

PS_E2E_AGENT_ARGS="--metrics-listen off --collector-url unix:$COLL_SOCK"
PS_E2E_AGENT_ARGS+=" --collector-token-file $COLL_TOKEN --spool-dir $COLL_SPOOL --agent-name lab-dc"
attr_start_agent
run_drill ec-port
sleep 3 # the agent's last batch of the drill (it ships every second)

# The browser test; when it begins waiting for a live event it creates $ready, and the second
# drill starts (its events reach the page over the stream).
ready=$E2E_RESULTS/browser.ready
(
  for _ in $(seq 1200); do
    [ -e "$ready" ] && break
    sleep 0.1
  done
  [ -e "$ready" ] || exit 0
  bash "$LAB" drill bgp-kill >"$E2E_RESULTS/drill-bgp-kill.out" 2>&1
) &
drill2=$!
e2e_log "browser: node tests/browser/run.mjs --base-url $URL (drill bgp-kill while the page is open)"
node "$E2E_REPO/tests/browser/run.mjs" --base-url "$URL" --artifacts "$ART" --live-timeout 60 \
  --ready-file "$ready" --expect-path "Express Connect" --live-match '^(Switchover|Failback), .*: Express Connect → IPsec$' \
  --live-out "$E2E_RESULTS/live-events.json" >"$E2E_RESULTS/browser.out" 2>&1 || true
# (the live match takes "Failback" too: the agent's flag means "back to the path last left", so
# after the first drill's round trip every later switch, this one to IPsec included, carries it)
sed 's/^/    /' "$E2E_RESULTS/browser.out"
wait "$drill2" || e2e_log "the second drill failed: $(tail -n 3 "$E2E_RESULTS/drill-bgp-kill.out")"

# every line of the browser test a check
while IFS= read -r line; do
  case "$line" in
    "ok   "*) check "page: ${line#ok   }" true ;;
    "FAIL "*) check "page: ${line#FAIL }" false ;;
  esac
done <"$E2E_RESULTS/browser.out"
# The switchover the page showed live is one the collector stored after the second drill's
# failure (not a leftover of the first drill).
live_from_drill2() {
  local res
  res="$(cat "$PS_LAB_STATE/last-drill")/result.json"
  case "$res" in *bgp-kill*) ;; *) echo "       no result of the second drill"; return 1 ;; esac
  python3 - "$res" "$E2E_RESULTS/live-events.json" "${URL}api/v1/events" <<'PY'
import json, sys, urllib.request
r = json.load(open(sys.argv[1]))
t0 = int(r["actions"][0]["t"] * 1e9)
live = {e["id"]: e["title"] for e in json.load(open(sys.argv[2]))}
evs = json.load(urllib.request.urlopen("%s?since=%d&limit=100000" % (sys.argv[3], t0), timeout=5))["events"]
hit = [e for e in evs if e["event"] == "switchover" and e["id"] in live]
for e in hit:
    print("       #%d %s (%.3f s after the failure)" % (e["id"], live[e["id"]], (e["ts_ns"] - t0) / 1e9))
if not hit:
    print("       the page's live events %s are not switchovers after %d" % (sorted(live), t0))
    # Which switchovers the page did show live, and when (a path change before the second drill
    # is a real one in the lab: its BIRD logs are in the drill's results).
    early = json.load(urllib.request.urlopen("%s?limit=100000" % sys.argv[3], timeout=5))["events"]
    for e in early:
        if e["event"] == "switchover" and e["id"] in live:
            print("       #%d %s: %.3f s before the second drill's failure" %
                  (e["id"], live[e["id"]], (t0 - e["ts_ns"]) / 1e9))
sys.exit(0 if hit else 1)
PY
}
check "the event shown live is a switchover of the second drill (bgp-kill)" live_from_drill2
check "the browser test passed" grep -qE '^[1-9][0-9]* passed, 0 failed$' "$E2E_RESULTS/browser.out"
check "the page's screenshots were taken" test -s "$ART/page-live.png" -a -s "$ART/event-probes.png"
e2e_log "screenshots: $ART"
