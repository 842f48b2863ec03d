#include "pathsentry/probe/capture/tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <tins/ethernetII.h>
#include <tins/icmp.h>
#include <tins/ip.h>
#include <tins/rawpdu.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <random>
#include <vector>

#include "capture/pcap_builder.h"
#include "capture/tap_fixtures.h"
#include "pathsentry/probe/wire/icmp_payload.h"
#include "pathsentry/probe/wire/stamp.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::addr;
using pathsentry::test::Bytes;
using namespace pathsentry::test::tap_fixtures;

namespace {

tl::expected<Observation, DropReason> dec(const TapSpec& t, const Bytes& frame,
                                          int link = linktype::kEthernet) {
  return decode_frame(t, ctx(), kT0, link, frame);
}

}  // namespace

// ESP lengths follow RFC 4303 arithmetic for GCM (4-byte alignment) and CBC (16-byte blocks).
TEST_CASE("esp transform computes encrypted lengths", "[unit][tap]") {
  const auto gcm = EspTransform::preset("aes-gcm-16");
  REQUIRE(gcm);
  // 84-byte inner packet: 8 (SPI+seq) + 8 (IV) + pad(84 + 2 → 88) + 16 (ICV).
  CHECK(gcm->esp_length(84) == 120);
  CHECK(gcm->esp_length(86) == 120);
  CHECK(gcm->esp_length(87) == 124);
  const auto cbc = EspTransform::preset("aes-cbc-sha1");
  REQUIRE(cbc);
  // 8 + 16 (IV) + pad(84 + 2 → 96) + 12 (HMAC-SHA1-96).
  CHECK(cbc->esp_length(84) == 132);
  CHECK(cbc->esp_length(94) == 132);
  CHECK(cbc->esp_length(95) == 148);
  EspTransform tfc = *gcm;
  tfc.tfc_pad_to = 200;
  CHECK(tfc.esp_length(84) == gcm->esp_length(200));
  CHECK_FALSE(EspTransform::preset("rot13"));
}

// An ICMP echo request/reply with our payload decodes to identity, sequence and direction.
TEST_CASE("decode icmp probe both directions", "[unit][tap]") {
  const auto agent = addr("172.16.1.188");
  const auto target = addr("192.168.20.161");
  const auto req = dec(clear_tap(), test::ethernet(test::icmp_probe(agent, target, true, kAgent,
                                                                    0x10002, 0x1'0000'0005, 42)));
  REQUIRE(req);
  CHECK(req->kind == ObsKind::Icmp);
  CHECK(req->dir == Direction::Forward);
  CHECK(req->target == target);
  CHECK(req->session_id == 0x10002);
  CHECK(req->seq == 0x1'0000'0005);
  CHECK(req->ts_ns == kT0);
  const auto rep =
      dec(clear_tap(),
          test::ethernet(test::icmp_probe(target, agent, false, kAgent, 0x10002, 7, 42, 200)));
  REQUIRE(rep);
  CHECK(rep->dir == Direction::Reverse);
  CHECK(rep->target == target);
  CHECK(rep->seq == 7);
}

// ICMPv6 echo replies decode like IPv4 ones.
TEST_CASE("decode icmpv6 probe", "[unit][tap]") {
  const auto agent = addr("fd00::188");
  const auto target = addr("fd01::161");
  const auto rep =
      dec(clear_tap(), test::ethernet(test::icmp_probe(target, agent, false, kAgent, 3, 9, 1)));
  REQUIRE(rep);
  CHECK(rep->dir == Direction::Reverse);
  CHECK(rep->target == target);
  CHECK(rep->session_id == 3);
  CHECK(rep->seq == 9);
}

// STAMP requests (to the port) and replies (from it) give sender seq, SSID and reflector seq.
TEST_CASE("decode stamp probe both directions", "[unit][tap]") {
  const auto agent = addr("172.16.1.188");
  const auto target = addr("192.168.20.161");
  const auto req =
      dec(clear_tap(),
          test::ethernet(test::stamp_request(agent, target, 40000, 862, 0xDEADBEEF, 0x0002, 120)));
  REQUIRE(req);
  CHECK(req->kind == ObsKind::Stamp);
  CHECK(req->dir == Direction::Forward);
  CHECK(req->target == target);
  CHECK(req->seq == 0xDEADBEEF);
  CHECK(req->ssid == 2);
  const auto rep =
      dec(clear_tap(), test::ethernet(test::stamp_reply(target, agent, 862, 40000, 77, 1234, 2)));
  REQUIRE(rep);
  CHECK(rep->dir == Direction::Reverse);
  CHECK(rep->target == target);
  CHECK(rep->seq == 1234);
  CHECK(rep->reflector_seq == 77);
  CHECK(rep->ssid == 2);
}

