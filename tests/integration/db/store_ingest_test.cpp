// Ingest and the queries: every answer checked field by field against what went in; resends
// and overlapping batches never double a row.

#include <catch2/catch.hpp>
#include <ctime>

#include "capture/pcap_builder.h"
#include "db/store_samples.h"

using namespace pathsentry;
using namespace pathsentry::test::db;

namespace {

db::StoreConfig config_for(const std::string& path) {
  db::StoreConfig c;
  c.path = path;
  c.read_connections = 2;
  return c;
}

std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * kSec + ts.tv_nsec;
}

// Probes seq [from, to) of two sessions (ICMP 1 and STAMP 2) to 192.0.2.1, one every 10 ms.
db::IngestBatch probes_batch(std::uint64_t n, std::uint64_t from, std::uint64_t to) {
  auto b = batch("dc1", "9f1c0a2b3d4e5f60", n);
  for (std::uint64_t i = from; i < to; ++i) {
    const auto tx = kT0 + static_cast<std::int64_t>(i) * 10'000'000;
    b.probes.push_back(sample_probe("192.0.2.1", Proto::Icmp, 1, i, tx));
    b.probes.push_back(sample_probe("192.0.2.1", Proto::Stamp, 2, i, tx + 1));
  }
  return b;
}

db::ProbeQuery all_probes(const std::string& target) {
  db::ProbeQuery q;
  q.target = target;
  q.from_ns = kT0 - 1000 * kSec;
  q.to_ns = kT0 + 100'000 * kSec;
  return q;
}

}  // namespace

TEST_CASE("probes come back exactly as ingested, oldest first", "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  auto b = probes_batch(1, 0, 50);
  auto odd = sample_probe("192.0.2.1", Proto::Icmp, 1, 1000, kT0 - 5 * kSec);
  odd.taps_down = {"tap-inet"};
  odd.late = true;
  odd.fwd_path = "";
  odd.rev_path = "unknown";
  b.probes.push_back(odd);
  b.probes.push_back(sample_probe("192.0.2.9", Proto::Icmp, 7, 1, kT0));  // another target
  const auto sent = b.probes;
  const auto c = ingest_ok(*s, std::move(b));
  CHECK(c.probes == 102);
  CHECK(c.duplicate_probes == 0);

  const auto rows = s->probes(all_probes("192.0.2.1")).value();
  REQUIRE(rows.size() == 101);
  CHECK(json_of(rows[0].record) == json_of(odd));  // oldest first
  for (std::size_t i = 0; i < 100; ++i) {
    INFO(i);
    CHECK(rows[i + 1].agent == "dc1");
    CHECK(rows[i + 1].run == "9f1c0a2b3d4e5f60");
    CHECK(json_of(rows[i + 1].record) == json_of(sent[i]));
  }
  SECTION("filters: proto, agent, time range, limit") {
    auto q = all_probes("192.0.2.1");
    q.proto = Proto::Stamp;
    auto r = s->probes(q).value();
    REQUIRE(r.size() == 50);
    CHECK(r[0].record.proto == Proto::Stamp);
    q.agent = "other";
    CHECK(s->probes(q).value().empty());
    q = all_probes("192.0.2.1");
    q.from_ns = kT0 + 100'000'000;  // seq 10 of ICMP
    q.to_ns = kT0 + 200'000'000;    // before seq 20
    r = s->probes(q).value();
    REQUIRE(r.size() == 20);
    CHECK(r.front().record.seq == 10);
    CHECK(r.back().record.seq == 19);
    q.limit = 3;
    CHECK(s->probes(q).value().size() == 3);
    CHECK(s->probes(all_probes("192.0.2.9")).value().size() == 1);
    CHECK(s->probes(all_probes("198.51.100.1")).value().empty());
  }
}

