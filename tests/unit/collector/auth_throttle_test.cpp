// AuthThrottle: wrong bearer tokens counted per source address, the refusal for the rest of
// the window, a right token clearing the count, the table's bound (fails open, never forgets
// a blocked source), and the cases that are never refused (Unix socket, limit 0).
#include "pathsentry/collector/auth_throttle.h"

#include <catch2/catch.hpp>

namespace pathsentry::collector {
namespace {

constexpr std::int64_t kSec = 1'000'000'000;

AuthThrottle::Options opts(std::uint32_t limit, std::size_t max_sources = 4096) {
  return {.limit = limit, .window_ns = 60 * kSec, .max_sources = max_sources};
}

}  // namespace

TEST_CASE("auth throttle: the limit-th wrong token refuses the source for the window's rest",
          "[unit]") {
  AuthThrottle t(opts(3));
  const std::int64_t t0 = 1000 * kSec;
  CHECK_FALSE(t.failed("10.0.0.9", t0).refused);
  CHECK_FALSE(t.failed("10.0.0.9", t0 + kSec).refused);
  CHECK_FALSE(t.check("10.0.0.9", t0 + kSec).refused);
  const auto v = t.failed("10.0.0.9", t0 + 10 * kSec);
  CHECK(v.refused);
  CHECK(v.failures == 3);
  CHECK(v.retry_after_ns == 50 * kSec);

  const auto c = t.check("10.0.0.9", t0 + 30 * kSec);
  CHECK(c.refused);
  CHECK(c.retry_after_ns == 30 * kSec);
  // Another address is not concerned.
  CHECK_FALSE(t.check("10.0.0.10", t0 + 30 * kSec).refused);
  // The window over: allowed again, and a new failure starts a new window.
  CHECK_FALSE(t.check("10.0.0.9", t0 + 60 * kSec).refused);
  CHECK_FALSE(t.failed("10.0.0.9", t0 + 61 * kSec).refused);
  CHECK(t.failed("10.0.0.9", t0 + 61 * kSec).failures == 2);
}

TEST_CASE("auth throttle: a right token clears the count", "[unit]") {
  AuthThrottle t(opts(3));
  (void)t.failed("10.0.0.9", kSec);
  (void)t.failed("10.0.0.9", kSec);
  t.succeeded("10.0.0.9");
  CHECK(t.tracked() == 0);
  CHECK_FALSE(t.failed("10.0.0.9", 2 * kSec).refused);
  CHECK_FALSE(t.failed("10.0.0.9", 2 * kSec).refused);
  CHECK(t.failed("10.0.0.9", 2 * kSec).refused);
}

TEST_CASE("auth throttle: a Unix socket client and limit 0 are never refused", "[unit]") {
  AuthThrottle t(opts(1));
  for (int i = 0; i < 5; ++i) CHECK_FALSE(t.failed("", kSec).refused);
  CHECK_FALSE(t.check("", kSec).refused);
  AuthThrottle off(opts(0));
  for (int i = 0; i < 5; ++i) CHECK_FALSE(off.failed("10.0.0.9", kSec).refused);
  CHECK_FALSE(off.check("10.0.0.9", kSec).refused);
  CHECK(off.tracked() == 0);
}

TEST_CASE("auth throttle: a full table fails open and keeps the blocked sources", "[unit]") {
  AuthThrottle t(opts(2, 2));
  (void)t.failed("10.0.0.1", kSec);
  CHECK(t.failed("10.0.0.1", kSec).refused);
  (void)t.failed("10.0.0.2", kSec);
  // A third address: not tracked while both others still count, so never refused.
  CHECK_FALSE(t.failed("10.0.0.3", 2 * kSec).refused);
  CHECK_FALSE(t.failed("10.0.0.3", 2 * kSec).refused);
  CHECK(t.untracked() == 2);
  CHECK(t.tracked() == 2);
  CHECK(t.check("10.0.0.1", 2 * kSec).refused);
  // Once their windows are over, the expired entries make room.
  (void)t.failed("10.0.0.3", 70 * kSec);
  CHECK(t.failed("10.0.0.3", 70 * kSec).refused);
  CHECK(t.tracked() == 1);
}

}  // namespace pathsentry::collector
