#include <catch2/catch.hpp>
#include <map>
#include <vector>

#include "attribution/attributor_world.h"
#include "pathsentry/probe/attribution/attributor.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace pathsentry::test::attributor_world;

// Clear-tap probes (ICMP and STAMP) are matched exactly in both directions, from pcap files.
TEST_CASE("attribution of clear probes from pcap", "[integration][attributor]") {
  World w;
  for (std::uint64_t i = 0; i < 20; ++i) {
    // Dense on purpose (0.2 ms apart): exact matching does not care about spacing.
    w.add({Proto::Icmp, i, kT0 + static_cast<std::int64_t>(i) * 200 * kUs, Via::Ec, Via::Ec});
    w.add({Proto::Stamp, i, kT0 + static_cast<std::int64_t>(i) * 200 * kUs + 50 * kUs, Via::Ec,
           Via::Ec});
  }
  auto a = w.make();
  const auto m = w.run_pcap(*a);
  REQUIRE(m.size() == 40);
  for (const auto& [k, r] : m) {
    INFO("session " << k.first << " seq " << k.second);
    CHECK(r.fwd_path == "express-connect");
    CHECK(r.rev_path == "express-connect");
    CHECK(r.rx_ns.has_value());
  }
  CHECK(a->stats().taps[0].matched == 80);
  CHECK(a->stats().taps[0].unmatched == 0);
  // STAMP records keep the reflector's timestamps.
  CHECK(m.at({w.stamp.session_id, 3}).reflector_seq == 3u);
}

// ESP probes alone in the tunnel are attributed to the IPsec path both ways, from pcap files.
TEST_CASE("attribution of esp probes without other traffic", "[integration][attributor]") {
  World w;
  for (std::uint64_t i = 0; i < 30; ++i) {
    w.add({Proto::Icmp, i, kT0 + static_cast<std::int64_t>(i) * 10 * kMs, Via::Ipsec, Via::Ipsec});
    w.add({Proto::Stamp, i, kT0 + static_cast<std::int64_t>(i) * 10 * kMs + 5 * kMs, Via::Ipsec,
           Via::Ipsec});
  }
  auto a = w.make();
  const auto m = w.run_pcap(*a);
  REQUIRE(m.size() == 60);
  for (const auto& [k, r] : m) {
    INFO("session " << k.first << " seq " << k.second);
    CHECK(r.fwd_path == "ipsec");
    CHECK(r.rev_path == "ipsec");
  }
  CHECK(a->stats().taps[1].matched == 120);
  CHECK(a->stats().taps[1].unmatched == 0);
  CHECK(a->stats().taps[1].ambiguous == 0);
  for (const auto& d : a->stats().taps[1].delay) {  // every packet 400 us from its probe
    CHECK(d.count == 60);
    CHECK(d.min_ns == 400 * kUs);
    CHECK(d.max_ns == 400 * kUs);
    CHECK(d.sum_ns == 60 * 400 * kUs);
    CHECK(d.near_hi == 0);
  }
}

// Other tunnel traffic of other lengths does not disturb attribution and is counted unmatched.
TEST_CASE("attribution of esp probes among other tunnel traffic", "[integration][attributor]") {
  World w;
  for (std::uint64_t i = 0; i < 30; ++i) {
    const std::int64_t t = kT0 + static_cast<std::int64_t>(i) * 10 * kMs;
    w.add({Proto::Icmp, i, t, Via::Ipsec, Via::Ipsec});
    // Busy tunnel: bulk packets right inside every window, in both directions.
    w.esp(t + 300 * kUs, Direction::Forward, 1400);
    w.esp(t + 500 * kUs, Direction::Forward, 120 + 16);
    w.esp(t + 8 * kMs - 300 * kUs, Direction::Reverse, 60);
  }
  auto a = w.make();
  const auto m = w.run_pcap(*a);
  REQUIRE(m.size() == 30);
  for (const auto& [k, r] : m) {
    INFO("seq " << k.second);
    CHECK(r.fwd_path == "ipsec");
    CHECK(r.rev_path == "ipsec");
  }
  CHECK(a->stats().taps[1].matched == 60);
  CHECK(a->stats().taps[1].unmatched == 90);
}

// Truncated and garbage frames in the captures are counted and change no attribution.
TEST_CASE("attribution survives truncated and garbage frames", "[integration][attributor]") {
  World w;
  for (std::uint64_t i = 0; i < 10; ++i) {
    const std::int64_t t = kT0 + static_cast<std::int64_t>(i) * 10 * kMs;
    w.add({Proto::Icmp, i, t, i % 2 == 0 ? Via::Ec : Via::Ipsec, Via::Ec});
  }
  // Cut copies of real frames and plain junk, interleaved with the real captures.
  std::vector<Bytes> junk_ec;
  std::vector<Bytes> junk_inet;
  for (const auto& [ts, f] : w.frames[0]) junk_ec.emplace_back(f.begin(), f.begin() + 40);
  for (const auto& [ts, f] : w.frames[1]) junk_inet.emplace_back(f.begin(), f.begin() + 45);
  junk_ec.push_back(Bytes(3, 0xFF));
  junk_inet.push_back(Bytes(300, 0x45));
  auto a = w.make();
  const auto m = w.run_pcap(*a, junk_ec, junk_inet);
  for (std::uint64_t i = 0; i < 10; ++i) {
    INFO("seq " << i);
    CHECK(paths(m, 1, i) == P{i % 2 == 0 ? "express-connect" : "ipsec", "express-connect"});
  }
  const auto& ec_stats = w.taps[0].stats();
  const auto& inet_stats = w.taps[1].stats();
  CHECK(ec_stats.decoded == w.frames[0].size());
  CHECK(ec_stats.dropped[static_cast<std::size_t>(DropReason::Truncated)] ==
        w.frames[0].size() + 1);
  CHECK(inet_stats.decoded == w.frames[1].size());
  CHECK(inet_stats.frames == 2 * w.frames[1].size() + 1);
  CHECK(inet_stats.dropped[static_cast<std::size_t>(DropReason::NotIp)] == 1);
}