TEST_CASE("a resent batch is counted as duplicates and stored once", "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  auto b = probes_batch(1, 0, 100);
  b.rollups.push_back(rollup("192.0.2.1", Proto::Icmp, 1, kT0, Direction::Forward,
                             "express-connect", 100, 90, 1'000'000));
  b.rollups.push_back(rollup("192.0.2.1", Proto::Icmp, 1, kT0, Direction::Reverse,
                             "express-connect", 100, 90, 1'000'000));
  b.events.push_back(switchover("192.0.2.1", Proto::Icmp, 1, kT0 + kSec, 1));
  b.events.push_back(tap_down(kT0 + 2 * kSec, 2));
  const auto copy = b;
  const auto first = ingest_ok(*s, std::move(b));
  CHECK(first.probes == 200);
  CHECK(first.rollups == 2);
  CHECK(first.events == 2);
  CHECK(first.duplicate_probes + first.duplicate_rollups + first.duplicate_events == 0);
  const auto again = ingest_ok(*s, copy);
  CHECK(again.probes == 0);
  CHECK(again.rollups == 0);
  CHECK(again.events == 0);
  CHECK(again.duplicate_probes == 200);
  CHECK(again.duplicate_rollups == 2);
  CHECK(again.duplicate_events == 2);
  CHECK(s->probes(all_probes("192.0.2.1")).value().size() == 200);
  CHECK(s->events({}).value().size() == 2);
  db::SeriesQuery q;
  q.target = "192.0.2.1";
  q.from_ns = kT0;
  q.to_ns = kT0 + kSec;
  CHECK(s->series(q).value().size() == 2);
  const auto agents = s->agents().value();
  REQUIRE(agents.size() == 1);
  CHECK(agents[0].batches == 2);  // a resend is a batch received

  SECTION("the same identity in another run is another row") {
    auto other = copy;
    other.header.run = "0000000000000001";
    const auto c = ingest_ok(*s, other);
    CHECK(c.probes == 200);
    CHECK(c.events == 2);
  }
}

TEST_CASE("a late reply replaces its probe's lost row; resends change nothing",
          "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  // seq 9 is a lost probe (sample_probe); the agent later sends the same seq answered, late.
  auto lost = sample_probe("192.0.2.1", Proto::Stamp, 2, 9, kT0);
  REQUIRE_FALSE(lost.rx_ns);
  auto late = sample_probe("192.0.2.1", Proto::Stamp, 2, 8, kT0);
  late.seq = 9;
  late.late = true;
  late.rtt_ns = 1'700'000'000;  // after the timeout
  late.rx_ns = kT0 + late.rtt_ns;
  const auto send = [&](const ProbeRecord& r) {
    auto b = batch("dc1", "9f1c0a2b3d4e5f60", 1);
    b.probes.push_back(r);
    return ingest_ok(*s, std::move(b));
  };
  CHECK(send(lost).probes == 1);
  const auto c = send(late);
  CHECK(c.probes == 1);
  CHECK(c.duplicate_probes == 0);
  auto rows = s->probes(all_probes("192.0.2.1")).value();
  REQUIRE(rows.size() == 1);
  CHECK(json_of(rows[0].record) == json_of(late));
  SECTION("a resend of the lost record does not take the answer back") {
    CHECK(send(lost).duplicate_probes == 1);
    CHECK(json_of(s->probes(all_probes("192.0.2.1")).value().at(0).record) == json_of(late));
  }
  SECTION("a resend of the late record is a duplicate") {
    CHECK(send(late).duplicate_probes == 1);
  }
  SECTION("a record that is not late never replaces a row") {
    auto other = late;
    other.late = false;
    other.rtt_ns = 5;
    other.rx_ns = kT0 + 5;
    CHECK(send(other).duplicate_probes == 1);
    CHECK(json_of(s->probes(all_probes("192.0.2.1")).value().at(0).record) == json_of(late));
  }
}

TEST_CASE("overlapping batches store each probe once, also when committed together",
          "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  SECTION("one after the other") {
    CHECK(ingest_ok(*s, probes_batch(1, 0, 100)).probes == 200);
    const auto c = ingest_ok(*s, probes_batch(2, 50, 150));
    CHECK(c.probes == 100);
    CHECK(c.duplicate_probes == 100);
  }
  SECTION("queued together (one group commit)") {
    std::vector<std::future<tl::expected<db::IngestCounts, db::StoreError>>> futs;
    for (int round = 0; round < 3; ++round) {
      futs.push_back(s->ingest(probes_batch(1, 0, 100)));
      futs.push_back(s->ingest(probes_batch(2, 50, 150)));
    }
    std::uint64_t inserted = 0, duplicates = 0;
    for (auto& f : futs) {
      const auto c = f.get().value();
      inserted += c.probes;
      duplicates += c.duplicate_probes;
    }
    CHECK(inserted == 300);
    CHECK(duplicates == 6 * 200 - 300);
  }
  CHECK(s->probes(all_probes("192.0.2.1")).value().size() == 300);
  CHECK(s->stats().queued_batches == 0);
  CHECK(s->stats().failed_batches == 0);
  CHECK(s->stats().committed_batches >= 2);
}

