#include "pathsentry/common/record_json.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/sample_records.h"
#include "pathsentry/common/config_error.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace pathsentry::test::sample_records;

namespace {

void same(const ProbeRecord& a, const ProbeRecord& b) {
  CHECK(a.target == b.target);
  CHECK(a.proto == b.proto);
  CHECK(a.session_id == b.session_id);
  CHECK(a.seq == b.seq);
  CHECK(a.tx_ns == b.tx_ns);
  CHECK(a.rx_ns == b.rx_ns);
  CHECK(a.rtt_ns == b.rtt_ns);
  CHECK(a.tx_kernel_ts == b.tx_kernel_ts);
  CHECK(a.reflector_seq == b.reflector_seq);
  CHECK(a.reflector_rx_ns == b.reflector_rx_ns);
  CHECK(a.reflector_tx_ns == b.reflector_tx_ns);
  CHECK(a.reflector_clock_synced == b.reflector_clock_synced);
  CHECK(a.fwd_path == b.fwd_path);
  CHECK(a.rev_path == b.rev_path);
  CHECK(a.late == b.late);
}

void same(const PathEvent& a, const PathEvent& b) {
  CHECK(a.type == b.type);
  CHECK(a.target == b.target);
  CHECK(a.proto == b.proto);
  CHECK(a.session_id == b.session_id);
  CHECK(a.direction == b.direction);
  CHECK(a.ts_ns == b.ts_ns);
  CHECK(a.seq == b.seq);
  CHECK(a.detected_ns == b.detected_ns);
  CHECK(a.from == b.from);
  CHECK(a.to == b.to);
  CHECK(a.last_ok_on_old_ns == b.last_ok_on_old_ns);
  CHECK(a.first_ok_on_new_ns == b.first_ok_on_new_ns);
  CHECK(a.outage_ns == b.outage_ns);
  CHECK(a.probes_lost == b.probes_lost);
  CHECK(a.failback == b.failback);
  CHECK(a.fwd_path == b.fwd_path);
  CHECK(a.rev_path == b.rev_path);
  CHECK(a.duration_ns == b.duration_ns);
}

}  // namespace

// A record is one line with the documented keys, in a fixed layout.
TEST_CASE("record json layout", "[unit][record_json]") {
  std::string out;
  append_json(stamp_record(), out, "dc1");
  CHECK(out == R"({"type":"probe","agent":"dc1","target":"192.168.20.161","proto":"stamp",)"
               R"("session_id":131074,"seq":17,"tx_ns":1700000000000000123,)"
               R"("rx_ns":1700000000008000456,"rtt_ns":8000333,"tx_kernel_ts":true,)"
               R"("fwd_path":"ipsec","rev_path":"express-connect","late":false,)"
               R"("reflector":{"seq":3,"rx_ns":1700000000004000000,"tx_ns":1700000000004010000,)"
               R"("clock_synced":true}})"
               "\n");
  out.clear();
  append_json(lost_icmp(), out);
  const auto j = nlohmann::json::parse(out);
  CHECK(j["rx_ns"].is_null());
  CHECK(j["rtt_ns"].is_null());
  CHECK(j["reflector"].is_null());
  CHECK(j.find("agent") == j.end());
}

// Records survive encode → parse unchanged, answered or lost.
TEST_CASE("record json round trip", "[unit][record_json]") {
  for (const auto& r : {stamp_record(), lost_icmp()}) {
    std::string out;
    append_json(r, out);
    const auto back = parse_json_line(out);
    REQUIRE(back);
    REQUIRE(std::holds_alternative<ProbeRecord>(*back));
    same(std::get<ProbeRecord>(*back), r);
  }
}

