#include "pathsentry/probe/attribution/healthcheck.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "pathsentry/common/record_json.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kS = 1'000 * kMs;

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

HealthCheckPacket hc_probe(std::int64_t ts, std::uint16_t id, const char* src = "100.96.0.5",
                           const char* dst = "10.1.0.2") {
  return HealthCheckPacket{ts, ip(src), ip(dst), true, id, 1};
}

HealthCheckPacket answer(std::int64_t ts, std::uint16_t id, const char* dst = "100.96.0.5") {
  return HealthCheckPacket{ts, ip("10.1.0.2"), ip(dst), false, id, 1};
}

HealthCheckConfig config() {
  HealthCheckConfig c;
  c.tap = "tap-ec";
  c.path = "express-connect";
  return c;
}

}  // namespace

TEST_CASE("healthcheck: answered probes teach the interval and emit nothing",
          "[unit][healthcheck]") {
  HealthCheckWatcher w(config());
  std::vector<PathEvent> out;
  for (std::uint16_t i = 0; i < 5; ++i) {
    REQUIRE(w.on_packet(hc_probe(kT0 + i * 2 * kS, i), out));
    REQUIRE(w.on_packet(answer(kT0 + i * 2 * kS + kMs, i), out));
  }
  CHECK(out.empty());
  const auto st = w.stats();
  CHECK(st.probes == 5);
  CHECK(st.answered == 5);
  CHECK(st.unanswered == 0);
  CHECK(st.run == 0);
  CHECK(st.interval_ns == 2 * kS);
  REQUIRE(w.gateway());
  CHECK(w.gateway()->to_string() == "10.1.0.2");
}

TEST_CASE("healthcheck: the interval is the median of the gaps", "[unit][healthcheck]") {
  HealthCheckWatcher w(config());
  std::vector<PathEvent> out;
  const std::int64_t gaps[] = {1900 * kMs, 2100 * kMs, 2000 * kMs, 5000 * kMs, 2000 * kMs};
  std::int64_t t = kT0;
  std::uint16_t id = 0;
  w.on_packet(hc_probe(t, id), out);
  w.on_packet(answer(t + kMs, id), out);
  for (const auto g : gaps) {
    t += g;
    ++id;
    w.on_packet(hc_probe(t, id), out);
    w.on_packet(answer(t + kMs, id), out);
  }
  CHECK(out.empty());
  CHECK(w.stats().interval_ns == 2000 * kMs);
}

TEST_CASE("healthcheck: degraded counts k down to the cloud's move, failed at N, recovered",
          "[unit][healthcheck]") {
  HealthCheckWatcher w(config());
  std::vector<PathEvent> out;
  std::uint16_t id = 0;
  for (; id < 5; ++id) {
    w.on_packet(hc_probe(kT0 + id * 2 * kS, id), out);
    w.on_packet(answer(kT0 + id * 2 * kS + kMs, id), out);
  }
  // Probes 5 … 12 (t0 + 10 s … t0 + 24 s) go unanswered; probe 13 (t0 + 26 s) is answered.
  for (; id <= 13; ++id) w.on_packet(hc_probe(kT0 + id * 2 * kS, id), out);
  REQUIRE(out.size() == 8);
  for (std::uint32_t k = 1; k <= 7; ++k) {
    const PathEvent& e = out[k - 1];
    CHECK(e.type == EventType::HealthcheckDegraded);
    CHECK(e.unanswered == k);
    CHECK(e.fall == 8);
    CHECK(e.interval_ns == 2 * kS);
    CHECK(e.eta_ns == static_cast<std::int64_t>(8 - k) * 2 * kS);
    CHECK(e.ts_ns == kT0 + (8 + 2 * static_cast<std::int64_t>(k)) * kS);
    CHECK(e.duration_ns == static_cast<std::int64_t>(k - 1) * 2 * kS);
    CHECK(e.target == "10.1.0.2");
    CHECK(e.prober == "100.96.0.5");
    CHECK(e.tap == "tap-ec");
    CHECK(e.path == "express-connect");
  }
  CHECK(out[0].detected_ns == kT0 + 12 * kS);  // closed by the next probe
  const PathEvent& f = out[7];
  CHECK(f.type == EventType::HealthcheckFailed);
  CHECK(f.unanswered == 8);
  CHECK(f.eta_ns == 0);
  CHECK(f.ts_ns == kT0 + 24 * kS);
  CHECK(f.duration_ns == 14 * kS);
  CHECK(w.stats().run == 8);
  CHECK(w.stats().unanswered == 8);
  out.clear();
  w.on_packet(answer(kT0 + 26 * kS + 3 * kMs, 13), out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == EventType::HealthcheckRecovered);
  CHECK(out[0].reason == "answered");
  CHECK(out[0].unanswered == 8);
  CHECK(out[0].duration_ns == 16 * kS + 3 * kMs);
  CHECK(w.stats().run == 0);
  CHECK(w.stats().answered == 6);
  CHECK(w.stats().probes == 14);
}