TEST_CASE("agents: name, version, last run, first and last seen, batches", "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  const auto before = now_ns();
  ingest_ok(*s, batch("dc2", "00000000000000aa", 1));
  const auto mid = now_ns();
  auto b = batch("dc1", "00000000000000bb", 1);
  b.header.version = "0.1.0";
  ingest_ok(*s, b);
  b.header.run = "00000000000000cc";
  b.header.version = "0.2.0";
  ingest_ok(*s, b);
  const auto after = now_ns();
  const auto a = s->agents().value();
  REQUIRE(a.size() == 2);
  CHECK(a[0].name == "dc1");
  CHECK(a[0].version == "0.2.0");
  CHECK(a[0].last_run == "00000000000000cc");
  CHECK(a[0].batches == 2);
  CHECK(a[0].first_seen_ns >= mid);
  CHECK(a[0].first_seen_ns < a[0].last_seen_ns);
  CHECK(a[0].last_seen_ns <= after);
  CHECK(a[1].name == "dc2");
  CHECK(a[1].version == "0.1.0");
  CHECK(a[1].last_run == "00000000000000aa");
  CHECK(a[1].batches == 1);
  CHECK(a[1].first_seen_ns >= before);
  CHECK(a[1].first_seen_ns == a[1].last_seen_ns);
  CHECK(a[1].last_seen_ns <= mid);
}

TEST_CASE("targets: one per agent, target and proto, with the latest run's session",
          "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  auto b = batch("dc1", "00000000000000r1", 1);
  b.probes.push_back(sample_probe("192.0.2.1", Proto::Icmp, 1, 0, kT0 + 10 * kSec + 5));
  b.rollups.push_back(rollup("192.0.2.1", Proto::Icmp, 1, kT0 + 12 * kSec, Direction::Forward,
                             "ipsec", 10, 10, 100));
  b.rollups.push_back(rollup("192.0.2.1", Proto::Stamp, 2, kT0 + 3 * kSec, Direction::Forward,
                             "ipsec", 10, 10, 100));
  ingest_ok(*s, b);
  // A new run of dc1 later: its session becomes the target's; an older straggler does not.
  auto b2 = batch("dc1", "00000000000000r2", 1);
  b2.rollups.push_back(rollup("192.0.2.1", Proto::Icmp, 5, kT0 + 20 * kSec, Direction::Forward,
                              "ipsec", 10, 10, 100));
  ingest_ok(*s, b2);
  auto b3 = batch("dc1", "00000000000000r1", 2);
  b3.probes.push_back(sample_probe("192.0.2.1", Proto::Icmp, 1, 1, kT0 + 2 * kSec));
  ingest_ok(*s, b3);
  auto b4 = batch("dc0", "00000000000000r9", 1);
  b4.probes.push_back(sample_probe("192.0.2.1", Proto::Icmp, 9, 0, kT0));
  ingest_ok(*s, b4);

  const auto t = s->targets().value();
  REQUIRE(t.size() == 3);
  CHECK(t[0].agent == "dc0");
  CHECK(t[0].target == "192.0.2.1");
  CHECK(t[0].proto == Proto::Icmp);
  CHECK(t[0].session_id == 9);
  CHECK(t[0].run == "00000000000000r9");
  CHECK(t[0].first_ns == kT0);
  CHECK(t[0].last_ns == kT0);
  CHECK(t[1].agent == "dc1");
  CHECK(t[1].proto == Proto::Icmp);
  CHECK(t[1].session_id == 5);
  CHECK(t[1].run == "00000000000000r2");
  CHECK(t[1].first_ns == kT0 + 2 * kSec);  // seconds: the probe's tx floored
  CHECK(t[1].last_ns == kT0 + 20 * kSec);
  CHECK(t[2].agent == "dc1");
  CHECK(t[2].proto == Proto::Stamp);
  CHECK(t[2].session_id == 2);
  CHECK(t[2].run == "00000000000000r1");
  CHECK(t[2].first_ns == kT0 + 3 * kSec);
  CHECK(t[2].last_ns == kT0 + 3 * kSec);
}

