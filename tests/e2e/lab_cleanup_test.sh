#!/usr/bin/env bash
# e2e: a bring-up that fails half way, or is interrupted with Ctrl-C, removes everything it had
# created (namespaces, processes, state) and leaves the root namespace as it was.
# Usage: bash tests/e2e/lab_cleanup_test.sh [build-dir]
source "$(dirname "$0")/../../deploy/lab/lib/e2e.sh"
e2e_init pst2-

links_before=$(root_links)
nothing_left() {
  [ -z "$(lab_ns_names)" ] || { echo "       namespaces left: $(lab_ns_names | tr '\n' ' ')"; return 1; }
  [ ! -e "$PS_LAB_STATE" ] || { echo "       state dir left: $PS_LAB_STATE"; return 1; }
  [ "$(root_links)" = "$links_before" ] || { echo "       root links changed"; return 1; }
}
# the charons a half-done bring-up started, found by their private /run under the state dir
charons_of_this_lab() {
  local p
  for p in $(pgrep -x charon || true); do
    # the bind mount's source, relative to its filesystem (which may be /run itself)
    grep -qsF "${PS_LAB_STATE#/run}/" "/proc/$p/mountinfo" && echo "$p"
  done
  return 0
}

# 1. A bring-up failing half way: a `bird` that refuses to start, after both charons run.
fake=$(mktemp -d)
printf '#!/bin/sh\necho "fake bird: refusing to start" >&2\nexit 1\n' >"$fake/bird"
chmod +x "$fake/bird"
e2e_log "lab up with a failing bird"
set +e
PATH="$fake:$PATH" bash "$LAB" up >"$E2E_RESULTS/failed-up.out" 2>&1
rc=$?
set -e
rm -rf "$fake"
sed 's/^/    /' "$E2E_RESULTS/failed-up.out"
check "the failing bring-up exits non-zero" test "$rc" -ne 0
check "it says why" grep -q "BIRD rejects" "$E2E_RESULTS/failed-up.out"
check "it started the charons before failing" grep -q "strongSwan (kernel-libipsec) running" "$E2E_RESULTS/failed-up.out"
check "it kept its logs for a post-mortem" bash -c 'ls -d "$1"/failed-up-* >/dev/null' sh "$E2E_RESULTS"
check "the post-mortem holds no pre-shared key" bash -c '! grep -rqs "secret = " "$1"/failed-up-*' sh "$E2E_RESULTS"
check "nothing is left after the failed bring-up" nothing_left
check "no charon of this lab is left" test -z "$(charons_of_this_lab)"

# 2. Ctrl-C during bring-up (SIGINT to the whole process group, as a terminal sends it).
e2e_log "lab up interrupted with SIGINT"
set -m
bash "$LAB" up >"$E2E_RESULTS/interrupted-up.out" 2>&1 &
job=$!
set +m
for _ in $(seq 200); do
  [ -s "$PS_LAB_STATE/pids" ] && break
  sleep 0.01
done
check "the bring-up had started processes when interrupted" test -s "$PS_LAB_STATE/pids"
kill -INT -- "-$job"
set +e
wait "$job"
rc=$?
set -e
sed 's/^/    /' "$E2E_RESULTS/interrupted-up.out"
check "the interrupted bring-up exits 130" test "$rc" -eq 130
check "nothing is left after the interrupted bring-up" nothing_left
check "no charon of this lab is left" test -z "$(charons_of_this_lab)"

# 3. After both, a normal bring-up still works.
e2e_log "lab up after the failures"
check "a clean bring-up works afterwards" bash "$LAB" up

# 4. Ctrl-C in the middle of a drill, with the Express Connect port down: the drill repairs the
#    lab and stops its recorders.
e2e_log "drill ec-port interrupted with SIGINT while the port is down"
set -m
bash "$LAB" drill ec-port >"$E2E_RESULTS/interrupted-drill.out" 2>&1 &
job=$!
set +m
acted=
for _ in $(seq 300); do
  d=$(cat "$PS_LAB_STATE/last-drill" 2>/dev/null || true)
  if [ -n "$d" ] && grep -q "shut the Express Connect port" "$d/actions.log" 2>/dev/null; then
    acted=1
    break
  fi
  sleep 0.02
done
check "the drill had shut the port when interrupted" test -n "$acted"
kill -INT -- "-$job"
set +e
wait "$job"
rc=$?
set -e
sed 's/^/    /' "$E2E_RESULTS/interrupted-drill.out"
check "the interrupted drill exits 130" test "$rc" -eq 130
check "the port is up again" bash -c 'bash "$1" exec gw ip -o link show ec | grep -q "state UP"' sh "$LAB"
back_on_ec() { [[ $(bash "$LAB" status 2>/dev/null) == *"forward (DC->ECS) ec, reverse (ECS->DC) ec"* ]]; }
ok=
for _ in $(seq 100); do back_on_ec && { ok=1; break; }; sleep 0.1; done
check "both directions return to Express Connect" test -n "$ok"
check "no drill recorder is left running" bash -c '! bash "$1" pids | grep -q "^drill-"' sh "$LAB"
