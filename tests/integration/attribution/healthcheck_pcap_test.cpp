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
#include "pathsentry/probe/capture/tap.h"

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

// Collects what a tap hands over.
struct Collect final : ObservationSink {
  void on_observation(std::size_t, const Observation& o) override { obs.push_back(o); }
  void on_echo(std::size_t tap, const EchoFrame& e) override {
    CHECK(tap == 0);
    echoes.push_back(e);
  }
  std::vector<Observation> obs;
  std::vector<EchoFrame> echoes;
};

}  // namespace

// The clear tap's BPF filter passes the health check's probes and answers only when it is
// watched, and pump() hands them to on_echo beside the agent's own probes.
TEST_CASE("healthcheck on a capture file: the tap's filter and pump hand over the echoes",
          "[integration][healthcheck]") {
  test::TempDir dir;
  const std::string path = dir.file("ec.pcap");
  {
    test::PcapFile f(path);
    for (std::uint16_t i = 0; i < 4; ++i) {
      const std::int64_t t = kT0 + i * 200 * kMs;
      f.add(t, ping("100.96.0.5", "10.1.0.2", true, static_cast<std::uint16_t>(4000 + i)));
      f.add(t + kMs, test::ethernet(test::icmp_probe(addr("172.16.1.188"), addr("192.168.20.161"),
                                                     true, 7, 1, i + 1, t + kMs)));
      f.add(t + 2 * kMs,
            ping("10.1.0.2", "100.96.0.5", false, static_cast<std::uint16_t>(4000 + i)));
      // another host's ping, outside the prefix: never the health check
      f.add(t + 3 * kMs, ping("10.1.0.9", "10.1.0.2", true, 77));
    }
    f.close();
  }
  TapSpec spec;
  spec.interface = "tap-ec";
  spec.path = "express-connect";
  const std::vector<IpAddress> agents = {addr("172.16.1.188")};
  const DecodeContext ctx{7, 862};
  for (const bool watched : {false, true}) {
    if (watched) spec.healthcheck_prefix = *IpPrefix::parse("100.96.0.0/16");
    const std::string filter = bpf_filter(spec, agents, 862);
    CHECK((filter.find("100.96.0.0/16") != std::string::npos) == watched);
    auto src = open_file(path, filter);
    REQUIRE(src);
    Tap tap(spec, ctx, std::move(*src), 0);
    Collect sink;
    bool end = false;
    while (!end) REQUIRE(tap.pump(sink, 64, &end));
    CHECK(sink.obs.size() == 4);
    CHECK(tap.stats().echoes == sink.echoes.size());
    if (!watched) {
      CHECK(sink.echoes.empty());
      CHECK(tap.stats().frames == 4);  // the filter passed the agent's probes only
      continue;
    }
    REQUIRE(sink.echoes.size() == 8);
    CHECK(tap.stats().frames == 8 + 4);
    CHECK(sink.echoes[0].request);
    CHECK(sink.echoes[0].src == addr("100.96.0.5"));
    CHECK(sink.echoes[0].id == 4000);
    CHECK(sink.echoes[0].ts_ns == kT0);
    CHECK_FALSE(sink.echoes[1].request);
    CHECK(sink.echoes[1].dst == addr("100.96.0.5"));
  }
}

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