TEST_CASE("healthcheck: a probe expires one interval after it; a late answer undoes nothing",
          "[unit][healthcheck]") {
  HealthCheckConfig c = config();
  c.interval_ns = 200 * kMs;
  c.fall = 3;
  HealthCheckWatcher w(c);
  std::vector<PathEvent> out;
  w.on_packet(hc_probe(kT0, 1), out);
  w.tick(kT0 + 200 * kMs, out);
  CHECK(out.empty());
  w.tick(kT0 + 200 * kMs + 1, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == EventType::HealthcheckDegraded);
  CHECK(out[0].unanswered == 1);
  CHECK(out[0].eta_ns == 400 * kMs);
  CHECK(out[0].detected_ns == kT0 + 200 * kMs + 1);
  out.clear();
  w.on_packet(answer(kT0 + 250 * kMs, 1), out);
  CHECK(out.empty());
  CHECK(w.stats().late == 1);
  CHECK(w.stats().run == 1);
  // An answer to a later probe closes the earlier open ones first (answers come in order).
  w.on_packet(hc_probe(kT0 + 400 * kMs, 2), out);
  w.on_packet(hc_probe(kT0 + 410 * kMs, 3), out);  // closes probe 2: k = 2
  w.on_packet(answer(kT0 + 420 * kMs, 3), out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].type == EventType::HealthcheckDegraded);
  CHECK(out[0].unanswered == 2);
  CHECK(out[1].type == EventType::HealthcheckRecovered);
  CHECK(out[1].unanswered == 2);
  CHECK(out[1].duration_ns == 420 * kMs);
}

TEST_CASE("healthcheck: absent after more than 3 intervals without a probe, while the tap is up",
          "[unit][healthcheck]") {
  HealthCheckConfig c = config();
  c.interval_ns = 200 * kMs;
  HealthCheckWatcher w(c);
  std::vector<PathEvent> out;
  w.tick(kT0, out);
  w.tick(kT0 + 600 * kMs, out);
  CHECK(out.empty());
  w.tick(kT0 + 600 * kMs + 1, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == EventType::HealthcheckAbsent);
  CHECK(out[0].ts_ns == kT0 + 600 * kMs);
  CHECK(out[0].duration_ns == 600 * kMs + 1);
  CHECK(out[0].interval_ns == 200 * kMs);
  CHECK(out[0].prober.empty());
  CHECK(w.stats().absent);
  w.tick(kT0 + 5 * kS, out);
  CHECK(out.size() == 1);  // once
  out.clear();
  w.on_packet(hc_probe(kT0 + 6 * kS, 1), out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == EventType::HealthcheckRecovered);
  CHECK(out[0].reason == "probes_resumed");
  CHECK_FALSE(w.stats().absent);
}

TEST_CASE("healthcheck: absence with the learned interval; nothing concluded while the tap is down",
          "[unit][healthcheck]") {
  HealthCheckWatcher w(config());
  std::vector<PathEvent> out;
  for (std::uint16_t i = 0; i < 3; ++i) {
    w.on_packet(hc_probe(kT0 + i * 2 * kS, i), out);
    w.on_packet(answer(kT0 + i * 2 * kS + kMs, i), out);
  }
  const std::int64_t last = kT0 + 4 * kS;
  w.on_packet(hc_probe(last + 2 * kS, 3), out);  // open when the tap goes down
  w.set_tap_up(false, last + 2 * kS + 10 * kMs);
  w.tick(last + 60 * kS, out);
  CHECK(out.empty());
  CHECK(w.stats().run == 0);  // the open probe is forgotten, not lost
  w.set_tap_up(true, last + 60 * kS);
  w.tick(last + 66 * kS, out);
  CHECK(out.empty());
  w.tick(last + 66 * kS + 1, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == EventType::HealthcheckAbsent);
  CHECK(out[0].interval_ns == 2 * kS);
}

