// Privileged integration tests of the probe engine: real sockets in a pair of network
// namespaces, the kernel's ICMP responder and the STAMP reflector on the far side, loss
// injected there with nftables (netem does not exist on this kernel).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "engine/probe_harness.h"
#include "netns/netns.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::NetnsPair;

namespace {

constexpr std::int64_t kSecond = 1'000'000'000;

// Resolves neighbours both ways first, so the first probes are not queued behind ARP/ND. A
// loaded machine can lose the first neighbour solicitation (one CI run: the v6 ping failed
// once): up to 5 tries, each 2 s.
void warm_up(const NetnsPair& pair) {
  const auto ping = [&](const std::string& args) {
    return NetnsPair::exec(
        pair.a(), "for i in 1 2 3 4 5; do ping " + args + " >/dev/null && exit 0; done; exit 1");
  };
  REQUIRE(ping("-c1 -W2 198.18.0.2") == 0);
  REQUIRE(ping("-6 -c1 -W2 fd53::2") == 0);
}

// Every slot of the run is accounted for, every sent sequence has exactly one first record,
// and received records carry sane kernel timestamps.
void check_accounting(const test::EngineRun& run, std::size_t i, std::uint64_t slots) {
  const auto& s = run.summaries[i];
  INFO("session " << i << " sent " << s.counters.sent << " missed " << s.counters.missed_slots);
  REQUIRE(s.counters.sent + s.counters.missed_slots + s.counters.send_errors == slots);
  REQUIRE(s.counters.send_errors == 0);
  REQUIRE(s.counters.received + s.counters.lost == s.counters.sent);
  REQUIRE(s.counters.duplicates == 0);
  REQUIRE(s.counters.late == 0);
  std::uint64_t records = 0;
  for (const auto& r : run.records) {
    if (r.session_id != run.configs[i].session_id) continue;
    ++records;
    REQUIRE(r.seq < s.counters.sent);
    REQUIRE(r.tx_kernel_ts);
    if (r.rx_ns) {
      REQUIRE(r.rtt_ns > 0);
      REQUIRE(r.rtt_ns < 100'000'000);
      REQUIRE(*r.rx_ns - r.tx_ns == r.rtt_ns);
    }
  }
  REQUIRE(records == s.counters.sent);
  REQUIRE(s.counters.no_tx_timestamp == 0);
}

}  // namespace

// ICMP echo over IPv4 and IPv6 to the kernel's responder: every probe answered, sequence
// numbers contiguous, RTTs from kernel timestamps.
TEST_CASE("probe icmp v4 and v6 against the kernel responder", "[privileged][probe]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  auto run = test::run_engine_in(pair.a(),
                                 {test::test_session(NetnsPair::kAddrB4, Proto::Icmp, 0x10001),
                                  test::test_session(NetnsPair::kAddrB6, Proto::Icmp, 0x10002)},
                                 kSecond);
  for (std::size_t i = 0; i < 2; ++i) {
    check_accounting(run, i, 1000);
    REQUIRE(run.summaries[i].counters.lost == 0);
    REQUIRE(run.summaries[i].counters.sent > 800);
    REQUIRE(run.summaries[i].rtt.p50 > 0);
    for (std::uint64_t seq = 0; seq < run.summaries[i].counters.sent; ++seq) {
      REQUIRE(run.of(i, seq).size() == 1);
    }
  }
}

