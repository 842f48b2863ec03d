#include "pathsentry/probe/attribution/attributor.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <tuple>
#include <vector>

#include "attribution/attributor_world.h"
#include "capture/pcap_builder.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/common/record_json.h"
#include "pathsentry/probe/attribution/detector.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::addr;
using pathsentry::test::Bytes;

using namespace pathsentry::test::attributor_world;

// The return path may be slower than the forward one: its own window catches the reply's ESP
// that the forward window would miss, and delays near a window's end are counted.
TEST_CASE("reverse window and delay statistics", "[unit][attributor]") {
  World w;
  for (std::uint64_t i = 0; i < 10; ++i) {
    w.add({Proto::Icmp, i, kT0 + static_cast<std::int64_t>(i) * 10 * kMs, Via::Ipsec, Via::Ipsec});
  }
  // Replies' ESP seen 1.5 ms before they reach the agent, not 0.4 ms.
  for (auto& [ts, f] : w.frames[1]) {
    const auto o = decode_frame(w.inet, DecodeContext{kAgent, 862}, ts, 1, f);
    REQUIRE(o);
    if (o->dir == Direction::Reverse) ts -= 1100 * kUs;
  }
  auto cfg = w.config();
  cfg.taps[1].window_lo_ns = -200 * kUs;
  cfg.taps[1].window_hi_ns = 450 * kUs;
  SECTION("one window for both directions") {
    auto a = w.make(cfg);
    const auto m = w.run(*a);
    CHECK(paths(m, 1, 5) == P{"ipsec", "unknown"});
    const auto& fwd = a->stats().taps[1].delay[0];
    CHECK(fwd.count == 10);
    CHECK(fwd.near_hi == 10);  // 400 us in [-200, 450]: the top fifth starts at 320
    CHECK(a->stats().taps[1].delay[1].count == 0);
  }
  SECTION("a reverse window of its own") {
    cfg.taps[1].rev_window_lo_ns = 0;
    cfg.taps[1].rev_window_hi_ns = 3 * kMs;
    auto a = w.make(cfg);
    const auto m = w.run(*a);
    CHECK(paths(m, 1, 5) == P{"ipsec", "ipsec"});
    const auto& rev = a->stats().taps[1].delay[1];
    CHECK(rev.count == 10);
    CHECK(rev.min_ns == 1500 * kUs);
    CHECK(rev.near_hi == 0);
  }
}

// A same-length packet of other traffic inside a probe's window makes that probe "unknown";
// its neighbours stay attributed.
TEST_CASE("esp look-alike traffic makes a probe unknown, never guessed", "[unit][attributor]") {
  World w;
  const auto len = w.inet.transform->esp_length(w.icmp.wire_bytes);
  for (std::uint64_t i = 0; i < 10; ++i) {
    const std::int64_t t = kT0 + static_cast<std::int64_t>(i) * 10 * kMs;
    w.add({Proto::Icmp, i, t, Via::Ipsec, Via::Ipsec});
    if (i == 4) w.esp(t + 1 * kMs, Direction::Forward, len);
    if (i == 6) w.esp(t + 8 * kMs - 1 * kMs, Direction::Reverse, len);
  }
  auto a = w.make();
  const auto m = w.run(*a);
  CHECK(paths(m, 1, 3) == P{"ipsec", "ipsec"});
  CHECK(paths(m, 1, 4) == P{"unknown", "ipsec"});
  CHECK(paths(m, 1, 5) == P{"ipsec", "ipsec"});
  CHECK(paths(m, 1, 6) == P{"ipsec", "unknown"});
  CHECK(a->stats().taps[1].ambiguous == 2);
}

