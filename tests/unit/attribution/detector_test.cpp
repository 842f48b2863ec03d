#include "pathsentry/probe/attribution/detector.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "pathsentry/common/config_error.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
constexpr std::int64_t kMs = 1'000'000;
constexpr std::uint32_t kSession = 0x20002;

std::int64_t tx(std::uint64_t seq) {
  return kT0 + static_cast<std::int64_t>(seq) * kMs;
}

ProbeRecord rec(std::uint64_t seq, const std::string& fwd, const std::string& rev,
                std::uint32_t session = kSession) {
  ProbeRecord r;
  r.target = "192.168.20.161";
  r.proto = Proto::Stamp;
  r.session_id = session;
  r.seq = seq;
  r.tx_ns = tx(seq);
  if (fwd != kPathNone && rev != kPathNone) {
    r.rx_ns = r.tx_ns + 8 * kMs;
    r.rtt_ns = 8 * kMs;
  }
  r.fwd_path = fwd;
  r.rev_path = rev;
  return r;
}

/// A STAMP sample of the test session at seq's tx time (fate Through).
PathSample sample_at(std::uint64_t seq, Direction dir, const char* path) {
  PathSample s;
  s.session_id = kSession;
  s.target = "192.168.20.161";
  s.proto = Proto::Stamp;
  s.dir = dir;
  s.seq = seq;
  s.tx_ns = tx(seq);
  s.path = path;
  return s;
}

/// The events of one type and direction.
std::vector<PathEvent> events_of(const std::vector<PathEvent>& events, EventType t, Direction dir) {
  std::vector<PathEvent> v;
  for (const auto& e : events) {
    if (e.type == t && e.direction == dir) v.push_back(e);
  }
  return v;
}

/// A stream of records and the detector fed with them.
struct Run {
  explicit Run(DetectorConfig c = {}) : d(c) {}
  /// Appends records seq [from, to) with the given paths.
  void add(std::uint64_t from, std::uint64_t to, const std::string& fwd, const std::string& rev) {
    for (std::uint64_t s = from; s < to; ++s) records.push_back(rec(s, fwd, rev));
  }
  /// Feeds every record (each at "now" = its tx + 30 ms).
  std::vector<PathEvent>& feed() {
    for (const auto& r : records) d.on_record(r, r.tx_ns + 30 * kMs, events);
    return events;
  }
  std::vector<PathEvent> of(EventType t, Direction dir = Direction::Forward) const {
    return events_of(events, t, dir);
  }
  Detector d;
  std::vector<ProbeRecord> records;
  std::vector<PathEvent> events;
};

/// The event fields that must not depend on the order records arrived in.
std::string describe(const PathEvent& e) {
  return std::to_string(static_cast<int>(e.type)) + "/" +
         std::to_string(static_cast<int>(e.direction)) + " ts=" + std::to_string(e.ts_ns) +
         " seq=" + std::to_string(e.seq) + " " + e.from + "->" + e.to +
         " old=" + std::to_string(e.last_ok_on_old_ns) +
         " new=" + std::to_string(e.first_ok_on_new_ns) + " out=" + std::to_string(e.outage_ns) +
         " lost=" + std::to_string(e.probes_lost) + " fb=" + std::to_string(e.failback) + " " +
         e.fwd_path + "/" + e.rev_path + " dur=" + std::to_string(e.duration_ns);
}

}  // namespace

// A clean switch: losses make an outage, the new path ends it, N probes confirm the switchover
// with the outage measured between the last probe on the old path and the first on the new.
TEST_CASE("detector clean switchover", "[unit][detector]") {
  Run run;
  run.add(0, 10, "express-connect", "express-connect");
  run.add(10, 15, kPathNone, kPathNone);
  run.add(15, 30, "ipsec", "ipsec");
  run.feed();
  for (auto dir : {Direction::Forward, Direction::Reverse}) {
    INFO("direction " << static_cast<int>(dir));
    const auto begin = run.of(EventType::OutageBegin, dir);
    REQUIRE(begin.size() == 1);
    CHECK(begin[0].seq == 12);  // the K-th (3rd) loss
    CHECK(begin[0].from == "express-connect");
    CHECK(begin[0].last_ok_on_old_ns == tx(9));
    const auto end = run.of(EventType::OutageEnd, dir);
    REQUIRE(end.size() == 1);
    CHECK(end[0].seq == 15);
    CHECK(end[0].to == "ipsec");
    CHECK(end[0].outage_ns == 6 * kMs);
    CHECK(end[0].probes_lost == 5);
    const auto sw = run.of(EventType::Switchover, dir);
    REQUIRE(sw.size() == 1);
    CHECK(sw[0].seq == 17);  // the N-th (3rd) probe on the new path confirms
    CHECK(sw[0].ts_ns == tx(17));
    CHECK(sw[0].from == "express-connect");
    CHECK(sw[0].to == "ipsec");
    CHECK(sw[0].last_ok_on_old_ns == tx(9));
    CHECK(sw[0].first_ok_on_new_ns == tx(15));
    CHECK(sw[0].outage_ns == 6 * kMs);
    CHECK(sw[0].probes_lost == 5);
    CHECK(sw[0].outage_kind == OutageKind::Measured);
    CHECK(sw[0].resolution_ns == kMs);
    CHECK_FALSE(sw[0].failback);
    CHECK(sw[0].target == "192.168.20.161");
    CHECK(sw[0].proto == Proto::Stamp);
    CHECK(sw[0].session_id == kSession);
    CHECK(run.d.current_path(kSession, dir) == "ipsec");
  }
  CHECK(run.of(EventType::AsymmetricBegin).empty());
  CHECK(run.events.size() == 6);
}

