// healthcheck_blocked (BlockedJudge) and the pipeline's health-check part (HealthCheckWork):
// a health check unanswered while the line carries the agent's probes is blocked; a dead line
// is only degraded, then failed.
#include "pathsentry/probe/attribution/healthcheck_watch.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kS = 1'000 * kMs;

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

EchoFrame hc_probe(std::int64_t ts, std::uint16_t id) {
  return EchoFrame{ts, ip("100.96.0.10"), ip("10.1.0.2"), true, id, 1};
}
EchoFrame hc_answer(std::int64_t ts, std::uint16_t id) {
  return EchoFrame{ts, ip("10.1.0.2"), ip("100.96.0.10"), false, id, 1};
}

// One of the agent's records: answered both ways on `fwd` / `rev`, or lost.
ProbeRecord agent_record(std::int64_t tx, bool answered, const std::string& fwd,
                         const std::string& rev) {
  ProbeRecord r;
  r.session_id = 1;
  r.target = "172.16.1.10";
  r.tx_ns = tx;
  r.fwd_path = fwd;
  r.rev_path = rev;
  if (answered) {
    r.rx_ns = tx + kMs;
    r.rtt_ns = kMs;
  } else {
    r.loss = LossDirection::Forward;
  }
  return r;
}

std::vector<TapSpec> taps() {
  TapSpec ec;
  ec.interface = "tap-ec";
  ec.path = "express-connect";
  TapSpec esp;
  esp.interface = "tap-inet";
  esp.path = "ipsec";
  esp.encap = Encap::Esp;
  return {ec, esp};
}

int count(const std::vector<PathEvent>& ev, EventType t) {
  int n = 0;
  for (const PathEvent& e : ev) n += e.type == t ? 1 : 0;
  return n;
}

HealthCheckSettings settings() {
  HealthCheckSettings s;
  s.fall = 4;
  s.interval_ns = kS;
  return s;
}

// Probes answered for 3 s, then unanswered from kT0 + 3 s on (one per second, ids 0..).
void run_health_check(HealthCheckWork& w, int answered, int unanswered,
                      std::vector<PathEvent>& out) {
  std::uint16_t id = 0;
  std::int64_t t = kT0;
  for (int i = 0; i < answered; ++i, ++id, t += kS) {
    w.on_echo(0, hc_probe(t, id), out);
    w.on_echo(0, hc_answer(t + kMs, id), out);
    w.tick(0, t + 2 * kMs, out);
  }
  for (int i = 0; i < unanswered; ++i, ++id, t += kS) {
    w.on_echo(0, hc_probe(t, id), out);
    w.tick(0, t + 500 * kMs, out);
  }
  w.tick(0, t + kMs, out);  // the last probe's interval is over
}

}  // namespace

TEST_CASE("healthcheck watch: only clear taps are watched, and only when enabled",
          "[unit][healthcheck]") {
  auto t = taps();
  HealthCheckSettings off = settings();
  off.enabled = false;
  enable_health_check(t, off);
  CHECK_FALSE(t[0].healthcheck_prefix.has_value());
  CHECK_FALSE(HealthCheckWork(t, off).active());
  enable_health_check(t, settings());
  REQUIRE(t[0].healthcheck_prefix.has_value());
  CHECK(t[0].healthcheck_prefix->to_string() == "100.96.0.0/16");
  CHECK_FALSE(t[1].healthcheck_prefix.has_value());
  const HealthCheckWork w(t, settings());
  CHECK(w.active());
  REQUIRE(w.status().size() == 1);
  CHECK(w.status()[0].tap == "tap-ec");
  CHECK(w.status()[0].state == HealthCheckState::Ok);
}

