#include "pathsentry/probe/capture/echo.h"

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "capture/pcap_builder.h"
#include "pathsentry/probe/capture/packet_source.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::addr;
using pathsentry::test::Bytes;

namespace {

/// A plain ping (iputils: 8 bytes of time and 48 of pattern), not our payload.
Bytes ping(const char* src, const char* dst, std::uint8_t type, std::uint16_t id,
           std::uint16_t seq) {
  Bytes icmp(8 + 56, 0xA5);
  icmp[0] = type;
  icmp[1] = 0;
  icmp[2] = 0;
  icmp[3] = 0;
  icmp[4] = static_cast<std::uint8_t>(id >> 8);
  icmp[5] = static_cast<std::uint8_t>(id & 0xFF);
  icmp[6] = static_cast<std::uint8_t>(seq >> 8);
  icmp[7] = static_cast<std::uint8_t>(seq & 0xFF);
  const IpAddress s = addr(src);
  return test::ip_packet(s, addr(dst), s.family == AF_INET6 ? 58 : 1, icmp);
}

}  // namespace

TEST_CASE("decode_echo: third-party echo requests and replies", "[unit][capture]") {
  const Bytes req = test::ethernet(ping("100.96.0.5", "10.1.0.2", 8, 0x1234, 7), 100);
  const auto r = decode_echo(42, linktype::kEthernet, req);
  REQUIRE(r);
  CHECK(r->ts_ns == 42);
  CHECK(r->src.to_string() == "100.96.0.5");
  CHECK(r->dst.to_string() == "10.1.0.2");
  CHECK(r->request);
  CHECK(r->id == 0x1234);
  CHECK(r->seq == 7);

  const Bytes rep = test::linux_sll(ping("10.1.0.2", "100.96.0.5", 0, 0x1234, 7));
  const auto a = decode_echo(43, linktype::kLinuxSll, rep);
  REQUIRE(a);
  CHECK_FALSE(a->request);
  CHECK(a->src.to_string() == "10.1.0.2");
  CHECK(a->id == 0x1234);

  const Bytes v6 = test::ethernet(ping("2001:db8::5", "2001:db8::2", 128, 9, 1));
  const auto b = decode_echo(44, linktype::kEthernet, v6);
  REQUIRE(b);
  CHECK(b->request);
  CHECK(b->id == 9);
}

TEST_CASE("decode_echo: anything else is not an echo", "[unit][capture]") {
  const Bytes unreach = test::ethernet(ping("10.1.0.2", "100.96.0.5", 3, 1, 1));
  CHECK_FALSE(decode_echo(1, linktype::kEthernet, unreach));
  const std::vector<std::uint8_t> payload(20, 0);
  const Bytes udp =
      test::ethernet(test::udp_packet(addr("100.96.0.5"), addr("10.1.0.2"), 1000, 862, payload));
  CHECK_FALSE(decode_echo(1, linktype::kEthernet, udp));
  Bytes cut = test::ethernet(ping("100.96.0.5", "10.1.0.2", 8, 1, 1));
  cut.resize(14 + 20 + 4);  // the ICMP header cut short
  CHECK_FALSE(decode_echo(1, linktype::kEthernet, cut));
  CHECK_FALSE(decode_echo(1, linktype::kEthernet, std::vector<std::uint8_t>{}));
}
