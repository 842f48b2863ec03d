// The live pipeline across a step of the realtime clock (issue 13 "Clock steps"): the kernel's
// timestamps jump with it, deadlines and expiry must not (docs/design.md "Clocks").
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "capture/pcap_builder.h"
#include "pathsentry/common/waiter.h"
#include "pathsentry/probe/attribution/pipeline.h"
#include "pathsentry/probe/capture/packet_source.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace pathsentry::test;

namespace {

constexpr std::uint32_t kAgentId = 7;
constexpr std::uint32_t kSession = 0x12340001;
constexpr std::int64_t kBase = 1'700'000'000'000'000'000;
constexpr std::int64_t kTick = 10'000'000;  // 10 ms between probes
constexpr int kInFlight = 3;                // a reply comes back 3 probes later (30 ms)
constexpr std::int64_t kRtt = kInFlight * kTick;
constexpr std::uint64_t kProbes = 40;     // 0..19 on the first path, 20..39 on the second
constexpr std::uint64_t kStepAfter = 12;  // the realtime step comes after probe 12 left

// A live-like capture the test feeds: Timeout when empty, like a drained ring.
class QueueSource final : public PacketSource {
 public:
  tl::expected<ReadStatus, std::string> next(Frame& out) override {
    std::lock_guard lock(mu_);
    if (queue_.empty()) return ReadStatus::Timeout;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    out.ts_ns = current_.first;
    out.bytes = current_.second;
    out.wire_len = static_cast<std::uint32_t>(current_.second.size());
    out.linktype = linktype::kEthernet;
    return ReadStatus::Frame;
  }
  [[nodiscard]] int linktype() const override { return linktype::kEthernet; }
  [[nodiscard]] SourceStats stats() const override { return {}; }
  [[nodiscard]] int selectable_fd() const override { return -1; }
  void push(std::int64_t ts_ns, Bytes frame) {
    std::lock_guard lock(mu_);
    queue_.emplace_back(ts_ns, std::move(frame));
  }

 private:
  std::mutex mu_;
  std::deque<std::pair<std::int64_t, Bytes>> queue_;
  std::pair<std::int64_t, Bytes> current_;
};

// What leaves the pipeline (its worker thread writes, the test reads).
class Collect final : public RecordOutput {
 public:
  void write(const ProbeRecord& r) override {
    std::lock_guard lock(mu_);
    records.push_back(r);
  }
  void write(const PathEvent& e) override {
    std::lock_guard lock(mu_);
    events.push_back(e);
  }
  template <typename F>
  auto with(F f) {
    std::lock_guard lock(mu_);
    return f(records, events);
  }
  std::vector<ProbeRecord> records;
  std::vector<PathEvent> events;

 private:
  std::mutex mu_;
};

// Real waits, counting the capture threads' waits (wait_fd, after each pump that drained the
// queue) and the pipeline worker's sleeps (after each poll): the test can wait until the taps
// and then the worker have seen the clock.
class CountingWaiter final : public Waiter {
 public:
  void wait_fd(int fd, short events, std::int64_t timeout_ns) override {
    pumps_.fetch_add(1);
    real_.wait_fd(fd, events, timeout_ns);
  }
  void sleep_for(std::int64_t ns) override {
    polls_.fetch_add(1);
    real_.sleep_for(ns);
  }
  // Returns once the capture threads have pumped a few more times (both taps, likely) and the
  // worker has then finished two more polls, or after 10 s each if they never do (the checks
  // then say what came out).
  void await_polls() {
    await(pumps_, 6);
    await(polls_, 2);
  }