// Dropping every 10th echo request in the far namespace loses exactly those sequences
// (0, 10, 20, ...), on both families.
TEST_CASE("probe icmp loss injection is counted exactly", "[privileged][probe]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  test::nft_in(pair.b(), R"(table inet pst {
  chain in {
    type filter hook input priority 0;
    icmp type echo-request numgen inc mod 10 == 0 drop
    icmpv6 type echo-request numgen inc mod 10 == 0 drop
  }
})");
  auto run = test::run_engine_in(pair.a(),
                                 {test::test_session(NetnsPair::kAddrB4, Proto::Icmp, 0x20001),
                                  test::test_session(NetnsPair::kAddrB6, Proto::Icmp, 0x20002)},
                                 kSecond);
  for (std::size_t i = 0; i < 2; ++i) {
    check_accounting(run, i, 1000);
    const auto sent = run.summaries[i].counters.sent;
    REQUIRE(run.summaries[i].counters.lost == (sent + 9) / 10);
    for (std::uint64_t seq = 0; seq < sent; ++seq) {
      const auto r = run.of(i, seq);
      REQUIRE(r.size() == 1);
      REQUIRE(r[0].rx_ns.has_value() == (seq % 10 != 0));
    }
  }
}

// STAMP to the stateful reflector over IPv4 and IPv6: every probe answered; the reflector's
// sequence, t2 and t3 land in the records and sit between our TX and RX timestamps.
TEST_CASE("probe stamp v4 and v6 against the reflector", "[privileged][probe]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  test::ReflectorInNs reflector(pair.b());
  auto a = test::test_session(NetnsPair::kAddrB4, Proto::Stamp, 0x30001);
  auto b = test::test_session(NetnsPair::kAddrB6, Proto::Stamp, 0x30002);
  a.stamp_port = b.stamp_port = reflector.port();
  auto run = test::run_engine_in(pair.a(), {a, b}, kSecond);
  for (std::size_t i = 0; i < 2; ++i) {
    check_accounting(run, i, 1000);
    REQUIRE(run.summaries[i].counters.lost == 0);
    REQUIRE(run.summaries[i].lost_forward == 0u);
    REQUIRE(run.summaries[i].lost_reverse == 0u);
    for (std::uint64_t seq = 0; seq < run.summaries[i].counters.sent; ++seq) {
      const auto r = run.of(i, seq);
      REQUIRE(r.size() == 1);
      REQUIRE(r[0].reflector_seq == static_cast<std::uint32_t>(seq));
      REQUIRE(r[0].tx_ns <= *r[0].reflector_rx_ns);
      REQUIRE(*r[0].reflector_rx_ns <= *r[0].reflector_tx_ns);
      REQUIRE(*r[0].reflector_tx_ns <= *r[0].rx_ns);
    }
  }
  REQUIRE(reflector.counters().replied ==
          run.summaries[0].counters.sent + run.summaries[1].counters.sent);
}

// Every 10th request dropped on its way into the reflector's namespace and every 7th reply
// dropped on its way back into ours: loss is split exactly into forward and reverse, per
// family. (Replies are dropped on arrival, not in the reflector's output hook, where the drop
// would fail its sendmmsg and be retried.)
TEST_CASE("probe stamp splits injected loss by direction", "[privileged][probe]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  test::ReflectorInNs reflector(pair.b());
  const std::string port = std::to_string(reflector.port());
  const auto rules = [&](const char* dir, int n) {
    return std::string("table inet pst {\n  chain in {\n    type filter hook input priority 0;\n") +
           "    meta nfproto ipv4 udp " + dir + " " + port + " numgen inc mod " +
           std::to_string(n) + " == 0 drop\n" + "    meta nfproto ipv6 udp " + dir + " " + port +
           " numgen inc mod " + std::to_string(n) + " == 0 drop\n  }\n}\n";
  };
  test::nft_in(pair.b(), rules("dport", 10));
  test::nft_in(pair.a(), rules("sport", 7));
  auto a = test::test_session(NetnsPair::kAddrB4, Proto::Stamp, 0x40001);
  auto b = test::test_session(NetnsPair::kAddrB6, Proto::Stamp, 0x40002);
  a.stamp_port = b.stamp_port = reflector.port();
  auto run = test::run_engine_in(pair.a(), {a, b}, kSecond);
  for (std::size_t i = 0; i < 2; ++i) {
    check_accounting(run, i, 1000);
    const auto& s = run.summaries[i];
    const std::uint64_t forward = (s.counters.sent + 9) / 10;  // requests 0, 10, 20, ...
    const std::uint64_t reached = s.counters.sent - forward;   // replies 0..reached-1
    std::uint64_t reverse = (reached + 6) / 7;                 // replies 0, 7, 14, ...
    // A reply dropped after the last one that arrives leaves no gap to see: it counts forward.
    const bool last_dropped = (reached - 1) % 7 == 0;
    std::string lost_seqs;
    for (const auto& r : run.records) {
      if (r.session_id == run.configs[i].session_id && !r.rx_ns && lost_seqs.size() < 400) {
        lost_seqs += std::to_string(r.seq) + " ";
      }
    }
    INFO("session " << i << " sent " << s.counters.sent << " reached " << reached << " lost "
                    << lost_seqs);
    REQUIRE(s.counters.lost == forward + reverse);
    if (last_dropped) --reverse;
    REQUIRE(s.lost_reverse == reverse);
    REQUIRE(s.lost_forward == s.counters.lost - reverse);
    // Received probes carry the reflector's own count of requests it saw.
    for (std::uint64_t seq = 0; seq < s.counters.sent; ++seq) {
      const auto r = run.of(i, seq);
      REQUIRE(r.size() == 1);
      if (r[0].rx_ns) REQUIRE(*r[0].reflector_seq == seq - seq / 10 - 1);
    }
  }
}

