// The health check wired in the pipeline (docs/healthcheck.md): a clear tap's capture file holds
// the cloud's health-check probes (answered, then not) beside the agent's own probes, which go
// both ways on the line throughout. The echo frames go from the tap's pump through the worker's
// HealthCheckWork: degraded events, then healthcheck_blocked once the records show the line
// working, written to the output and the event log, the state to the observer. Switched off:
// none of it.

#include <catch2/catch.hpp>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "capture/pcap_builder.h"
#include "pathsentry/probe/attribution/pipeline.h"
#include "pathsentry/probe/capture/packet_source.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace pathsentry::test;

namespace {

constexpr std::uint32_t kAgentId = 7;
constexpr std::uint32_t kSession = 0x12340001;
constexpr std::int64_t kBase = 1'700'000'000'000'000'000;
constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kInterval = 10 * kMs;  // the agent's probes
constexpr std::int64_t kRtt = kMs;
constexpr std::uint64_t kProbes = 200;  // 2 s of the agent's probes
constexpr std::int64_t kHcInterval = 200 * kMs;
constexpr std::uint16_t kHcProbes = 10;  // 0..4 answered, 5..9 not

const IpAddress kAgent = addr("172.16.1.188");
const IpAddress kTarget = addr("192.168.20.161");

Bytes ping(const char* src, const char* dst, bool request, std::uint16_t id) {
  Bytes icmp(8 + 56, 0x5A);
  icmp[0] = request ? 8 : 0;
  icmp[1] = 0;  // code
  icmp[2] = 0;  // checksum (not checked)
  icmp[3] = 0;
  icmp[4] = static_cast<std::uint8_t>(id >> 8);
  icmp[5] = static_cast<std::uint8_t>(id & 0xFF);
  icmp[6] = 0;
  icmp[7] = 1;  // ping -c 1: sequence 1
  return ethernet(ip_packet(addr(src), addr(dst), 1, icmp));
}

SessionSpec session() {
  SessionConfig sc;
  sc.target = kTarget;
  sc.proto = Proto::Icmp;
  sc.rate_pps = 100;
  sc.session_id = kSession;
  return session_spec_for(sc);
}

ProbeRecord answered(std::uint64_t seq) {
  ProbeRecord r;
  r.target = kTarget.to_string();
  r.proto = Proto::Icmp;
  r.session_id = kSession;
  r.seq = seq;
  r.tx_ns = kBase + static_cast<std::int64_t>(seq) * kInterval;
  r.rx_ns = r.tx_ns + kRtt;
  r.rtt_ns = kRtt;
  r.tx_kernel_ts = true;
  return r;
}

void write_capture(const std::string& path, const SessionSpec& spec) {
  PcapFile f(path);
  std::uint16_t hc = 0;
  for (std::uint64_t seq = 0; seq < kProbes; ++seq) {
    const std::int64_t tx = kBase + static_cast<std::int64_t>(seq) * kInterval;
    // the health check's probe of this slot first (every 200 ms, 5 ms into it)
    if (hc < kHcProbes && kBase + hc * kHcInterval + 5 * kMs <= tx + kInterval) {
      const std::int64_t t = kBase + hc * kHcInterval + 5 * kMs;
      f.add(t, ping("100.96.0.10", "10.1.0.2", true, static_cast<std::uint16_t>(100 + hc)));
      if (hc < 5) {
        f.add(t + kMs,
              ping("10.1.0.2", "100.96.0.10", false, static_cast<std::uint16_t>(100 + hc)));
      }
      ++hc;
    }
    f.add(tx + 50'000, ethernet(icmp_probe(kAgent, kTarget, true, kAgentId, kSession, seq, tx,
                                           spec.wire_bytes)));
    f.add(tx + kRtt - 50'000, ethernet(icmp_probe(kTarget, kAgent, false, kAgentId, kSession, seq,
                                                  tx, spec.wire_bytes)));
  }
  f.close();
}

