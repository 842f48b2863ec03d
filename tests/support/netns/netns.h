#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace pathsentry::test {

/// Two network namespaces joined by one veth pair, created by the constructor and removed (with
/// everything in them) by the destructor. Names carry the test's PID so parallel runs and a
/// running lab never collide; nothing is connected to the root namespace.
///
///   ns a: veth "va", 198.18.0.1/24, fd53::1/64      ns b: veth "vb", 198.18.0.2/24, fd53::2/64
///
/// Needs root. Throws std::runtime_error when a setup command fails.
class NetnsPair {
 public:
  NetnsPair();
  ~NetnsPair();
  NetnsPair(const NetnsPair&) = delete;
  NetnsPair& operator=(const NetnsPair&) = delete;

  [[nodiscard]] const std::string& a() const { return a_; }
  [[nodiscard]] const std::string& b() const { return b_; }
  static constexpr const char* kAddrA4 = "198.18.0.1";
  static constexpr const char* kAddrB4 = "198.18.0.2";
  static constexpr const char* kAddrA6 = "fd53::1";
  static constexpr const char* kAddrB6 = "fd53::2";

  /// Runs `fn` on a thread that has entered namespace `ns` (network namespaces are per
  /// thread), so sockets it opens live there; joins and rethrows anything thrown.
  static void in_ns(const std::string& ns, const std::function<void()>& fn);
  /// Runs a shell command inside `ns`; returns its exit status.
  static int exec(const std::string& ns, const std::string& command);
  /// Starts `argv` inside `ns` (ip netns exec), stdout/stderr to `log_path`; returns its PID.
  static pid_t spawn(const std::string& ns, const std::vector<std::string>& argv,
                     const std::string& log_path);
  /// Sends SIGTERM to `pid` (one we spawned), waits for it; returns its exit status or -signal.
  static int stop(pid_t pid);

 private:
  std::string a_;
  std::string b_;
};

/// Runs a command in the root namespace (for `ip netns ...`); throws when it fails.
void run_or_throw(const std::string& command);

}  // namespace pathsentry::test