// Returning to the first path established (the home path) is a failback; leaving it again is
// not, however many round trips came before; a switch without losses has no outage events.
TEST_CASE("detector failback", "[unit][detector]") {
  Run run;
  run.add(0, 10, "express-connect", "express-connect");
  run.add(10, 20, "ipsec", "ipsec");
  run.add(20, 30, "express-connect", "express-connect");
  run.add(30, 40, "ipsec", "ipsec");
  run.add(40, 50, "express-connect", "express-connect");
  run.feed();
  const auto sw = run.of(EventType::Switchover);
  REQUIRE(sw.size() == 4);
  CHECK_FALSE(sw[2].failback);  // the second failover: to ipsec, away from home
  CHECK(sw[3].failback);
  CHECK_FALSE(sw[0].failback);
  CHECK(sw[0].probes_lost == 0);
  CHECK(sw[0].outage_ns == 1 * kMs);  // one probe interval
  CHECK(sw[0].outage_kind == OutageKind::Bound);
  CHECK(sw[1].from == "ipsec");
  CHECK(sw[1].to == "express-connect");
  CHECK(sw[1].failback);
  CHECK(run.of(EventType::OutageBegin).empty());
}

// Runs shorter than N on another path (flapping) change nothing; a run of N does.
TEST_CASE("detector flapping needs N consecutive probes", "[unit][detector]") {
  Run run;
  run.add(0, 10, "express-connect", "express-connect");
  const std::vector<std::string> flap = {
      "ipsec", "express-connect", "ipsec", "ipsec", "express-connect", "ipsec", "express-connect"};
  for (std::size_t i = 0; i < flap.size(); ++i) {
    run.records.push_back(rec(10 + i, flap[i], "express-connect"));
  }
  run.feed();
  CHECK(run.events.empty());
  CHECK(run.d.current_path(kSession, Direction::Forward) == "express-connect");
  run.records.clear();
  run.add(17, 20, "ipsec", "express-connect");
  run.feed();
  const auto sw = run.of(EventType::Switchover);
  REQUIRE(sw.size() == 1);
  CHECK(sw[0].first_ok_on_new_ns == tx(17));
  CHECK(sw[0].last_ok_on_old_ns == tx(16));
}

// Both paths down: an outage (K losses) and its end, with no switchover when the path returns;
// fewer than K losses are no outage.
TEST_CASE("detector both paths down", "[unit][detector]") {
  SECTION("outage") {
    Run run;
    run.add(0, 5, "express-connect", "express-connect");
    run.add(5, 15, kPathNone, kPathNone);
    run.add(15, 20, "express-connect", "express-connect");
    run.feed();
    for (auto dir : {Direction::Forward, Direction::Reverse}) {
      REQUIRE(run.of(EventType::OutageBegin, dir).size() == 1);
      const auto end = run.of(EventType::OutageEnd, dir);
      REQUIRE(end.size() == 1);
      CHECK(end[0].outage_ns == tx(15) - tx(4));
      CHECK(end[0].probes_lost == 10);
      CHECK(end[0].to == "express-connect");
    }
    CHECK(run.of(EventType::Switchover).empty());
    CHECK(run.events.size() == 4);
  }
  SECTION("short loss burst") {
    Run run;
    run.add(0, 5, "express-connect", "express-connect");
    run.add(5, 7, kPathNone, kPathNone);
    run.add(7, 10, "express-connect", "express-connect");
    run.feed();
    CHECK(run.events.empty());
  }
}

// The seed scenario: forward moves at once, the return path stays dead until the cloud side
// re-routes; each direction gets its own outage and switchover, and a lost direction is not
// an asymmetry.
TEST_CASE("detector one-directional outage during a switchover", "[unit][detector]") {
  Run run;
  run.add(0, 10, "express-connect", "express-connect");
  run.add(10, 12, kPathNone, kPathNone);
  run.add(12, 60, "ipsec", kPathNone);
  run.add(60, 70, "ipsec", "ipsec");
  run.feed();
  const auto fwd = run.of(EventType::Switchover, Direction::Forward);
  REQUIRE(fwd.size() == 1);
  CHECK(fwd[0].outage_ns == 3 * kMs);
  CHECK(fwd[0].probes_lost == 2);
  CHECK(run.of(EventType::OutageBegin, Direction::Forward).empty());
  const auto rev = run.of(EventType::Switchover, Direction::Reverse);
  REQUIRE(rev.size() == 1);
  CHECK(rev[0].seq == 62);
  CHECK(rev[0].outage_ns == tx(60) - tx(9));
  CHECK(rev[0].probes_lost == 50);
  REQUIRE(run.of(EventType::OutageBegin, Direction::Reverse).size() == 1);
  REQUIRE(run.of(EventType::OutageEnd, Direction::Reverse).size() == 1);
  CHECK(run.of(EventType::AsymmetricBegin).empty());
}

// Confirmed paths that differ by direction open an asymmetric period; agreeing closes it.
TEST_CASE("detector asymmetric period", "[unit][detector]") {
  Run run;
  run.add(0, 5, "express-connect", "express-connect");
  run.add(5, 15, "ipsec", "express-connect");
  run.add(15, 25, "ipsec", "ipsec");
  run.feed();
  const auto b = run.of(EventType::AsymmetricBegin);
  REQUIRE(b.size() == 1);
  CHECK(b[0].seq == 7);  // confirmed with the forward switchover
  CHECK(b[0].fwd_path == "ipsec");
  CHECK(b[0].rev_path == "express-connect");
  const auto e = run.of(EventType::AsymmetricEnd);
  REQUIRE(e.size() == 1);
  CHECK(e[0].seq == 17);
  CHECK(e[0].duration_ns == tx(17) - tx(7));
  CHECK_FALSE(run.d.asymmetric(kSession));
}