// An ESP packet inside two probes' windows explains neither, even for the probe that has no
// other candidate: that probe's own packet might be the other one's.
TEST_CASE("esp packet shared by two windows is attributed to neither", "[unit][attributor]") {
  World w;
  w.add({Proto::Icmp, 0, kT0, Via::Ipsec, Via::Ipsec});
  w.add({Proto::Icmp, 1, kT0 + 1800 * kUs, Via::Ipsec, Via::Ipsec});
  // Probe 0's packet leaves late (1.9 ms): inside probe 1's window [1.6, 3.8] ms too, while
  // probe 1's packet (2.2 ms) is outside probe 0's window [-0.2, 2] ms.
  REQUIRE(w.frames[1][0].first == kT0 + 400 * kUs);
  w.frames[1][0].first = kT0 + 1900 * kUs;
  auto a = w.make();
  const auto m = w.run(*a);
  CHECK(paths(m, 1, 0) == P{"unknown", "ipsec"});
  CHECK(paths(m, 1, 1) == P{"unknown", "ipsec"});
}

// Probes closer together than the window are ambiguous when alike, attributed when their sizes
// differ (the sender can cycle probe sizes for dense rates).
TEST_CASE("dense esp probes need distinct sizes", "[unit][attributor]") {
  SECTION("same size: unknown") {
    World w;
    for (std::uint64_t i = 0; i < 20; ++i) {
      w.add(
          {Proto::Icmp, i, kT0 + static_cast<std::int64_t>(i) * 500 * kUs, Via::Ipsec, Via::Ipsec});
    }
    auto a = w.make();
    const auto m = w.run(*a);
    for (std::uint64_t i = 2; i < 18; ++i) CHECK(paths(m, 1, i) == P{"unknown", "unknown"});
  }
  SECTION("sizes cycling through 8 ESP lengths: attributed") {
    World w;
    for (std::uint64_t i = 0; i < 20; ++i) {
      const auto wire = static_cast<std::uint32_t>(84 + 4 * (i % 8));  // GCM pads to 4 bytes
      w.add({Proto::Icmp, i, kT0 + static_cast<std::int64_t>(i) * 500 * kUs, Via::Ipsec, Via::Ipsec,
             8 * kMs, wire});
    }
    auto a = w.make();
    const auto m = w.run(*a);
    for (std::uint64_t i = 0; i < 20; ++i) CHECK(paths(m, 1, i) == P{"ipsec", "ipsec"});
  }
}

// A switchover in the middle of the stream: each probe gets the path that carried it.
TEST_CASE("attribution across a switchover", "[unit][attributor]") {
  World w;
  for (std::uint64_t i = 0; i < 40; ++i) {
    const std::int64_t t = kT0 + static_cast<std::int64_t>(i) * 10 * kMs;
    Via f = i < 15 ? Via::Ec : (i < 20 ? Via::LostBeforeTaps : Via::Ipsec);
    Via r = i < 15 ? Via::Ec : (i < 30 ? Via::LostBeforeTaps : Via::Ipsec);
    w.add({Proto::Stamp, i, t, f, r});
  }
  auto a = w.make();
  const auto m = w.run(*a);
  const auto s = w.stamp.session_id;
  CHECK(paths(m, s, 14) == P{"express-connect", "express-connect"});
  // Forward lost: the stateful reflector never counted these.
  for (std::uint64_t i = 15; i < 20; ++i) CHECK(paths(m, s, i) == P{"none", "none"});
  // Forward already on IPsec, replies still lost on the dead return path.
  for (std::uint64_t i = 20; i < 30; ++i) CHECK(paths(m, s, i) == P{"ipsec", "none"});
  for (std::uint64_t i = 30; i < 40; ++i) CHECK(paths(m, s, i) == P{"ipsec", "ipsec"});
}