TEST_CASE("events: as ingested, newest first, filtered; events_after in id order",
          "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  auto b = batch("dc1", "00000000000000e1", 1);
  b.events.push_back(switchover("192.0.2.1", Proto::Stamp, 2, kT0 + 10 * kSec, 1));
  b.events.push_back(tap_down(kT0 + 20 * kSec, 2));
  auto outage = switchover("192.0.2.2", Proto::Icmp, 1, kT0 + 30 * kSec, 3);
  outage.type = EventType::OutageBegin;
  outage.to = "none";
  b.events.push_back(outage);
  const auto sent = b.events;
  ingest_ok(*s, b);
  auto b2 = batch("dc2", "00000000000000e2", 1);
  b2.events.push_back(switchover("192.0.2.1", Proto::Stamp, 4, kT0 + 15 * kSec, 1));
  ingest_ok(*s, b2);

  const auto all = s->events({}).value();
  REQUIRE(all.size() == 4);
  CHECK(json_of(all[0].event) == json_of(sent[2]));
  CHECK(all[0].agent == "dc1");
  CHECK(all[0].run == "00000000000000e1");
  CHECK(json_of(all[1].event) == json_of(sent[1]));
  CHECK(all[2].agent == "dc2");
  CHECK(all[2].run == "00000000000000e2");
  CHECK(json_of(all[2].event) == json_of(b2.events[0]));
  CHECK(json_of(all[3].event) == json_of(sent[0]));
  CHECK(all[3].id < all[1].id);
  CHECK(all[1].id < all[0].id);
  CHECK(all[0].id < all[2].id);  // ids in ingest order

  db::EventQuery q;
  q.target = "192.0.2.1";
  auto r = s->events(q).value();
  REQUIRE(r.size() == 2);
  CHECK(r[0].agent == "dc2");
  q.agent = "dc1";
  r = s->events(q).value();
  REQUIRE(r.size() == 1);
  CHECK(r[0].event.ts_ns == kT0 + 10 * kSec);
  db::EventQuery k;
  k.kind = "tap_down";
  r = s->events(k).value();
  REQUIRE(r.size() == 1);
  CHECK(r[0].event.tap == "tap-inet");
  db::EventQuery t;
  t.since_ns = kT0 + 15 * kSec;
  t.until_ns = kT0 + 30 * kSec;  // until is exclusive
  r = s->events(t).value();
  REQUIRE(r.size() == 2);
  CHECK(r[0].event.ts_ns == kT0 + 20 * kSec);
  CHECK(r[1].event.ts_ns == kT0 + 15 * kSec);
  t.limit = 1;
  CHECK(s->events(t).value().size() == 1);

  const auto after = s->events_after(all[3].id, 10).value();
  REQUIRE(after.size() == 3);
  CHECK(after[0].id == all[1].id);
  CHECK(after[1].id == all[0].id);
  CHECK(after[2].id == all[2].id);
  CHECK(s->events_after(all[2].id, 10).value().empty());
  CHECK(s->events_after(0, 2).value().size() == 2);
}

TEST_CASE("events: a health-check event is stored and found by its kind", "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  auto b = batch("dc1", "00000000000000e3", 1);
  b.events.push_back(tap_down(kT0 + 5 * kSec, 1));
  PathEvent hc;
  hc.type = EventType::HealthcheckDegraded;
  hc.tap = "tap-ec";
  hc.path = "express-connect";
  hc.target = "10.1.0.2";
  hc.prober = "100.96.0.5";
  hc.ts_ns = kT0 + 10 * kSec;
  hc.detected_ns = kT0 + 12 * kSec;
  hc.unanswered = 3;
  hc.fall = 8;
  hc.interval_ns = 2 * kSec;
  hc.eta_ns = 10 * kSec;
  hc.duration_ns = 4 * kSec;
  hc.event_id = 2;
  b.events.push_back(hc);
  ingest_ok(*s, b);
  db::EventQuery k;
  k.kind = "healthcheck_degraded";
  const auto r = s->events(k).value();
  REQUIRE(r.size() == 1);
  CHECK(json_of(r[0].event) == json_of(hc));
  db::EventQuery t;
  t.target = "10.1.0.2";
  CHECK(s->events(t).value().size() == 1);
}

