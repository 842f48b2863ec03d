// The engine's per-second interval reports across a step of the realtime clock (issue 13
// "Clock steps"): due on the monotonic clock, labelled with the realtime second.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/fake_socket.h"
#include "pathsentry/common/clock.h"
#include "pathsentry/probe/engine/engine.h"
#include "pathsentry/probe/wire/probe_wire.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::CollectingSink;
using pathsentry::test::FakeSocket;

TEST_CASE("engine: interval reports keep coming after a backward realtime step",
          "[integration][engine][clock]") {
  // Before the fix the next report was due at the next realtime second: after stepping back an
  // hour none came for an hour (only the one at the end of the run).
  constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;  // a whole second
  ManualClock clock(kNsPerSec, kT0);
  CollectingSink sink;
  EngineOptions eo;
  eo.duration_ns = 100'000'000;  // 10 probes, then the sender thread ends
  eo.rt_priority = 0;
  Engine engine(clock, eo);
  SessionConfig c;
  c.target = *IpAddress::parse("198.18.0.2");
  c.proto = Proto::Icmp;
  c.rate_pps = 100;
  c.timeout_ns = 3 * kNsPerSec;  // nothing answers: the run lasts ~3.1 s of the manual clock
  c.agent_id = 7;
  c.session_id = 0x12340001;
  WireFormat wf;
  wf.proto = c.proto;
  wf.family = AF_INET;
  wf.agent_id = c.agent_id;
  wf.session_id = c.session_id;
  wf.datagram_size = datagram_size_for(c.proto, c.size);
  engine.add_session(
      std::make_unique<ProbeSession>(c, wf, std::make_unique<FakeSocket>(clock), sink));
  std::mutex mu;
  std::vector<std::int64_t> labels;
  engine.on_interval([&](std::int64_t second_end_ns, std::span<const IntervalReport>) {
    std::lock_guard lock(mu);
    labels.push_back(second_end_ns);
  });
  std::atomic<bool> done{false};
  std::thread run([&] {
    engine.run();
    done.store(true);
  });
  // 5 ms of the manual clock per real millisecond (the receiver looks every 5 ms or sooner);
  // realtime steps back an hour 0.5 s in.
  for (int i = 0; i < 20'000 && !done.load(); ++i) {
    if (i == 100) clock.step_realtime(std::chrono::hours(-1));
    clock.advance(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  run.join();
  std::lock_guard lock(mu);
  REQUIRE(labels.size() >= 2);
  // Without the last (the end of the run, not a second boundary): one report per second of
  // the ~3.1 s run, the first labelled before the step, the others after it, on whole seconds
  // of the stepped clock (a receiver that woke very late may have merged two).
  const std::vector<std::int64_t> seconds(labels.begin(), labels.end() - 1);
  REQUIRE(seconds.size() >= 2);
  CHECK(seconds.size() <= 3);
  CHECK(seconds[0] == kT0 + kNsPerSec);
  const std::int64_t stepped = kT0 - 3'600 * kNsPerSec;
  for (std::size_t i = 1; i < seconds.size(); ++i) {
    INFO("report " << i);
    CHECK(seconds[i] % kNsPerSec == 0);
    CHECK(seconds[i] >= stepped + 2 * kNsPerSec);
    CHECK(seconds[i] <= stepped + 4 * kNsPerSec);
    if (i > 1) CHECK(seconds[i] > seconds[i - 1]);
  }
}