struct Observer final : PipelineObserver {
  void on_record(const ProbeRecord&) override {}
  void on_event(const PathEvent&) override {}
  void on_poll_done() override {}
  void on_tap_stats(std::size_t, const TapStats&) override {}
  void on_healthcheck(const std::vector<HealthCheckStatus>& lines) override {
    ++calls;
    last = lines;
  }
  int calls = 0;
  std::vector<HealthCheckStatus> last;
};

// Runs the pipeline over the capture; returns the events written.
std::vector<PathEvent> run(bool watched, Observer& obs, std::vector<std::string>& lines) {
  TempDir dir;
  const SessionSpec spec = session();
  write_capture(dir.file("ec.pcap"), spec);
  ManualClock clock(1'000'000'000, kBase - kNsPerSec);
  JsonLinesWriter out(dir.file("out.jsonl"), "dc1");
  JsonLinesOutput out_lines(out);
  PipelineOptions po;
  TapSpec ec;
  ec.interface = "tap-ec";
  ec.path = "express-connect";
  po.taps = {ec};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  po.output = &out_lines;
  po.observer = &obs;
  po.event_log = [&lines](const std::string& l) { lines.push_back(l); };
  po.healthcheck.enabled = watched;
  Pipeline p(clock, po);
  p.add_session(spec);
  auto src = open_file(dir.file("ec.pcap"));
  REQUIRE(src);
  p.set_source(0, std::move(*src));
  for (std::uint64_t seq = 0; seq < kProbes; ++seq) {
    const ProbeRecord r = answered(seq);
    p.on_sent(SentNotice{kSession, seq, r.tx_ns, spec.wire_bytes});
    p.on_record(r);
  }
  p.start();
  p.stop();
  REQUIRE(out.flush());
  std::vector<PathEvent> events;
  std::ifstream in(dir.file("out.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto parsed = parse_json_line(line);
    REQUIRE(parsed);
    if (auto* e = std::get_if<PathEvent>(&*parsed)) events.push_back(*e);
  }
  return events;
}

}  // namespace

TEST_CASE("healthcheck pipeline: unanswered while the line carries the agent's probes: blocked",
          "[integration][healthcheck]") {
  Observer obs;
  std::vector<std::string> lines;
  const auto events = run(true, obs, lines);
  std::vector<std::uint32_t> degraded;
  int blocked = 0;
  for (const PathEvent& e : events) {
    REQUIRE(is_healthcheck_event(e.type));  // the agent's probes never moved
    CHECK(e.tap == "tap-ec");
    CHECK(e.target == "10.1.0.2");
    CHECK(e.prober == "100.96.0.10");
    if (e.type == EventType::HealthcheckDegraded) degraded.push_back(e.unanswered);
    if (e.type == EventType::HealthcheckBlocked) {
      ++blocked;
      CHECK(e.unanswered >= 2);
      CHECK(e.reason.find("went both ways on express-connect (0 lost)") != std::string::npos);
    }
  }
  // probes 5..8 closed by the next one; 9 still open when the file ends
  CHECK(degraded == std::vector<std::uint32_t>{1, 2, 3, 4});
  CHECK(blocked == 1);
  CHECK(lines.size() == events.size());
  REQUIRE(obs.calls > 0);
  REQUIRE(obs.last.size() == 1);
  const HealthCheckStatus& st = obs.last[0];
  CHECK(st.state == HealthCheckState::Blocked);
  CHECK(st.target == "10.1.0.2");
  CHECK(st.stats.probes == kHcProbes);
  CHECK(st.stats.answered == 5);
  CHECK(st.stats.unanswered == 4);
  CHECK(st.stats.interval_ns == kHcInterval);
  CHECK(st.eta_ns == 4 * kHcInterval);  // N = 8, k = 4
}

TEST_CASE("healthcheck pipeline: switched off, nothing is watched", "[integration][healthcheck]") {
  Observer obs;
  std::vector<std::string> lines;
  const auto events = run(false, obs, lines);
  CHECK(events.empty());
  CHECK(obs.calls == 0);
}
