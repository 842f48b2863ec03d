#include "pathsentry/reflector/rate_limiter.h"

#include <catch2/catch.hpp>
#include <chrono>

#include "pathsentry/common/clock.h"

using pathsentry::IpAddress;
using pathsentry::ManualClock;
using pathsentry::probe::BoundedMap;
using pathsentry::probe::RateLimit;
using pathsentry::probe::SourceRateLimiter;
using pathsentry::probe::TokenBucket;
using namespace std::chrono_literals;

namespace {

IpAddress v4(std::uint32_t n) {
  IpAddress a;
  a.family = AF_INET;
  a.bytes[0] = static_cast<std::uint8_t>(n >> 24);
  a.bytes[1] = static_cast<std::uint8_t>(n >> 16);
  a.bytes[2] = static_cast<std::uint8_t>(n >> 8);
  a.bytes[3] = static_cast<std::uint8_t>(n);
  return a;
}

int take_all(TokenBucket& b, const RateLimit& l, std::int64_t now) {
  int n = 0;
  while (b.try_take(l, now) && n < 10'000'000) ++n;
  return n;
}

}  // namespace

// A fresh bucket allows exactly `burst` packets at one instant, then refuses.
TEST_CASE("token bucket allows a burst then refuses", "[unit][rate_limiter]") {
  ManualClock clock;
  const RateLimit l{100, 5};
  TokenBucket b;
  REQUIRE(take_all(b, l, clock.monotonic_ns()) == 5);
  REQUIRE_FALSE(b.try_take(l, clock.monotonic_ns()));
}

// Tokens come back at exactly pps: one per 1/pps, none before.
TEST_CASE("token bucket refills at the configured rate", "[unit][rate_limiter]") {
  ManualClock clock;
  const RateLimit l{1000, 3};  // one token per ms
  TokenBucket b;
  REQUIRE(take_all(b, l, clock.monotonic_ns()) == 3);
  clock.advance(999us);
  REQUIRE_FALSE(b.try_take(l, clock.monotonic_ns()));
  clock.advance(1us);
  REQUIRE(b.try_take(l, clock.monotonic_ns()));
  REQUIRE_FALSE(b.try_take(l, clock.monotonic_ns()));
  clock.advance(2500us);  // 2.5 tokens: two now, the half is kept
  REQUIRE(take_all(b, l, clock.monotonic_ns()) == 2);
  clock.advance(500us);
  REQUIRE(b.try_take(l, clock.monotonic_ns()));
}

// However long the idle time, the bucket never holds more than `burst`.
TEST_CASE("token bucket caps saved tokens at the burst", "[unit][rate_limiter]") {
  ManualClock clock;
  const RateLimit l{1'000'000, 10};
  TokenBucket b;
  REQUIRE(take_all(b, l, clock.monotonic_ns()) == 10);
  clock.advance(std::chrono::hours(24 * 365));
  REQUIRE(take_all(b, l, clock.monotonic_ns()) == 10);
}

// Over a long run at a steady overload, the allowed count is pps * time + burst.
TEST_CASE("token bucket long-run rate equals pps", "[unit][rate_limiter]") {
  ManualClock clock;
  const RateLimit l{7, 2};
  TokenBucket b;
  int allowed = 0;
  for (int i = 0; i < 10'000; ++i) {  // 1000 packets/s for 10 s
    allowed += b.try_take(l, clock.monotonic_ns()) ? 1 : 0;
    clock.advance(1ms);
  }
  REQUIRE(allowed == 2 + 70 - 1);  // the 70th refill lands exactly at 10 s, after the loop
}