// ESP (protocol 50 and UDP 4500) gives SPI, sequence, wire ESP length and the direction.
TEST_CASE("decode esp both encapsulations", "[unit][tap]") {
  const auto t = esp_tap();
  SECTION("protocol 50 forward") {
    const auto o = dec(t, test::ethernet(test::esp_packet(t.local_endpoint, t.remote_endpoint,
                                                          0xC0FFEE01, 5, 120, false)));
    REQUIRE(o);
    CHECK(o->kind == ObsKind::Esp);
    CHECK(o->dir == Direction::Forward);
    CHECK(o->spi == 0xC0FFEE01);
    CHECK(o->esp_seq == 5);
    CHECK(o->esp_len == 120);
    CHECK_FALSE(o->udp_encap);
  }
  SECTION("udp 4500 reverse") {
    const auto o = dec(t, test::ethernet(test::esp_packet(t.remote_endpoint, t.local_endpoint,
                                                          0xC0FFEE02, 6, 136, true)));
    REQUIRE(o);
    CHECK(o->dir == Direction::Reverse);
    CHECK(o->spi == 0xC0FFEE02);
    CHECK(o->esp_len == 136);
    CHECK(o->udp_encap);
  }
  SECTION("length comes from the headers when the snap length cut the frame") {
    auto f = test::ethernet(
        test::esp_packet(t.local_endpoint, t.remote_endpoint, 0xC0FFEE01, 5, 1400, true));
    f.resize(14 + 20 + 8 + 8);
    const auto o = dec(t, f);
    REQUIRE(o);
    CHECK(o->esp_len == 1400);
  }
}

// IKE and NAT keepalives on UDP 4500 are counted as such, never as ESP.
TEST_CASE("decode skips ike and keepalives", "[unit][tap]") {
  const auto t = esp_tap();
  CHECK(dec(t, test::ethernet(test::ike_packet(t.local_endpoint, t.remote_endpoint))).error() ==
        DropReason::Ike);
  const std::uint8_t ka[1] = {0xFF};
  CHECK(
      dec(t, test::ethernet(test::udp_packet(t.remote_endpoint, t.local_endpoint, 4500, 4500, ka)))
          .error() == DropReason::Ike);
}

// Traffic that is not for this tap is dropped with the reason that says why.
TEST_CASE("decode drop reasons", "[unit][tap]") {
  const auto agent = addr("172.16.1.188");
  const auto target = addr("192.168.20.161");
  const auto e = esp_tap();
  SECTION("esp between other hosts") {
    CHECK(dec(e, test::ethernet(test::esp_packet(agent, target, 1, 1, 100, false))).error() ==
          DropReason::WrongEndpoints);
  }
  SECTION("probe on an esp tap, esp on a clear tap") {
    CHECK(dec(e, test::ethernet(test::icmp_probe(agent, target, true, kAgent, 1, 1, 1))).error() ==
          DropReason::WrongEncap);
    CHECK(dec(clear_tap(), test::ethernet(test::esp_packet(e.local_endpoint, e.remote_endpoint, 1,
                                                           1, 100, false)))
              .error() == DropReason::WrongEncap);
  }
  SECTION("another agent's probe") {
    CHECK(
        dec(clear_tap(), test::ethernet(test::icmp_probe(agent, target, true, kAgent + 1, 1, 1, 1)))
            .error() == DropReason::ForeignProbe);
  }
  SECTION("plain ping without our payload") {
    Bytes icmp(8 + 56, 0xAB);
    icmp[0] = 8;
    icmp[1] = 0;
    CHECK(dec(clear_tap(), test::ethernet(test::ip_packet(agent, target, 1, icmp))).error() ==
          DropReason::NotProbe);
  }
  SECTION("other udp and tcp") {
    const std::uint8_t dns[12] = {};
    CHECK(
        dec(clear_tap(), test::ethernet(test::udp_packet(agent, target, 5353, 53, dns))).error() ==
        DropReason::NotProbe);
    const Bytes tcp(20, 0);
    CHECK(dec(clear_tap(), test::ethernet(test::ip_packet(agent, target, 6, tcp))).error() ==
          DropReason::NotProbe);
  }
  SECTION("arp") {
    Bytes arp = test::ethernet(Bytes(28, 0));
    arp[12] = 0x08;
    arp[13] = 0x06;
    CHECK(dec(clear_tap(), arp).error() == DropReason::NotIp);
  }
  SECTION("fragment") {
    const auto frag = test::ip_packet(agent, target, 1, Bytes(64, 0), 0x2000);  // MF set
    CHECK(dec(clear_tap(), test::ethernet(frag)).error() == DropReason::Fragment);
  }
  SECTION("bad ipv4 header length") {
    auto p = test::icmp_probe(agent, target, true, kAgent, 1, 1, 1);
    p[0] = 0x44;  // IHL 4 words < 20 bytes
    CHECK(dec(clear_tap(), test::ethernet(p)).error() == DropReason::BadIpHeader);
  }
  SECTION("unknown link type") {
    CHECK(dec(clear_tap(), Bytes(64, 0), 147).error() == DropReason::UnsupportedLink);
  }
  SECTION("stamp shorter than a STAMP packet") {
    const std::uint8_t shorty[20] = {};
    CHECK(dec(clear_tap(), test::ethernet(test::udp_packet(agent, target, 40000, 862, shorty)))
              .error() == DropReason::NotProbe);
  }
}

