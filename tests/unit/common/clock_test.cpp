#include "pathsentry/common/clock.h"

#include <catch2/catch.hpp>

// The manual clock moves only when advanced, both readings together.
TEST_CASE("manual clock advances both readings", "[unit][common]") {
  pathsentry::ManualClock c(100, 1000);
  REQUIRE(c.monotonic_ns() == 100);
  c.advance(std::chrono::microseconds(5));
  REQUIRE(c.monotonic_ns() == 5100);
  REQUIRE(c.system_ns() == 6000);
}

// A realtime step moves the realtime reading alone, either way.
TEST_CASE("manual clock steps realtime alone", "[unit][common]") {
  pathsentry::ManualClock c(100, 1000);
  c.step_realtime(std::chrono::hours(-1));
  CHECK(c.monotonic_ns() == 100);
  CHECK(c.system_ns() == 1000 - 3600 * pathsentry::kNsPerSec);
  c.step_realtime(std::chrono::hours(2));
  CHECK(c.monotonic_ns() == 100);
  CHECK(c.system_ns() == 1000 + 3600 * pathsentry::kNsPerSec);
  c.advance(std::chrono::nanoseconds(5));
  CHECK(c.monotonic_ns() == 105);
  CHECK(c.system_ns() == 1005 + 3600 * pathsentry::kNsPerSec);
}

// The system clock's monotonic reading never goes backwards.
TEST_CASE("system clock is monotonic", "[unit][common]") {
  pathsentry::SystemClock c;
  const auto a = c.monotonic_ns();
  const auto b = c.monotonic_ns();
  REQUIRE(b >= a);
  REQUIRE(c.system_ns() > 1'600'000'000LL * pathsentry::kNsPerSec);
}
