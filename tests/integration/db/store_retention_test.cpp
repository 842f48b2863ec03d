// Retention keeps exactly the pinned windows: raw probes older than raw_keep go, except those
// within ±event_window of a kept event of the same agent and target (tap events: any target).

#include <catch2/catch.hpp>
#include <set>

#include "capture/pcap_builder.h"
#include "db/store_samples.h"

using namespace pathsentry;
using namespace pathsentry::test::db;

namespace {

constexpr std::int64_t kHour = 3600 * kSec;
constexpr std::int64_t kWindow = 60 * kSec;

db::StoreConfig config_for(const std::string& path) {
  db::StoreConfig c;
  c.path = path;
  c.raw_keep_ns = kHour;
  c.event_window_ns = kWindow;
  c.rollup_keep_ns = 0;
  c.event_keep_ns = 0;
  return c;
}

std::set<std::int64_t> tx_times(db::Store& s, const std::string& target) {
  db::ProbeQuery q;
  q.target = target;
  q.from_ns = std::numeric_limits<std::int64_t>::min();
  q.to_ns = std::numeric_limits<std::int64_t>::max();
  std::set<std::int64_t> out;
  const auto rows = s.probes(q).value();
  for (const auto& r : rows) out.insert(r.record.tx_ns);
  return out;
}

}  // namespace

TEST_CASE("retention keeps exactly the windows around kept events", "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("r.db")));
  // Two targets probed once a second for 2 h (7200 probes each: more than one delete chunk),
  // plus probes 1 ns inside and outside the windows' edges.
  const std::int64_t te = kT0 + 1000 * kSec;  // switchover on A (stamp)
  const std::int64_t tt = kT0 + 2000 * kSec;  // tap down: pins A and B
  const std::int64_t tb = kT0 + 500 * kSec;   // event of another agent on A: pins nothing here
  std::vector<std::int64_t> times;
  for (std::int64_t i = 0; i < 7200; ++i) times.push_back(kT0 + i * kSec);
  for (const std::int64_t edge : {te, tt}) {
    times.push_back(edge - kWindow - 1);
    times.push_back(edge + kWindow + 1);
  }
  std::uint64_t seq = 0;
  for (std::size_t from = 0; from < times.size(); from += 2000) {
    auto b = batch("dc1", "00000000000000r1", from + 1);
    for (std::size_t i = from; i < std::min(times.size(), from + 2000); ++i, ++seq) {
      b.probes.push_back(sample_probe("192.0.2.1", Proto::Icmp, 1, seq, times[i]));
      b.probes.push_back(sample_probe("192.0.2.2", Proto::Icmp, 3, seq, times[i]));
    }
    ingest_ok(*s, std::move(b));
  }
  auto ev = batch("dc1", "00000000000000r1", 100);
  ev.events.push_back(switchover("192.0.2.1", Proto::Stamp, 2, te, 1));
  ev.events.push_back(tap_down(tt, 2));
  ingest_ok(*s, std::move(ev));
  auto other = batch("dc2", "00000000000000r2", 1);
  other.events.push_back(switchover("192.0.2.1", Proto::Icmp, 1, tb, 1));
  ingest_ok(*s, std::move(other));

  const std::int64_t now = kT0 + 7200 * kSec + 30 * kSec;
  const std::int64_t cutoff = now - kHour;
  const auto report = s->apply_retention(now).value();

  const auto pinned = [&](std::int64_t tx, bool a) {
    const auto near = [&](std::int64_t t) { return tx >= t - kWindow && tx <= t + kWindow; };
    return near(tt) || (a && near(te));
  };
  std::set<std::int64_t> want_a, want_b;
  for (const auto tx : times) {
    if (tx >= cutoff || pinned(tx, true)) want_a.insert(tx);
    if (tx >= cutoff || pinned(tx, false)) want_b.insert(tx);
  }
  const auto got_a = tx_times(*s, "192.0.2.1");
  const auto got_b = tx_times(*s, "192.0.2.2");
  CHECK(got_a == want_a);
  CHECK(got_b == want_b);
  // The edges: exactly ±window kept, 1 ns beyond gone.
  CHECK(got_a.count(te - kWindow) == 1);
  CHECK(got_a.count(te + kWindow) == 1);
  CHECK(got_a.count(te - kWindow - 1) == 0);
  CHECK(got_a.count(te + kWindow + 1) == 0);
  CHECK(got_b.count(te) == 0);  // A's event does not pin B
  CHECK(got_b.count(tt + kWindow) == 1);
  CHECK(got_b.count(tt + kWindow + 1) == 0);
  CHECK(got_a.count(tb) == 0);      // dc2's event does not pin dc1's probes
  CHECK(got_a.count(cutoff) == 1);  // not older than raw_keep
  CHECK(got_a.count(cutoff - kSec) == 0);
  CHECK(report.probes_deleted == 2 * times.size() - got_a.size() - got_b.size());
  CHECK(report.rollups_deleted == 0);
  CHECK(report.events_deleted == 0);
  CHECK(s->events({}).value().size() == 3);

  SECTION("a second pass deletes nothing more") {
    const auto again = s->apply_retention(now).value();
    CHECK(again.probes_deleted == 0);
    CHECK(tx_times(*s, "192.0.2.1") == want_a);
  }
}

