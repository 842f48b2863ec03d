# Shell helpers the namespace benches share (sourced, not run): finding the programs in a build
# directory, stopping only the PIDs a bench started, and reading a process's CPU time.
# The sourcing script defines `bg_pids` (the PIDs it started) and `build` (the build directory).

find_bin() { # NAME: its path in $build (top level, bench/ or probe/), or "" when not built
  local f
  for f in "$build/$1" "$build/bench/$1" "$build/probe/$1"; do
    [ -x "$f" ] && {
      echo "$f"
      return
    }
  done
  echo ""
}
stop_pid() { # PID: SIGTERM, wait up to 3 s, then SIGKILL (only PIDs this script started)
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for i in $(seq 30); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
forget_pid() { # drop a stopped PID from the cleanup list (its number may be reused)
  local p keep=()
  for p in "${bg_pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  bg_pids=("${keep[@]}")
}
cpu_ticks() { # utime+stime of PID (all its threads) in clock ticks (fields 14, 15 of /proc/PID/stat)
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || {
    echo 0
    return
  }
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $((${12} + ${13}))
}
far_rps() { # NS_A NS_B: the far side as a host of its own (FAR_RPS=1 in the benches). RPS
  # steers vb's receive path (the far side's: the kernel's ICMP echo, the reflector's UDP
  # receive) to the last CPU and va's (the replies) to CPU 0. Without it a veth runs the far
  # side's receive path in the sender's softirq, charged to the sender's CPU; over a real link
  # that work is another machine's, and reply reception is softirq work of the receiving host.
  local na=$1 nb=$2 last
  last=$(($(nproc) - 1))
  [ "$last" -ge 1 ] || { echo "FAR_RPS=1 needs 2 CPUs" >&2; return 1; }
  ip netns exec "$nb" sh -c "printf %x $((1 << last)) >/sys/class/net/vb/queues/rx-0/rps_cpus"
  ip netns exec "$na" sh -c "echo 1 >/sys/class/net/va/queues/rx-0/rps_cpus"
  echo "FAR_RPS: vb rx on CPU $last (mask $(ip netns exec "$nb" cat /sys/class/net/vb/queues/rx-0/rps_cpus)), va rx on CPU 0" >&2
}
veth_pair() { # NS_A NS_B A4 B4: one veth va (in NS_A, A4/24) <-> vb (in NS_B, B4/24), both up,
  # with static neighbours (no ARP resolution inside any measured step) and no other link
  local na=$1 nb=$2 a4=$3 b4=$4 ns mac_a mac_b
  ip -n "$na" link add va type veth peer name vb netns "$nb"
  ip -n "$na" addr add "$a4/24" dev va
  ip -n "$nb" addr add "$b4/24" dev vb
  for ns in "$na" "$nb"; do ip -n "$ns" link set lo up; done
  ip -n "$na" link set va up
  ip -n "$nb" link set vb up
  mac_a=$(ip -n "$na" -o link show va | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
  mac_b=$(ip -n "$nb" -o link show vb | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
  ip -n "$na" neigh replace "$b4" lladdr "$mac_b" dev va nud permanent
  ip -n "$nb" neigh replace "$a4" lladdr "$mac_a" dev vb nud permanent
}
