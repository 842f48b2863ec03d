// The Shipper against a fake collector on loopback: nothing lost, nothing doubled, order kept,
// backoff observed, refused batches moved aside, an absent collector survived across a restart.
#include "pathsentry/probe/ship/shipper.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent_process.h"
#include "pathsentry/probe/ship/batch.h"
#include "ship/fake_collector.h"
#include "ship/ship_check.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using Catch::Matchers::Contains;
using pathsentry::test::FakeCollector;
using pathsentry::test::Received;
using pathsentry::test::ScratchDir;
using Reply = FakeCollector::Reply;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kBase = 1'700'000'000'000'000'000;
constexpr std::int64_t kMs = 1'000'000;

struct Logs {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(const std::string&)> fn() {
    return [this](const std::string& l) {
      std::lock_guard lock(mu);
      lines.push_back(l);
    };
  }
  std::string all() {
    std::lock_guard lock(mu);
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
  }
};

ShipperOptions options(const std::string& url, const std::string& spool, Logs& logs) {
  ShipperOptions o;
  o.agent = "agent-1";
  o.run = new_run_id();
  o.version = "0.1.0";
  auto u = parse_collector_url(url);
  REQUIRE(u);
  o.url = *u;
  o.token = "t0ken";
  o.spool.dir = spool;
  o.batch_ns = 100 * kMs;
  o.rollup_grace_ns = 0;
  o.http_timeout_ns = 1000 * kMs;
  o.backoff_initial_ns = 100 * kMs;
  o.backoff_max_ns = 400 * kMs;
  o.stop_send_ns = 2000 * kMs;
  o.log = logs.fn();
  return o;
}

// Probe `seq` of session `session`: 10 per second of tx, every 7th lost.
ProbeRecord make_probe(std::uint32_t session, std::uint64_t seq) {
  ProbeRecord r;
  r.target = "127.0.0." + std::to_string(session);
  r.proto = Proto::Icmp;
  r.session_id = session;
  r.seq = seq;
  r.tx_ns = kBase + static_cast<std::int64_t>(seq) * 100 * kMs;
  if (seq % 7 != 3) {
    r.rtt_ns = 1000 + static_cast<std::int64_t>(seq);
    r.rx_ns = r.tx_ns + r.rtt_ns;
  }
  return r;
}

PathEvent event(std::uint32_t session, std::uint64_t seq) {
  PathEvent e;
  e.type = EventType::OutageBegin;
  e.target = "127.0.0." + std::to_string(session);
  e.session_id = session;
  e.seq = seq;
  e.ts_ns = kBase + static_cast<std::int64_t>(seq) * 100 * kMs;
  e.from = "";
  e.to = "none";
  return e;
}

// Offers `n` probes per session (sessions 1..sessions) in rounds of 10, pausing between rounds
// so several batches form.
void offer_probes(Shipper& s, std::uint32_t sessions, std::uint64_t from, std::uint64_t n,
                  std::chrono::milliseconds pause = 30ms) {
  for (std::uint64_t seq = from; seq < from + n; ++seq) {
    for (std::uint32_t id = 1; id <= sessions; ++id) s.offer(make_probe(id, seq));
    if (seq % 10 == 9) std::this_thread::sleep_for(pause);
  }
}

Received received(const FakeCollector& c) {
  Received r;
  for (const auto& b : c.accepted()) r.add(b);
  return r;
}

// As the collector sees it: a batch that came twice (the agent resent it because the answer to
// the first copy never reached it) must be the same bytes, and counts once (its identities are
// the same: the collector's ingest is idempotent).
Received received_once_per_batch(const FakeCollector& c) {
  Received r;
  std::map<std::pair<std::string, std::uint64_t>, std::string> seen;
  for (const auto& b : c.accepted()) {
    const auto nl = b.find('\n');
    auto h = probe::parse_json_line(std::string_view(b).substr(0, nl));
    REQUIRE(h);
    const auto& bh = std::get<BatchHeader>(*h);
    const auto [it, fresh] = seen.emplace(std::make_pair(bh.run, bh.batch), b);
    if (!fresh) {
      CHECK(it->second == b);
      continue;
    }
    r.add(b);
  }
  return r;
}