// Every strict prefix of a probe frame is reported as truncated, never decoded or misread.
TEST_CASE("decode truncated frames", "[unit][tap]") {
  const auto agent = addr("172.16.1.188");
  const auto target = addr("192.168.20.161");
  const auto e = esp_tap();
  struct Case {
    const char* name;
    TapSpec tap;
    Bytes frame;
    std::size_t needed;  // bytes the decoder must see
  };
  const std::vector<Case> cases = {
      {"icmp", clear_tap(),
       test::ethernet(test::icmp_probe(agent, target, true, kAgent, 1, 2, 3, 120)),
       14 + 20 + 8 + icmp::kPayloadSize},
      {"stamp", clear_tap(),
       test::ethernet(test::stamp_request(agent, target, 40000, 862, 5, 1, 120)),
       14 + 20 + 8 + stamp::kBasePacketSize},
      {"esp-in-udp", e,
       test::ethernet(test::esp_packet(e.local_endpoint, e.remote_endpoint, 9, 9, 120, true)),
       14 + 20 + 8 + 8},
      {"esp", e,
       test::ethernet(test::esp_packet(e.local_endpoint, e.remote_endpoint, 9, 9, 120, false)),
       14 + 20 + 8},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    REQUIRE(dec(c.tap, c.frame));
    for (std::size_t n = 0; n < c.needed; ++n) {
      INFO("prefix " << n);
      const Bytes cut(c.frame.begin(), c.frame.begin() + static_cast<std::ptrdiff_t>(n));
      const auto r = dec(c.tap, cut);
      REQUIRE_FALSE(r);
      CHECK(r.error() == DropReason::Truncated);
    }
    const Bytes enough(c.frame.begin(), c.frame.begin() + static_cast<std::ptrdiff_t>(c.needed));
    CHECK(dec(c.tap, enough));
  }
}

// Random garbage never decodes as a probe of our agent and never crashes the decoder.
TEST_CASE("decode garbage frames", "[unit][tap]") {
  std::mt19937 rng(12345);
  std::size_t decoded = 0;
  const auto taps = {clear_tap(), esp_tap()};
  for (int i = 0; i < 20000; ++i) {
    Bytes f(rng() % 200);
    for (auto& b : f) b = static_cast<std::uint8_t>(rng());
    if (f.size() > 14 && i % 2 == 0) {  // half of them look like IPv4 over Ethernet
      f[12] = 0x08;
      f[13] = 0x00;
      f[14] = 0x45;
    }
    for (const auto& t : taps) {
      for (int link : {linktype::kEthernet, linktype::kLinuxSll, linktype::kRaw}) {
        const auto r = decode_frame(t, ctx(), 0, link, f);
        if (r) ++decoded;
      }
    }
  }
  // Our ICMP payload needs a 4-byte magic and the agent id, and ESP needs the configured
  // endpoints: random bytes essentially never produce either.
  CHECK(decoded == 0);
}

// VLAN-tagged Ethernet, Linux cooked and raw-IP captures decode the same packet alike.
TEST_CASE("decode link types", "[unit][tap]") {
  const auto ip =
      test::icmp_probe(addr("172.16.1.188"), addr("192.168.20.161"), true, kAgent, 4, 44, 1);
  for (const auto& [link, frame] :
       std::vector<std::pair<int, Bytes>>{{linktype::kEthernet, test::ethernet(ip, 100)},
                                          {linktype::kLinuxSll, test::linux_sll(ip)},
                                          {linktype::kRaw, ip},
                                          {linktype::kRawFile, ip}}) {
    INFO("link " << link);
    const auto o = dec(clear_tap(), frame, link);
    REQUIRE(o);
    CHECK(o->session_id == 4);
    CHECK(o->seq == 44);
  }
}

