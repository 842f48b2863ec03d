#!/usr/bin/env bash
# e2e: the lab comes up (idempotently), carries DC->ECS traffic over Express Connect in both
# directions (seen on the EC mirror, never on the internet mirror), is sealed from the root
# namespace, and `down` leaves no namespace, link, process or state behind.
# Usage: bash tests/e2e/lab_updown_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
e2e_init pst1-

links_before=$(root_links)

e2e_log "lab up"
t0=${EPOCHREALTIME/./}
check "lab up succeeds" bash "$LAB" up
e2e_log "bring-up took $(((${EPOCHREALTIME/./} - t0) / 1000)) ms"
check "lab status reports a healthy lab (exit 0)" bash -c 'bash "$1" status >/dev/null' sh "$LAB"
check "all eight namespaces exist" test "$(lab_ns_names | wc -l)" -eq 8
env_file=$PS_LAB_STATE/lab.env
check "lab.env names the taps" grep -q '^PS_LAB_TAP_EC=tap-ec$' "$env_file"
check "lab.env names the tunnel endpoints" grep -q '^PS_LAB_TUNNEL_REMOTE=203.0.113.10$' "$env_file"
check "the DC host has its address and both taps" \
  bash -c 'bash "$1" exec dc ip -o addr show eth0 | grep -q 172.16.1.188/ &&
           bash "$1" exec dc ip link show tap-ec >/dev/null &&
           bash "$1" exec dc ip link show tap-inet >/dev/null' sh "$LAB"

pids_before=$(bash "$LAB" pids)
check "a second lab up is a no-op" bash -c 'bash "$1" up | grep -q "already up"' sh "$LAB"
check "... and keeps the same processes" test "$(bash "$LAB" pids)" = "$pids_before"

# Sealed: every veth of a lab namespace has its peer in another lab namespace, and the root
# namespace gained no link.
sealed() {
  local n line
  for n in $(lab_ns_names); do
    while read -r line; do
      case "$line" in
        *"link-netns ${PS_LAB_PREFIX}"*) ;;
        *"link-netns "*) echo "       $n: peer outside the lab: $line"; return 1 ;;
        *link-netnsid*) echo "       $n: peer in an unnamed namespace: $line"; return 1 ;;
      esac
    done < <(ip -n "$n" -o link show type veth)
  done
}
check "every veth joins two lab namespaces" sealed
check "the root namespace gained no link" test "$(root_links)" = "$links_before"
check "no lab route or address leaked into the root namespace" \
  bash -c '! ip -o addr show | grep -qE "172\.16\.1\.|192\.168\.20\.|10\.1\.0\.|198\.51\.100\.|203\.0\.113\."'

run_drill baseline
check "baseline: forward stays on Express Connect" rj_is "$RESULT" 'runs("forward")' '["ec"]'
check "baseline: reverse stays on Express Connect" rj_is "$RESULT" 'runs("reverse")' '["ec"]'
check "baseline: every probe delivered both ways" \
  rj_true "$RESULT" 'all(r[d]["sent"] > 100 and r[d]["delivered"] == r[d]["sent"] for d in ("forward", "reverse"))'
check "baseline: no stream ESP on the internet mirror" \
  rj_is "$RESULT" '[r["forward"]["esp_stream"], r["reverse"]["esp_stream"]]' '[0, 0]'
check "baseline: no stream packet in clear on the internet mirror" \
  rj_is "$RESULT" 'r["stream_in_clear_on_inet"]' 0

mapfile -t inodes < <(for n in $(lab_ns_names); do stat -L -c %i "/run/netns/$n"; done)
# pid and start time: a number the kernel reuses for a new process meanwhile is not ours
starttime() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; st=${st##*) }; set -- $st; echo "${20}"; }
recorded=$(awk '{print $2 ":" $3}' "$PS_LAB_STATE/pids")
e2e_log "lab down"
t0=${EPOCHREALTIME/./}
check "lab down succeeds" bash "$LAB" down
e2e_log "teardown took $(((${EPOCHREALTIME/./} - t0) / 1000)) ms"
check "no lab namespace is left" test -z "$(lab_ns_names)"
check "no process is left in the lab's namespaces" test -z "$(procs_in_netns "${inodes[@]}")"
still=
for ps in $recorded; do
  p=${ps%%:*}
  [ -d "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] &&
    [ "$(starttime "$p")" = "${ps#*:}" ] && still+=" $p"
done
check "every recorded process has stopped" test -z "$still"
check "the root namespace has the links it had before" test "$(root_links)" = "$links_before"
check "the state dir is gone" test ! -e "$PS_LAB_STATE"
check "a second lab down is a no-op" bash "$LAB" down
check "lab status says down (exit 3)" bash -c 'bash "$1" status >/dev/null; [ $? -eq 3 ]' sh "$LAB"