// Records arriving out of order around the switch give exactly the in-order events.
TEST_CASE("detector reordering across the switch", "[unit][detector]") {
  Run ordered;
  ordered.add(0, 10, "express-connect", "express-connect");
  ordered.add(10, 14, kPathNone, kPathNone);
  ordered.add(14, 20, "ipsec", "express-connect");
  ordered.add(20, 40, "ipsec", "ipsec");
  ordered.feed();
  REQUIRE(ordered.events.size() >= 6);

  Run shuffled;
  shuffled.records = ordered.records;
  // Lost probes are finished late (at their timeout), answered ones early: move the losses
  // after the switch, and swap neighbours across the switch.
  std::rotate(shuffled.records.begin() + 10, shuffled.records.begin() + 14,
              shuffled.records.begin() + 30);
  std::swap(shuffled.records[31], shuffled.records[33]);
  std::reverse(shuffled.records.begin() + 5, shuffled.records.begin() + 10);
  shuffled.feed();
  // Directions progress independently, so only the order between them may differ.
  auto sorted = [](const std::vector<PathEvent>& ev) {
    std::vector<std::string> v;
    for (const auto& e : ev) v.push_back(describe(e));
    std::sort(v.begin(), v.end());
    return v;
  };
  CHECK(sorted(shuffled.events) == sorted(ordered.events));
  CHECK(shuffled.d.stats().skipped == 0);
  CHECK(shuffled.d.stats().late == 0);
}

// "unknown" ends an outage but neither confirms nor breaks a path run.
TEST_CASE("detector treats unknown as neutral", "[unit][detector]") {
  Run run;
  run.add(0, 5, "express-connect", "express-connect");
  const std::vector<std::string> fwd = {"ipsec", "unknown", "ipsec", "unknown", "unknown", "ipsec"};
  for (std::size_t i = 0; i < fwd.size(); ++i) run.records.push_back(rec(5 + i, fwd[i], "unknown"));
  run.add(11, 14, kPathNone, kPathNone);
  run.add(14, 15, kPathUnknown, kPathUnknown);
  run.feed();
  const auto sw = run.of(EventType::Switchover);
  REQUIRE(sw.size() == 1);
  CHECK(sw[0].seq == 10);
  CHECK(sw[0].first_ok_on_new_ns == tx(5));
  CHECK(run.of(EventType::Switchover, Direction::Reverse).empty());
  const auto end = run.of(EventType::OutageEnd);
  REQUIRE(end.size() == 1);
  CHECK(end[0].to == "unknown");
  CHECK(run.d.current_path(kSession, Direction::Forward) == "ipsec");
}

// Late and duplicate records are ignored and counted; a sequence that never comes is skipped
// after the hold time, and nothing past it is processed before.
TEST_CASE("detector late, duplicate and missing records", "[unit][detector]") {
  DetectorConfig cfg;
  cfg.reorder_hold_ns = 500 * kMs;
  Detector d(cfg);
  std::vector<PathEvent> ev;
  const std::int64_t now = tx(0);
  for (std::uint64_t s = 0; s < 5; ++s)
    d.on_record(rec(s, "express-connect", "express-connect"), now, ev);
  d.on_record(rec(2, "ipsec", "ipsec"), now, ev);
  CHECK(d.stats().late == 2);  // both directions
  // 5 never arrives; 6..8 on ipsec wait behind it.
  for (std::uint64_t s = 6; s < 9; ++s) d.on_record(rec(s, "ipsec", "ipsec"), now, ev);
  d.on_record(rec(7, "ipsec", "ipsec"), now, ev);
  CHECK(d.stats().duplicates == 2);
  d.poll(now + cfg.reorder_hold_ns - 1, ev);
  CHECK(ev.empty());
  CHECK(d.stats().samples == 10);
  d.poll(now + cfg.reorder_hold_ns, ev);
  CHECK(d.stats().skipped == 2);
  CHECK(d.stats().samples == 16);
  REQUIRE(ev.size() == 2);  // the switchover in both directions
  CHECK(ev[0].type == EventType::Switchover);
  CHECK(ev[0].detected_ns == now + cfg.reorder_hold_ns);
}

// The forward direction is judged on its own samples: its switchover does not wait for the
// reverse samples (whose replies may still be pending), while asymmetry waits for both.
TEST_CASE("detector forward does not wait for reverse", "[unit][detector]") {
  Detector d(DetectorConfig{});
  std::vector<PathEvent> ev;
  auto sample = [&](std::uint64_t seq, Direction dir, const char* path) {
    d.on_sample(sample_at(seq, dir, path), 0, ev);
  };
  for (std::uint64_t s = 0; s < 5; ++s) sample(s, Direction::Reverse, "express-connect");
  for (std::uint64_t s = 0; s < 5; ++s) sample(s, Direction::Forward, "express-connect");
  for (std::uint64_t s = 5; s < 10; ++s) sample(s, Direction::Forward, "ipsec");
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].type == EventType::Switchover);
  CHECK(ev[0].direction == Direction::Forward);
  CHECK(ev[0].seq == 7);
  CHECK_FALSE(d.asymmetric(kSession));
  for (std::uint64_t s = 5; s < 10; ++s) sample(s, Direction::Reverse, "express-connect");
  REQUIRE(ev.size() == 2);
  CHECK(ev[1].type == EventType::AsymmetricBegin);
  CHECK(ev[1].seq == 7);
  CHECK(d.asymmetric(kSession));
}

// Events leave with the record that confirms them, stamped with the caller's now.
TEST_CASE("detector emits on the confirming record", "[unit][detector]") {
  Detector d(DetectorConfig{});
  std::vector<PathEvent> ev;
  for (std::uint64_t s = 0; s < 5; ++s)
    d.on_record(rec(s, "express-connect", "express-connect"), 0, ev);
  d.on_record(rec(5, "ipsec", "express-connect"), 0, ev);
  d.on_record(rec(6, "ipsec", "express-connect"), 0, ev);
  CHECK(ev.empty());
  d.on_record(rec(7, "ipsec", "express-connect"), 12345, ev);
  REQUIRE(ev.size() == 2);  // switchover + asymmetric begin
  CHECK(ev[0].type == EventType::Switchover);
  CHECK(ev[0].detected_ns == 12345);
  CHECK(ev[1].type == EventType::AsymmetricBegin);
}