// Loss direction: the reflector's counter, the taps, and what is unknown.
TEST_CASE("loss is split by direction", "[unit][attributor]") {
  World w;
  const auto s = w.stamp.session_id;
  auto at = [](int i) { return kT0 + i * 10 * kMs; };
  SECTION("stamp: request seen on EC but never reached the reflector") {
    w.add({Proto::Stamp, 0, at(0)});
    w.add({Proto::Stamp, 1, at(1), Via::LostAfterEc});
    w.add({Proto::Stamp, 2, at(2)});
    const auto m = w.run(*w.make());
    CHECK(paths(m, s, 1) == P{"none", "none"});
  }
  SECTION("stamp: reflector got it, reply lost and seen nowhere") {
    w.add({Proto::Stamp, 0, at(0)});
    w.add({Proto::Stamp, 1, at(1), Via::Ec, Via::LostBeforeTaps});
    w.add({Proto::Stamp, 2, at(2)});
    const auto m = w.run(*w.make());
    CHECK(paths(m, s, 1) == P{"express-connect", "none"});
  }
  SECTION("stamp: reflector got it though no tap saw it go") {
    World w2;
    w2.add({Proto::Stamp, 0, at(0)});
    w2.add({Proto::Stamp, 1, at(1), Via::Ec, Via::LostBeforeTaps});
    w2.add({Proto::Stamp, 2, at(2)});
    w2.frames[0].erase(w2.frames[0].begin() + 2);  // the mirror missed seq 1's request
    const auto m = w2.run(*w2.make());
    CHECK(paths(m, s, 1) == P{"unknown", "none"});
  }
  SECTION("icmp: forward seen on IPsec, no reply") {
    w.add({Proto::Icmp, 0, at(0), Via::Ipsec, Via::LostBeforeTaps});
    const auto m = w.run(*w.make());
    CHECK(paths(m, 1, 0) == P{"ipsec", "none"});
  }
  SECTION("icmp: seen nowhere") {
    w.add({Proto::Icmp, 0, at(0), Via::LostBeforeTaps});
    const auto m = w.run(*w.make());
    CHECK(paths(m, 1, 0) == P{"none", "none"});
  }
  SECTION("answered but seen by no tap") {
    w.add({Proto::Icmp, 0, at(0)});
    w.frames[0].clear();
    const auto m = w.run(*w.make());
    CHECK(paths(m, 1, 0) == P{"unknown", "unknown"});
  }
}

// A probe whose ESP packet leaves the gateway after the probe's window (a slow userspace ESP)
// is not called lost: an unexplained packet of its length within the late horizon makes it
// unknown. A packet that another probe's window explains does not.
TEST_CASE("late esp packet makes a lost probe unknown, not none", "[unit][attributor]") {
  World w;
  auto at = [](int i) { return kT0 + i * 10 * kMs; };
  w.add({Proto::Icmp, 0, at(0)});
  w.add({Proto::Icmp, 1, at(1), Via::LostBeforeTaps});
  w.esp(at(1) + w.inet.window_hi_ns + 300 * kUs, Direction::Forward,
        w.inet.transform->esp_length(w.icmp.wire_bytes));
  w.add({Proto::Icmp, 2, at(2), Via::LostBeforeTaps});  // nothing after it
  auto a = w.make();
  const auto m = w.run(*a);
  CHECK(paths(m, 1, 1) == P{"unknown", "none"});
  CHECK(paths(m, 1, 2) == P{"none", "none"});
  CHECK(a->stats().fwd_late_esp == 1);
  SECTION("its forward sample says it may have been lost") {
    World w3;
    w3.add({Proto::Icmp, 0, at(0), Via::LostBeforeTaps});
    w3.esp(at(0) + w3.inet.window_hi_ns + 300 * kUs, Direction::Forward,
           w3.inet.transform->esp_length(w3.icmp.wire_bytes));
    w3.add({Proto::Icmp, 1, at(1)});  // answered, seen on the clear tap
    auto a3 = w3.make();
    for (const auto& snt : w3.sent) a3->on_sent(snt);
    for (std::size_t t = 0; t < 2; ++t) {
      for (const auto& [ts, f] : w3.frames[t]) {
        a3->on_observation(
            t, *decode_frame(t == 0 ? w3.ec : w3.inet, DecodeContext{kAgent, 862}, ts, 1, f));
      }
    }
    for (const auto& r : w3.records) a3->on_record(r);
    std::vector<ProbeRecord> out;
    std::vector<PathSample> samples;
    a3->flush(out, &samples);
    bool checked = false;
    for (const auto& smp : samples) {
      if (smp.dir != Direction::Forward) continue;
      CHECK(smp.maybe_lost == (smp.seq == 0));
      checked = checked || smp.seq == 0;
    }
    CHECK(checked);
  }
  SECTION("beyond the horizon it is evidence of nothing") {
    World w2;
    w2.add({Proto::Icmp, 0, at(0), Via::LostBeforeTaps});
    auto cfg = w2.config();
    cfg.esp_late_horizon_ns = 200 * kUs;
    w2.esp(at(0) + w2.inet.window_hi_ns + 300 * kUs, Direction::Forward,
           w2.inet.transform->esp_length(w2.icmp.wire_bytes));
    auto a2 = w2.make(cfg);
    const auto m2 = w2.run(*a2);
    CHECK(paths(m2, 1, 0) == P{"none", "none"});
  }
}