// A frame crafted by libtins (an independent encoder) decodes to the identity it carries.
TEST_CASE("decode agrees with libtins-built frames", "[unit][tap]") {
  std::vector<std::uint8_t> payload(icmp::kPayloadSize + 24, 0);
  icmp::encode({kAgent, 0x55, 1'000'001, kT0}, payload);
  Tins::ICMP icmp_pdu(Tins::ICMP::ECHO_REPLY);
  icmp_pdu.id(0x55);
  icmp_pdu.sequence(static_cast<std::uint16_t>(1'000'001));
  Tins::EthernetII pkt = Tins::EthernetII("02:00:00:00:00:02", "02:00:00:00:00:01") /
                         Tins::IP("172.16.1.188", "192.168.20.161") / icmp_pdu /
                         Tins::RawPDU(payload.data(), static_cast<std::uint32_t>(payload.size()));
  const Bytes frame = pkt.serialize();
  const auto o = dec(clear_tap(), frame);
  REQUIRE(o);
  CHECK(o->dir == Direction::Reverse);
  CHECK(o->target == addr("192.168.20.161"));
  CHECK(o->session_id == 0x55);
  CHECK(o->seq == 1'000'001);
}

// The generated BPF expressions compile for both encapsulations and address families.
TEST_CASE("bpf filters compile", "[unit][tap]") {
  const std::vector<IpAddress> agents = {addr("172.16.1.188"), addr("fd00::188")};
  CHECK(check_filter(bpf_filter(clear_tap(), agents, 862)));
  CHECK(check_filter(bpf_filter(clear_tap(), {}, 8620)));
  CHECK(check_filter(bpf_filter(esp_tap(), agents, 862)));
  auto v6 = esp_tap();
  v6.local_endpoint = addr("2001:db8::1");
  v6.remote_endpoint = addr("2001:db8::2");
  CHECK(check_filter(bpf_filter(v6, agents, 862)));
  const auto bad = check_filter("udp port banana");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().find("banana") != std::string::npos);
}

// The ring size grows with rate and snap length and stays within its bounds.
TEST_CASE("ring buffer sizing", "[unit][tap]") {
  CHECK(ring_buffer_bytes(0, 256) == 2u << 20);
  const auto r = ring_buffer_bytes(200'000, 256, 0.5);  // 100k frames × (256 + 96) B (TPACKET_V3)
  CHECK(r == 35'200'000);
  CHECK(ring_buffer_bytes(1e9, 256, 10) == 512u << 20);
}

namespace {
// A source with fixed kernel counters that fails every read.
class CountingSource final : public PacketSource {
 public:
  explicit CountingSource(std::uint64_t dropped) : dropped_(dropped) {}
  tl::expected<ReadStatus, std::string> next(Frame&) override {
    return tl::unexpected(std::string("pcap read: The interface disappeared"));
  }
  [[nodiscard]] int linktype() const override { return linktype::kEthernet; }
  [[nodiscard]] SourceStats stats() const override { return {10 * dropped_, dropped_, 0}; }
  [[nodiscard]] int selectable_fd() const override { return -1; }

 private:
  std::uint64_t dropped_;
};
class NullSink final : public ObservationSink {
 public:
  void on_observation(std::size_t, const Observation&) override {}
};
}  // namespace

// A failed capture is closed and replaced by a reopened one: the kernel counters of both add up,
// pump() without a capture is an error (never a crash), availability counters are kept.
TEST_CASE("tap replaces a failed capture and keeps its counters", "[unit][tap]") {
  TapSpec spec;
  spec.interface = "tap-ec";
  spec.path = "express-connect";
  Tap tap(spec, DecodeContext{}, std::make_unique<CountingSource>(3), 0);
  NullSink sink;
  CHECK_FALSE(tap.pump(sink, 8));
  tap.close_source();
  CHECK_FALSE(tap.has_source());
  CHECK(tap.pump(sink, 8).error() == "capture closed");
  CHECK(tap.stats().source.dropped == 3);
  tap.count_down();
  tap.count_reopen_attempt();
  tap.count_reopen_attempt();
  tap.replace_source(std::make_unique<CountingSource>(4));
  tap.count_up(1'500'000'000);
  CHECK(tap.has_source());
  const TapStats& st = tap.stats();
  CHECK(st.source.dropped == 7);
  CHECK(st.source.received == 70);
  CHECK(st.down == 1);
  CHECK(st.reopen_attempts == 2);
  CHECK(st.down_ns == 1'500'000'000);
}
