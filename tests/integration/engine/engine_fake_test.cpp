#include <catch2/catch.hpp>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/fake_socket.h"
#include "pathsentry/common/clock.h"
#include "pathsentry/common/waiter.h"
#include "pathsentry/probe/engine/engine.h"
#include "pathsentry/probe/wire/probe_wire.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::CollectingSink;
using pathsentry::test::FakeSocket;

namespace {

SessionConfig fake_session_config() {
  SessionConfig c;
  c.target = *IpAddress::parse("198.18.0.2");
  c.proto = Proto::Icmp;
  c.rate_pps = 100;
  c.timeout_ns = 20'000'000;
  c.agent_id = 7;
  c.session_id = 0x12340001;
  return c;
}

WireFormat wire_format_for(const SessionConfig& c) {
  WireFormat wf;
  wf.proto = c.proto;
  wf.family = AF_INET;
  wf.agent_id = c.agent_id;
  wf.session_id = c.session_id;
  wf.datagram_size = datagram_size_for(c.proto, c.size);
  return wf;
}

/// Waits for real (SystemWaiter) and remembers each wait.
class RecordingWaiter final : public Waiter {
 public:
  struct FdWait {
    int fd;
    short events;
    std::int64_t timeout_ns;
  };
  void wait_fd(int fd, short events, std::int64_t timeout_ns) override {
    {
      const std::lock_guard<std::mutex> lock(mu);
      fd_waits.push_back({fd, events, timeout_ns});
    }
    real.wait_fd(fd, events, timeout_ns);
  }
  void sleep_for(std::int64_t ns) override {
    {
      const std::lock_guard<std::mutex> lock(mu);
      sleeps.push_back(ns);
    }
    real.sleep_for(ns);
  }
  std::mutex mu;
  std::vector<FdWait> fd_waits;
  std::vector<std::int64_t> sleeps;
  SystemWaiter real;
};

}  // namespace

// The engine's threads wait on a fake socket as on a real one (its eventfd): a short run over
// a fake that never answers sends, reads every TX timestamp, declares every probe lost at its
// timeout and returns.
TEST_CASE("engine runs over the fake socket's descriptor", "[integration][engine]") {
  SystemClock clock;
  CollectingSink sink;
  EngineOptions eo;
  eo.duration_ns = 100'000'000;
  Engine engine(clock, eo);
  const SessionConfig c = fake_session_config();
  const WireFormat wf = wire_format_for(c);
  auto fs = std::make_unique<FakeSocket>(clock);
  FakeSocket* sock = fs.get();
  engine.add_session(std::make_unique<ProbeSession>(c, wf, std::move(fs), sink));
  engine.run();
  const SessionSummary s = engine.sessions()[0]->summary();
  CHECK(s.counters.sent == sock->sent.size());
  CHECK(s.counters.sent >= 5);
  CHECK(s.counters.lost == s.counters.sent);
  CHECK(sink.records.size() == s.counters.sent);
  CHECK(sink.sent.size() == s.counters.sent);
}

// The receiver blocks only through the Waiter it is given, and only on a periodic tick: it
// sleeps (never waits on a descriptor, so a packet never wakes it), at most its tick (here
// 700 us) at a time, and drains every socket after each sleep.
TEST_CASE("engine's receiver waits through its Waiter", "[integration][engine]") {
  SystemClock clock;
  CollectingSink sink;
  RecordingWaiter waiter;
  EngineOptions eo;
  eo.duration_ns = 100'000'000;
  eo.rx_tick_ns = 700'000;
  Engine engine(clock, eo, waiter);
  const SessionConfig c = fake_session_config();
  auto fs = std::make_unique<FakeSocket>(clock);
  engine.add_session(std::make_unique<ProbeSession>(c, wire_format_for(c), std::move(fs), sink));
  engine.run();
  const SessionSummary s = engine.sessions()[0]->summary();
  REQUIRE(s.counters.sent >= 5);
  CHECK(sink.records.size() == s.counters.sent);
  const std::lock_guard<std::mutex> lock(waiter.mu);
  CHECK(waiter.fd_waits.empty());
  // A 100 ms run plus the 20 ms timeout at a 700 us tick sleeps ~170 times; how many depends
  // on the scheduler, so only that it slept, and how long at most.
  REQUIRE(waiter.sleeps.size() >= 2);
  for (const std::int64_t ns : waiter.sleeps) {
    CHECK(ns >= 0);
    CHECK(ns <= 700'000);
  }
}

// Issue 14: the sender's coalescing interval is the time 8 slots of all sessions together take to
// fall due, at least send_coalesce_min_ns (200 us) and at most send_coalesce_ns (1 ms by default:
// the time resolution, which also caps the floor); 0 turns it off.
TEST_CASE("engine's send coalescing interval follows the total rate", "[integration][engine]") {
  SystemClock clock;
  CollectingSink sink;
  const auto engine_with = [&](const EngineOptions& eo, std::initializer_list<double> rates) {
    auto e = std::make_unique<Engine>(clock, eo);
    std::uint32_t id = 1;
    for (const double r : rates) {
      SessionConfig c = fake_session_config();
      c.rate_pps = r;
      c.session_id = id++;
      e->add_session(std::make_unique<ProbeSession>(c, wire_format_for(c),
                                                    std::make_unique<FakeSocket>(clock), sink));
    }
    return e;
  };
  EngineOptions eo;
  CHECK(eo.send_coalesce_ns == 1'000'000);
  CHECK(engine_with(eo, {1000})->send_coalesce_ns() == 1'000'000);
  eo.send_coalesce_ns = 5'000'000;
  CHECK(engine_with(eo, {1000})->send_coalesce_ns() == 5'000'000);
  CHECK(engine_with(eo, {10000})->send_coalesce_ns() == 800'000);
  CHECK(engine_with(eo, {5000, 5000})->send_coalesce_ns() == 800'000);
  CHECK(engine_with(eo, {40000})->send_coalesce_ns() == 200'000);
  CHECK(engine_with(eo, {100000})->send_coalesce_ns() == 200'000);  // the floor, not 80 us
  CHECK(engine_with(eo, {150000, 150000})->send_coalesce_ns() == 200'000);
  eo.send_coalesce_ns = 50'000;  // a cap below the floor wins: the user's resolution
  CHECK(engine_with(eo, {100000})->send_coalesce_ns() == 50'000);
  eo.send_coalesce_min_ns = 0;
  eo.send_coalesce_ns = 1'000'000;
  CHECK(engine_with(eo, {100000})->send_coalesce_ns() == 80'000);
  eo.send_coalesce_ns = 0;
  CHECK(engine_with(eo, {1000})->send_coalesce_ns() == 0);
}
