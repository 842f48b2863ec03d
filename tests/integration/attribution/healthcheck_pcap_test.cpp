// The health-check watcher on a capture file: the lab's CEN health check (deploy/lab/healthcheck,
// fast profile: one `ping -c 1` per 200 ms, fall 3) as the Express Connect tap sees it, beside
// the agent's own probes, read back through open_file and decode_echo.

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "capture/pcap_builder.h"
#include "pathsentry/probe/attribution/healthcheck.h"
#include "pathsentry/probe/capture/echo.h"
#include "pathsentry/probe/capture/packet_source.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using pathsentry::test::addr;
using pathsentry::test::Bytes;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
constexpr std::int64_t kMs = 1'000'000;

Bytes ping(const char* src, const char* dst, bool request, std::uint16_t id) {
  Bytes icmp(8 + 56, 0x5A);
  icmp[0] = request ? 8 : 0;
  icmp[1] = 0;
  icmp[2] = 0;
  icmp[3] = 0;
  icmp[4] = static_cast<std::uint8_t>(id >> 8);
  icmp[5] = static_cast<std::uint8_t>(id & 0xFF);
  icmp[6] = 0;
  icmp[7] = 1;  // ping -c 1: sequence 1, a new id each time
  return test::ethernet(test::ip_packet(addr(src), addr(dst), 1, icmp));
}

}  // namespace

TEST_CASE("healthcheck on a capture file: the lab's fast profile, degraded to failed and back",
          "[integration][healthcheck]") {
  test::TempDir dir;
  const std::string path = dir.file("ec.pcap");
  {
    test::PcapFile f(path);
    std::int64_t agent_seq = 0;
    for (std::uint16_t i = 0; i < 10; ++i) {
      const std::int64_t t = kT0 + i * 200 * kMs;
      f.add(t, ping("100.96.0.5", "10.1.0.2", true, static_cast<std::uint16_t>(4000 + i)));
      // the agent's own probes cross the line too (not the health check)
      const auto own = test::icmp_probe(addr("172.16.1.188"), addr("192.168.20.161"), true, 7, 1,
                                        ++agent_seq, t + 50 * kMs);
      f.add(t + 50 * kMs, test::ethernet(own));
      // probes 5, 6, 7 go unanswered
      if (i < 5 || i > 7) {
        f.add(t + 2 * kMs,
              ping("10.1.0.2", "100.96.0.5", false, static_cast<std::uint16_t>(4000 + i)));
      }
    }
    f.close();
  }
  auto src = open_file(path);
  REQUIRE(src);
  HealthCheckConfig cfg;
  cfg.fall = 3;
  cfg.tap = "tap-ec";
  cfg.path = "express-connect";
  HealthCheckWatcher w(cfg);
  std::vector<PathEvent> out;
  Frame fr;
  std::size_t echoes = 0;
  std::size_t hc = 0;
  for (;;) {
    const auto st = (*src)->next(fr);
    REQUIRE(st);
    if (*st != ReadStatus::Frame) break;
    w.tick(fr.ts_ns, out);
    const auto e = decode_echo(fr.ts_ns, (*src)->linktype(), fr.bytes);
    if (!e) continue;
    ++echoes;
    if (w.on_packet(HealthCheckPacket{e->ts_ns, e->src, e->dst, e->request, e->id, e->seq}, out)) {
      ++hc;
    }
  }
  CHECK(echoes == 27);  // 10 health-check probes, 7 answers, 10 of the agent's own probes
  CHECK(hc == 17);
  REQUIRE(out.size() == 4);
  CHECK(out[0].type == EventType::HealthcheckDegraded);
  CHECK(out[0].unanswered == 1);
  CHECK(out[0].eta_ns == 400 * kMs);
  CHECK(out[0].ts_ns == kT0 + 1000 * kMs);
  CHECK(out[0].detected_ns == kT0 + 1200 * kMs);  // one interval on: the next probe closes it
  CHECK(out[1].type == EventType::HealthcheckDegraded);
  CHECK(out[1].unanswered == 2);
  CHECK(out[1].eta_ns == 200 * kMs);
  CHECK(out[2].type == EventType::HealthcheckFailed);
  CHECK(out[2].unanswered == 3);
  CHECK(out[2].ts_ns == kT0 + 1400 * kMs);
  CHECK(out[3].type == EventType::HealthcheckRecovered);
  CHECK(out[3].reason == "answered");
  CHECK(out[3].duration_ns == 602 * kMs);
  const auto st = w.stats();
  CHECK(st.probes == 10);
  CHECK(st.answered == 7);
  CHECK(st.unanswered == 3);
  CHECK(st.interval_ns == 200 * kMs);
  REQUIRE(w.gateway());
  CHECK(w.gateway()->to_string() == "10.1.0.2");
}
