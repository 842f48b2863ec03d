#include "pathsentry/common/waiter.h"

#include <poll.h>
#include <time.h>

#include <algorithm>

namespace pathsentry {

void SystemWaiter::wait_fd(int fd, short events, std::int64_t timeout_ns) {
  pollfd p{fd, events, 0};
  // Rounded up: a wait shorter than a millisecond must not become a busy loop.
  const auto ms =
      static_cast<int>(std::clamp<std::int64_t>((timeout_ns + 999'999) / 1'000'000, 0, 60'000));
  (void)::poll(&p, 1, ms);
}

void SystemWaiter::sleep_for(std::int64_t ns) {
  if (ns <= 0) return;
  timespec ts{};
  ts.tv_sec = ns / 1'000'000'000;
  ts.tv_nsec = ns % 1'000'000'000;
  (void)::nanosleep(&ts, nullptr);
}

Waiter& system_waiter() {
  static SystemWaiter w;
  return w;
}

}  // namespace pathsentry
