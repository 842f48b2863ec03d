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

std::int64_t SystemClock::monotonic_ns() const {
  return read(CLOCK_MONOTONIC);
}
std::int64_t SystemClock::system_ns() const {
  return read(CLOCK_REALTIME);
}

}  // namespace pathsentry