// Two sessions are tracked independently even when their records interleave.
TEST_CASE("detector keeps sessions apart", "[unit][detector]") {
  Detector d(DetectorConfig{});
  std::vector<PathEvent> ev;
  for (std::uint64_t s = 0; s < 10; ++s) {
    d.on_record(rec(s, "express-connect", "express-connect", 1), 0, ev);
    d.on_record(rec(s + 100, s < 5 ? "express-connect" : "ipsec", "express-connect", 2), 0, ev);
  }
  CHECK(d.current_path(1, Direction::Forward) == "express-connect");
  CHECK(d.current_path(2, Direction::Forward) == "ipsec");
  CHECK_FALSE(d.current_path(3, Direction::Forward));
  for (const auto& e : ev) CHECK(e.session_id == 2);
}

// N and K must be at least 1.
TEST_CASE("detector configuration errors", "[unit][detector]") {
  DetectorConfig c;
  c.confirm_probes = 0;
  CHECK_THROWS_AS(Detector(c), ConfigError);
  c = {};
  c.outage_losses = 0;
  CHECK_THROWS_WITH(Detector(c), Catch::Contains("outage_losses"));
}

// Probes answered on an "unknown" path between the old and the new path got through: the
// switchover's outage is the longest time nothing got through, not the time without
// attributed probes; the attribution bounds stay those of the labelled probes.
TEST_CASE("detector outage counts unknown probes as through", "[unit][detector]") {
  Run run;
  run.add(0, 10, "express-connect", "express-connect");
  run.add(10, 12, kPathUnknown, kPathUnknown);
  run.add(12, 13, kPathNone, kPathNone);
  run.add(13, 15, kPathUnknown, kPathUnknown);
  run.add(15, 20, "ipsec", "ipsec");
  run.feed();
  const auto sw = run.of(EventType::Switchover);
  REQUIRE(sw.size() == 1);
  CHECK(sw[0].last_ok_on_old_ns == tx(9));
  CHECK(sw[0].first_ok_on_new_ns == tx(15));
  CHECK(sw[0].outage_ns == 2 * kMs);  // 11 -> 13, one probe lost
  CHECK(sw[0].probes_lost == 1);
  SECTION("without any loss the outage is one probe interval") {
    Run clean;
    clean.add(0, 10, "express-connect", "express-connect");
    clean.add(10, 14, kPathUnknown, kPathUnknown);
    clean.add(14, 20, "ipsec", "ipsec");
    clean.feed();
    const auto s2 = clean.of(EventType::Switchover, Direction::Reverse);
    REQUIRE(s2.size() == 1);
    CHECK(s2[0].outage_ns == kMs);
    CHECK(s2[0].probes_lost == 0);
  }
}

// A probe on the new path just before both paths went down does not start the switchover's
// run: the outage and its losses are part of the switchover that follows it.
TEST_CASE("detector confirms the new path afresh after an outage", "[unit][detector]") {
  Run run;
  run.add(0, 10, "express-connect", "express-connect");
  run.add(10, 11, "ipsec", kPathNone);  // left on the tunnel as the uplinks went down
  run.add(11, 21, kPathNone, kPathNone);
  run.add(21, 30, "ipsec", "ipsec");
  run.feed();
  const auto sw = run.of(EventType::Switchover);
  REQUIRE(sw.size() == 1);
  CHECK(sw[0].seq == 23);
  CHECK(sw[0].first_ok_on_new_ns == tx(21));
  CHECK(sw[0].last_ok_on_old_ns == tx(9));
  CHECK(sw[0].outage_ns == 11 * kMs);  // nothing through from 10 to 21
  CHECK(sw[0].probes_lost == 10);
  const auto end = run.of(EventType::OutageEnd);
  REQUIRE(end.size() == 1);
  CHECK(end[0].outage_ns == 11 * kMs);
}

// After an outage that ends on unattributed replies, the stale confirmed path of that direction
// is not taken for its current one: no asymmetry until a probe is seen on a path.
TEST_CASE("detector no asymmetry from a direction seen only as unknown", "[unit][detector]") {
  Run run;
  run.add(0, 10, "express-connect", "express-connect");
  run.add(10, 20, "ipsec", kPathNone);
  for (std::uint64_t s = 20; s < 40; ++s) run.records.push_back(rec(s, "ipsec", kPathUnknown));
  run.add(40, 50, "ipsec", "ipsec");
  run.feed();
  CHECK(run.of(EventType::AsymmetricBegin).empty());
  CHECK(run.of(EventType::AsymmetricEnd).empty());
  const auto rsw = run.of(EventType::Switchover, Direction::Reverse);
  REQUIRE(rsw.size() == 1);
  CHECK(rsw[0].first_ok_on_new_ns == tx(40));
  CHECK(rsw[0].outage_ns == 11 * kMs);  // the replies were through again from 20 on
  SECTION("a direction seen on its old path while the other moved is asymmetric") {
    Run asym;
    asym.add(0, 10, "express-connect", "express-connect");
    asym.add(10, 20, "ipsec", "express-connect");
    asym.feed();
    CHECK(asym.of(EventType::AsymmetricBegin).size() == 1);
  }
}

// A probe that may or may not have got through (unknown, maybe lost) neither ends an outage nor
// shortens it; probes known to be through do.
TEST_CASE("detector: maybe-lost probes are neither loss nor through", "[unit][detector]") {
  Detector d(DetectorConfig{});
  std::vector<PathEvent> events;
  auto feed = [&](std::uint64_t seq, const char* path, bool maybe_lost) {
    PathSample s;
    s.session_id = kSession;
    s.target = "192.168.20.161";
    s.proto = Proto::Stamp;
    s.dir = Direction::Forward;
    s.seq = seq;
    s.tx_ns = tx(seq);
    s.path = path;
    s.fate = maybe_lost ? PathSample::Fate::MaybeLost : PathSample::Fate::Through;
    d.on_sample(s, tx(seq) + 30 * kMs, events);
  };
  std::uint64_t seq = 0;
  for (; seq < 10; ++seq) feed(seq, "express-connect", false);
  for (; seq < 20; ++seq) feed(seq, kPathNone, false);
  for (; seq < 30; ++seq) feed(seq, kPathUnknown, true);  // late ESP packets around
  for (; seq < 40; ++seq) feed(seq, "ipsec", false);
  std::vector<PathEvent> ends;
  for (const auto& e : events) {
    if (e.type == EventType::OutageEnd) ends.push_back(e);
  }
  REQUIRE(ends.size() == 1);
  CHECK(ends[0].seq == 30);
  CHECK(ends[0].outage_ns == 21 * kMs);  // from probe 9, the last through, to 30
  CHECK(ends[0].probes_lost == 10);
  CHECK(ends[0].to == "ipsec");
}

