// ESP taps with their defaults (no transform, window -200..5000 us) at the default rates
// (1000/s ICMP + 1000/s STAMP, sizes cycled as the agent does): the transform is learned from
// the lengths seen, for the proposals routers and strongSwan negotiate (issue 8, item 2).

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "capture/pcap_builder.h"
#include "pathsentry/probe/attribution/attributor.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::addr;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kUs = 1'000;

struct Scenario {
  EspTransform real;         // what the tunnel really does
  bool udp_encap = true;     // ESP-in-UDP 4500 or IP protocol 50
  double rate_total = 2000;  // probes/s, ICMP and STAMP alternating
  std::uint32_t cycle = 41;  // the agent's default: 2 x 2000/s x 10.2 ms
  std::uint32_t base = 72;   // the STAMP request (the larger of the two)
  std::uint32_t step = 16;   //
  std::int64_t duration_ns = 8'000'000'000;
  double noise_pps = 50;  // other tunnel traffic per direction, random lengths
  std::optional<EspTransform> configured{};
  // A userspace IPsec stalling: every stall_every_ns (after the first second) the DC gateway
  // holds everything for stall_ns, then lets it go in order (forward ESP late; replies
  // decrypted late, their ESP seen on time).
  std::int64_t stall_every_ns = 0;
  std::int64_t stall_ns = 0;
  std::uint32_t seed = 1;
  // A rekey to another proposal: from rekey_ns after the start, every ESP packet (the probes'
  // and the other traffic's) has real_after's length.
  std::int64_t rekey_ns = 0;
  EspTransform real_after{};
  // The reverse direction's transform when it differs from the forward one (before any rekey).
  std::optional<EspTransform> real_rev{};
  std::int64_t window_hi_ns = 0;  // 0: the tap's default
  // The agent's gateway holding the replies it decrypts for rev_hold_ns every rev_hold_every_ns
  // (their ESP seen on time), then handing them over within 0.3 ms in no particular order (a
  // userspace IPsec's worker threads): the reverse order rule's premise broken.
  std::int64_t rev_hold_every_ns = 0;
  std::int64_t rev_hold_ns = 0;
  // The agent's receiver hands announcements and records over once per tick, one session's
  // after the other's (0: each at once, in time order).
  std::int64_t receiver_tick_ns = 0;
};

struct Result {
  std::uint64_t probes = 0;
  std::uint64_t fwd_ipsec = 0, rev_ipsec = 0, fwd_wrong = 0, rev_wrong = 0;
  std::map<std::uint32_t, std::uint64_t> fwd_unknown_by_wire;
  AttributorStats stats;
  std::vector<std::string> notes;
  std::optional<std::uint32_t> learned_fwd, learned_rev;  // for the base size
};