TEST_CASE("healthcheck watch: unanswered while the line carries the agent's probes is blocked",
          "[unit][healthcheck]") {
  auto t = taps();
  enable_health_check(t, settings());
  HealthCheckWork w(t, settings());
  std::vector<PathEvent> out;
  run_health_check(w, 3, 2, out);  // k = 1 at +4 s (the probe of +3 s), k = 2 after +5 s
  CHECK(count(out, EventType::HealthcheckDegraded) == 2);
  CHECK(count(out, EventType::HealthcheckBlocked) == 0);  // no evidence yet
  CHECK(w.status()[0].state == HealthCheckState::Degraded);
  // The agent's probes since the first unanswered health-check probe (+3 s) went both ways on
  // the line; one sent before it does not count, nor one on the other path.
  w.on_record(agent_record(kT0 + 2 * kS, true, "express-connect", "express-connect"), kT0, out);
  w.on_record(agent_record(kT0 + 3 * kS, true, "express-connect", "ipsec"), kT0, out);
  w.on_record(agent_record(kT0 + 3 * kS + 1, true, "express-connect", "express-connect"), kT0, out);
  w.on_record(agent_record(kT0 + 3 * kS + 2, true, "express-connect", "express-connect"), kT0, out);
  CHECK(count(out, EventType::HealthcheckBlocked) == 0);  // 2 carried
  w.on_record(agent_record(kT0 + 3 * kS + 3, true, "express-connect", "express-connect"),
              kT0 + 6 * kS, out);
  REQUIRE(count(out, EventType::HealthcheckBlocked) == 1);
  const PathEvent& b = out.back();
  CHECK(b.type == EventType::HealthcheckBlocked);
  CHECK(b.unanswered == 2);
  CHECK(b.fall == 4);
  CHECK(b.eta_ns == 2 * kS);
  CHECK(b.target == "10.1.0.2");
  CHECK(b.prober == "100.96.0.10");
  CHECK(b.tap == "tap-ec");
  CHECK(b.detected_ns == kT0 + 6 * kS);
  CHECK(b.reason.find("3 of the agent's probes") != std::string::npos);
  CHECK(b.reason.find("(0 lost)") != std::string::npos);
  CHECK(w.status()[0].state == HealthCheckState::Blocked);
  // Said once per run; the countdown goes on, the state stays blocked through failed.
  w.on_record(agent_record(kT0 + 3 * kS + 4, true, "express-connect", "express-connect"),
              kT0 + 6 * kS, out);
  w.on_echo(0, hc_probe(kT0 + 5 * kS, 5), out);
  w.tick(0, kT0 + 6 * kS + 500 * kMs, out);
  w.on_echo(0, hc_probe(kT0 + 7 * kS, 6), out);
  w.tick(0, kT0 + 8 * kS + 500 * kMs, out);
  CHECK(count(out, EventType::HealthcheckBlocked) == 1);
  CHECK(count(out, EventType::HealthcheckFailed) == 1);
  CHECK(w.status()[0].state == HealthCheckState::Blocked);
  CHECK(w.status()[0].eta_ns == 0);
  // Answered again: recovered, ok; a new run may be blocked again.
  w.on_echo(0, hc_probe(kT0 + 9 * kS, 7), out);
  w.on_echo(0, hc_answer(kT0 + 9 * kS + kMs, 7), out);
  CHECK(count(out, EventType::HealthcheckRecovered) == 1);
  CHECK(w.status()[0].state == HealthCheckState::Ok);
  CHECK_FALSE(w.status()[0].eta_ns.has_value());
}

TEST_CASE("healthcheck watch: a dead line is degraded then failed, never blocked",
          "[unit][healthcheck]") {
  auto t = taps();
  enable_health_check(t, settings());
  HealthCheckWork w(t, settings());
  std::vector<PathEvent> out;
  run_health_check(w, 3, 5, out);
  // The agent's probes since +3 s: lost, or moved to the tunnel (not both ways on the line).
  for (int i = 0; i < 50; ++i) {
    const std::int64_t tx = kT0 + 3 * kS + i * 10 * kMs;
    w.on_record(agent_record(tx, false, "express-connect", "unknown"), kT0 + 8 * kS, out);
    w.on_record(agent_record(tx + 1, true, "ipsec", "ipsec"), kT0 + 8 * kS, out);
    w.on_record(agent_record(tx + 2, true, "ipsec", "express-connect"), kT0 + 8 * kS, out);
  }
  CHECK(count(out, EventType::HealthcheckDegraded) == 3);
  CHECK(count(out, EventType::HealthcheckFailed) == 1);
  CHECK(count(out, EventType::HealthcheckBlocked) == 0);
  CHECK(w.status()[0].state == HealthCheckState::Failed);
  CHECK(w.status()[0].eta_ns == 0);
}

TEST_CASE("healthcheck watch: a lossy line is no evidence that it works", "[unit][healthcheck]") {
  BlockedJudge j("express-connect", settings());
  std::vector<PathEvent> out;
  PathEvent d;
  d.type = EventType::HealthcheckDegraded;
  d.ts_ns = kT0 + kS;
  d.duration_ns = kS;  // the run began at kT0
  d.unanswered = 2;
  j.on_event(d, kT0 + 2 * kS, out);
  // 2 lost on the line, 10 carried: more than 1 in 10.
  j.on_record(agent_record(kT0 + 20, false, "express-connect", "unknown"), kT0, out);
  j.on_record(agent_record(kT0 + 21, false, "express-connect", "unknown"), kT0, out);
  for (int i = 0; i < 10; ++i) {
    j.on_record(agent_record(kT0 + i, true, "express-connect", "express-connect"), kT0, out);
  }
  CHECK(out.empty());
  CHECK_FALSE(j.blocked());
  // k = 1 is never enough, however good the evidence.
  BlockedJudge one("express-connect", settings());
  d.unanswered = 1;
  d.duration_ns = 0;
  one.on_event(d, kT0 + 2 * kS, out);
  for (int i = 0; i < 10; ++i) {
    one.on_record(agent_record(kT0 + kS + i, true, "express-connect", "express-connect"), kT0, out);
  }
  CHECK(out.empty());
  // Recovered ends the run: evidence after it counts for nothing.
  PathEvent r;
  r.type = EventType::HealthcheckRecovered;
  one.on_event(r, kT0 + 3 * kS, out);
  d.unanswered = 2;
  d.ts_ns = kT0 + 5 * kS;
  d.duration_ns = kS;
  one.on_event(d, kT0 + 5 * kS, out);
  CHECK(out.empty());
  for (int i = 0; i < 3; ++i) {
    one.on_record(agent_record(kT0 + 4 * kS + i, true, "express-connect", "express-connect"),
                  kT0 + 6 * kS, out);
  }
  CHECK(count(out, EventType::HealthcheckBlocked) == 1);
}