// A clock that goes backwards adds no tokens.
TEST_CASE("token bucket ignores time going backwards", "[unit][rate_limiter]") {
  const RateLimit l{1000, 1};
  TokenBucket b;
  REQUIRE(b.try_take(l, 5'000'000'000));
  REQUIRE_FALSE(b.try_take(l, 1'000'000'000));
  REQUIRE_FALSE(b.try_take(l, 5'000'500'000));
  REQUIRE(b.try_take(l, 5'001'000'000));
}

// Each source has its own bucket: one source's flood does not limit another.
TEST_CASE("per-source limiter keeps sources apart", "[unit][rate_limiter]") {
  ManualClock clock;
  SourceRateLimiter lim({100, 3}, 1024, 42);
  const auto now = clock.monotonic_ns();
  for (int i = 0; i < 3; ++i) REQUIRE(lim.allow(v4(1), now));
  REQUIRE_FALSE(lim.allow(v4(1), now));
  for (int i = 0; i < 3; ++i) REQUIRE(lim.allow(v4(2), now));
  REQUIRE_FALSE(lim.allow(v4(2), now));
  clock.advance(10ms);
  REQUIRE(lim.allow(v4(1), clock.monotonic_ns()));
  REQUIRE_FALSE(lim.allow(v4(1), clock.monotonic_ns()));
}

// A flood of a million distinct sources never grows the table past its capacity, and a
// source being limited that keeps sending (so stays recently used) stays limited throughout.
TEST_CASE("per-source limiter stays bounded under a flood of sources", "[unit][rate_limiter]") {
  ManualClock clock;
  SourceRateLimiter lim({10, 2}, 256, 7);
  const IpAddress victim = v4(0x0A000001);
  REQUIRE(lim.allow(victim, clock.monotonic_ns()));
  REQUIRE(lim.allow(victim, clock.monotonic_ns()));
  std::uint64_t victim_allowed = 0;
  for (std::uint32_t i = 0; i < 1'000'000; ++i) {
    (void)lim.allow(v4(0xC0000000 + i), clock.monotonic_ns());
    if (i % 8 == 0) victim_allowed += lim.allow(victim, clock.monotonic_ns()) ? 1 : 0;
    if (i % 1000 == 0) {
      REQUIRE(lim.tracked() <= lim.capacity());
      clock.advance(1us);
    }
  }
  REQUIRE(lim.capacity() == 256);
  REQUIRE(lim.tracked() == 256);
  REQUIRE(lim.evictions() > 900'000);
  // 1 ms passed in all, less than one token's worth: had the victim been evicted it would
  // have come back with a full bucket and been allowed again.
  REQUIRE(victim_allowed == 0);
}

// Entries whose bucket has refilled are reclaimed without counting an eviction; only
// pushing out an active source counts.
TEST_CASE("per-source limiter reclaims idle sources before evicting", "[unit][rate_limiter]") {
  ManualClock clock;
  SourceRateLimiter lim({1000, 1}, 8, 3);  // one set of 8; a bucket refills in 1 ms
  for (std::uint32_t round = 0; round < 50; ++round) {
    for (std::uint32_t i = 0; i < 8; ++i) {
      REQUIRE(lim.allow(v4(round * 8 + i), clock.monotonic_ns()));
    }
    clock.advance(2ms);
  }
  REQUIRE(lim.evictions() == 0);
  for (std::uint32_t i = 0; i < 8; ++i) (void)lim.allow(v4(10'000 + i), clock.monotonic_ns());
  REQUIRE(lim.evictions() == 0);
  for (std::uint32_t i = 0; i < 3; ++i) (void)lim.allow(v4(20'000 + i), clock.monotonic_ns());
  REQUIRE(lim.evictions() == 3);
  REQUIRE(lim.tracked() == 8);
}

// BoundedMap: a key found again within the stale time keeps its value; after it, the value
// is reset and reported fresh.
TEST_CASE("bounded map resets stale entries", "[unit][rate_limiter]") {
  BoundedMap<std::uint64_t, int> m(16, 100, 1);
  auto a = m.find_or_insert(5, 0);
  REQUIRE(a.fresh);
  *a.value = 42;
  auto b = m.find_or_insert(5, 100);
  REQUIRE_FALSE(b.fresh);
  REQUIRE(*b.value == 42);
  auto c = m.find_or_insert(5, 201);
  REQUIRE(c.fresh);
  REQUIRE(*c.value == 0);
  REQUIRE(m.size() == 1);
  REQUIRE(m.live(201) == 1);
  REQUIRE(m.live(302) == 0);
}