/// Every probe crosses the tunnel both ways. ESP delay after the probe: mostly 40-300 us, 1 %
/// up to 2.5 ms forward (the lab's figures); the reply's ESP is seen 20-150 us before the reply
/// reaches the agent, 1 % up to 1.8 ms.
Result run(const Scenario& sc) {
  TapSpec ec{.interface = "tap-ec", .path = "express-connect"};
  TapSpec inet{.interface = "tap-inet", .path = "ipsec", .encap = Encap::Esp};
  inet.local_endpoint = addr("198.51.100.68");
  inet.remote_endpoint = addr("203.0.113.10");
  inet.transform = sc.configured;
  if (sc.window_hi_ns != 0) inet.window_hi_ns = sc.window_hi_ns;
  AttributorConfig cfg;
  cfg.taps = {ec, inet};
  Attributor a(cfg);
  const IpAddress target = addr("192.168.20.161");
  a.add_session({1, Proto::Icmp, target, sc.base, 0, true, sc.rate_total / 2, 1'000'000'000});
  a.add_session(
      {0x20002, Proto::Stamp, target, sc.base, 0, true, sc.rate_total / 2, 1'000'000'000});

  std::mt19937 rng(sc.seed);
  std::uniform_real_distribution<double> u(0, 1);
  auto delay = [&](std::int64_t lo, std::int64_t hi, std::int64_t tail) {
    const double x = u(rng);
    if (x < 0.01) return hi + static_cast<std::int64_t>(u(rng) * static_cast<double>(tail - hi));
    return lo + static_cast<std::int64_t>(u(rng) * static_cast<double>(hi - lo));
  };
  // Events in time order: 0 sent, 1 ESP frame, 2 record.
  struct Ev {
    std::int64_t ts;
    int kind;
    std::size_t idx;
    bool fwd = false;
    std::uint32_t len = 0;
  };
  std::vector<Ev> ev;
  std::vector<ProbeSent> sent;
  std::vector<ProbeRecord> recs;
  std::uint32_t esp_seq[2] = {1, 1};  // numbered in the order the packets are seen
  auto esp = [&](std::int64_t ts, bool fwd, std::uint32_t inner) {
    const bool after = sc.rekey_ns != 0 && ts >= kT0 + sc.rekey_ns;
    const EspTransform& before = !fwd && sc.real_rev ? *sc.real_rev : sc.real;
    ev.push_back({ts, 1, 0, fwd, (after ? sc.real_after : before).esp_length(inner)});
  };
  auto stalled = [&](std::int64_t t) -> std::int64_t {
    if (sc.stall_every_ns == 0 || t < kT0 + 1'000'000'000) return t;
    const std::int64_t start = t - (t - kT0) % sc.stall_every_ns;
    if (t >= start + sc.stall_ns) return t;
    return start + sc.stall_ns + (t - start) / 20;  // released in order, 20 times faster
  };
  const auto interval = static_cast<std::int64_t>(1e9 / sc.rate_total);
  const std::uint64_t n = static_cast<std::uint64_t>(sc.duration_ns / interval);
  std::uint64_t seqs[2] = {0, 0};
  std::uint32_t rseq = 0;
  std::int64_t last_fwd_esp = 0;
  std::vector<std::int64_t> rev_esp_of;  // per record
  for (std::uint64_t k = 0; k < n; ++k) {
    const bool icmp = k % 2 == 0;
    const std::int64_t tx = kT0 + static_cast<std::int64_t>(k) * interval;
    const std::uint32_t wire = sc.base + static_cast<std::uint32_t>(k % sc.cycle) * sc.step;
    const std::uint32_t sid = icmp ? 1 : 0x20002;
    const std::uint64_t seq = seqs[icmp ? 0 : 1]++;
    sent.push_back({sid, seq, tx, wire});
    ev.push_back({tx + 5 * kUs, 0, sent.size() - 1});
    // The DC gateway encrypts in the order the probes reach it: a delayed packet delays those
    // behind it (the ESP sequence order is the send order).
    const std::int64_t fwd_esp =
        std::max(stalled(tx + delay(40 * kUs, 300 * kUs, 2500 * kUs)), last_fwd_esp + kUs);
    last_fwd_esp = fwd_esp;
    esp(fwd_esp, true, wire);
    const std::int64_t rx0 = fwd_esp + 8 * kMs + static_cast<std::int64_t>(u(rng) * 400 * kUs);
    const std::int64_t rev_esp = rx0 - delay(20 * kUs, 150 * kUs, 1800 * kUs);
    esp(rev_esp, false, wire);
    rev_esp_of.push_back(rev_esp);
    const std::int64_t rx = std::max(rx0, stalled(rev_esp) + 20 * kUs);
    ProbeRecord r;
    r.target = target.to_string();
    r.proto = icmp ? Proto::Icmp : Proto::Stamp;
    r.session_id = sid;
    r.seq = seq;
    r.tx_ns = tx + 3 * kUs;
    r.tx_kernel_ts = true;
    r.rx_ns = rx;
    r.rtt_ns = rx - r.tx_ns;
    if (!icmp) r.reflector_seq = rseq++;
    recs.push_back(r);
  }
  // ... and decrypts the replies in the order their ESP reaches it: the agent receives them in
  // that order.
  std::vector<std::size_t> by_rev_esp(recs.size());
  for (std::size_t i = 0; i < by_rev_esp.size(); ++i) by_rev_esp[i] = i;
  std::sort(by_rev_esp.begin(), by_rev_esp.end(),
            [&](std::size_t x, std::size_t y) { return rev_esp_of[x] < rev_esp_of[y]; });
  std::int64_t last_rx = 0;
  for (const std::size_t i : by_rev_esp) {
    ProbeRecord& r = recs[i];
    r.rx_ns = std::max(*r.rx_ns, last_rx + kUs);
    last_rx = *r.rx_ns;
    if (sc.rev_hold_every_ns != 0 && *r.rx_ns >= kT0 + 1'000'000'000) {
      const std::int64_t start = *r.rx_ns - (*r.rx_ns - kT0) % sc.rev_hold_every_ns;
      if (*r.rx_ns < start + sc.rev_hold_ns) {
        r.rx_ns = start + sc.rev_hold_ns + static_cast<std::int64_t>(u(rng) * 300 * kUs);
      }
    }
    r.rtt_ns = *r.rx_ns - r.tx_ns;
    ev.push_back({*r.rx_ns + 20 * kUs, 2, i});
  }
  // Other tunnel traffic: ACK-sized (40-60 bytes) and bulk (1000-1400 bytes) packets. (Traffic
  // of the probes' own sizes looks like them once encrypted: it makes the probes it meets in a
  // window unknown, never wrong; attributor_test's look-alike tests cover that.)
  for (int dir = 0; dir < 2; ++dir) {
    const auto noise =
        static_cast<std::uint64_t>(sc.noise_pps * static_cast<double>(sc.duration_ns) / 1e9);
    for (std::uint64_t i = 0; i < noise; ++i) {
      const std::int64_t ts =
          kT0 + static_cast<std::int64_t>(u(rng) * static_cast<double>(sc.duration_ns));
      const bool ack = u(rng) < 0.6;
      esp(ts, dir == 0, static_cast<std::uint32_t>(ack ? 40 + u(rng) * 20 : 1000 + u(rng) * 400));
    }
  }
  if (sc.receiver_tick_ns != 0) {
    // Handed over at the end of their tick, per session (the ESP copies as they come).
    for (Ev& e : ev) {
      if (e.kind == 1) continue;
      const std::uint32_t sid = e.kind == 0 ? sent[e.idx].session_id : recs[e.idx].session_id;
      e.ts = e.ts - (e.ts - kT0) % sc.receiver_tick_ns + sc.receiver_tick_ns + (sid == 1 ? 0 : 1);
    }
  }
  // Records reach the attributor in the order the replies arrived (or the ticks hand them
  // over: stable, so each session's stay in order).
  std::stable_sort(ev.begin(), ev.end(), [](const Ev& x, const Ev& y) { return x.ts < y.ts; });

  Result res;
  std::vector<ProbeRecord> out;
  std::int64_t next_poll = kT0;
  for (const Ev& e : ev) {
    while (next_poll <= e.ts) {
      a.poll(next_poll, out);
      next_poll += kMs;
    }
    if (e.kind == 0) {
      a.on_sent(sent[e.idx]);
    } else if (e.kind == 1) {
      const auto frame = test::ethernet(test::esp_packet(
          e.fwd ? inet.local_endpoint : inet.remote_endpoint,
          e.fwd ? inet.remote_endpoint : inet.local_endpoint, e.fwd ? 0xC1000001u : 0xC2000002u,
          esp_seq[e.fwd ? 0 : 1]++, e.len, sc.udp_encap));
      const auto o = decode_frame(inet, DecodeContext{7, 862}, e.ts, linktype::kEthernet, frame);
      REQUIRE(o);
      REQUIRE(o->udp_encap == sc.udp_encap);
      a.on_observation(1, *o);
    } else {
      a.on_record(recs[e.idx]);
    }
  }
  a.flush(out);
  a.take_notes(res.notes);
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint32_t> wire_of;
  for (const auto& s : sent) wire_of[{s.session_id, s.seq}] = s.wire_bytes;
  for (const ProbeRecord& r : out) {
    if (r.late) continue;
    ++res.probes;
    if (r.fwd_path == "ipsec") {
      ++res.fwd_ipsec;
    } else if (r.fwd_path != "unknown") {
      ++res.fwd_wrong;
    } else {
      ++res.fwd_unknown_by_wire[wire_of[{r.session_id, r.seq}]];
    }
    if (r.rev_path == "ipsec") {
      ++res.rev_ipsec;
    } else if (r.rev_path != "unknown") {
      ++res.rev_wrong;
    }
  }
  res.stats = a.stats();
  res.learned_fwd = a.learned_length(1, Direction::Forward, sc.base);
  res.learned_rev = a.learned_length(1, Direction::Reverse, sc.base);
  return res;
}

EspTransform with_tfc(EspTransform t, std::uint32_t pad) {
  t.tfc_pad_to = pad;
  return t;
}

bool any_note(const Result& r, const std::string& text) {
  return std::any_of(r.notes.begin(), r.notes.end(),
                     [&](const std::string& n) { return n.find(text) != std::string::npos; });
}

}  // namespace

TEST_CASE("esp transform learned at 2000 probes/s for common proposals", "[unit][attributor]") {
  const char* names[] = {"aes-cbc-sha1", "aes-cbc-sha256", "aes-cbc-sha384", "aes-cbc-sha512",
                         "aes-gcm-8",    "aes-gcm-12",     "aes-gcm-16"};
  for (const char* name : names) {
    for (bool udp : {true, false}) {
      // TFC padding (strongSwan tfc_padding) below the probes' sizes pads other traffic only.
      for (std::uint32_t tfc : {0u, 50u}) {
        Scenario sc;
        sc.real = with_tfc(*EspTransform::preset(name), tfc);
        sc.udp_encap = udp;
        sc.seed = static_cast<std::uint32_t>(std::hash<std::string>{}(name)) + (udp ? 1 : 0) + tfc;
        const Result r = run(sc);
        INFO(name << (udp ? " udp-encap" : " esp") << " tfc " << tfc << ": probes " << r.probes
                  << ", fwd ipsec " << r.fwd_ipsec << ", rev ipsec " << r.rev_ipsec << ", learned "
                  << r.stats.taps[1].transform[0] << " / " << r.stats.taps[1].transform[1]);
        REQUIRE(r.probes == 16000);
        CHECK(r.fwd_wrong == 0);
        CHECK(r.rev_wrong == 0);
        CHECK(static_cast<double>(r.fwd_ipsec) >= 0.999 * static_cast<double>(r.probes));
        CHECK(static_cast<double>(r.rev_ipsec) >= 0.999 * static_cast<double>(r.probes));
        CHECK(r.learned_fwd == sc.real.esp_length(sc.base));
        CHECK(r.learned_rev == sc.real.esp_length(sc.base));
        CHECK(r.stats.taps[1].transform_changes == 0);
        CHECK(r.stats.taps[1].silent_warnings == 0);
        CHECK(any_note(r, "forward ESP transform learned"));
      }
    }
  }
}

// TFC padding over the smallest sizes of the cycle: those share one ESP length and are
// ambiguous when several share a window (unknown, never guessed); the sizes above are
// attributed as without padding.
TEST_CASE("esp tfc padding over part of the cycle is learned", "[unit][attributor]") {
  Scenario sc;
  sc.real = with_tfc(*EspTransform::preset("aes-cbc-sha256"), 100);
  const Result r = run(sc);
  INFO("learned " << r.stats.taps[1].transform[0] << " / " << r.stats.taps[1].transform[1]);
  CHECK(r.fwd_wrong == 0);
  CHECK(r.rev_wrong == 0);
  CHECK(r.stats.taps[1].transform[0].find("TFC padding") != std::string::npos);
  // Sizes 72, 88 (padded to 100) and 104 share one length; the 38 others are told apart.
  std::uint64_t unknown_above = 0;
  for (const auto& [wire, count] : r.fwd_unknown_by_wire) {
    if (sc.real.esp_length(wire) != sc.real.esp_length(sc.base)) unknown_above += count;
  }
  CHECK(sc.real.esp_length(104) == sc.real.esp_length(72));
  CHECK(sc.real.esp_length(120) != sc.real.esp_length(72));
  CHECK(static_cast<double>(unknown_above) <=
        0.001 * (38.0 / 41.0) * static_cast<double>(r.probes));
}

// A tunnel carrying other traffic beside the probes (2 000 packets/s each way): windows hold
// ~30 ESP packets, so once a transform is locked the learner learns one window in a stride and
// only counts the others (EspLanes::learn_window's thinning). A rekey to another proposal is still
// re-learned, in both directions, and no probe is attributed wrong meanwhile.
TEST_CASE("esp rekey to another proposal is re-learned from thinned windows",
          "[unit][attributor]") {
  Scenario sc;
  sc.real = *EspTransform::preset("aes-cbc-sha256");
  sc.real_after = *EspTransform::preset("aes-gcm-16");
  sc.rekey_ns = 4'000'000'000;
  sc.duration_ns = 16'000'000'000;
  sc.noise_pps = 2000;
  const Result r = run(sc);
  const auto& t = r.stats.taps[1];
  INFO("probes " << r.probes << ", fwd ipsec " << r.fwd_ipsec << ", rev ipsec " << r.rev_ipsec
                 << ", learned " << t.transform[0] << " / " << t.transform[1] << ", changes "
                 << t.transform_changes << ", windows learned " << t.learn_windows << ", skipped "
                 << t.learn_skipped);
  CHECK(r.fwd_wrong == 0);
  CHECK(r.rev_wrong == 0);
  CHECK(t.learn_skipped > 2 * t.learn_windows);  // thinned: most windows only counted
  CHECK(t.transform_changes >= 1);
  CHECK(any_note(r, "forward ESP transform re-learned, the lengths seen changed: aes-gcm-16"));
  CHECK(t.transform[0] == "aes-gcm-16");
  CHECK(r.learned_fwd == sc.real_after.esp_length(sc.base));
  CHECK(t.transform[1] == "aes-gcm-16");
  // Unknown while the old transform is locked after the rekey, attributed again afterwards.
  // (While the lengths contradict the locked transform, every window is learned and the
  // evidence is halved at every evaluation: ~1.8 s from the rekey to the re-lock here, 3.3 s
  // before.)
  CHECK(static_cast<double>(r.fwd_ipsec) >= 0.85 * static_cast<double>(r.probes));
  CHECK(static_cast<double>(r.rev_ipsec) >= 0.72 * static_cast<double>(r.probes));
}

// Runs `sc` and checks the transform was learned both ways, none wrong, forward >= 99.9 % and
// reverse >= `rev_share` attributed.
Result check_learned_beside_traffic(const Scenario& sc, double rev_share) {
  const Result r = run(sc);
  const auto& t = r.stats.taps[1];
  INFO("probes " << r.probes << ", fwd ipsec " << r.fwd_ipsec << ", rev ipsec " << r.rev_ipsec
                 << ", learned " << t.transform[0] << " / " << t.transform[1]);
  CHECK(r.fwd_wrong == 0);
  CHECK(r.rev_wrong == 0);
  CHECK(r.learned_fwd == sc.real.esp_length(sc.base));
  CHECK(r.learned_rev == sc.real.esp_length(sc.base));
  CHECK(static_cast<double>(r.fwd_ipsec) >= 0.999 * static_cast<double>(r.probes));
  CHECK(static_cast<double>(r.rev_ipsec) >= rev_share * static_cast<double>(r.probes));
  return r;
}

// A tunnel carrying other traffic (2 000 and 5 000 packets/s each way, ACK-sized and bulk), every
// proposal, both directions. A reverse window [rx - 10 ms, rx + 0.2 ms] holds the previous
// probes' replies, so a transform predicting every size's predecessor's length (aes-gcm-12
// against aes-cbc-sha256: 28 + pad4(w + 2) = the CBC length of w - 16) passes the window test
// there, and the ACKs' ESP length (104) supplies the smallest size's predecessor length the
// count test looks for: before the learner preferred the group whose lengths are not background
// ones, the reverse of aes-cbc-sha1/256/512 was never learned (0 attributed) beside 2 000/s.
TEST_CASE("esp transform learned beside heavy other traffic, both directions",
          "[unit][attributor]") {
  const char* names[] = {"aes-cbc-sha1", "aes-cbc-sha256", "aes-cbc-sha384", "aes-cbc-sha512",
                         "aes-gcm-8",    "aes-gcm-12",     "aes-gcm-16",     "null-sha256"};
  for (const char* name : names) {
    for (double noise : {2000.0, 5000.0}) {
      Scenario sc;
      sc.real = *EspTransform::preset(name);
      sc.noise_pps = noise;
      sc.duration_ns = 6'000'000'000;
      sc.seed = static_cast<std::uint32_t>(std::hash<std::string>{}(name)) +
                static_cast<std::uint32_t>(noise);
      INFO(name << " beside " << noise << "/s");
      const Result r = check_learned_beside_traffic(sc, 0.999);
      CHECK(r.stats.taps[1].silent_warnings == 0);
    }
  }
  // 4 000 probes/s: a reverse window then spans the whole cycle, so every probe length is in
  // nearly every window whatever its size; the packets seen per length still tell the probes'
  // lengths (one a probe) from the ACKs'. (The reverse's 1.3 % unknown is the default window at
  // this rate: the same size's previous reply at its edge.)
  for (const char* name : {"aes-cbc-sha1", "aes-cbc-sha256"}) {
    Scenario sc;
    sc.real = *EspTransform::preset(name);
    sc.noise_pps = 3000;
    sc.rate_total = 4000;
    sc.duration_ns = 6'000'000'000;
    INFO(name << " at 4000/s beside 3000/s");
    check_learned_beside_traffic(sc, 0.98);
  }
}

// The documented defaults where they cannot work say so, loudly and again: fixed sizes at a
// rate that puts ten probes of one length in every window.
TEST_CASE("esp tap that attributes nothing warns with the likely cause", "[unit][attributor]") {
  SECTION("window too wide for fixed sizes") {
    Scenario sc;
    sc.real = *EspTransform::preset("aes-gcm-16");
    sc.cycle = 1;
    sc.duration_ns = 12'000'000'000;
    const Result r = run(sc);
    CHECK(r.fwd_wrong == 0);
    CHECK(r.fwd_ipsec == 0);
    CHECK(r.stats.taps[1].silent_warnings >= 2);  // every 5 s while it lasts
    CHECK(any_note(r, "WARNING tap tap-inet (ipsec): attributed nothing in 5 s"));
    CHECK(any_note(r, "still attributed nothing"));
    CHECK(any_note(r, "window too wide for the rate"));
  }
  SECTION("TFC padding over every size") {
    Scenario sc;
    sc.real = with_tfc(*EspTransform::preset("aes-cbc-sha1"), 1400);
    sc.duration_ns = 12'000'000'000;
    const Result r = run(sc);
    CHECK(r.fwd_wrong == 0);
    CHECK(r.fwd_ipsec == 0);
    CHECK(r.stats.taps[1].silent_warnings >= 2);
    CHECK(any_note(r, "TFC padding"));
  }
  SECTION("one direction only: the other attributes") {
    Scenario sc;
    sc.real = *EspTransform::preset("aes-cbc-sha256");
    sc.real_rev = EspTransform{16, 16, 20, 0};  // the reverse SA's: no preset describes it
    sc.duration_ns = 12'000'000'000;
    const Result r = run(sc);
    CHECK(r.fwd_wrong == 0);
    CHECK(r.rev_wrong == 0);
    CHECK(static_cast<double>(r.fwd_ipsec) >= 0.999 * static_cast<double>(r.probes));
    CHECK(r.rev_ipsec == 0);
    CHECK(r.stats.taps[1].silent_warnings >= 2);
    CHECK(any_note(r,
                   "WARNING tap tap-inet (ipsec): reverse direction attributed nothing in 5 s "
                   "although it saw"));
    CHECK(any_note(r,
                   "ESP packets from 203.0.113.10 to 198.51.100.68 (the forward direction "
                   "attributed 10"));
    CHECK(any_note(r, "still reverse direction attributed nothing"));
    CHECK(any_note(r, "no ESP length known for the probes: reverse no candidate transform fits"));
    CHECK_FALSE(any_note(r, "forward direction attributed nothing"));
  }
  SECTION("a transform no candidate describes") {
    Scenario sc;
    sc.real = EspTransform{16, 16, 20, 0};  // a 160-bit ICV: no preset has one
    sc.duration_ns = 12'000'000'000;
    const Result r = run(sc);
    CHECK(r.fwd_wrong == 0);
    CHECK(r.stats.taps[1].silent_warnings >= 2);
    CHECK(any_note(r, "no candidate transform fits the ESP lengths seen"));
  }
}

// A configured transform is used as it is; a learned one that disagrees is counted and said.
TEST_CASE("esp configured transform that the lengths contradict is reported",
          "[unit][attributor]") {
  Scenario sc;
  sc.real = *EspTransform::preset("aes-gcm-16");
  sc.configured = EspTransform::preset("aes-cbc-sha256");
  sc.duration_ns = 2'000'000'000;
  const Result r = run(sc);
  CHECK(r.fwd_wrong == 0);
  CHECK(r.stats.taps[1].length_mismatch == 2);
  CHECK(any_note(r, "not the configured transform"));
}

// A userspace IPsec stalls for 15 ms every 2 s (the lab's blackhole drill: ESP up to 15 ms late,
// replies released in bursts): the window rule leaves those probes unexplained (their packet
// past the window, or another probe of their length in it); the SA's order explains them.
TEST_CASE("esp probes delayed past the window are attributed by the SA's order",
          "[unit][attributor]") {
  Scenario sc;
  sc.real = *EspTransform::preset("aes-cbc-sha256");
  sc.stall_every_ns = 2'000'000'000;
  sc.stall_ns = 15'000'000;
  const Result r = run(sc);
  INFO("fwd ipsec " << r.fwd_ipsec << " rev ipsec " << r.rev_ipsec << " of " << r.probes
                    << ", by order " << r.stats.taps[1].order_rescued << ", by elimination "
                    << r.stats.taps[1].eliminated);
  CHECK(r.fwd_wrong == 0);
  CHECK(r.rev_wrong == 0);
  // (Elimination, its two sides, takes some of them first.)
  CHECK(r.stats.taps[1].order_rescued + r.stats.taps[1].eliminated > 100);
  CHECK(static_cast<double>(r.fwd_ipsec) >= 0.999 * static_cast<double>(r.probes));
  CHECK(static_cast<double>(r.rev_ipsec) >= 0.999 * static_cast<double>(r.probes));
}

// An aes-cbc-sha256 tunnel whose userspace IPsec stalls `stall_ns` every 200 ms (0: never), for
// 4 s.
Scenario stalling(std::int64_t stall_ns) {
  Scenario sc;
  sc.real = *EspTransform::preset("aes-cbc-sha256");
  sc.stall_every_ns = stall_ns != 0 ? 200'000'000 : 0;
  sc.stall_ns = stall_ns;
  sc.duration_ns = 4'000'000'000;
  return sc;
}

// Runs `sc`: none wrong, forward >= 99.9 % and reverse >= `rev_share` attributed.
Result run_attributed(const Scenario& sc, double rev_share) {
  const Result r = run(sc);
  const auto& t = r.stats.taps[1];
  INFO("probes " << r.probes << ", fwd ipsec " << r.fwd_ipsec << ", rev ipsec " << r.rev_ipsec
                 << ", by order " << t.order_rescued << ", by elimination " << t.eliminated);
  CHECK(r.fwd_wrong == 0);
  CHECK(r.rev_wrong == 0);
  CHECK(static_cast<double>(r.fwd_ipsec) >= 0.999 * static_cast<double>(r.probes));
  CHECK(static_cast<double>(r.rev_ipsec) >= rev_share * static_cast<double>(r.probes));
  return r;
}

// 10 000 probes/s, 64 sizes, the window the agent fits to them (0.9 x 6.4 ms), a userspace IPsec
// stalling 20 ms every 200 ms: forward windows then miss their own packet often enough to put
// the locked transform near the fit threshold, and always hold the previous probe's (sent 0.1 ms
// before), which is what aes-gcm-12 predicts against aes-cbc-sha256. Only the smallest size's
// packet count tells them apart: thinning once left that size too few learned windows to be
// judged, and aes-gcm-12 replaced the right transform. The count test now takes every size,
// thinning keeps every size judged, and a lock is only replaced on the whole cycle.
TEST_CASE("esp transform stays learned through stalls at 10 000 probes/s", "[unit][attributor]") {
  Scenario sc = stalling(20'000'000);
  sc.rate_total = 10000;
  sc.cycle = 64;
  sc.window_hi_ns = 5'560'000;
  const Result r = run(sc);
  const auto& t = r.stats.taps[1];
  INFO("probes " << r.probes << ", fwd ipsec " << r.fwd_ipsec << ", rev ipsec " << r.rev_ipsec
                 << ", learned " << t.transform[0] << " / " << t.transform[1] << ", changes "
                 << t.transform_changes);
  CHECK(r.fwd_wrong == 0);
  CHECK(r.rev_wrong == 0);
  CHECK(t.transform[0] == "aes-cbc-sha256");
  CHECK(t.transform[1] == "aes-cbc-sha256");
  CHECK(t.transform_changes == 0);
  CHECK_FALSE(any_note(r, "re-learned"));
  // Forward: the stall's backlog is released into later probes' windows, which claim their
  // predecessors' packets; a span's end is the next unique claim that leaves it consistent
  // (92 % before, 99.7 % now).
  CHECK(static_cast<double>(r.fwd_ipsec) >= 0.995 * static_cast<double>(r.probes));
  // A stall holds 200 replies, released together: their windows share lengths, and the SA's
  // order attributes them, which needs every unexplained probe since the last attributed one
  // remembered (64 once: 87 % reverse here; 1024: 95.6 %) and the span closed by a later
  // unique claim before they are decided (decisions wait for it: 99.99 %).
  CHECK(static_cast<double>(r.rev_ipsec) >= 0.999 * static_cast<double>(r.probes));
  CHECK(t.order_rescued >= 5000);
}

// The default rate and window, a userspace IPsec stalling 50 ms every 200 ms (five times the
// window): probes sent in a stall find nothing in their windows, and the backlog, released at
// once, lands in the windows of the probes sent just before the release, each of which then
// claims one packet of its length that is not its own. The order rule skips such claims (a
// packet before the span, or a span with too few packets of the length) and waits for the span
// to close: every probe is attributed its own packet (forward 80.7 % before; reverse 99.8 %).
TEST_CASE("esp order rule through stalls five windows long", "[unit][attributor]") {
  const auto t = run_attributed(stalling(50'000'000), 0.99).stats.taps[1];
  CHECK(t.order_rescued + t.eliminated >= 3000);
}

// Replies the agent's gateway held and handed over together, not in their ESP order: same-sized
// replies share a reverse window. Deciding in reply order, the earlier reply's packet is
// attributed first; the later one's window then holds that packet and its own, and elimination
// gives it its own. (In this model the order rule would attribute the same probes: elimination
// takes them first, 99.8 % either way. Live, 10 000/s through the lab's IPsec, three pairs of
// runs: reverse 94.5-96.8 % without it, 97.5-98.4 % with it; docs/bench.md, session 15.) What is
// checked here: it fires, and never wrongly.
TEST_CASE("esp elimination attributes replies handed over out of order", "[unit][attributor]") {
  Scenario sc = stalling(0);
  sc.rate_total = 10000;
  sc.cycle = 64;
  sc.window_hi_ns = 5'560'000;
  sc.rev_hold_every_ns = 50'000'000;
  sc.rev_hold_ns = 4'000'000;
  CHECK(run_attributed(sc, 0.99).stats.taps[1].eliminated > 0);
}

// The agent's receiver hands announcements and records over once per tick (5 ms), one session's
// after the other's, so the logs grow out of anchor order; they are put back in order before
// their windows are claimed. At 20 000/s with 64 sizes and the fitted window: unsorted, 50
// forward and 8 reverse probes of 80 000 came out unknown (live through the lab's IPsec,
// reverse 99.2-99.6 %); sorted, the same as handed over one by one in time order.
TEST_CASE("esp probes handed over per receiver tick and session are decided as in time order",
          "[unit][attributor]") {
  Scenario sc = stalling(0);
  sc.rate_total = 20000;
  sc.cycle = 64;
  sc.window_hi_ns = 2'680'000;  // 0.9 x 64 / 20 000/s - 0.2 ms
  const Result at_once = run(sc);
  sc.receiver_tick_ns = 5'000'000;
  const Result per_tick = run(sc);
  INFO("at once: fwd " << at_once.fwd_ipsec << " rev " << at_once.rev_ipsec << "; per tick: fwd "
                       << per_tick.fwd_ipsec << " rev " << per_tick.rev_ipsec << " of "
                       << per_tick.probes);
  CHECK(per_tick.fwd_wrong + per_tick.rev_wrong == 0);
  CHECK(per_tick.probes == at_once.probes);
  CHECK(per_tick.fwd_ipsec == at_once.fwd_ipsec);
  CHECK(per_tick.rev_ipsec == at_once.rev_ipsec);
  CHECK(static_cast<double>(per_tick.rev_ipsec) >= 0.9999 * static_cast<double>(per_tick.probes));
}