 private:
  static void await(const std::atomic<std::uint64_t>& n, std::uint64_t more) {
    const std::uint64_t from = n.load();
    for (int i = 0; i < 10'000 && n.load() < from + more; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  std::atomic<std::uint64_t> pumps_{0};
  std::atomic<std::uint64_t> polls_{0};
  SystemWaiter real_;
};

pathsentry::probe::TapSpec clear_tap(const char* interface, const char* path) {
  pathsentry::probe::TapSpec t;
  t.interface = interface;
  t.path = path;
  t.encap = pathsentry::probe::Encap::Clear;
  return t;
}

struct Sent {
  std::int64_t tx_ns = 0;  // realtime at the send
  bool answered = false;
};

struct StepRun {
  std::vector<ProbeRecord> records;  // what came out before stop()
  std::vector<PathEvent> events;
  std::vector<Sent> sent;
  std::uint64_t steps = 0;
};

// 40 ICMP probes, 10 ms apart, each answered 30 ms later, seen by the clear tap of the path
// they take (0..19 "express-connect", 20..39 "internet"); the realtime clock steps by `step`
// after probe 12 left, with probes 10..12 in flight. Then time passes (both clocks) until
// every deadline has passed, and what came out before stop() is returned: stop() flushes
// everything, so it cannot show what was held back.
StepRun run_with_step(std::chrono::nanoseconds step) {
  const IpAddress agent = addr("172.16.1.188");
  const IpAddress target = addr("192.168.20.161");
  ManualClock clock(1'000'000'000, kBase);
  Collect out;
  PipelineOptions po;
  po.taps = {clear_tap("ec", "express-connect"), clear_tap("inet", "internet")};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  po.output = &out;
  CountingWaiter waiter;
  Pipeline p(clock, po, waiter);
  SessionConfig sc;
  sc.target = target;
  sc.proto = Proto::Icmp;
  sc.rate_pps = 100;
  sc.session_id = kSession;
  const SessionSpec spec = session_spec_for(sc);
  p.add_session(spec);
  std::array<QueueSource*, 2> taps{};
  for (std::size_t i = 0; i < 2; ++i) {
    auto src = std::make_unique<QueueSource>();
    taps[i] = src.get();
    p.set_source(i, std::move(src));
  }
  p.start();

  StepRun run;
  run.sent.resize(kProbes);
  auto reply = [&](std::uint64_t seq) {
    const std::int64_t rx = clock.system_ns();
    const Sent& s = run.sent[seq];
    QueueSource* tap = taps[seq < kProbes / 2 ? 0 : 1];
    tap->push(rx - 50'000, ethernet(icmp_probe(target, agent, false, kAgentId, kSession, seq,
                                               s.tx_ns, spec.wire_bytes)));
    ProbeRecord r;
    r.target = target.to_string();
    r.proto = Proto::Icmp;
    r.session_id = kSession;
    r.seq = seq;
    r.tx_ns = s.tx_ns;
    r.rx_ns = rx;
    r.rtt_ns = kRtt;  // the sender's RTT (its own business across a step)
    r.tx_kernel_ts = true;
    p.on_record(r);
    run.sent[seq].answered = true;
  };
  for (std::uint64_t tick = 0; tick < kProbes + kInFlight; ++tick) {
    if (tick < kProbes) {
      const std::uint64_t seq = tick;
      const std::int64_t tx = clock.system_ns();
      run.sent[seq].tx_ns = tx;
      taps[seq < kProbes / 2 ? 0 : 1]->push(
          tx + 50'000,
          ethernet(icmp_probe(agent, target, true, kAgentId, kSession, seq, tx, spec.wire_bytes)));
      p.on_sent(SentNotice{kSession, seq, tx, spec.wire_bytes});
    }
    if (tick >= kInFlight) reply(tick - kInFlight);
    clock.advance(std::chrono::nanoseconds(kTick));
    if (tick == kStepAfter) {
      clock.step_realtime(step);
      // The worker polls at least once after the step, before the replies in flight come in
      // (as it would live: it polls every 2 ms, a reply takes an RTT).
      waiter.await_polls();
    }
  }
  // Every deadline passes: the detector's reorder hold (3 s), the attributor's windows; the
  // worker polls as the clock moves.
  for (int i = 0; i < 50; ++i) {
    clock.advance(std::chrono::milliseconds(100));
    if (i % 10 == 9) waiter.await_polls();
  }
  // Wait (real time, generously) for the worker to write what is due: all 40 records and the
  // two switchover events. The wait only ends early; what is checked is what came out.
  for (int i = 0; i < 2000; ++i) {
    const bool all = out.with(
        [](const auto& rs, const auto& es) { return rs.size() >= kProbes && es.size() >= 2; });
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  out.with([&run](const auto& rs, const auto& es) {
    run.records = rs;
    run.events = es;
    return 0;
  });
  run.steps = 1;
  p.stop();
  return run;
}

void check_run(const StepRun& run) {
  REQUIRE(run.steps == 1);
  // Every probe came out, once, answered, on its path, with the realtime it was stamped with.
  REQUIRE(run.records.size() == kProbes);
  std::vector<bool> seen(kProbes, false);
  for (const ProbeRecord& r : run.records) {
    INFO("seq " << r.seq);
    REQUIRE(r.seq < kProbes);
    CHECK_FALSE(seen[r.seq]);
    seen[r.seq] = true;
    CHECK(r.loss == LossDirection::None);
    REQUIRE(r.rx_ns);
    const char* want = r.seq < kProbes / 2 ? "express-connect" : "internet";
    CHECK(r.fwd_path == want);
    CHECK(r.rev_path == want);
    CHECK(r.tx_ns == run.sent[r.seq].tx_ns);
  }
  // The switchover in each direction, and nothing else (no outage: nothing was lost).
  std::vector<std::string> kinds;
  for (const PathEvent& e : run.events) {
    kinds.push_back(std::string(to_string(e.type)) + " " + std::string(to_string(e.direction)) +
                    " " + e.from + ">" + e.to);
    // Its time is the confirming probe's send time as stamped (realtime after the step).
    CHECK(e.ts_ns == run.sent[kProbes / 2 + 2].tx_ns);
  }
  std::sort(kinds.begin(), kinds.end());
  CHECK(kinds == std::vector<std::string>{"switchover forward express-connect>internet",
                                          "switchover reverse express-connect>internet"});
}

}  // namespace

TEST_CASE("pipeline: a backward step of the realtime clock holds nothing back",
          "[integration][clock]") {
  // Before the fix every deadline was on realtime: after stepping back an hour the probes sent
  // before the step (and everything queued behind them) waited an hour, no record or event
  // came out and the queues grew.
  const StepRun run = run_with_step(std::chrono::hours(-1));
  check_run(run);
  // The probes sent after the step carry the stepped realtime.
  CHECK(run.sent[kStepAfter + 1].tx_ns < run.sent[0].tx_ns);
}

TEST_CASE("pipeline: a forward step of the realtime clock declares no probe lost",
          "[integration][clock]") {
  // Before the fix the probes in flight at a forward step (10..12, answered after it) were
  // past every deadline at once: lost without a record, their late answers ignored.
  const StepRun run = run_with_step(std::chrono::hours(1));
  check_run(run);
  CHECK(run.sent[kStepAfter + 1].tx_ns > run.sent[kStepAfter].tx_ns + 3'600 * kNsPerSec);
}