TEST_CASE("events without an event_id are refused, nothing written", "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  auto b = probes_batch(1, 0, 5);
  b.events.push_back(switchover("192.0.2.1", Proto::Stamp, 2, kT0, 0));
  const auto r = s->ingest(std::move(b)).get();
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::Contains("without event_id"));
  CHECK(s->probes(all_probes("192.0.2.1")).value().empty());
}

TEST_CASE("series: rollups merged per step, agent, proto, direction and path",
          "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  auto b = batch("dc1", "00000000000000s1", 1);
  const std::string t = "192.0.2.1";
  // Seconds 0..19 on express-connect forward (100 sent, 100 - s % 3 received), reverse the same
  // on ipsec; seconds 5 and 6 all lost on the forward "none" row too.
  for (std::int64_t sec = 0; sec < 20; ++sec) {
    const auto recv = static_cast<std::uint64_t>(100 - sec % 3);
    b.rollups.push_back(rollup(t, Proto::Stamp, 2, kT0 + sec * kSec, Direction::Forward,
                               "express-connect", 100, recv, 1'000'000 + sec * 1000));
    b.rollups.push_back(rollup(t, Proto::Stamp, 2, kT0 + sec * kSec, Direction::Reverse, "ipsec",
                               100, recv, 2'000'000));
  }
  b.rollups.push_back(
      rollup(t, Proto::Stamp, 2, kT0 + 5 * kSec, Direction::Forward, "none", 7, 0, 0));
  b.rollups.push_back(
      rollup(t, Proto::Stamp, 2, kT0 + 6 * kSec, Direction::Forward, "none", 3, 0, 0));
  b.rollups.push_back(
      rollup(t, Proto::Icmp, 1, kT0, Direction::Forward, "express-connect", 100, 100, 500'000));
  b.rollups.push_back(rollup("192.0.2.2", Proto::Stamp, 3, kT0, Direction::Forward,
                             "express-connect", 100, 100, 500'000));
  const auto sent = b.rollups;
  ingest_ok(*s, b);

  SECTION("step 1 s gives the rollups themselves") {
    db::SeriesQuery q;
    q.target = t;
    q.proto = Proto::Stamp;
    q.from_ns = kT0;
    q.to_ns = kT0 + 20 * kSec;
    const auto p = s->series(q).value();
    REQUIRE(p.size() == 42);
    // Ordered by agent, proto, direction, path, time: forward express-connect first.
    for (std::int64_t sec = 0; sec < 20; ++sec) {
      INFO(sec);
      const auto& pt = p[static_cast<std::size_t>(sec)];
      const auto& r = sent[static_cast<std::size_t>(sec) * 2];
      CHECK(pt.agent == "dc1");
      CHECK(pt.proto == Proto::Stamp);
      CHECK(pt.direction == Direction::Forward);
      CHECK(pt.path == "express-connect");
      CHECK(pt.t_ns == r.second_ns);
      CHECK(pt.sent == r.sent);
      CHECK(pt.received == r.received);
      CHECK(pt.lost_forward == r.lost_forward);
      CHECK(pt.lost_reverse == r.lost_reverse);
      CHECK(pt.lost_undetermined == r.lost_undetermined);
      CHECK(pt.rtt_min_ns == r.rtt_min_ns);
      CHECK(pt.rtt_mean_ns == r.rtt_mean_ns);
      CHECK(pt.rtt_p50_ns == r.rtt_p50_ns);
      CHECK(pt.rtt_p99_ns == r.rtt_p99_ns);
      CHECK(pt.rtt_max_ns == r.rtt_max_ns);
      CHECK(pt.jitter_ns == r.jitter_ns);
    }
    CHECK(p[20].path == "none");
    CHECK(p[20].t_ns == kT0 + 5 * kSec);
    CHECK(p[20].sent == 7);
    CHECK(p[20].received == 0);
    CHECK(p[20].rtt_min_ns == 0);
    CHECK(p[20].rtt_max_ns == 0);
    CHECK(p[22].direction == Direction::Reverse);
    CHECK(p[22].path == "ipsec");
  }
  SECTION("step 10 s sums counts, keeps min/max, weights means by received") {
    db::SeriesQuery q;
    q.target = t;
    q.from_ns = kT0;
    q.to_ns = kT0 + 20 * kSec;
    q.step_ns = 10 * kSec;
    const auto p = s->series(q).value();
    // icmp fwd (1), stamp fwd express (2), stamp fwd none (1), stamp rev ipsec (2).
    REQUIRE(p.size() == 6);
    CHECK(p[0].proto == Proto::Icmp);
    CHECK(p[0].sent == 100);
    const auto& e = p[1];
    CHECK(e.proto == Proto::Stamp);
    CHECK(e.direction == Direction::Forward);
    CHECK(e.path == "express-connect");
    CHECK(e.t_ns == kT0);
    std::uint64_t recv = 0, lf = 0, lr = 0;
    double mean = 0, p50 = 0, p99 = 0;
    for (std::int64_t sec = 0; sec < 10; ++sec) {
      const auto& r = sent[static_cast<std::size_t>(sec) * 2];
      recv += r.received;
      lf += r.lost_forward;
      lr += r.lost_reverse;
      mean += static_cast<double>(r.rtt_mean_ns) * static_cast<double>(r.received);
      p50 += static_cast<double>(r.rtt_p50_ns) * static_cast<double>(r.received);
      p99 += static_cast<double>(r.rtt_p99_ns) * static_cast<double>(r.received);
    }
    CHECK(e.sent == 1000);
    CHECK(e.received == recv);
    CHECK(e.lost_forward == lf);
    CHECK(e.lost_reverse == lr);
    CHECK(e.lost_undetermined == 0);
    CHECK(e.rtt_min_ns == 1'000'000);
    CHECK(e.rtt_max_ns == 1'000'000 + 9 * 1000 + 900);
    CHECK(e.rtt_mean_ns == std::llround(mean / static_cast<double>(recv)));
    CHECK(e.rtt_p50_ns == std::llround(p50 / static_cast<double>(recv)));
    CHECK(e.rtt_p99_ns == std::llround(p99 / static_cast<double>(recv)));
    CHECK(e.jitter_ns == 30);
    CHECK(p[2].t_ns == kT0 + 10 * kSec);
    CHECK(p[3].path == "none");
    CHECK(p[3].sent == 10);
    CHECK(p[3].received == 0);
    CHECK(p[3].rtt_mean_ns == 0);
    CHECK(p[4].direction == Direction::Reverse);
  }
  SECTION("agent filter, empty range, bad step") {
    db::SeriesQuery q;
    q.target = t;
    q.agent = "dc9";
    q.from_ns = kT0;
    q.to_ns = kT0 + 20 * kSec;
    CHECK(s->series(q).value().empty());
    q.agent.reset();
    q.from_ns = kT0 + 20 * kSec;
    CHECK(s->series(q).value().empty());
    q.step_ns = 1'500'000'000;
    CHECK_FALSE(s->series(q).has_value());
  }
}

TEST_CASE("stats: schema version, file bytes, batches", "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  const auto empty = s->stats();
  ingest_ok(*s, probes_batch(1, 0, 2000));
  const auto st = s->stats();
  CHECK(st.schema_version == db::schema_version());
  CHECK(st.committed_batches == 1);
  CHECK(st.failed_batches == 0);
  CHECK(st.queued_batches == 0);
  CHECK(st.file_bytes > empty.file_bytes);
}

TEST_CASE("reads run on many threads while the writer ingests", "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("s.db")));
  std::atomic<bool> stop{false};
  std::atomic<int> read_errors{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      while (!stop) {
        if (!s->probes(all_probes("192.0.2.1")) || !s->targets()) ++read_errors;
      }
    });
  }
  for (std::uint64_t n = 0; n < 20; ++n) ingest_ok(*s, probes_batch(n + 1, n * 50, n * 50 + 50));
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(read_errors == 0);
  CHECK(s->probes(all_probes("192.0.2.1")).value().size() == 2000);
}