std::size_t files_in(const std::string& dir) {
  std::size_t n = 0;
  if (!fs::exists(dir)) return 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

// Every probe of sessions 1..sessions, seq [0, n), arrived exactly once; the rollups count each
// once per direction; lost ones (seq % 7 == 3) as undetermined.
void check_complete(const Received& r, const std::string& run, std::uint32_t sessions,
                    std::uint64_t n) {
  for (std::uint32_t id = 1; id <= sessions; ++id) {
    for (std::uint64_t seq = 0; seq < n; ++seq) {
      INFO("session " << id << " seq " << seq);
      const auto it = r.probes.find(std::make_tuple(run, id, seq));
      REQUIRE(it != r.probes.end());
      CHECK(it->second == 1);
    }
    CHECK(r.sent(run, id, Direction::Forward) == n);
    CHECK(r.sent(run, id, Direction::Reverse) == n);
  }
  CHECK(r.duplicate_rollups == 0);
  std::uint64_t lost = 0;
  for (const auto& [k, ru] : r.rollups) {
    if (std::get<0>(k) != run) continue;
    CHECK(ru.lost_forward == 0);
    CHECK(ru.lost_reverse == 0);
    lost += ru.lost_undetermined;
  }
  std::uint64_t expect_lost = 0;
  for (std::uint64_t seq = 0; seq < n; ++seq) expect_lost += seq % 7 == 3 ? 1 : 0;
  CHECK(lost == expect_lost * sessions * 2);
}

}  // namespace