// The forward "none" sample of a probe seen nowhere waits for the late horizon, then leaves.
TEST_CASE("forward none waits for the esp late horizon", "[unit][attributor]") {
  World w;
  w.add({Proto::Icmp, 0, kT0, Via::LostBeforeTaps});
  auto cfg = w.config();
  cfg.esp_late_horizon_ns = 30 * kMs;
  auto a = w.make(cfg);
  a->on_sent(w.sent[0]);
  std::vector<ProbeRecord> records;
  std::vector<PathSample> samples;
  std::int64_t first = 0;
  for (std::int64_t now = kT0; now < kT0 + 200 * kMs && first == 0; now += kMs) {
    a->poll(now, records, &samples);
    if (!samples.empty()) first = now;
  }
  REQUIRE(samples.size() == 1);
  CHECK(samples[0].path == "none");
  CHECK(first - kT0 >= 30 * kMs);
  // every window that could hold a late packet decided, plus one poll
  const std::int64_t span = w.inet.window_hi_ns - w.inet.window_lo_ns;
  CHECK(first - kT0 <= 30 * kMs + cfg.settle_ns + 3 * span + kMs);
}

// Without a configured transform the ESP length is learned from lone probes, then used.
TEST_CASE("esp lengths are learned from lone probes", "[unit][attributor]") {
  World w;
  // The frames are built with the tunnel's real transform; the attributor is not told it.
  const auto gcm = *w.inet.transform;
  for (std::uint64_t i = 0; i < 12; ++i) {
    w.add({Proto::Icmp, i, kT0 + static_cast<std::int64_t>(i) * 10 * kMs, Via::Ipsec, Via::Ipsec});
  }
  auto cfg = w.config();
  cfg.taps[1].transform.reset();
  cfg.learn_samples = 4;
  auto a = w.make(cfg);
  // Learning happens as probes are decided: feed in time order with polls in between.
  for (const auto& s : w.sent) a->on_sent(s);
  for (const auto& [ts, f] : w.frames[1]) {
    const auto o = decode_frame(cfg.taps[1], DecodeContext{kAgent, 862}, ts, 1, f);
    REQUIRE(o);
    a->on_observation(1, *o);
  }
  for (const auto& r : w.records) a->on_record(r);
  std::vector<ProbeRecord> out;
  for (std::int64_t t = kT0; t < kT0 + 200 * kMs; t += kMs) a->poll(t, out);
  a->flush(out);
  std::map<std::uint64_t, ProbeRecord> m;
  for (auto& r : out) m[r.seq] = r;
  REQUIRE(m.size() == 12);
  CHECK(a->learned_length(1, Direction::Forward, 84) == gcm.esp_length(84));
  CHECK(a->learned_length(1, Direction::Reverse, 84) == gcm.esp_length(84));
  CHECK(m[0].fwd_path == "unknown");  // nothing learned yet
  CHECK(m[11].fwd_path == "ipsec");
  CHECK(m[11].rev_path == "ipsec");
}

