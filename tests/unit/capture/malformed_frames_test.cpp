// decode_frame against the malformed and unusual frames the review found untested (issue 13):
// IPv6 extension-header chains (long, over-long, more than 8, a fragment header), IPv4 options
// and total lengths below the header, double VLAN tags, SLL2 and DLT_NULL captures, and UDP
// lengths that disagree with the IP length. fuzz/decode_frame_fuzz.cpp explores the rest.
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <utility>
#include <vector>

#include "capture/pcap_builder.h"
#include "capture/tap_fixtures.h"
#include "pathsentry/probe/capture/tap.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::addr;
using pathsentry::test::Bytes;
using namespace pathsentry::test::tap_fixtures;

namespace {

constexpr std::uint8_t kHopByHop = 0;
constexpr std::uint8_t kRouting = 43;
constexpr std::uint8_t kFragment = 44;
constexpr std::uint8_t kDestOpts = 60;

tl::expected<Observation, DropReason> dec(const Bytes& frame, int link = linktype::kEthernet) {
  return decode_frame(clear_tap(), ctx(), kT0, link, frame);
}

Bytes icmp6_probe() {
  return test::icmp_probe(addr("fd00::188"), addr("fd01::161"), true, kAgent, 7, 70, 1);
}
Bytes icmp4_probe() {
  return test::icmp_probe(addr("172.16.1.188"), addr("192.168.20.161"), true, kAgent, 7, 70, 1);
}

void put16(Bytes& b, std::size_t at, std::size_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}

// `ip` (an IPv6 packet) with extension headers inserted after its fixed header: each a type and
// its length in 8-octet units beyond the first 8 (the Hdr Ext Len field).
Bytes with_ext(Bytes ip, const std::vector<std::pair<std::uint8_t, std::uint8_t>>& chain) {
  Bytes ext;
  std::uint8_t next = ip[6];
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    Bytes h((static_cast<std::size_t>(it->second) + 1) * 8, 0);
    h[0] = next;
    h[1] = it->second;
    if (it->first == kFragment) h[1] = 0;  // the fragment header's second byte is reserved
    h.insert(h.end(), ext.begin(), ext.end());
    ext = std::move(h);
    next = it->first;
  }
  ip[6] = next;
  ip.insert(ip.begin() + 40, ext.begin(), ext.end());
  put16(ip, 4, ip.size() - 40);
  return ip;
}

// `ip` (an IPv4 packet) with `words` 32-bit words of options (NOPs) after its fixed header.
Bytes with_options(Bytes ip, std::size_t words) {
  ip.insert(ip.begin() + 20, words * 4, std::uint8_t{1});
  ip[0] = static_cast<std::uint8_t>(0x40 | (5 + words));
  put16(ip, 2, ip.size());
  return ip;
}

}  // namespace

TEST_CASE("malformed: IPv6 extension-header chains", "[unit][tap]") {
  SECTION("hop-by-hop, routing and destination options are skipped") {
    const auto o = dec(
        test::ethernet(with_ext(icmp6_probe(), {{kHopByHop, 0}, {kRouting, 2}, {kDestOpts, 1}})));
    REQUIRE(o);
    CHECK(o->seq == 70);
    CHECK(o->target == addr("fd01::161"));
  }
  SECTION("eight headers are followed, a ninth is not") {
    const std::vector<std::pair<std::uint8_t, std::uint8_t>> eight(8, {kDestOpts, 0});
    REQUIRE(dec(test::ethernet(with_ext(icmp6_probe(), eight))));
    auto nine = eight;
    nine.emplace_back(kDestOpts, 0);
    CHECK(dec(test::ethernet(with_ext(icmp6_probe(), nine))).error() == DropReason::NotProbe);
  }
  SECTION("a header longer than the payload length is a bad header") {
    Bytes ip = with_ext(icmp6_probe(), {{kHopByHop, 0}});
    ip[41] = 200;  // 1608 bytes claimed in a packet of ~90
    CHECK(dec(test::ethernet(ip)).error() == DropReason::BadIpHeader);
    Bytes all_ext = with_ext(icmp6_probe(), {{kDestOpts, 0}});
    put16(all_ext, 4, 8);  // the payload length ends with the header: nothing after it
    CHECK(dec(test::ethernet(all_ext)).error() == DropReason::Truncated);
  }
  SECTION("a chain cut by the capture is truncated") {
    const Bytes ip = with_ext(icmp6_probe(), {{kHopByHop, 0}, {kDestOpts, 4}});
    const Bytes cut(ip.begin(), ip.begin() + 40 + 8 + 1);  // the second header's first byte
    CHECK(dec(test::ethernet(cut)).error() == DropReason::Truncated);
  }
  SECTION("a fragment header, first or after others, is a fragment") {
    CHECK(dec(test::ethernet(with_ext(icmp6_probe(), {{kFragment, 0}}))).error() ==
          DropReason::Fragment);
    CHECK(dec(test::ethernet(with_ext(icmp6_probe(), {{kHopByHop, 0}, {kFragment, 0}}))).error() ==
          DropReason::Fragment);
  }
}

