#include "pathsentry/common/clock.h"

#include <ctime>

namespace pathsentry {
namespace {
std::int64_t read(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}
}  // namespace

ClockReadings Clock::readings() const {
  ClockReadings r;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const std::int64_t m1 = monotonic_ns();
    r.system_ns = system_ns();
    const std::int64_t m2 = monotonic_ns();
    r.monotonic_ns = m1 + (m2 - m1) / 2;
    if (m2 - m1 < 1'000'000) break;
  }
  return r;
}

std::int64_t SystemClock::monotonic_ns() const {
  return read(CLOCK_MONOTONIC);
}
std::int64_t SystemClock::system_ns() const {
  return read(CLOCK_REALTIME);
}

}  // namespace pathsentry
