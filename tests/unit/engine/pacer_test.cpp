#include "pathsentry/probe/engine/pacer.h"

#include <catch2/catch.hpp>
#include <chrono>

#include "pathsentry/common/clock.h"

using pathsentry::ManualClock;
using pathsentry::probe::Pacer;
using namespace std::chrono_literals;

// Polling on every slot at 1000/s yields exactly one probe per slot and nothing missed.
TEST_CASE("pacer holds a steady rate", "[unit][pacer]") {
  ManualClock clock;
  Pacer p(1000, clock.monotonic_ns(), 200'000);
  std::uint64_t sent = 0;
  for (int i = 0; i < 10'000; ++i) {
    const auto due = p.poll(clock.monotonic_ns(), 64);
    REQUIRE(due.send == 1);
    REQUIRE(due.missed == 0);
    sent += due.send;
    clock.advance(1ms);
  }
  REQUIRE(sent == 10'000);
  REQUIRE(p.missed() == 0);
}

// Deadlines are computed from the slot index, never accumulated: at 3/s (a period of
// 333333333.3 ns) a day of polling every 7 s sends exactly the slots due, and the millionth
// slot is due at exactly 1e6/3 s.
TEST_CASE("pacer does not drift over long runs", "[unit][pacer]") {
  ManualClock clock;
  const std::int64_t start = clock.monotonic_ns();
  Pacer p(3, start, 10'000'000'000);
  REQUIRE(p.deadline_ns(1'000'000) - start == 333'333'333'333'333);
  REQUIRE(p.deadline_ns(3'000'000'000ULL) - start == 1'000'000'000'000'000'000);
  std::uint64_t sent = 0;
  const std::int64_t day = 86'400'000'000'000;
  while (clock.monotonic_ns() - start < day) {
    const auto due = p.poll(clock.monotonic_ns(), 64);
    REQUIRE(due.missed == 0);
    sent += due.send;
    clock.advance(7s);
  }
  // Slots 0..k with k/3 s <= elapsed at the last poll: elapsed is a multiple of 7 s.
  const std::int64_t last_poll = clock.monotonic_ns() - 7'000'000'000 - start;
  REQUIRE(sent == static_cast<std::uint64_t>(last_poll * 3 / 1'000'000'000) + 1);

  // The same at 100k/s for a minute of polls every 130 us (batches of 13).
  Pacer fast(100'000, start, 200'000);
  std::int64_t t = start;
  std::uint64_t fast_sent = 0;
  for (; t - start < 60'000'000'000; t += 130'000) fast_sent += fast.poll(t, 64).send;
  REQUIRE(fast_sent == static_cast<std::uint64_t>((t - 130'000 - start) / 10'000) + 1);
  REQUIRE(fast.missed() == 0);
}

// After a 50 ms stall at 1000/s the pacer sends at most the slots within the allowed lag
// (here one period), counts the rest as missed, and then continues on the original grid.
TEST_CASE("pacer stall counts missed slots and does not burst", "[unit][pacer]") {
  ManualClock clock;
  const std::int64_t start = clock.monotonic_ns();
  Pacer p(1000, start, 200'000);
  REQUIRE(p.poll(clock.monotonic_ns(), 64).send == 1);  // slot 0
  clock.advance(50ms + 300us);                          // stall: slots 1..50 are due
  const auto due = p.poll(clock.monotonic_ns(), 64);
  // Slots 50 (0.3 ms late) and 49 (1.3 ms late > 1 ms lag)? Only slot 50 is within the lag.
  REQUIRE(due.send == 1);
  REQUIRE(due.missed == 49);
  REQUIRE(p.missed() == 49);
  REQUIRE(p.next_deadline_ns() == start + 51'000'000);
  clock.advance(700us);
  REQUIRE(p.poll(clock.monotonic_ns(), 64).send == 1);  // slot 51, on time
  REQUIRE(p.missed() == 49);
}

// At a high rate the allowed lag (max_lag) bounds the batch after a stall: 100k/s with 200 us
// of lag sends 21 slots at most (deadlines within [now-200us, now]), never the whole backlog.
TEST_CASE("pacer bounds the batch after a stall at high rate", "[unit][pacer]") {
  ManualClock clock;
  const std::int64_t start = clock.monotonic_ns();
  Pacer p(100'000, start, 200'000);
  clock.advance(10ms);  // 1001 slots due
  const auto due = p.poll(clock.monotonic_ns(), 1000);
  REQUIRE(due.send == 21);
  REQUIRE(due.missed == 980);
  REQUIRE(due.send + due.missed == 1001);
}

// max_send caps one poll; the rest stays due for the next poll at the same instant.
TEST_CASE("pacer caps a batch and keeps the rest due", "[unit][pacer]") {
  ManualClock clock;
  Pacer p(100'000, clock.monotonic_ns(), 1'000'000);
  clock.advance(500us);  // 51 slots due, all within 1 ms of lag
  REQUIRE(p.poll(clock.monotonic_ns(), 32).send == 32);
  REQUIRE(p.poll(clock.monotonic_ns(), 32).send == 19);
  REQUIRE(p.poll(clock.monotonic_ns(), 32).send == 0);
  REQUIRE(p.missed() == 0);
}

// stop_at ends the run: slots at or after the end are never due and finished() turns true.
TEST_CASE("pacer stops at the end of the run", "[unit][pacer]") {
  ManualClock clock;
  const std::int64_t start = clock.monotonic_ns();
  Pacer p(1000, start, 200'000);
  p.stop_at(start + 1'000'000'000);  // exactly slots 0..999
  std::uint64_t sent = 0;
  for (int i = 0; i < 2000; ++i) {
    sent += p.poll(clock.monotonic_ns(), 64).send;
    clock.advance(1ms);
  }
  REQUIRE(sent == 1000);
  REQUIRE(p.finished());
  REQUIRE(p.next_deadline_ns() == Pacer::kNever);
}
