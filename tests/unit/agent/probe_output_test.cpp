#include "pathsentry/probe/agent/probe_output.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

using namespace pathsentry;
using namespace pathsentry::probe;

// The run's total line shows the loss split by direction when there is one.
TEST_CASE("total line shows the loss split", "[unit][output]") {
  SessionConfig c;
  c.target = *IpAddress::parse("198.18.0.2");
  c.proto = Proto::Icmp;
  SessionSummary s;
  s.counters.sent = 10;
  s.counters.lost = 4;
  CHECK(format_total_line(c, s).find("fwd") == std::string::npos);
  s.lost_forward = 1;
  s.lost_reverse = 1;
  s.lost_undetermined = 2;
  CHECK(format_total_line(c, s).find("(fwd 1 rev 1 undetermined 2)") != std::string::npos);
}

// The summary document has the contract's fields, with null direction split for ICMP.
TEST_CASE("summary json document", "[unit][output]") {
  SessionConfig a;
  a.target = *IpAddress::parse("198.18.0.2");
  a.proto = Proto::Icmp;
  a.rate_pps = 1000;
  SessionConfig b = a;
  b.proto = Proto::Stamp;
  SessionSummary sa;
  sa.counters.sent = 10;
  sa.counters.received = 9;
  sa.counters.lost = 1;
  sa.rtt = {9, 100, 200, 300, 400, 210.5};
  SessionSummary sb = sa;
  sb.lost_forward = 1;
  sb.lost_reverse = 0;
  const SessionConfig* configs[] = {&a, &b};
  const SessionSummary sums[] = {sa, sb};
  const auto j = nlohmann::json::parse(summary_json(2.5, configs, sums));
  REQUIRE(j["duration_s"] == 2.5);
  REQUIRE(j["sessions"].size() == 2);
  const auto& s0 = j["sessions"][0];
  for (const char* k : {"target", "proto", "rate", "sent", "received", "lost", "lost_forward",
                        "lost_reverse", "lost_undetermined", "duplicates", "reordered", "late",
                        "missed_slots", "send_errors", "rtt_ns", "jitter_ns"}) {
    REQUIRE(s0.contains(k));
  }
  REQUIRE(s0["lost_forward"].is_null());
  REQUIRE(s0["lost_undetermined"].is_null());
  REQUIRE(s0["rtt_ns"]["p99"] == 300);
  REQUIRE(j["sessions"][1]["lost_forward"] == 1);
  REQUIRE(j["sessions"][1]["proto"] == "stamp");
}

// Issue 14: the summary gives every unsent slot with its cause.
TEST_CASE("summary json splits missed slots by cause", "[unit][output]") {
  SessionConfig a;
  a.target = *IpAddress::parse("198.18.0.2");
  SessionSummary sa;
  sa.counters.missed_late_wakeup = 4;
  sa.counters.missed_ring_full = 1;
  sa.counters.missed_slots = 5;
  sa.counters.send_errors = 2;
  sa.max_send_lag_ns = 1'234'567;
  const SessionConfig* configs[] = {&a};
  const SessionSummary sums[] = {sa};
  const auto j = nlohmann::json::parse(summary_json(1.0, configs, sums));
  const auto& s0 = j["sessions"][0];
  REQUIRE(s0["missed_slots"] == 5);
  REQUIRE(s0["missed"]["late_wakeup"] == 4);
  REQUIRE(s0["missed"]["ring_full"] == 1);
  REQUIRE(s0["missed"]["send_error"] == 2);
  REQUIRE(s0["max_send_lag_ns"] == 1'234'567);
}