TEST_CASE("malformed: IPv4 options and total length", "[unit][tap]") {
  SECTION("options (IHL > 5) are skipped, up to the longest header") {
    for (const std::size_t words : {1u, 3u, 10u}) {
      INFO(words << " words of options");
      const auto o = dec(test::ethernet(with_options(icmp4_probe(), words)));
      REQUIRE(o);
      CHECK(o->seq == 70);
    }
    const Bytes st =
        test::stamp_request(addr("172.16.1.188"), addr("192.168.20.161"), 40000, 862, 9, 2);
    const auto o = dec(test::ethernet(with_options(st, 10)));
    REQUIRE(o);
    CHECK(o->kind == ObsKind::Stamp);
    CHECK(o->seq == 9);
  }
  SECTION("a header cut by the capture is truncated") {
    const Bytes ip = with_options(icmp4_probe(), 10);
    CHECK(dec(Bytes(ip.begin(), ip.begin() + 30), linktype::kRaw).error() == DropReason::Truncated);
  }
  SECTION("a total length below the header length is a bad header") {
    Bytes ip = with_options(icmp4_probe(), 1);
    put16(ip, 2, 20);  // below IHL 6 = 24
    CHECK(dec(test::ethernet(ip)).error() == DropReason::BadIpHeader);
    Bytes plain = icmp4_probe();
    put16(plain, 2, 10);
    CHECK(dec(test::ethernet(plain)).error() == DropReason::BadIpHeader);
  }
  SECTION("a total length equal to the header leaves nothing to decode") {
    Bytes ip = icmp4_probe();
    put16(ip, 2, 20);
    CHECK(dec(test::ethernet(ip)).error() == DropReason::Truncated);
  }
}

TEST_CASE("malformed: link layers", "[unit][tap]") {
  const Bytes ip = icmp4_probe();
  SECTION("double VLAN (802.1ad then 802.1Q) decodes, a third tag is not followed") {
    for (const std::uint16_t outer : {0x88A8, 0x9100, 0x8100}) {
      Bytes f = test::ethernet(ip, 100);  // one 802.1Q tag at 12..15
      const std::uint8_t tag[4] = {static_cast<std::uint8_t>(outer >> 8),
                                   static_cast<std::uint8_t>(outer), 0x00, 0x0A};
      f.insert(f.begin() + 12, tag, tag + 4);
      const auto o = dec(f);
      REQUIRE(o);
      CHECK(o->seq == 70);
      f.insert(f.begin() + 12, tag, tag + 4);
      CHECK(dec(f).error() == DropReason::NotIp);
    }
    Bytes cut = test::ethernet(ip, 100);
    cut.resize(16);  // the tag, then no room for its EtherType
    CHECK(dec(cut).error() == DropReason::Truncated);
  }
  SECTION("SLL2: the protocol first, a 20-byte header") {
    Bytes f(20, 0);
    f[0] = 0x08;  // IPv4
    f.insert(f.end(), ip.begin(), ip.end());
    const auto o = dec(f, linktype::kLinuxSll2);
    REQUIRE(o);
    CHECK(o->seq == 70);
    Bytes v6(20, 0);
    v6[0] = 0x86;
    v6[1] = 0xDD;
    const Bytes p6 = icmp6_probe();
    v6.insert(v6.end(), p6.begin(), p6.end());
    REQUIRE(dec(v6, linktype::kLinuxSll2));
    CHECK(dec(Bytes(f.begin(), f.begin() + 19), linktype::kLinuxSll2).error() ==
          DropReason::Truncated);
    f[0] = 0x08;
    f[1] = 0x06;  // ARP
    CHECK(dec(f, linktype::kLinuxSll2).error() == DropReason::NotIp);
  }
  SECTION("DLT_NULL: the host-order address family of each system") {
    const auto null_frame = [](std::uint32_t family, const Bytes& p) {
      Bytes f(4);
      std::memcpy(f.data(), &family, 4);
      f.insert(f.end(), p.begin(), p.end());
      return f;
    };
    REQUIRE(dec(null_frame(AF_INET, ip), linktype::kNull));
    for (const std::uint32_t inet6 : {10u, 24u, 28u, 30u}) {
      INFO("AF_INET6 = " << inet6);
      CHECK(dec(null_frame(inet6, icmp6_probe()), linktype::kNull));
    }
    CHECK(dec(null_frame(7, ip), linktype::kNull).error() == DropReason::NotIp);
    CHECK(dec(Bytes{2, 0, 0}, linktype::kNull).error() == DropReason::Truncated);
  }
}

TEST_CASE("malformed: UDP length against the IP length", "[unit][tap]") {
  const Bytes st =
      test::stamp_request(addr("172.16.1.188"), addr("192.168.20.161"), 40000, 862, 9, 2);
  REQUIRE(dec(test::ethernet(st)));
  SECTION("above the IP length: a bad header") {
    Bytes b = st;
    put16(b, 20 + 4, st.size() - 20 + 1);
    CHECK(dec(test::ethernet(b)).error() == DropReason::BadIpHeader);
    put16(b, 20 + 4, 0xFFFF);
    CHECK(dec(test::ethernet(b)).error() == DropReason::BadIpHeader);
  }
  SECTION("below a UDP header: a bad header") {
    Bytes b = st;
    put16(b, 20 + 4, 7);
    CHECK(dec(test::ethernet(b)).error() == DropReason::BadIpHeader);
  }
  SECTION("below the IP length (trailing bytes): the UDP length rules") {
    Bytes b = st;
    b.insert(b.end(), 16, std::uint8_t{0xEE});  // bytes after the datagram, inside the IP packet
    put16(b, 2, b.size());
    const auto o = dec(test::ethernet(b));
    REQUIRE(o);
    CHECK(o->seq == 9);
    put16(b, 20 + 4, 8 + 40);  // shorter than a STAMP packet now, whatever follows it
    CHECK(dec(test::ethernet(b)).error() == DropReason::NotProbe);
  }
}