TEST_CASE("healthcheck: other traffic is not the health check", "[unit][healthcheck]") {
  HealthCheckWatcher w(config());
  std::vector<PathEvent> out;
  CHECK_FALSE(w.on_packet(hc_probe(kT0, 1, "192.168.20.5"), out));  // not from the prefix
  CHECK_FALSE(w.gateway());
  CHECK_FALSE(w.on_packet(answer(kT0, 1), out));  // no gateway known yet
  CHECK(w.on_packet(hc_probe(kT0, 1), out));      // learns 10.1.0.2
  CHECK_FALSE(w.on_packet(hc_probe(kT0 + kMs, 2, "100.96.0.5", "10.1.0.9"), out));
  CHECK_FALSE(w.on_packet(answer(kT0 + kMs, 1, "192.168.20.5"), out));
  CHECK(w.stats().probes == 1);
}

TEST_CASE("healthcheck: events round-trip through JSON lines", "[unit][healthcheck]") {
  HealthCheckWatcher w(config());
  std::vector<PathEvent> out;
  std::uint16_t id = 0;
  for (; id < 3; ++id) {
    w.on_packet(hc_probe(kT0 + id * 2 * kS, id), out);
    w.on_packet(answer(kT0 + id * 2 * kS + kMs, id), out);
  }
  for (; id < 13; ++id) w.on_packet(hc_probe(kT0 + id * 2 * kS, id), out);
  w.on_packet(answer(kT0 + 24 * kS + kMs, 12), out);
  w.tick(kT0 + 40 * kS, out);
  REQUIRE(out.size() == 10);  // 7 degraded, failed, recovered, absent
  CHECK(out[8].type == EventType::HealthcheckRecovered);
  CHECK(out[9].type == EventType::HealthcheckAbsent);
  for (auto& e : out) {
    e.event_id = 42;
    std::string line;
    append_json(e, line, "dc1");
    const auto back = parse_json_line(line);
    REQUIRE(back);
    const auto* p = std::get_if<PathEvent>(&*back);
    REQUIRE(p);
    std::string again;
    append_json(*p, again, "dc1");
    CHECK(again == line);
    CHECK(p->type == e.type);
    CHECK(p->unanswered == e.unanswered);
    CHECK(p->eta_ns == e.eta_ns);
    CHECK(p->event_id == 42);
  }
  std::string line;
  append_json(out[2], line, "dc1");
  CHECK(line.find("\"event\":\"healthcheck_degraded\"") != std::string::npos);
  CHECK(line.find("\"unanswered\":3,\"fall\":8,\"interval_ns\":2000000000") != std::string::npos);
  CHECK(line.find("\"eta_ns\":10000000000") != std::string::npos);
  CHECK(describe(out[2]).find("3 of 8 probes unanswered in a row; the cloud moves the return path "
                              "to IPsec in ≈ 10.0 s unless answers resume") != std::string::npos);
  CHECK(describe(out[7]).find("healthcheck_failed tap-ec (express-connect)") == 0);
  CHECK(describe(out[9]).find("no probe for") != std::string::npos);
}

TEST_CASE("healthcheck: a blocked event round-trips with its evidence", "[unit][healthcheck]") {
  PathEvent e;
  e.type = EventType::HealthcheckBlocked;
  e.tap = "tap-ec";
  e.path = "express-connect";
  e.target = "10.1.0.2";
  e.prober = "100.96.0.5";
  e.ts_ns = 1'700'000'000'000'000'000;
  e.detected_ns = e.ts_ns + 1'000'000;
  e.unanswered = 2;
  e.fall = 8;
  e.interval_ns = 2'000'000'000;
  e.duration_ns = 2'000'000'000;
  e.eta_ns = 12'000'000'000;
  e.reason = "12 agent probes through on express-connect";
  e.event_id = 7;
  std::string line;
  append_json(e, line, "dc1");
  CHECK(line.find("\"event\":\"healthcheck_blocked\"") != std::string::npos);
  const auto back = parse_json_line(line);
  REQUIRE(back);
  const auto* p = std::get_if<PathEvent>(&*back);
  REQUIRE(p);
  CHECK(p->type == EventType::HealthcheckBlocked);
  CHECK(p->eta_ns == e.eta_ns);
  CHECK(p->reason == e.reason);
  std::string again;
  append_json(*p, again, "dc1");
  CHECK(again == line);
  CHECK(describe(e).find("false failover of the return path to IPsec comes in ≈ 12.0 s") !=
        std::string::npos);
}
