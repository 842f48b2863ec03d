// bench-runstat: runs a command and writes its resource use as JSON.
//
//   bench-runstat --out FILE -- COMMAND [ARGS...]
//
// Forks, execs COMMAND, waits for it with wait4() and writes
//   {"exit_code", "signal", "wall_s", "user_s", "sys_s", "cpu_s", "cpu_pct", "max_rss_kb"}
// to FILE ("-" = stdout). cpu_pct is CPU time over wall time (100 = one core). SIGTERM/SIGINT
// sent to bench-runstat are passed on to the command. Exits with the command's exit status
// (128 + signal when it was killed), or 127 when it could not be started.
//
// `ip netns exec NS CMD` execs CMD in place, so wrapping it measures CMD itself.

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_util.h"

namespace {

volatile sig_atomic_t g_child = 0;

void forward(int sig) {
  if (g_child > 0) kill(g_child, sig);
}

double seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--out" && i + 1 < argc) {
      out = argv[++i];
    } else {
      std::cerr << "usage: bench-runstat --out FILE -- COMMAND [ARGS...]\n";
      return 2;
    }
  }
  if (out.empty() || i >= argc) {
    std::cerr << "usage: bench-runstat --out FILE -- COMMAND [ARGS...]\n";
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  const std::int64_t t0 = pathsentry::bench::monotonic_ns();
  const pid_t pid = fork();
  if (pid < 0) {
    std::cerr << "bench-runstat: fork: " << std::strerror(errno) << "\n";
    return 127;
  }
  if (pid == 0) {
    execvp(argv[i], argv + i);
    std::cerr << "bench-runstat: cannot run " << argv[i] << ": " << std::strerror(errno) << "\n";
    _exit(127);
  }
  g_child = pid;
  int status = 0;
  rusage ru{};
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      std::cerr << "bench-runstat: wait4: " << std::strerror(errno) << "\n";
      return 127;
    }
  }
  const double wall = static_cast<double>(pathsentry::bench::monotonic_ns() - t0) / 1e9;
  const double user = seconds(ru.ru_utime);
  const double sys = seconds(ru.ru_stime);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  const nlohmann::json j{{"exit_code", code},
                         {"signal", sig},
                         {"wall_s", wall},
                         {"user_s", user},
                         {"sys_s", sys},
                         {"cpu_s", user + sys},
                         {"cpu_pct", wall > 0 ? 100.0 * (user + sys) / wall : 0.0},
                         {"max_rss_kb", ru.ru_maxrss}};
  if (out == "-") {
    std::cout << j.dump() << std::endl;
  } else {
    std::ofstream f(out);
    f << j.dump() << "\n";
    if (!f) {
      std::cerr << "bench-runstat: cannot write " << out << "\n";
      return 127;
    }
  }
  return sig != 0 ? 128 + sig : code;
}
