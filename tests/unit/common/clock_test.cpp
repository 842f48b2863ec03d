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

// The system clock's monotonic reading never goes backwards.
TEST_CASE("system clock is monotonic", "[unit][common]") {
  pathsentry::SystemClock c;
  const auto a = c.monotonic_ns();
  const auto b = c.monotonic_ns();
  REQUIRE(b >= a);
  REQUIRE(c.system_ns() > 1'600'000'000LL * pathsentry::kNsPerSec);
}