// The line dies before the tap (the gateway's port down): the probes stop arriving. The agent's
// probes no longer go both ways on the line, so each probe that does not arrive is one the
// cloud lost: degraded at each interval, failed at N; never absent.
TEST_CASE("healthcheck watch: probes that stop arriving on a dead line are unanswered",
          "[unit][healthcheck]") {
  auto t = taps();
  enable_health_check(t, settings());
  HealthCheckWork w(t, settings());
  std::vector<PathEvent> out;
  run_health_check(w, 3, 0, out);  // answered at +0, +1, +2 s
  // The agent's probes after +2 s: forward on the tunnel, replies lost; their records reach
  // +2.6 s only so far.
  const auto dead = [&](std::int64_t from, std::int64_t to) {
    for (std::int64_t tx = from; tx <= to; tx += 500 * kMs) {
      w.on_record(agent_record(tx, false, "ipsec", "unknown"), tx + kS, out);
    }
  };
  dead(kT0 + 2 * kS + 100 * kMs, kT0 + 2 * kS + 600 * kMs);
  dead(kT0 + 2 * kS + 700 * kMs, kT0 + 2 * kS + 700 * kMs);
  w.tick(0, kT0 + 4 * kS + kMs, out);  // the probe of +3 s timed out at +4 s …
  CHECK(out.empty());                  // … but the records do not tell of +3 s yet
  dead(kT0 + 3 * kS + 100 * kMs, kT0 + 3 * kS + 100 * kMs);
  w.tick(0, kT0 + 4 * kS + 2 * kMs, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == EventType::HealthcheckDegraded);
  CHECK(out[0].unanswered == 1);
  CHECK(out[0].ts_ns == kT0 + 3 * kS);
  CHECK(out[0].eta_ns == 3 * kS);
  dead(kT0 + 3 * kS + 600 * kMs, kT0 + 19 * kS);
  w.tick(0, kT0 + 20 * kS, out);
  CHECK(count(out, EventType::HealthcheckDegraded) == 3);
  CHECK(count(out, EventType::HealthcheckFailed) == 1);
  CHECK(count(out, EventType::HealthcheckAbsent) == 0);
  CHECK(count(out, EventType::HealthcheckBlocked) == 0);
  const auto st = w.status()[0];
  CHECK(st.state == HealthCheckState::Failed);
  CHECK(st.stats.missing == st.stats.unanswered);
  CHECK(st.stats.probes == 3);
  // The line is back: a probe answered recovers.
  w.on_echo(0, hc_probe(kT0 + 21 * kS, 40), out);
  w.on_echo(0, hc_answer(kT0 + 21 * kS + kMs, 40), out);
  CHECK(count(out, EventType::HealthcheckRecovered) == 1);
  CHECK(w.status()[0].state == HealthCheckState::Ok);
}

// The health check switched off while the line carries the agent's probes: absent, and no
// countdown.
TEST_CASE("healthcheck watch: probes that stop on a working line are absent",
          "[unit][healthcheck]") {
  auto t = taps();
  enable_health_check(t, settings());
  HealthCheckWork w(t, settings());
  std::vector<PathEvent> out;
  run_health_check(w, 3, 0, out);
  for (int i = 0; i < 3; ++i) {
    w.on_record(agent_record(kT0 + 2 * kS + 100 * kMs + i, false, "ipsec", "unknown"), kT0 + 3 * kS,
                out);
  }
  // … but a later probe of the agent's went both ways on the line: it works.
  w.on_record(agent_record(kT0 + 2 * kS + 200 * kMs, true, "express-connect", "express-connect"),
              kT0 + 3 * kS, out);
  w.tick(0, kT0 + 20 * kS, out);
  // Absent only once the line is shown carrying after the 3 intervals (+5 s): records lag.
  CHECK(out.empty());
  w.on_record(agent_record(kT0 + 5 * kS + kMs, true, "express-connect", "express-connect"),
              kT0 + 20 * kS, out);
  w.tick(0, kT0 + 20 * kS + kMs, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == EventType::HealthcheckAbsent);
  CHECK(w.status()[0].state == HealthCheckState::Absent);
  CHECK_FALSE(w.status()[0].eta_ns.has_value());
}
