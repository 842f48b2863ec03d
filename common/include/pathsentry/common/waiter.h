#pragma once

#include <cstdint>

namespace pathsentry {

/// The seam for blocking: waiting on a descriptor and sleeping. Loops that wait take a
/// `Waiter&` so a test can make waits instant or count them; pacing-critical waits (the
/// engine's sender) keep their own absolute-deadline sleep. Thread-safe.
class Waiter {
 public:
  virtual ~Waiter() = default;
  /// Blocks until `fd` polls ready for `events` (poll(2) bits; POLLERR and POLLHUP are always
  /// reported) or `timeout_ns` has passed. Interrupted waits return early: callers loop.
  virtual void wait_fd(int fd, short events, std::int64_t timeout_ns) = 0;
  /// Blocks for `ns` (nothing for ns <= 0).
  virtual void sleep_for(std::int64_t ns) = 0;
};

/// The real waits: poll(2) and nanosleep(2).
class SystemWaiter final : public Waiter {
 public:
  void wait_fd(int fd, short events, std::int64_t timeout_ns) override;
  void sleep_for(std::int64_t ns) override;
};

/// The process's SystemWaiter (stateless), for components that are not given one.
[[nodiscard]] Waiter& system_waiter();

}  // namespace pathsentry
