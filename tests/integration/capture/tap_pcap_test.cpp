#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <vector>

#include "capture/pcap_builder.h"
#include "capture/tap_fixtures.h"
#include "pathsentry/probe/capture/packet_source.h"
#include "pathsentry/probe/capture/tap.h"
#include "pathsentry/probe/wire/stamp.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::addr;
using pathsentry::test::Bytes;
using namespace pathsentry::test::tap_fixtures;

// A pcap file of mixed frames is read with ns timestamps; each frame is decoded or counted.
TEST_CASE("tap pumps a pcap file and counts drops", "[integration][tap]") {
  test::TempDir dir;
  const auto path = dir.file("mixed.pcap");
  const auto agent = addr("172.16.1.188");
  const auto target = addr("192.168.20.161");
  const auto e = esp_tap();
  {
    test::PcapFile f(path);
    f.add(kT0, test::ethernet(test::icmp_probe(agent, target, true, kAgent, 1, 100, 5)));
    f.add(kT0 + 1, test::ethernet(test::icmp_probe(target, agent, false, kAgent, 1, 100, 5)));
    f.add(kT0 + 2, test::ethernet(test::icmp_probe(agent, target, true, kAgent + 9, 1, 1, 5)));
    f.add(kT0 + 3, Bytes{0x01, 0x02, 0x03});
    f.add(kT0 + 4,
          test::ethernet(test::esp_packet(e.local_endpoint, e.remote_endpoint, 1, 1, 100, false)));
    f.close();
  }
  auto src = open_file(path);
  REQUIRE(src);
  Tap tap(clear_tap(), ctx(), std::move(*src), 3);
  Collect sink;
  bool end = false;
  const auto n = tap.pump(sink, 100, &end);
  REQUIRE(n);
  CHECK(*n == 5);
  CHECK(end);
  REQUIRE(sink.got.size() == 2);
  CHECK(sink.got[0].first == 3);
  CHECK(sink.got[0].second.ts_ns == kT0);
  CHECK(sink.got[1].second.ts_ns == kT0 + 1);
  CHECK(sink.got[1].second.dir == Direction::Reverse);
  const auto& st = tap.stats();
  CHECK(st.frames == 5);
  CHECK(st.decoded == 2);
  CHECK(st.dropped[static_cast<std::size_t>(DropReason::ForeignProbe)] == 1);
  CHECK(st.dropped[static_cast<std::size_t>(DropReason::Truncated)] == 1);
  CHECK(st.dropped[static_cast<std::size_t>(DropReason::WrongEncap)] == 1);
}

// The tap's BPF filter, applied by libpcap, keeps probe/ESP traffic and drops the rest.
TEST_CASE("bpf filter keeps only tap traffic", "[integration][tap]") {
  test::TempDir dir;
  const auto path = dir.file("filter.pcap");
  const auto agent = addr("172.16.1.188");
  const auto target = addr("192.168.20.161");
  const auto e = esp_tap();
  const std::uint8_t dns[12] = {};
  {
    test::PcapFile f(path);
    f.add(kT0, test::ethernet(test::icmp_probe(agent, target, true, kAgent, 1, 1, 5)));   // c
    f.add(kT0, test::ethernet(test::stamp_request(agent, target, 40000, 862, 1, 1), 7));  // c
    f.add(kT0, test::ethernet(test::udp_packet(agent, target, 5353, 53, dns)));           // -
    f.add(kT0, test::ethernet(test::icmp_probe(addr("10.9.9.9"), target, true, kAgent, 1, 1, 5)));
    f.add(kT0, test::ethernet(test::esp_packet(e.local_endpoint, e.remote_endpoint, 1, 1, 99,
                                               true)));  // e
    f.add(kT0, test::ethernet(test::esp_packet(e.remote_endpoint, e.local_endpoint, 1, 2, 99,
                                               false)));                                      // e
    f.add(kT0, test::ethernet(test::ike_packet(e.local_endpoint, e.remote_endpoint)));        // e
    f.add(kT0, test::ethernet(test::esp_packet(agent, e.remote_endpoint, 1, 1, 99, false)));  // -
    f.close();
  }
  const std::vector<IpAddress> agents = {agent};
  auto count = [&](const TapSpec& t) {
    auto src = open_file(path, bpf_filter(t, agents, 862));
    REQUIRE(src);
    Frame fr;
    int n = 0;
    while (true) {
      auto st = (*src)->next(fr);
      REQUIRE(st);
      if (*st != ReadStatus::Frame) break;
      ++n;
    }
    return n;
  };
  CHECK(count(clear_tap()) == 2);
  CHECK(count(e) == 3);
}

// Opening a missing or corrupt file is an error naming the file, not a crash.
TEST_CASE("pcap file errors", "[integration][tap]") {
  test::TempDir dir;
  const auto missing = open_file(dir.file("nope.pcap"));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().find("nope.pcap") != std::string::npos);
  const auto junk = dir.file("junk.pcap");
  {
    std::FILE* f = std::fopen(junk.c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fputs("this is not a capture file at all", f);
    std::fclose(f);
  }
  const auto bad = open_file(junk);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().find("junk.pcap") != std::string::npos);
  const auto good = dir.file("good.pcap");
  test::PcapFile(good).close();
  const auto bad_filter = open_file(good, "port banana");
  REQUIRE_FALSE(bad_filter);
  CHECK(bad_filter.error().find("banana") != std::string::npos);
}

// A live capture on loopback (immediate mode, BPF) sees a STAMP datagram with a realtime ns stamp.
TEST_CASE("live capture on loopback", "[privileged][tap]") {
  REQUIRE(geteuid() == 0);
  // Receiver bound to an ephemeral port; its number is the "STAMP port" for this capture.
  const int rx = socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(rx >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(rx, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(getsockname(rx, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  const std::uint16_t port = ntohs(sa.sin_port);

  LiveOptions o;
  o.interface = "lo";
  o.filter = "udp dst port " + std::to_string(port);
  o.buffer_bytes = ring_buffer_bytes(1000, o.snaplen);
  auto src = open_live(o);
  REQUIRE(src);
  REQUIRE((*src)->selectable_fd() >= 0);

  std::uint8_t buf[stamp::kBasePacketSize] = {};
  stamp::SenderPacket p;
  p.sequence = 4242;
  p.ssid = 0x77;
  REQUIRE(stamp::encode(p, buf) == sizeof buf);
  const int tx = socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(tx >= 0);
  REQUIRE(sendto(tx, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa) ==
          static_cast<ssize_t>(sizeof buf));

  Frame fr;
  bool got = false;
  for (int i = 0; i < 2000 && !got; ++i) {  // up to ~2 s of 1 ms polls
    auto st = (*src)->next(fr);
    REQUIRE(st);
    if (*st == ReadStatus::Frame) {
      got = true;
    } else {
      usleep(1000);
    }
  }
  close(tx);
  close(rx);
  REQUIRE(got);
  TapSpec t = clear_tap();
  const auto obs = decode_frame(t, DecodeContext{kAgent, port}, fr.ts_ns, fr.linktype, fr.bytes);
  REQUIRE(obs);
  CHECK(obs->kind == ObsKind::Stamp);
  CHECK(obs->seq == 4242);
  CHECK(obs->ssid == 0x77);
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  const std::int64_t now_ns = std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
  // Realtime nanoseconds (a microsecond/second mix-up would be off by orders of magnitude).
  CHECK(std::llabs(now_ns - fr.ts_ns) < 60'000'000'000LL);
  CHECK((*src)->stats().dropped == 0);
}