// A learned length that contradicts the configured transform is counted (misconfiguration).
TEST_CASE("esp length mismatch is counted", "[unit][attributor]") {
  World w;
  for (std::uint64_t i = 0; i < 12; ++i) {
    w.add({Proto::Icmp, i, kT0 + static_cast<std::int64_t>(i) * 10 * kMs, Via::Ipsec, Via::Ipsec});
  }
  auto cfg = w.config();
  cfg.taps[1].transform = EspTransform::preset("aes-cbc-sha256");  // the tunnel uses GCM
  cfg.learn_samples = 4;
  auto a = w.make(cfg);
  const auto m = w.run(*a);
  CHECK(paths(m, 1, 5) == P{"unknown", "unknown"});  // wrong length: never matched
  CHECK(a->stats().taps[1].length_mismatch == 2);    // forward and reverse
}

// A lost probe is declared lost soon after a later probe is answered, not at the sender's
// timeout; a reply arriving after that re-emits the record as late.
TEST_CASE("early loss and late replies", "[unit][attributor]") {
  World w;
  w.add({Proto::Icmp, 0, kT0, Via::Ec, Via::Ec});
  w.add({Proto::Icmp, 1, kT0 + 1 * kMs, Via::Ec, Via::Ec});
  auto cfg = w.config();
  auto a = w.make(cfg);
  for (const auto& s : w.sent) a->on_sent(s);
  for (const auto& [ts, f] : w.frames[0]) {
    a->on_observation(0, *decode_frame(w.ec, DecodeContext{kAgent, 862}, ts, 1, f));
  }
  // Only probe 1's reply comes back in time.
  a->on_record(w.records[1]);
  const std::int64_t rx1 = *w.records[1].rx_ns;
  std::vector<ProbeRecord> out;
  a->poll(rx1 + cfg.reorder_grace_ns - 1, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 1);
  out.clear();
  a->poll(rx1 + cfg.reorder_grace_ns, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 0);
  CHECK_FALSE(out[0].rx_ns);
  CHECK(out[0].fwd_path == "express-connect");  // seen going out
  CHECK(out[0].rev_path == "none");
  CHECK(a->stats().early_losses == 1);
  // The reply to probe 0 turns up after all.
  out.clear();
  ProbeRecord late = w.records[0];
  late.rx_ns = rx1 + 60 * kMs;
  late.rtt_ns = *late.rx_ns - late.tx_ns;
  a->on_record(late);
  a->poll(*late.rx_ns + 100 * kMs, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 0);
  CHECK(out[0].late);
  CHECK(out[0].rx_ns == late.rx_ns);
  CHECK(out[0].rev_path == "express-connect");
  CHECK(a->stats().late_records == 1);
}

// An answered probe's record is finished once its windows and the settle time have passed,
// and not before.
TEST_CASE("record is finished after its windows settle", "[unit][attributor]") {
  World w;
  w.add({Proto::Icmp, 0, kT0, Via::Ipsec, Via::Ipsec});
  auto cfg = w.config();
  auto a = w.make(cfg);
  a->on_sent(w.sent[0]);
  for (const auto& [ts, f] : w.frames[1]) {
    a->on_observation(1, *decode_frame(w.inet, DecodeContext{kAgent, 862}, ts, 1, f));
  }
  a->on_record(w.records[0]);
  const std::int64_t rx = *w.records[0].rx_ns;
  // Reverse decision: rx + hi - 2*lo + settle.
  const std::int64_t due = rx + w.inet.window_hi_ns - 2 * w.inet.window_lo_ns + cfg.settle_ns;
  std::vector<ProbeRecord> out;
  a->poll(due - 1, out);
  CHECK(out.empty());
  a->poll(due, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].fwd_path == "ipsec");
  CHECK(out[0].rev_path == "ipsec");
}