TEST_CASE("shipper: every record, rollup and event arrives once, in order, with its headers",
          "[integration]") {
  FakeCollector collector;
  ScratchDir dir("pathsentry-ship-");
  Logs logs;
  ShipperOptions o = options(collector.url(), dir.file("spool"), logs);
  const std::string run = o.run;
  SystemClock clock;
  Shipper s(clock, o);
  s.start();
  // Three stages, each waiting for the collector to have taken the one before: at least three
  // batches however the threads are scheduled.
  const auto wait_accepted = [&](std::size_t n) {
    for (int i = 0; i < 1000 && collector.accepted().size() < n; ++i) {
      std::this_thread::sleep_for(5ms);
    }
    REQUIRE(collector.accepted().size() >= n);
  };
  offer_probes(s, 3, 0, 60);
  wait_accepted(1);
  s.offer(event(1, 20));
  s.offer(event(2, 30));
  wait_accepted(2);
  offer_probes(s, 3, 60, 40);
  PathEvent numbered = event(3, 99);
  numbered.event_id = 7;  // already numbered (the agent's fan-out): kept, and counted on from
  s.offer(numbered);
  s.offer(event(1, 99));
  s.stop();

  const Received r = received(collector);
  REQUIRE(r.batches.size() >= 3);
  r.check_order();
  check_complete(r, run, 3, 100);
  CHECK(r.probes.size() == 300);
  // 10 s of tx per session, each second its own row per direction (paths "").
  CHECK(r.rollups.size() == 3 * 10 * 2);
  const auto ru =
      r.rollups.at(std::make_tuple(run, 1u, kBase + 2 * 1'000'000'000, 0, std::string()));
  CHECK(ru.sent == 10);
  CHECK(ru.received == 9);  // seq 24 lost
  CHECK(ru.rtt_min_ns == 1020);
  CHECK(ru.rtt_max_ns == 1029);
  CHECK(ru.jitter_ns == 1);  // 1020..1029 without 1024: 8 steps of 1 and one of 2 → 10 / 8
  CHECK(r.events.size() == 4);
  for (std::uint64_t id : {1u, 2u, 7u, 8u})
    CHECK(r.events.count(std::make_pair(run, std::uint64_t{id})) == 1);
  for (const auto& b : r.batches) {
    CHECK(b.agent == "agent-1");
    CHECK(b.run == run);
    CHECK(b.version == "0.1.0");
  }
  for (const auto& req : collector.requests()) {
    CHECK(req.method == "POST");
    CHECK(req.target == "/api/v1/ingest");
    CHECK(req.headers.at("authorization") == "Bearer t0ken");
    CHECK(req.headers.at("content-type") == "application/x-ndjson");
    CHECK(req.headers.at("host") == "127.0.0.1:" + std::to_string(collector.port()));
  }
  CHECK(collector.connections() == 1);  // kept alive
  const ShipperStats st = s.stats();
  CHECK(st.batches_sent == r.batches.size());
  CHECK(st.batches_written == r.batches.size());
  CHECK(st.send_failures == 0);
  CHECK(st.dropped_raw() == 0);
  CHECK(st.records_offered == 300);
  CHECK(st.events_offered == 4);
  CHECK(st.rollups == 60);
  CHECK(st.spool_files == 0);
  CHECK(files_in(dir.file("spool")) == 0);
  CHECK_THAT(s.summary_line(), Contains("300 records, 60 rollups, 4 events"));
}

TEST_CASE(
    "shipper: 5xx, 408, 429, a dropped connection: retried in order with backoff, nothing "
    "lost",
    "[integration]") {
  FakeCollector collector([](std::size_t n, const FakeCollector::Request&) {
    switch (n) {
      case 0:
        return Reply::status_of(503, R"({"error":"database full: /x: disk full"})");
      case 1:
        return Reply::status_of(429);
      case 2:
        return Reply::status_of(408);
      case 3:
        return Reply::status_of(500);
      case 4:
        return Reply::drop();  // on the kept-alive connection: retried at once on a new one
      default:
        return Reply{};
    }
  });
  ScratchDir dir("pathsentry-ship-");
  Logs logs;
  ShipperOptions o = options(collector.url(), dir.file("spool"), logs);
  o.backoff_max_ns = 300 * kMs;
  const std::string run = o.run;
  SystemClock clock;
  Shipper s(clock, o);
  s.start();
  offer_probes(s, 2, 0, 50);
  // Wait until the collector has taken something, then send the rest.
  for (int i = 0; i < 400 && collector.accepted().empty(); ++i) std::this_thread::sleep_for(10ms);
  REQUIRE_FALSE(collector.accepted().empty());
  offer_probes(s, 2, 50, 30);
  s.stop();

  const auto reqs = collector.requests();
  REQUIRE(reqs.size() >= 7);
  // The same first batch, again and again, until acknowledged.
  for (std::size_t i = 1; i <= 5; ++i) CHECK(reqs[i].body == reqs[0].body);
  // Backoff: 100, 200, 300 (400 capped), 300 ms after the failures 1..4 (uncapped: 800).
  const auto gap = [&](std::size_t i) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(reqs[i].at - reqs[i - 1].at)
        .count();
  };
  CHECK(gap(1) >= 100);
  CHECK(gap(2) >= 200);
  CHECK(gap(3) >= 300);
  CHECK(gap(4) >= 300);
  // Only lower bounds are timed (a loaded machine only makes gaps longer): the cap itself is
  // checked in the log below ("attempt 4, next in 300 ms", not 800), and the dropped request's
  // immediate resend by the failure count (a backoff would count a fifth failure).
  // The dropped request was resent on a fresh connection.
  CHECK(reqs[5].connection == reqs[4].connection + 1);

  const Received r = received(collector);
  r.check_order();
  check_complete(r, run, 2, 80);
  const ShipperStats st = s.stats();
  CHECK(st.send_failures == 4);
  CHECK(st.rejected_batches == 0);
  CHECK(st.collector_ok);
  CHECK(files_in(dir.file("spool")) == 0);
  const std::string l = logs.all();
  CHECK_THAT(l,
             Contains("failed (HTTP 503 {\"error\":\"database full: /x: disk full\"}); attempt 1, "
                      "next in 100 ms"));
  CHECK_THAT(l, Contains("after 4 failed attempt(s)"));
  CHECK_THAT(l, Contains("attempt 4, next in 300 ms"));
}

TEST_CASE(
    "shipper: a batch refused with 400 goes to rejected/, counted and logged, the others "
    "arrive",
    "[integration]") {
  FakeCollector collector([](std::size_t, const FakeCollector::Request& req) {
    if (req.body.find("\"batch\":2,") != std::string::npos) {
      return Reply::status_of(400, R"({"error":"line 3: field 'seq' is not an unsigned integer"})");
    }
    if (req.body.find("\"batch\":3,") != std::string::npos) return Reply::status_of(401);
    return Reply{};
  });
  ScratchDir dir("pathsentry-ship-");
  Logs logs;
  ShipperOptions o = options(collector.url(), dir.file("spool"), logs);
  const std::string run = o.run;
  SystemClock clock;
  Shipper s(clock, o);
  s.start();
  for (std::uint64_t round = 0; round < 5; ++round) {
    offer_probes(s, 1, round * 10, 10, 0ms);
    std::this_thread::sleep_for(250ms);  // each round its own batch
  }
  s.stop();
  const Received r = received(collector);
  std::set<std::uint64_t> got;
  for (const auto& b : r.batches) got.insert(b.batch);
  CHECK(got.count(1) == 1);
  CHECK(got.count(2) == 0);
  CHECK(got.count(3) == 0);
  CHECK(got.count(4) == 1);
  CHECK(fs::exists(dir.file("spool/rejected/" + Spool::file_name(run, 2))));
  CHECK(fs::exists(dir.file("spool/rejected/" + Spool::file_name(run, 3))));
  CHECK(s.stats().rejected_batches == 2);
  CHECK(s.stats().send_failures == 0);
  CHECK(collector.requests().size() == r.batches.size() + 2);  // each refused one sent once
  CHECK(files_in(dir.file("spool")) == 0);
  CHECK_THAT(logs.all(), Contains("REJECTED " + Spool::file_name(run, 2) +
                                  ": the collector refused it for good: HTTP 400 {\"error\":\"line "
                                  "3: field 'seq' is not an unsigned integer\"}"));
}

TEST_CASE(
    "shipper: with the collector absent everything stays spooled, then the next run sends the "
    "earlier run's batches first",
    "[integration]") {
  ScratchDir dir("pathsentry-ship-");
  std::string url;
  {
    FakeCollector gone;  // a port that was just free: nothing listens on it any more
    url = gone.url();
  }
  Logs logs;
  ShipperOptions o1 = options(url, dir.file("spool"), logs);
  o1.stop_send_ns = 300 * kMs;
  const std::string run1 = o1.run;
  SystemClock clock;
  {
    Shipper s(clock, o1);
    s.start();
    offer_probes(s, 2, 0, 40);
    s.offer(event(1, 5));
    s.stop();
    const ShipperStats st = s.stats();
    CHECK(st.batches_sent == 0);
    CHECK(st.send_failures >= 1);
    CHECK_FALSE(st.collector_ok);
    CHECK(st.spool_files == st.batches_written);
    CHECK(files_in(dir.file("spool")) == st.batches_written);
    CHECK_THAT(logs.all(), Contains("Connection refused"));
    CHECK_THAT(logs.all(), Contains("kept in " + dir.file("spool") + " for the next start"));
  }
  FakeCollector collector;
  ShipperOptions o2 = options(collector.url(), dir.file("spool"), logs);
  const std::string run2 = o2.run;
  REQUIRE(run2 != run1);
  Shipper s(clock, o2);
  s.start();
  offer_probes(s, 1, 0, 30);
  s.stop();
  const Received r = received(collector);
  r.check_order();
  check_complete(r, run1, 2, 40);
  check_complete(r, run2, 1, 30);
  CHECK(r.events.count(std::make_pair(run1, std::uint64_t{1})) == 1);
  // The earlier run's batches all came before this run's first.
  bool seen_run2 = false;
  for (const auto& b : r.batches) {
    if (b.run == run2) seen_run2 = true;
    if (seen_run2) CHECK(b.run == run2);
  }
  CHECK(files_in(dir.file("spool")) == 0);
}

TEST_CASE("shipper: over a Unix socket", "[integration]") {
  ScratchDir dir("pathsentry-ship-");
  FakeCollector collector(dir.file("c.sock"), {});
  Logs logs;
  ShipperOptions o = options("unix:" + dir.file("c.sock"), dir.file("spool"), logs);
  SystemClock clock;
  Shipper s(clock, o);
  s.start();
  offer_probes(s, 1, 0, 20);
  s.stop();
  const Received r = received(collector);
  check_complete(r, o.run, 1, 20);
  CHECK(collector.requests().at(0).headers.at("host") == "localhost");
}

TEST_CASE(
    "shipper: a full hand-off queue drops raw records, counted, the rollups still count "
    "every probe",
    "[integration]") {
  FakeCollector collector;
  ScratchDir dir("pathsentry-ship-");
  Logs logs;
  ShipperOptions o = options(collector.url(), dir.file("spool"), logs);
  o.queue_raw_max = 10;
  SystemClock clock;
  Shipper s(clock, o);
  // Not started yet: the queue fills.
  for (std::uint64_t seq = 0; seq < 25; ++seq) s.offer(make_probe(1, seq));
  s.start();
  s.stop();
  const Received r = received(collector);
  CHECK(r.probes.size() == 10);
  CHECK(r.sent(o.run, 1, Direction::Forward) == 25);
  CHECK(r.sent(o.run, 1, Direction::Reverse) == 25);
  CHECK(s.stats().queue_dropped_raw == 15);
  CHECK(s.stats().dropped_raw() == 15);
  CHECK_THAT(logs.all(), Contains("15 raw record(s) dropped (their rollups are complete)"));
  CHECK_THAT(s.summary_line(), Contains("raw records dropped 15 (queue full 15"));
}

TEST_CASE("shipper: a collector that does not answer times out and the batch is resent",
          "[integration]") {
  FakeCollector collector([](std::size_t n, const FakeCollector::Request&) {
    return n == 0 ? Reply::hang(800) : Reply{};
  });
  ScratchDir dir("pathsentry-ship-");
  Logs logs;
  ShipperOptions o = options(collector.url(), dir.file("spool"), logs);
  o.http_timeout_ns = 200 * kMs;
  SystemClock clock;
  Shipper s(clock, o);
  s.start();
  offer_probes(s, 1, 0, 20);
  for (int i = 0; i < 300 && collector.accepted().empty(); ++i) std::this_thread::sleep_for(10ms);
  s.stop();
  // The server answered the copies it read late; the agent had given up on them already.
  const Received r = received_once_per_batch(collector);
  r.check_order();
  check_complete(r, o.run, 1, 20);
  CHECK(s.stats().send_failures >= 1);
  CHECK_THAT(logs.all(), Contains("timed out"));
}

TEST_CASE("shipper: an event leaves at once, not at the next batch period", "[integration]") {
  FakeCollector collector;
  ScratchDir dir("pathsentry-ship-");
  Logs logs;
  ShipperOptions o = options(collector.url(), dir.file("spool"), logs);
  o.batch_ns = 10'000 * kMs;  // records alone would wait 10 s
  SystemClock clock;
  Shipper s(clock, o);
  s.start();
  s.offer(make_probe(1, 0));
  std::this_thread::sleep_for(200ms);
  CHECK(collector.requests().empty());
  const auto t0 = std::chrono::steady_clock::now();
  s.offer(event(1, 0));
  while (collector.accepted().empty() && std::chrono::steady_clock::now() - t0 < 5s) {
    std::this_thread::sleep_for(2ms);
  }
  const auto took = std::chrono::steady_clock::now() - t0;
  s.stop();
  REQUIRE_FALSE(collector.accepted().empty());
  // 50 ms of event_delay_ns plus a tick; generous for a loaded machine, far below 10 s.
  CHECK(took < 1s);
  Received r;
  r.add(collector.accepted().front());
  CHECK(r.events.size() == 1);
  CHECK(r.probes.size() == 1);  // the waiting record went with it
}

TEST_CASE(
    "shipper: stop() during a POST that hangs ends within the stop budget and keeps the "
    "batch",
    "[integration]") {
  FakeCollector collector(
      [](std::size_t, const FakeCollector::Request&) { return Reply::hang(10'000); });
  ScratchDir dir("pathsentry-ship-");
  Logs logs;
  ShipperOptions o = options(collector.url(), dir.file("spool"), logs);
  o.http_timeout_ns = 5000 * kMs;  // a POST alone would hold the thread 5 s
  o.stop_send_ns = 500 * kMs;
  SystemClock clock;
  Shipper s(clock, o);
  s.start();
  offer_probes(s, 1, 0, 10);
  for (int i = 0; i < 400 && collector.requests().empty(); ++i) std::this_thread::sleep_for(5ms);
  REQUIRE_FALSE(collector.requests().empty());
  const auto t0 = std::chrono::steady_clock::now();
  s.stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 1500ms);
  CHECK(s.stats().batches_sent == 0);
  CHECK(files_in(dir.file("spool")) >= 1);
  CHECK_THAT(logs.all(), Contains("for the next start"));
}
