#include "pathsentry/probe/attribution/clock_steps.h"

#include <catch2/catch.hpp>
#include <chrono>

using pathsentry::kNsPerSec;
using pathsentry::ManualClock;
using pathsentry::probe::ClockSteps;

namespace {
constexpr std::int64_t kBase = 1'700'000'000'000'000'000;
constexpr std::int64_t kHour = 3'600 * kNsPerSec;
constexpr std::int64_t kMs = 1'000'000;
}  // namespace

// Without a step the internal timeline is realtime itself.
TEST_CASE("clock steps: no step, no mapping", "[unit][clock]") {
  ManualClock clock(5 * kNsPerSec, kBase);
  ClockSteps steps(clock);
  CHECK(steps.now() == kBase);
  clock.advance(std::chrono::seconds(2));
  CHECK(steps.now() == kBase + 2 * kNsPerSec);
  CHECK(steps.to_internal(kBase + 1'500 * kMs) == kBase + 1'500 * kMs);
  CHECK(steps.to_real(kBase + 1'500 * kMs) == kBase + 1'500 * kMs);
  // A timestamp ahead of the clock (a test's capture file) maps as it is.
  CHECK(steps.to_internal(kBase + kHour) == kBase + kHour);
  CHECK(steps.steps() == 0);
}

// The internal timeline runs on through a step; timestamps from either side map to the epoch
// they were taken in, even when they arrive after the step, and back to what they were.
TEST_CASE("clock steps: a step either way keeps the timeline", "[unit][clock]") {
  const std::int64_t d = GENERATE(-kHour, kHour, -2 * kNsPerSec, 2 * kNsPerSec);
  INFO("step " << d);
  ManualClock clock(5 * kNsPerSec, kBase);
  ClockSteps steps(clock);
  clock.advance(std::chrono::seconds(1));
  const std::int64_t before = clock.system_ns() - 300 * kMs;  // sent before the step
  CHECK(steps.to_internal(before) == before);
  clock.step_realtime(std::chrono::nanoseconds(d));
  CHECK(steps.now() == kBase + kNsPerSec);  // the internal now does not step
  CHECK(steps.steps() == 1);
  clock.advance(std::chrono::milliseconds(500));
  // Its record comes in after the step, carrying the old send time.
  CHECK(steps.to_internal(before) == before);
  const std::int64_t after = clock.system_ns() - 100 * kMs;  // stamped after the step
  CHECK(steps.to_internal(after) == after - d);
  CHECK(steps.now() == kBase + 1'500 * kMs);
  CHECK(steps.to_real(before) == before);
  CHECK(steps.to_real(after - d) == after);
  CHECK(steps.to_real(steps.now()) == clock.system_ns());
}

// Below the threshold the offset is not a step (clock read jitter); above it, it is.
TEST_CASE("clock steps: small offsets are no step", "[unit][clock]") {
  ManualClock clock(5 * kNsPerSec, kBase);
  ClockSteps steps(clock, 10 * kMs);
  clock.step_realtime(std::chrono::milliseconds(5));
  (void)steps.now();
  CHECK(steps.steps() == 0);
  clock.step_realtime(std::chrono::milliseconds(20));
  (void)steps.now();
  CHECK(steps.steps() == 1);
}