namespace {

/// Feeds one direction's samples with fates, `interval` apart.
struct FateRun {
  explicit FateRun(std::int64_t interval = kMs) : interval_ns(interval) {}
  void add(std::uint64_t from, std::uint64_t to, Direction dir, const char* path,
           PathSample::Fate fate) {
    for (std::uint64_t seq = from; seq < to; ++seq) {
      PathSample s = sample_at(seq, dir, path);
      s.tx_ns = kT0 + static_cast<std::int64_t>(seq) * interval_ns;
      s.fate = fate;
      d.on_sample(s, s.tx_ns + 30 * kMs, events);
    }
  }
  std::vector<PathEvent> of(EventType t, Direction dir) const { return events_of(events, t, dir); }
  std::int64_t interval_ns;
  Detector d{DetectorConfig{}};
  std::vector<PathEvent> events;
};

using Fate = PathSample::Fate;

}  // namespace

// Losses of undetermined direction make an outage, but an "undetermined" one, counted apart
// from proven losses: never a confident outage in a direction nothing proved.
TEST_CASE("detector: undetermined losses make an undetermined outage", "[unit][detector]") {
  FateRun run;
  run.add(0, 10, Direction::Forward, "express-connect", Fate::Through);
  run.add(10, 282, Direction::Forward, "express-connect", Fate::Undetermined);
  run.add(282, 300, Direction::Forward, "ipsec", Fate::Through);
  const auto ob = run.of(EventType::OutageBegin, Direction::Forward);
  REQUIRE(ob.size() == 1);
  CHECK(ob[0].outage_kind == OutageKind::Undetermined);
  CHECK(ob[0].probes_lost == 0);
  CHECK(ob[0].probes_lost_undetermined == 3);
  CHECK(ob[0].resolution_ns == kMs);
  const auto oe = run.of(EventType::OutageEnd, Direction::Forward);
  REQUIRE(oe.size() == 1);
  CHECK(oe[0].outage_kind == OutageKind::Undetermined);
  CHECK(oe[0].outage_ns == 273 * kMs);
  CHECK(oe[0].probes_lost == 0);
  CHECK(oe[0].probes_lost_undetermined == 272);
  const auto sw = run.of(EventType::Switchover, Direction::Forward);
  REQUIRE(sw.size() == 1);
  CHECK(sw[0].outage_kind == OutageKind::Undetermined);
  CHECK(sw[0].outage_ns == 273 * kMs);
  CHECK(sw[0].resolution_ns == kMs);
  CHECK(sw[0].probes_lost_undetermined == 272);
  SECTION("one proven loss among them makes it measured") {
    FateRun mixed;
    mixed.add(0, 10, Direction::Reverse, "express-connect", Fate::Through);
    mixed.add(10, 11, Direction::Reverse, "none", Fate::Lost);
    mixed.add(11, 20, Direction::Reverse, "none", Fate::Undetermined);
    mixed.add(20, 30, Direction::Reverse, "ipsec", Fate::Through);
    const auto e = mixed.of(EventType::OutageEnd, Direction::Reverse);
    REQUIRE(e.size() == 1);
    CHECK(e[0].outage_kind == OutageKind::Measured);
    CHECK(e[0].probes_lost == 1);
    CHECK(e[0].probes_lost_undetermined == 9);
    CHECK(mixed.of(EventType::OutageBegin, Direction::Reverse)[0].outage_kind ==
          OutageKind::Measured);
  }
}

// The reverse samples of requests lost forward (no reply was sent) are no reverse losses: no
// reverse outage, and the reverse switchover says "no loss seen" bounded by the gap between the
// replies around them (the return path was not exercised meanwhile: no smaller bound is known).
TEST_CASE("detector: not-applicable reverse samples are no loss", "[unit][detector]") {
  FateRun run;
  run.add(0, 10, Direction::Reverse, "express-connect", Fate::Through);
  run.add(10, 282, Direction::Reverse, "none", Fate::NotApplicable);
  run.add(282, 300, Direction::Reverse, "ipsec", Fate::Through);
  CHECK(run.of(EventType::OutageBegin, Direction::Reverse).empty());
  CHECK(run.of(EventType::OutageEnd, Direction::Reverse).empty());
  const auto sw = run.of(EventType::Switchover, Direction::Reverse);
  REQUIRE(sw.size() == 1);
  CHECK(sw[0].outage_kind == OutageKind::Bound);
  CHECK(sw[0].outage_ns == 273 * kMs);
  CHECK(sw[0].resolution_ns == 273 * kMs);
  CHECK(sw[0].probes_lost == 0);
  CHECK(sw[0].first_ok_on_new_ns == tx(282));
  CHECK(sw[0].last_ok_on_old_ns == tx(9));
  SECTION("within a run of losses it neither ends nor shortens the outage") {
    FateRun r2;
    r2.add(0, 10, Direction::Reverse, "express-connect", Fate::Through);
    r2.add(10, 20, Direction::Reverse, "none", Fate::Lost);
    r2.add(20, 30, Direction::Reverse, "none", Fate::NotApplicable);
    r2.add(30, 40, Direction::Reverse, "express-connect", Fate::Through);
    const auto e = r2.of(EventType::OutageEnd, Direction::Reverse);
    REQUIRE(e.size() == 1);
    CHECK(e[0].seq == 30);
    CHECK(e[0].outage_ns == 21 * kMs);
    CHECK(e[0].probes_lost == 10);
  }
}