// The live summary line shows sent/received/lost and RTT in ms.
TEST_CASE("interval line format", "[unit][output]") {
  SessionConfig s;
  s.target = *IpAddress::parse("198.18.0.2");
  IntervalReport r;
  r.counters.sent = 1000;
  r.counters.received = 998;
  r.counters.lost = 2;
  r.counters.missed_slots = 3;
  r.rtt = {998, 31'000, 52'000, 110'000, 201'000, 55'000};
  const auto line = format_interval_line(1'700'000'000'000'000'000, s, r);
  REQUIRE_THAT(line, Catch::Matchers::Contains("sent 1000 recv 998 lost 2") &&
                         Catch::Matchers::Contains("0.031/0.052/0.110/0.201") &&
                         Catch::Matchers::Contains("missed 3"));
}

// Issue 13 / 14 goal 7: refused replies and a forward loss capped by a rate limit show on the
// per-second line, so the user sees them where they look; the summary has both.
TEST_CASE("interval line shows rejected replies and the rate-limit hint", "[unit][output]") {
  SessionConfig s;
  s.target = *IpAddress::parse("198.18.0.2");
  s.proto = Proto::Stamp;
  IntervalReport r;
  r.counters.sent = 20000;
  r.counters.received = 10000;
  r.counters.lost = 10000;
  const auto plain = format_interval_line(1'700'000'000'000'000'000, s, r);
  CHECK_THAT(plain, !Catch::Matchers::Contains("rejected") && !Catch::Matchers::Contains("capped"));
  r.counters.rejected_send_time = 2;
  r.counters.rejected_ssid = 1;
  r.forward_cap_pps = 9999.6;
  const auto line = format_interval_line(1'700'000'000'000'000'000, s, r);
  CHECK_THAT(line, Catch::Matchers::Contains("rejected 3") &&
                       Catch::Matchers::Contains("forward loss capped at 10000/s") &&
                       Catch::Matchers::Contains("rate_limit_pps"));
  SessionSummary sum;
  sum.counters.rejected_implausible_time = 4;
  sum.forward_cap_pps = 10000;
  const SessionConfig* configs[] = {&s};
  const auto j = nlohmann::json::parse(summary_json(5.0, configs, std::span(&sum, 1)));
  CHECK(j["sessions"][0]["rejected"]["implausible_time"] == 4);
  CHECK(j["sessions"][0]["rejected"]["send_time"] == 0);
  CHECK(j["sessions"][0]["forward_cap_pps"] == 10000.0);
}

// Every protocol has its own name in the log and the summary (the JSON lines' spelling).
TEST_CASE("protocol names", "[unit][output]") {
  CHECK(std::string(proto_name(Proto::Icmp)) == "icmp");
  CHECK(std::string(proto_name(Proto::Stamp)) == "stamp");
  CHECK(std::string(proto_name(Proto::Ttl)) == "ttl");
}

// The per-second line's paths: the confirmed path, "none" in an outage, "-" before one is
// established; TTL sessions show the forward path only.
TEST_CASE("paths text from the path state", "[unit][output]") {
  PathState s;
  CHECK(format_paths(s) == "fwd=- rev=-");
  s.fwd = "ipsec";
  s.rev = "express-connect";
  CHECK(format_paths(s) == "fwd=ipsec rev=express-connect");
  s.rev_outage = true;
  CHECK(format_paths(s) == "fwd=ipsec rev=none");
  s.fwd = std::nullopt;
  s.fwd_outage = true;
  s.has_reverse = false;
  CHECK(format_paths(s) == "fwd=none");
}

// The tap suffix names every tap that is down, with how long, and is empty when none is.
TEST_CASE("degraded suffix from the taps down", "[unit][output]") {
  CHECK(format_degraded({}).empty());
  const std::vector<TapDown> down{{"tap-inet", "ipsec", 2'310'000'000},
                                  {"tap-ec", "express-connect", 120'000'000}};
  CHECK(format_degraded(down) ==
        "degraded: tap-inet (ipsec) down 2.310 s, tap-ec (express-connect) down 0.120 s");
}

// The TTL session's per-second line counts what the second added and ends with its path.
TEST_CASE("ttl interval line", "[unit][output]") {
  TtlSessionConfig c;
  c.target = *IpAddress::parse("192.168.20.161");
  c.ttl = 2;
  TtlStats before;
  before.sent = 5;
  before.per_path["ipsec"] = 4;
  TtlStats now = before;
  now.sent = 15;
  now.per_path["ipsec"] = 13;
  now.no_answer = 1;
  PathState p;
  p.fwd = "ipsec";
  p.has_reverse = false;
  // 1700000000 s = 2023-11-14 22:13:20 UTC; the line names the second that ended.
  CHECK(format_ttl_interval_line(1'700'000'001'000'000'000, c, now, before, p) ==
        "22:13:20 192.168.20.161 ttl=2 sent 10 hop ipsec:9 unmapped 0 target 0 other 0 none 1 "
        "fwd=ipsec");
}