// The mirror copy may be decoded before the sender announces the probe; it still counts.
TEST_CASE("observation before announcement is kept", "[unit][attributor]") {
  World w;
  w.add({Proto::Stamp, 0, kT0});
  w.add({Proto::Stamp, 1, kT0 + kMs});
  auto a = w.make();
  a->on_sent(w.sent[0]);
  for (const auto& [ts, f] : w.frames[0]) {
    a->on_observation(0, *decode_frame(w.ec, DecodeContext{kAgent, 862}, ts, 1, f));
  }
  a->on_sent(w.sent[1]);
  for (const auto& r : w.records) a->on_record(r);
  std::vector<ProbeRecord> out;
  a->flush(out);
  REQUIRE(out.size() == 2);
  for (const auto& r : out) CHECK(r.fwd_path == "express-connect");
}

// With records only (no announcements) clear attribution still works, and it is counted.
TEST_CASE("records without announcements", "[unit][attributor]") {
  World w;
  for (std::uint64_t i = 0; i < 5; ++i)
    w.add({Proto::Icmp, i, kT0 + static_cast<std::int64_t>(i) * kMs});
  auto a = w.make();
  for (const auto& [ts, f] : w.frames[0]) {
    a->on_observation(0, *decode_frame(w.ec, DecodeContext{kAgent, 862}, ts, 1, f));
  }
  for (const auto& r : w.records) a->on_record(r);
  std::vector<ProbeRecord> out;
  a->flush(out);
  REQUIRE(out.size() == 5);
  for (const auto& r : out) CHECK(r.fwd_path == "express-connect");
  CHECK(a->stats().unannounced == 5);
}

// An exact clear sighting wins over an ESP correlation to another path, which is counted.
TEST_CASE("clear evidence beats esp correlation", "[unit][attributor]") {
  World w;
  w.add({Proto::Icmp, 0, kT0, Via::Ec, Via::Ec});
  w.esp(kT0 + 300 * kUs, Direction::Forward, w.inet.transform->esp_length(84));
  auto a = w.make();
  const auto m = w.run(*a);
  CHECK(paths(m, 1, 0) == P{"express-connect", "express-connect"});
  CHECK(a->stats().esp_conflicts == 1);
}

// Gaps in an SA's ESP sequence (packets the mirror never delivered) are counted.
TEST_CASE("esp sequence gaps are counted", "[unit][attributor]") {
  World w;
  for (int i = 0; i < 6; ++i) w.esp(kT0 + i * kMs, Direction::Forward, 200);
  w.frames[1].erase(w.frames[1].begin() + 2, w.frames[1].begin() + 4);  // seq 3 and 4
  auto a = w.make();
  w.run(*a);
  CHECK(a->stats().taps[1].esp_seq_gaps == 2);
  CHECK(a->stats().taps[1].unmatched == 4);
}

// A probe the sender never reports is finished as lost after its timeout plus the grace.
TEST_CASE("probe without a record is finished as lost", "[unit][attributor]") {
  World w;
  w.add({Proto::Icmp, 0, kT0, Via::LostBeforeTaps});
  auto cfg = w.config();
  auto a = w.make(cfg);
  a->on_sent(w.sent[0]);
  std::vector<ProbeRecord> out;
  const std::int64_t due = kT0 + w.icmp.timeout_ns + cfg.record_grace_ns;
  a->poll(due - 1, out);
  CHECK(out.empty());
  a->poll(due, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].fwd_path == "none");
  CHECK(a->stats().no_record == 1);
}