// Sessions bound to a source address and an interface send from that address with their
// DSCP, as the far side's nftables counters see them.
TEST_CASE("probe source address and interface and dscp", "[privileged][probe]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  REQUIRE(NetnsPair::exec(pair.a(), "ip addr add 198.18.0.11/24 dev va") == 0);
  REQUIRE(NetnsPair::exec(pair.a(), "ip addr add fd53::11/64 dev va nodad") == 0);
  warm_up(pair);
  test::nft_in(pair.b(), R"(table inet pst {
  counter v4 { }
  counter v6 { }
  chain in {
    type filter hook input priority 0;
    ip saddr 198.18.0.11 ip dscp 46 icmp type echo-request counter name v4
    ip6 saddr fd53::11 ip6 dscp 34 icmpv6 type echo-request counter name v6
  }
})");
  auto a = test::test_session(NetnsPair::kAddrB4, Proto::Icmp, 0x50001);
  a.source = IpAddress::parse("198.18.0.11");
  a.dscp = 46;
  a.interface = "va";
  auto b = test::test_session(NetnsPair::kAddrB6, Proto::Icmp, 0x50002);
  b.source = IpAddress::parse("fd53::11");
  b.dscp = 34;
  auto run = test::run_engine_in(pair.a(), {a, b}, kSecond / 5);
  for (std::size_t i = 0; i < 2; ++i) {
    check_accounting(run, i, 200);
    REQUIRE(run.summaries[i].counters.lost == 0);
  }
  const auto count = [&](const char* name) {
    return NetnsPair::exec(
        pair.b(), std::string("nft list counter inet pst ") + name + " | grep -q \"packets " +
                      std::to_string(run.summaries[name[1] == '4' ? 0 : 1].counters.sent) + " \"");
  };
  REQUIRE(count("v4") == 0);
  REQUIRE(count("v6") == 0);
}

// Unprivileged ping sockets (SOCK_DGRAM/IPPROTO_ICMP) work the same, on both families.
TEST_CASE("probe icmp over ping sockets", "[privileged][probe]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  REQUIRE(NetnsPair::exec(pair.a(), "sysctl -qw net.ipv4.ping_group_range=\"0 2147483647\"") == 0);
  auto run = test::run_engine_in(pair.a(),
                                 {test::test_session(NetnsPair::kAddrB4, Proto::Icmp, 0x60001),
                                  test::test_session(NetnsPair::kAddrB6, Proto::Icmp, 0x60002)},
                                 kSecond / 2, io::IcmpSocketMode::Dgram);
  for (std::size_t i = 0; i < 2; ++i) {
    check_accounting(run, i, 500);
    REQUIRE(run.summaries[i].counters.lost == 0);
  }
}
