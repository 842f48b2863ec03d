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