// Without a loss the outage is only bounded by the probe spacing: the TTL method's 1/s says
// "no loss seen, at most 1000 ms" with a 1 s resolution; a probe after a gap in the sending
// widens the resolution to that gap.
TEST_CASE("detector: a switchover without loss is a bound", "[unit][detector]") {
  FateRun run(1'000 * kMs);
  run.add(0, 10, Direction::Forward, "express-connect", Fate::Through);
  run.add(10, 20, Direction::Forward, "ipsec", Fate::Through);
  const auto sw = run.of(EventType::Switchover, Direction::Forward);
  REQUIRE(sw.size() == 1);
  CHECK(sw[0].outage_kind == OutageKind::Bound);
  CHECK(sw[0].outage_ns == 1'000 * kMs);
  CHECK(sw[0].resolution_ns == 1'000 * kMs);
  CHECK(sw[0].probes_lost == 0);
  CHECK(sw[0].probes_lost_undetermined == 0);
  SECTION("maybe-lost probes do not narrow the resolution") {
    FateRun m;
    m.add(0, 10, Direction::Forward, "express-connect", Fate::Through);
    m.add(10, 12, Direction::Forward, "unknown", Fate::MaybeLost);
    m.add(12, 20, Direction::Forward, "ipsec", Fate::Through);
    const auto s2 = m.of(EventType::Switchover, Direction::Forward);
    REQUIRE(s2.size() == 1);
    CHECK(s2[0].outage_kind == OutageKind::Bound);
    CHECK(s2[0].outage_ns == 3 * kMs);
    CHECK(s2[0].resolution_ns == 3 * kMs);
  }
}

// Records carry their loss direction; the detector takes each direction's fate from it.
TEST_CASE("detector: fates from records", "[unit][detector]") {
  ProbeRecord r = rec(1, "express-connect", kPathNone);
  CHECK(fate_of(r, Direction::Forward) == Fate::Through);  // an old record: the paths say
  CHECK(fate_of(r, Direction::Reverse) == Fate::Lost);
  r.loss = LossDirection::Forward;
  CHECK(fate_of(r, Direction::Forward) == Fate::Lost);
  CHECK(fate_of(r, Direction::Reverse) == Fate::NotApplicable);
  r.loss = LossDirection::Reverse;
  CHECK(fate_of(r, Direction::Forward) == Fate::Through);
  CHECK(fate_of(r, Direction::Reverse) == Fate::Lost);
  r.loss = LossDirection::Undetermined;
  CHECK(fate_of(r, Direction::Forward) == Fate::Undetermined);
  CHECK(fate_of(r, Direction::Reverse) == Fate::Undetermined);
  r = rec(1, "ipsec", "ipsec");
  CHECK(fate_of(r, Direction::Reverse) == Fate::Through);
}

// A record's direction as a sample: its identity, TX time, that direction's path and fate.
TEST_CASE("detector: a record's directions as samples", "[unit][detector]") {
  ProbeRecord r = rec(1, "express-connect", kPathNone);
  r.session_id = 42;
  r.target = "192.0.2.7";
  r.proto = Proto::Stamp;
  r.seq = 9;
  r.tx_ns = 123 * kMs;
  r.loss = LossDirection::Reverse;
  const PathSample f = sample_of(r, Direction::Forward);
  CHECK(f.session_id == 42);
  CHECK(f.target == "192.0.2.7");
  CHECK(f.proto == Proto::Stamp);
  CHECK(f.dir == Direction::Forward);
  CHECK(f.seq == 9);
  CHECK(f.tx_ns == 123 * kMs);
  CHECK(f.path == "express-connect");
  CHECK(f.path_id == -1);
  CHECK(f.fate == Fate::Through);
  const PathSample b = sample_of(r, Direction::Reverse);
  CHECK(b.dir == Direction::Reverse);
  CHECK(b.path == kPathNone);
  CHECK(b.fate == Fate::Lost);
}

namespace {

/// Samples fed one at a time, each "now" its tx + 30 ms: for the late-answer revisions.
struct Feed {
  explicit Feed(DetectorConfig c = {}) : d(c) {}
  void at(std::uint64_t seq, Direction dir, Fate fate, const char* path = "express-connect",
          bool revision = false) {
    PathSample s = sample_at(seq, dir, path);
    s.fate = fate;
    s.revision = revision;
    d.on_sample(s, tx(seq) + 30 * kMs, events);
  }
  /// Forward samples [from, to) with one fate.
  void fwd(std::uint64_t from, std::uint64_t to, Fate fate, const char* path = "express-connect") {
    for (std::uint64_t s = from; s < to; ++s) at(s, Direction::Forward, fate, path);
  }
  /// A late answer: forward through on an unknown path, revising [from, to).
  void late(std::uint64_t from, std::uint64_t to, Direction dir = Direction::Forward) {
    for (std::uint64_t s = from; s < to; ++s) at(s, dir, Fate::Through, "unknown", true);
  }
  std::vector<PathEvent> of(EventType t, Direction dir = Direction::Forward) const {
    return events_of(events, t, dir);
  }
  Detector d;
  std::vector<PathEvent> events;
};

}  // namespace

// Both paths down, the tunnel back first but slow (session 10, attr_both_down_realistic under
// load): the first probes through it were answered after their timeout, so they were processed
// as losses and came back as late answers before the first answer in time. The outage ended at
// the first of them (the truth's figure), not at the first answer in time, and they are no
// losses.
TEST_CASE("detector: late answers end the outage at the first probe through", "[unit][detector]") {
  for (const bool interleaved : {false, true}) {
    CAPTURE(interleaved);
    Feed f;
    f.fwd(0, 100, Fate::Through);
    f.fwd(100, 200, Fate::Lost);  // the outage
    if (interleaved) {
      // Each late answer comes a few probes after its own loss was processed.
      for (std::uint64_t s = 200; s < 215; ++s) {
        f.at(s, Direction::Forward, Fate::Lost);
        if (s >= 205) f.late(s - 5, s - 4);
      }
      f.late(210, 215);
    } else {
      f.fwd(200, 215, Fate::Lost);
      f.late(200, 215);
    }
    // In order: once late answers came, the losses after them wait for theirs (late_hold_ns),
    // so the interleaved stream ends the outage as soon as a held one is answered.
    CHECK(f.d.in_outage(kSession, Direction::Forward) == !interleaved);
    f.fwd(215, 220, Fate::Through, "ipsec");
    const auto begin = f.of(EventType::OutageBegin);
    const auto end = f.of(EventType::OutageEnd);
    REQUIRE(begin.size() == 1);
    CHECK(begin[0].seq == 102);
    REQUIRE(end.size() == 1);
    CHECK(end[0].seq == 200);
    CHECK(end[0].ts_ns == tx(200));
    CHECK(end[0].first_ok_on_new_ns == tx(200));
    CHECK(end[0].outage_ns == tx(200) - tx(99));
    CHECK(end[0].resolution_ns == 1 * kMs);
    CHECK(end[0].probes_lost == 100);  // 100..199: the late ones were through
    CHECK(end[0].to == "unknown");
    // Live, it ended with the answer in time, or with the first held loss answered late.
    CHECK(end[0].detected_ns == (interleaved ? tx(206) : tx(215)) + 30 * kMs);
    CHECK(f.d.stats().revisions == 15);
    CHECK(f.d.stats().revised_gaps == 1);
    CHECK(f.d.stats().late == 0);
    CHECK_FALSE(f.d.in_outage(kSession, Direction::Forward));
  }
}

// Without late answers the same stream ends the outage at the first answer in time: the test
// above measures the revisions, not a changed rule.
TEST_CASE("detector: without late answers the outage ends at the first answer in time",
          "[unit][detector]") {
  Feed f;
  f.fwd(0, 100, Fate::Through);
  f.fwd(100, 215, Fate::Lost);
  f.fwd(215, 220, Fate::Through, "ipsec");
  const auto end = f.of(EventType::OutageEnd);
  REQUIRE(end.size() == 1);
  CHECK(end[0].seq == 215);
  CHECK(end[0].outage_ns == tx(215) - tx(99));
  CHECK(end[0].probes_lost == 115);
  CHECK(f.d.stats().revisions == 0);
  CHECK(f.d.stats().revised_gaps == 0);
}

// A late answer early in an outage, more losses after it: the outage still ends at the first
// answer in time and is measured from the last probe through in order (the losses after the
// late one may be answered late too: then the outage was the gap before it, so it is not
// shortened to the gap after it, session 11's lab run: 844 ms for a 20 455 ms outage). The
// late one is no loss.
TEST_CASE("detector: a late answer before more losses leaves the outage's start",
          "[unit][detector]") {
  Feed f;
  f.fwd(0, 100, Fate::Through);
  f.fwd(100, 200, Fate::Lost);
  f.late(150, 151);  // probe 150 got through after all
  f.fwd(200, 205, Fate::Through);
  const auto end = f.of(EventType::OutageEnd);
  REQUIRE(end.size() == 1);
  CHECK(end[0].seq == 200);
  CHECK(end[0].outage_ns == tx(200) - tx(99));
  CHECK(end[0].resolution_ns == 1 * kMs);
  CHECK(end[0].probes_lost == 99);
  CHECK(f.d.stats().revisions == 1);
  CHECK(f.d.stats().revised_gaps == 0);
}

// Late answers to the first losses of a run: no outage opens on the run they broke.
TEST_CASE("detector: late answers break a loss run before it makes an outage", "[unit][detector]") {
  Feed f;
  f.fwd(0, 50, Fate::Through);
  f.fwd(50, 52, Fate::Lost);
  f.late(50, 52);
  f.fwd(52, 54, Fate::Lost);  // two more: a run of 2, below the 3 an outage takes
  f.fwd(54, 60, Fate::Through);
  f.d.poll(tx(60) + 2000 * kMs, f.events);  // 52 and 53 waited for late answers: none came
  CHECK(f.of(EventType::OutageBegin).empty());
  f.fwd(60, 63, Fate::Lost);  // three in a row still make one
  f.d.poll(tx(63) + 2000 * kMs, f.events);
  CHECK(f.of(EventType::OutageBegin).size() == 1);
}

// The reverse samples of requests lost forward are not losses, but when the requests were
// answered late after all their replies came back: the reverse outage (from undetermined
// losses before them) ended there too.
TEST_CASE("detector: late answers revise not-applicable reverse samples", "[unit][detector]") {
  Feed f;
  for (std::uint64_t s = 0; s < 100; ++s) f.at(s, Direction::Reverse, Fate::Through);
  for (std::uint64_t s = 100; s < 103; ++s) f.at(s, Direction::Reverse, Fate::Undetermined);
  for (std::uint64_t s = 103; s < 200; ++s) f.at(s, Direction::Reverse, Fate::NotApplicable);
  f.late(150, 200, Direction::Reverse);
  for (std::uint64_t s = 200; s < 203; ++s) f.at(s, Direction::Reverse, Fate::Through);
  const auto end = f.of(EventType::OutageEnd, Direction::Reverse);
  REQUIRE(end.size() == 1);
  CHECK(end[0].seq == 150);
  CHECK(end[0].outage_ns == tx(150) - tx(99));
  CHECK(end[0].probes_lost_undetermined == 3);
}

// A late answer for a sample still held for reordering takes its place; one for a probe whose
// outage already ended, or that was through, is only counted late.
TEST_CASE("detector: revisions of held and finished samples", "[unit][detector]") {
  Feed f;
  f.fwd(0, 10, Fate::Through);
  f.at(11, Direction::Forward, Fate::Lost);  // held: 10 is missing
  f.late(11, 12);
  f.fwd(12, 15, Fate::Lost);
  f.fwd(10, 11, Fate::Through);  // releases 10 and 11, through now; 12..14 wait (a late answer)
  CHECK(f.d.stats().revisions == 1);
  CHECK(f.of(EventType::OutageBegin).empty());
  f.d.poll(tx(15) + 2000 * kMs, f.events);  // no answer came for them: lost
  const auto begin = f.of(EventType::OutageBegin);
  REQUIRE(begin.size() == 1);
  CHECK(begin[0].seq == 14);
  CHECK(begin[0].probes_lost == 3);
  f.fwd(15, 20, Fate::Through);
  f.late(13, 14);  // its outage is over
  f.late(5, 6);    // it was through
  CHECK(f.d.stats().late == 2);
  CHECK(f.d.stats().revisions == 1);
  REQUIRE(f.of(EventType::OutageEnd).size() == 1);
  CHECK(f.of(EventType::OutageEnd)[0].outage_ns == tx(15) - tx(11));
}

// A late answered record fed as a record revises like a sample.
TEST_CASE("detector: a late answered record is a revision", "[unit][detector]") {
  ProbeRecord r = rec(3, "unknown", "unknown");
  r.late = true;
  CHECK(sample_of(r, Direction::Forward).revision);
  CHECK(sample_of(r, Direction::Reverse).revision);
  r.late = false;
  CHECK_FALSE(sample_of(r, Direction::Forward).revision);
  ProbeRecord lost = rec(3, kPathNone, kPathNone);
  lost.late = true;  // a late loss: no answer, nothing to revise with
  CHECK_FALSE(sample_of(lost, Direction::Forward).revision);
}

// After a late answer, a direction's losses wait late_hold_ns for theirs: answered, they are
// processed as through; not, as losses once the hold is over. Ten seconds after the last late
// answer nothing waits any more; a full reorder ring processes what waits at once.
TEST_CASE("detector: losses wait for late answers after one came", "[unit][detector]") {
  DetectorConfig cfg;
  cfg.late_hold_ns = 500 * kMs;
  cfg.late_hold_for_ns = 10'000 * kMs;
  Feed f(cfg);
  f.fwd(0, 10, Fate::Through);
  f.fwd(10, 11, Fate::Lost);
  f.late(10, 11);  // at tx(10) + 30 ms: losses now wait until tx(10) + 10.03 s
  CHECK(f.d.stats().revisions == 1);
  f.fwd(11, 20, Fate::Lost);
  f.fwd(20, 25, Fate::Through);
  CHECK(f.of(EventType::OutageBegin).empty());
  f.late(11, 15);  // 11..14 answered while they wait
  f.d.poll(tx(25) + 30 * kMs, f.events);
  CHECK(f.of(EventType::OutageBegin).empty());  // 11..14 through: 15..19 still wait
  f.d.poll(tx(19) + 30 * kMs + 500 * kMs, f.events);
  const auto begin = f.of(EventType::OutageBegin);
  REQUIRE(begin.size() == 1);
  CHECK(begin[0].seq == 17);
  CHECK(begin[0].probes_lost == 3);
  const auto end = f.of(EventType::OutageEnd);
  REQUIRE(end.size() == 1);
  CHECK(end[0].seq == 20);
  CHECK(end[0].outage_ns == tx(20) - tx(14));
  CHECK(end[0].probes_lost == 5);  // 15..19; 10..14 were answered
  CHECK(f.d.stats().late_holds > 0);
  // Long after the last late answer a loss is processed at once.
  const std::int64_t quiet = tx(14) + 30 * kMs + 10'000 * kMs;
  for (std::uint64_t seq = 25; seq < 28; ++seq) {
    PathSample s = sample_at(seq, Direction::Forward, "express-connect");
    s.fate = Fate::Lost;
    f.d.on_sample(s, quiet, f.events);
  }
  CHECK(f.of(EventType::OutageBegin).size() == 2);
  // A small reorder ring full of waiting losses processes them rather than wait.
  DetectorConfig small = cfg;
  small.reorder_window = 8;
  Feed g(small);
  g.fwd(0, 10, Fate::Through);
  g.fwd(10, 11, Fate::Lost);
  g.late(10, 11);
  g.fwd(11, 40, Fate::Lost);  // far more than 8 waiting
  CHECK(g.d.stats().skipped == 0);
  CHECK(g.of(EventType::OutageBegin).size() == 1);
  g.d.poll(tx(40) + 2000 * kMs, g.events);
  g.fwd(40, 41, Fate::Through);
  REQUIRE(g.of(EventType::OutageEnd).size() == 1);
  CHECK(g.of(EventType::OutageEnd)[0].probes_lost == 29);
}

// Session ids over the whole 32-bit range (the attributor's flat/hashed bound at 65 536 among
// them), interleaved: each session keeps its own state and events.
TEST_CASE("detector sessions across the whole id range", "[unit][detector]") {
  Detector d{DetectorConfig{}};
  std::vector<PathEvent> events;
  const std::vector<std::uint32_t> ids = {0, 1, 65'535, 65'536, 4'294'967'295u, 131'071};
  // Session k switches at seq 10 + k: its switchover's seq tells the sessions apart.
  for (std::uint64_t s = 0; s < 40; ++s) {
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const char* p = s < 10 + k ? "express-connect" : "ipsec";
      d.on_record(rec(s, p, p, ids[k]), tx(s) + 30 * kMs, events);
    }
  }
  for (std::size_t k = 0; k < ids.size(); ++k) {
    INFO("session " << ids[k]);
    std::vector<PathEvent> sw;
    for (const auto& e : events) {
      if (e.type == EventType::Switchover && e.session_id == ids[k]) sw.push_back(e);
    }
    REQUIRE(sw.size() == 2);  // forward and reverse
    CHECK(sw[0].seq == 10 + k + 2);
    CHECK(d.current_path(ids[k], Direction::Forward) == "ipsec");
  }
  CHECK_FALSE(d.current_path(2, Direction::Forward).has_value());  // never seen
}