TEST_CASE("an event past event_keep goes, and its window with it", "[integration][db]") {
  test::TempDir dir;
  auto cfg = config_for(dir.file("r.db"));
  cfg.event_keep_ns = 24 * kHour;
  auto s = db::open_sqlite_store(cfg);
  auto b = batch("dc1", "00000000000000r1", 1);
  const std::int64_t old_event = kT0, kept_event = kT0 + 2 * 24 * kHour;
  for (const std::int64_t t : {old_event, kept_event}) {
    b.probes.push_back(sample_probe("192.0.2.1", Proto::Icmp, 1, static_cast<std::uint64_t>(t), t));
  }
  b.events.push_back(switchover("192.0.2.1", Proto::Icmp, 1, old_event, 1));
  b.events.push_back(switchover("192.0.2.1", Proto::Icmp, 1, kept_event, 2));
  ingest_ok(*s, std::move(b));
  const std::int64_t now = kept_event + 23 * kHour;  // old event 71 h old, the other 23 h
  const auto report = s->apply_retention(now).value();
  CHECK(report.events_deleted == 1);
  CHECK(report.probes_deleted == 1);
  const auto events = s->events({}).value();
  REQUIRE(events.size() == 1);
  CHECK(events[0].event.ts_ns == kept_event);
  CHECK(tx_times(*s, "192.0.2.1") == std::set<std::int64_t>{kept_event});
}

TEST_CASE("rollups go after rollup_keep; 0 keeps them forever", "[integration][db]") {
  test::TempDir dir;
  auto cfg = config_for(dir.file("r.db"));
  SECTION("kept for rollup_keep") {
    cfg.rollup_keep_ns = 10 * kSec;
  }
  SECTION("forever") {
    cfg.rollup_keep_ns = 0;
  }
  auto s = db::open_sqlite_store(cfg);
  auto b = batch("dc1", "00000000000000r1", 1);
  // 6000 seconds x 2 directions: more than one chunk.
  for (std::int64_t sec = 0; sec < 6000; ++sec) {
    for (const auto d : {Direction::Forward, Direction::Reverse}) {
      b.rollups.push_back(
          rollup("192.0.2.1", Proto::Stamp, 2, kT0 + sec * kSec, d, "ipsec", 10, 10, 100));
    }
  }
  ingest_ok(*s, std::move(b));
  const std::int64_t now = kT0 + 6000 * kSec;
  const auto report = s->apply_retention(now).value();
  db::SeriesQuery q;
  q.target = "192.0.2.1";
  q.from_ns = 0;
  q.to_ns = now + kSec;
  const auto left = s->series(q).value();
  if (cfg.rollup_keep_ns == 0) {
    CHECK(report.rollups_deleted == 0);
    CHECK(left.size() == 12000);
  } else {
    CHECK(report.rollups_deleted == 2 * 5990);
    REQUIRE(left.size() == 20);
    CHECK(left.front().t_ns == now - 10 * kSec);  // exactly rollup_keep old: kept
  }
}

TEST_CASE("ingest goes on while retention runs in chunks", "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("r.db")));
  auto b = batch("dc1", "00000000000000r1", 1);
  for (std::uint64_t i = 0; i < 30000; ++i) {
    b.probes.push_back(
        sample_probe("192.0.2.1", Proto::Icmp, 1, i, kT0 + static_cast<std::int64_t>(i)));
  }
  ingest_ok(*s, std::move(b));
  auto retention =
      std::async(std::launch::async, [&] { return s->apply_retention(kT0 + 2 * kHour); });
  auto late = batch("dc1", "00000000000000r1", 2);
  late.probes.push_back(sample_probe("192.0.2.1", Proto::Icmp, 1, 999'999, kT0 + 2 * kHour));
  CHECK(ingest_ok(*s, std::move(late)).probes == 1);
  CHECK(retention.get().value().probes_deleted == 30000);
  CHECK(tx_times(*s, "192.0.2.1") == std::set<std::int64_t>{kT0 + 2 * kHour});
}

TEST_CASE("an event exactly a window before a session's oldest probe still pins it",
          "[integration][db]") {
  test::TempDir dir;
  auto s = db::open_sqlite_store(config_for(dir.file("r.db")));
  auto b = batch("dc1", "00000000000000r1", 1);
  const std::int64_t ta = kT0 + 100 * kSec, tb = kT0 + 200 * kSec;
  b.probes.push_back(sample_probe("192.0.2.1", Proto::Icmp, 1, 0, ta));
  b.probes.push_back(sample_probe("192.0.2.2", Proto::Icmp, 2, 0, tb));
  b.events.push_back(switchover("192.0.2.1", Proto::Icmp, 1, ta - kWindow, 1));
  b.events.push_back(switchover("192.0.2.2", Proto::Icmp, 2, tb - kWindow - 1, 2));
  ingest_ok(*s, std::move(b));
  const auto report = s->apply_retention(kT0 + 10 * kHour).value();
  CHECK(report.probes_deleted == 1);
  CHECK(tx_times(*s, "192.0.2.1") == std::set<std::int64_t>{ta});
  CHECK(tx_times(*s, "192.0.2.2").empty());
}