// Configuration errors name what is wrong.
TEST_CASE("attributor configuration errors", "[unit][attributor]") {
  World w;
  SECTION("duplicate session") {
    auto a = w.make();
    CHECK_THROWS_AS(a->add_session(w.icmp), ConfigError);
  }
  SECTION("two STAMP sessions to one target with the same SSID") {
    auto a = w.make();
    SessionSpec s = w.stamp;
    s.session_id = 0x30002;  // same low 16 bits
    CHECK_THROWS_WITH(a->add_session(s), Catch::Contains("SSID"));
  }
  SECTION("tap without a path label") {
    auto c = w.config();
    c.taps[0].path = "";
    CHECK_THROWS_AS(Attributor(c), ConfigError);
  }
  SECTION("empty esp window") {
    auto c = w.config();
    c.taps[1].window_hi_ns = c.taps[1].window_lo_ns;
    CHECK_THROWS_WITH(Attributor(c), Catch::Contains("window"));
  }
}

// The seed drill at 1000 probes/s, run in simulated time the way the agent runs: the Express
// Connect port goes down, the forward direction moves to IPsec at once while replies stay lost
// until the cloud re-routes 0.8 s later. Taps → attributor → detector; each event must carry
// the right figures and leave within 100 ms of the evidence that confirms it.
TEST_CASE("seed drill through attributor and detector", "[unit][attributor][detector]") {
  World w;
  w.inet.window_hi_ns = 900 * kUs;  // below the 1 ms probe interval
  for (std::uint64_t i = 0; i < 1500; ++i) {
    const Via f = i < 300 ? Via::Ec : (i < 310 ? Via::LostBeforeTaps : Via::Ipsec);
    const Via r = i < 300 ? Via::Ec : (i < 1100 ? Via::LostBeforeTaps : Via::Ipsec);
    w.add({Proto::Stamp, i, kT0 + static_cast<std::int64_t>(i) * kMs, f, r});
  }
  auto cfg = w.config();
  auto a = w.make(cfg);
  Detector det(DetectorConfig{});

  // Everything the agent would see, at the time it would see it.
  struct Input {
    std::int64_t at;
    int kind;  // 0 sent, 1 frame on tap 0, 2 frame on tap 1, 3 record
    std::size_t index;
  };
  std::vector<Input> inputs;
  for (std::size_t i = 0; i < w.sent.size(); ++i) inputs.push_back({w.sent[i].tx_ns, 0, i});
  for (int t = 0; t < 2; ++t) {
    for (std::size_t i = 0; i < w.frames[t].size(); ++i) {
      inputs.push_back({w.frames[t][i].first, 1 + t, i});
    }
  }
  for (std::size_t i = 0; i < w.records.size(); ++i) {
    const auto& r = w.records[i];
    inputs.push_back({r.rx_ns ? *r.rx_ns + 100 * kUs : r.tx_ns + w.stamp.timeout_ns, 3, i});
  }
  std::sort(inputs.begin(), inputs.end(), [](const Input& x, const Input& y) {
    return std::tuple{x.at, x.kind, x.index} < std::tuple{y.at, y.kind, y.index};
  });

  std::vector<ProbeRecord> records;
  std::vector<PathSample> samples;
  std::vector<PathEvent> events;
  std::size_t next = 0;
  for (std::int64_t now = kT0; now < kT0 + 4000 * kMs; now += kMs) {
    for (; next < inputs.size() && inputs[next].at <= now; ++next) {
      const Input& in = inputs[next];
      if (in.kind == 0) {
        a->on_sent(w.sent[in.index]);
      } else if (in.kind == 3) {
        a->on_record(w.records[in.index]);
      } else {
        const std::size_t tap = static_cast<std::size_t>(in.kind - 1);
        const auto& [ts, f] = w.frames[tap][in.index];
        const auto o = decode_frame(tap == 0 ? w.ec : w.inet, DecodeContext{kAgent, 862}, ts,
                                    linktype::kEthernet, f);
        REQUIRE(o);
        a->on_observation(tap, *o);
      }
    }
    samples.clear();
    a->poll(now, records, &samples);
    for (const auto& s : samples) det.on_sample(s, now, events);
    det.poll(now, events);
  }
  REQUIRE(records.size() == 1500);
  const auto s = w.stamp.session_id;
  std::map<Key, ProbeRecord> m;
  for (auto& r : records) m[{r.session_id, r.seq}] = r;
  CHECK(paths(m, s, 299) == P{"express-connect", "express-connect"});
  CHECK(paths(m, s, 305) == P{"none", "none"});
  CHECK(paths(m, s, 500) == P{"ipsec", "none"});
  CHECK(paths(m, s, 1200) == P{"ipsec", "ipsec"});
  CHECK(a->stats().fwd_samples_revised == 0);

  auto find = [&](EventType t, Direction d) -> const PathEvent* {
    for (const auto& e : events) {
      if (e.type == t && e.direction == d) return &e;
    }
    return nullptr;
  };
  const PathEvent* fsw = find(EventType::Switchover, Direction::Forward);
  REQUIRE(fsw != nullptr);
  CHECK(fsw->seq == 312);
  CHECK(fsw->last_ok_on_old_ns == kT0 + 299 * kMs);
  CHECK(fsw->first_ok_on_new_ns == kT0 + 310 * kMs);
  CHECK(fsw->probes_lost == 10);
  CHECK(fsw->detected_ns - fsw->ts_ns < 100 * kMs);  // while every reply is still lost
  const PathEvent* fob = find(EventType::OutageBegin, Direction::Forward);
  REQUIRE(fob != nullptr);
  CHECK(fob->detected_ns - fob->ts_ns < 100 * kMs);
  const PathEvent* rsw = find(EventType::Switchover, Direction::Reverse);
  REQUIRE(rsw != nullptr);
  CHECK(rsw->seq == 1102);
  CHECK(rsw->outage_ns == 801 * kMs);
  CHECK(rsw->probes_lost == 800);
  CHECK(rsw->detected_ns - (rsw->ts_ns + 8 * kMs) < 100 * kMs);  // after its reply arrived
  // Reverse losses are known when a later probe is answered or at the sender's timeout.
  const PathEvent* rob = find(EventType::OutageBegin, Direction::Reverse);
  REQUIRE(rob != nullptr);
  CHECK(rob->seq == 302);
  CHECK(rob->detected_ns <= rob->ts_ns + w.stamp.timeout_ns + 100 * kMs);
  for (const auto& e : events) {
    INFO(to_string(e.type));
    CHECK(e.type != EventType::AsymmetricBegin);
  }
}

