#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <thread>
#include <utility>

namespace pathsentry::test {
namespace {
std::atomic<int> g_counter{0};
}

void run_or_throw(const std::string& command) {
  const int rc = std::system(command.c_str());
  if (rc != 0) throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + command);
}

NetnsPair::NetnsPair() {
  const std::string tag = std::to_string(getpid()) + "-" + std::to_string(g_counter++);
  a_ = "pst-" + tag + "-a";
  b_ = "pst-" + tag + "-b";
  run_or_throw("ip netns add " + a_);
  try {
    run_or_throw("ip netns add " + b_);
    run_or_throw("ip -n " + a_ + " link add va type veth peer name vb netns " + b_);
    for (const auto& [ns, dev, v4, v6] :
         {std::tuple{a_, "va", kAddrA4, kAddrA6}, std::tuple{b_, "vb", kAddrB4, kAddrB6}}) {
      run_or_throw("ip -n " + ns + " link set lo up");
      run_or_throw("ip -n " + ns + " addr add " + v4 + "/24 dev " + dev);
      run_or_throw("ip -n " + ns + " addr add " + v6 + "/64 dev " + dev + " nodad");
      run_or_throw("ip -n " + ns + " link set " + dev + " up");
    }
    // Both ends up with carrier before anyone sends: a neighbour solicitation sent in the few
    // milliseconds before is dropped and retried a second later (the first IPv6 ping of a
    // fresh pair took ~1 s, and past a 2 s deadline under load).
    for (const auto& [ns, dev] : {std::pair{a_, "va"}, std::pair{b_, "vb"}}) {
      run_or_throw("for i in $(seq 250); do ip -n " + ns + " -o link show dev " + dev +
                   " | grep -q 'state UP' && exit 0; sleep 0.02; done; exit 1");
    }
  } catch (...) {
    std::system(("ip netns del " + b_ + " 2>/dev/null").c_str());
    std::system(("ip netns del " + a_ + " 2>/dev/null").c_str());
    throw;
  }
}

NetnsPair::~NetnsPair() {
  // Deleting a namespace destroys the veth end inside it, and so the pair.
  std::system(("ip netns del " + a_ + " 2>/dev/null").c_str());
  std::system(("ip netns del " + b_ + " 2>/dev/null").c_str());
}

void NetnsPair::in_ns(const std::string& ns, const std::function<void()>& fn) {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      const std::string path = "/var/run/netns/" + ns;
      const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw std::runtime_error("cannot open " + path);
      const int rc = setns(fd, CLONE_NEWNET);
      close(fd);
      if (rc != 0) throw std::runtime_error("setns " + ns + " failed");
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  t.join();
  if (error) std::rethrow_exception(error);
}

int NetnsPair::exec(const std::string& ns, const std::string& command) {
  const std::string full = "ip netns exec " + ns + " sh -c '" + command + "'";
  const int rc = std::system(full.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

pid_t NetnsPair::spawn(const std::string& ns, const std::vector<std::string>& argv,
                       const std::string& log_path) {
  std::vector<std::string> full = {"ip", "netns", "exec", ns};
  full.insert(full.end(), argv.begin(), argv.end());
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    std::vector<char*> args;
    for (auto& s : full) args.push_back(s.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int NetnsPair::stop(pid_t pid) {
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? -WTERMSIG(status) : -1;
}

}  // namespace pathsentry::test
