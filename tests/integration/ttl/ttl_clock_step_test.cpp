// The TTL prober across a step of the realtime clock (issue 13 "Clock steps"): its probes carry
// realtime send times, their timeouts run on the monotonic clock (docs/design.md "Clocks").
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/probe/ttl/ttl_probe.h"
#include "ttl/ttl_fake_socket.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::TtlFakeSocket;

namespace {
constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
}  // namespace

TEST_CASE("ttl prober: a realtime step neither expires nor holds the probes in flight",
          "[integration][clock]") {
  // Before the fix the timeouts compared realtime send times with realtime now: a forward step
  // declared every probe in flight unanswered at once, a backward one kept them (and every
  // later one) pending for the step's length.
  const std::chrono::nanoseconds step = GENERATE(std::chrono::nanoseconds(std::chrono::hours(1)),
                                                 std::chrono::nanoseconds(std::chrono::hours(-1)));
  INFO("step " << step.count());
  ManualClock clock(kNsPerSec, kT0);
  auto sock = std::make_unique<TtlFakeSocket>();
  sock->answer_from(std::nullopt);  // nothing answers: every probe times out
  TtlFakeSocket* raw = sock.get();
  TtlSessionConfig c;
  c.session_id = 0x12340003;
  c.target = *IpAddress::parse("192.168.20.161");
  c.rate_pps = 100;            // one probe per 10 ms of the manual clock
  c.timeout_ns = 200'000'000;  // 200 ms
  c.hops = {TtlHop{*IpAddress::parse("10.1.0.1"), "express-connect", ""}};
  std::mutex mu;
  std::vector<TtlResult> got;
  TtlProber prober(clock, c, std::move(sock), [&](const TtlResult& r) {
    std::lock_guard lock(mu);
    got.push_back(r);
  });
  // Moves the clock one probe interval and waits (real time, bounded) for the prober to send
  // the probe then due: the loop that sent it polled its timeouts before.
  std::size_t expected = 1;
  auto tick = [&] {
    clock.advance(std::chrono::milliseconds(10));
    ++expected;
    for (int i = 0; i < 10'000 && raw->sent() < expected; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(raw->sent() == expected);
  };
  auto results = [&] {
    std::lock_guard lock(mu);
    return got;
  };
  prober.start();
  for (int i = 0; i < 10'000 && raw->sent() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (int k = 0; k < 4; ++k) tick();  // probes 0..4 in flight, the oldest 40 ms old
  const std::int64_t last_before = clock.system_ns();
  clock.step_realtime(step);
  tick();
  tick();
  // Two loops ran after the step: nothing was 200 ms old yet.
  CHECK(results().empty());
  // 200 ms later (monotonic) every probe sent before the step has timed out, with the realtime
  // it was sent at, and exactly those 200 ms old: probe k left at k × 10 ms, the last loop
  // polled at (expected - 1) × 10 ms (or, racing with the test, the loop before).
  for (int k = 0; k < 20; ++k) tick();
  const std::vector<TtlResult> r = results();
  CHECK(r.size() >= expected - 21);
  CHECK(r.size() <= expected - 20);
  REQUIRE(r.size() >= 6);
  for (std::size_t i = 0; i < r.size(); ++i) {
    CHECK(r[i].seq == i);
    CHECK(r[i].outcome == TtlOutcome::None);
  }
  CHECK(r[0].tx_ns == kT0);
  CHECK(r[4].tx_ns == last_before);
  CHECK(r[5].tx_ns == last_before + step.count() + 10'000'000);
  // The rest time out as stop() drains (up to the timeout): the clock keeps moving meanwhile.
  std::atomic<bool> stopped{false};
  std::thread mover([&] {
    while (!stopped.load()) {
      clock.advance(std::chrono::milliseconds(10));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  prober.stop();
  stopped.store(true);
  mover.join();
  CHECK(results().size() == raw->sent());
}