// After slow answers (a backlogged tunnel), a fast answer overtaking them declares nothing lost
// before twice the recent RTT: the slow replies are still on their way.
TEST_CASE("early loss waits for twice the recent rtt", "[unit][attributor]") {
  World w;
  w.add({Proto::Icmp, 0, kT0, Via::Ec, Via::Ec, 200 * kMs});
  w.add({Proto::Icmp, 1, kT0 + 10 * kMs, Via::Ec, Via::Ec, 200 * kMs});
  w.add({Proto::Icmp, 2, kT0 + 20 * kMs, Via::Ec, Via::Ec, 1 * kMs});
  auto cfg = w.config();
  auto a = w.make(cfg);
  for (const auto& s : w.sent) a->on_sent(s);
  for (const auto& [ts, f] : w.frames[0]) {
    a->on_observation(0, *decode_frame(w.ec, DecodeContext{kAgent, 862}, ts, 1, f));
  }
  a->on_record(w.records[0]);  // answered after 200 ms
  a->on_record(w.records[2]);  // answered after 1 ms, overtaking probe 1's reply
  const std::int64_t rx2 = *w.records[2].rx_ns;
  std::vector<ProbeRecord> out;
  a->poll(rx2 + 2 * 200 * kMs - kMs, out);
  CHECK(a->stats().early_losses == 0);
  a->on_record(w.records[1]);  // probe 1's slow reply arrives in time
  a->poll(rx2 + 3 * 200 * kMs, out);
  CHECK(a->stats().early_losses == 0);
  CHECK(a->stats().late_records == 0);
  for (const auto& r : out) CHECK(r.rx_ns.has_value());
}