// Every event type survives encode → parse, carrying the fields of its type only.
TEST_CASE("event json round trip", "[unit][record_json]") {
  PathEvent ob = switchover();
  ob.type = EventType::OutageBegin;
  ob.failback = false;
  ob.to = "none";
  ob.first_ok_on_new_ns = 0;
  ob.outage_ns = 0;
  PathEvent oe = switchover();
  oe.type = EventType::OutageEnd;
  oe.failback = false;
  oe.from = "none";
  PathEvent ab;
  ab.type = EventType::AsymmetricBegin;
  ab.target = "192.168.20.161";
  ab.proto = Proto::Icmp;
  ab.session_id = 1;
  ab.ts_ns = 10;
  ab.seq = 4;
  ab.detected_ns = 11;
  ab.fwd_path = "ipsec";
  ab.rev_path = "express-connect";
  PathEvent ae = ab;
  ae.type = EventType::AsymmetricEnd;
  ae.duration_ns = 16'000'000'000;
  for (const auto& e : {switchover(), ob, oe, ab, ae}) {
    INFO(to_string(e.type));
    std::string out;
    append_json(e, out, "dc1");
    const auto j = nlohmann::json::parse(out);
    CHECK(j["event"] == to_string(e.type));
    const bool asym = e.type == EventType::AsymmetricBegin || e.type == EventType::AsymmetricEnd;
    CHECK(j.contains("direction") == !asym);
    CHECK(j.contains("failback") == (e.type == EventType::Switchover));
    CHECK(j.contains("outage_ns") ==
          (e.type == EventType::Switchover || e.type == EventType::OutageEnd));
    const auto back = parse_json_line(out);
    REQUIRE(back);
    REQUIRE(std::holds_alternative<PathEvent>(*back));
    same(std::get<PathEvent>(*back), e);
  }
}

// Quotes, backslashes and control characters in labels are escaped into valid JSON.
TEST_CASE("record json escapes strings", "[unit][record_json]") {
  ProbeRecord r = stamp_record();
  r.fwd_path = "odd \"path\"\\ with\ttab\x01";
  r.target = "line\nbreak";
  std::string out;
  append_json(r, out);
  CHECK(std::count(out.begin(), out.end(), '\n') == 1);
  const auto back = parse_json_line(out);
  REQUIRE(back);
  same(std::get<ProbeRecord>(*back), r);
}

// Malformed lines are rejected with a message naming the problem.
TEST_CASE("record json parse errors", "[unit][record_json]") {
  CHECK(parse_json_line("{not json").error() == "not valid JSON");
  CHECK(parse_json_line("[1,2]").error() == "not a JSON object");
  CHECK(parse_json_line(R"({"type":"weather"})").error().find("weather") != std::string::npos);
  std::string out;
  append_json(stamp_record(), out);
  auto j = nlohmann::json::parse(out);
  j.erase("seq");
  CHECK(parse_json_line(j.dump()).error().find("'seq'") != std::string::npos);
  j = nlohmann::json::parse(out);
  j["tx_ns"] = "soon";
  CHECK(parse_json_line(j.dump()).error().find("'tx_ns'") != std::string::npos);
  j = nlohmann::json::parse(out);
  j["proto"] = "carrier-pigeon";
  CHECK_FALSE(parse_json_line(j.dump()));
  out.clear();
  append_json(switchover(), out);
  j = nlohmann::json::parse(out);
  j["direction"] = "sideways";
  CHECK(parse_json_line(j.dump()).error() == "unknown direction");
}

// The log line of a switchover says what changed, how long it took and what was lost.
TEST_CASE("event log line", "[unit][record_json]") {
  const auto s = describe(switchover());
  CHECK(s.find("switchover reverse 192.168.20.161 stamp") == 0);
  CHECK(s.find("express-connect -> ipsec (failback)") != std::string::npos);
  CHECK(s.find("outage 16006.000 ms") != std::string::npos);
  CHECK(s.find("16005 probes lost") != std::string::npos);
  CHECK(s.find("2023-11-14T22:13:20.009000000Z") != std::string::npos);
}
