#include "pathsentry/probe/wire/seq.h"

#include <catch2/catch.hpp>

using pathsentry::probe::unwrap_nearest;
using pathsentry::probe::unwrap_seq;

// A 16-bit header sequence maps back to the newest 64-bit sequence that has those low bits,
// across many wraps, and a value never sent (ahead of newest) maps to the previous wrap.
TEST_CASE("16-bit sequence unwraps to 64 bits", "[unit][seq]") {
  REQUIRE(unwrap_seq(5, 16, 5) == 5u);
  REQUIRE(unwrap_seq(0xFFFF, 16, 0x10002) == 0xFFFFu);   // just before the wrap
  REQUIRE(unwrap_seq(0x0001, 16, 0x10002) == 0x10001u);  // just after it
  const std::uint64_t newest = 1'000'000'007;            // ~11.6 days at 1000/s
  for (std::uint64_t back = 0; back < 65536; back += 977) {
    const std::uint64_t seq = newest - back;
    REQUIRE(unwrap_seq(seq & 0xFFFF, 16, newest) == seq);
  }
  // A reply for a sequence "ahead" is taken as the one 65536 earlier.
  REQUIRE(unwrap_seq((newest + 1) & 0xFFFF, 16, newest) == newest + 1 - 65536);
}

// Before the counter has wrapped once, a value above newest names no sent probe.
TEST_CASE("unwrap rejects sequences never sent", "[unit][seq]") {
  REQUIRE_FALSE(unwrap_seq(10, 16, 3).has_value());
  REQUIRE_FALSE(unwrap_seq(0xFFFFFFFF, 32, 100).has_value());
  REQUIRE(unwrap_seq(0, 16, 0) == 0u);
}

// The 32-bit STAMP sequence unwraps across the 2^32 boundary.
TEST_CASE("32-bit sequence unwraps across 2^32", "[unit][seq]") {
  const std::uint64_t newest = (std::uint64_t{1} << 32) + 10;
  REQUIRE(unwrap_seq(0xFFFFFFF0u, 32, newest) == 0xFFFFFFF0u);
  REQUIRE(unwrap_seq(3, 32, newest) == (std::uint64_t{1} << 32) + 3);
}

// Nearest unwrap goes forward or backward, whichever is closer, and never below zero.
TEST_CASE("nearest unwrap follows a counter that may run ahead", "[unit][seq]") {
  REQUIRE(unwrap_nearest(5, 16, 0xFFFE) == 0x10005u);       // forward across the wrap
  REQUIRE(unwrap_nearest(0xFFF0, 16, 0x10005) == 0xFFF0u);  // backward across it
  REQUIRE(unwrap_nearest(0xFFFF, 16, 2) == 0xFFFFu);        // would be negative: forward
  REQUIRE(unwrap_nearest(7, 32, 7) == 7u);
}
