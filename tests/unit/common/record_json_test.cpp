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
  CHECK(a.loss == b.loss);
  CHECK(a.late == b.late);
  CHECK(a.taps_down == b.taps_down);
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
  CHECK(a.probes_lost_undetermined == b.probes_lost_undetermined);
  CHECK(a.outage_kind == b.outage_kind);
  CHECK(a.resolution_ns == b.resolution_ns);
  CHECK(a.failback == b.failback);
  CHECK(a.fwd_path == b.fwd_path);
  CHECK(a.rev_path == b.rev_path);
  CHECK(a.duration_ns == b.duration_ns);
  CHECK(a.tap == b.tap);
  CHECK(a.path == b.path);
  CHECK(a.reason == b.reason);
}

}  // namespace

// A record is one line with the documented keys, in a fixed layout.
TEST_CASE("record json layout", "[unit][record_json]") {
  std::string out;
  append_json(stamp_record(), out, "dc1");
  CHECK(out == R"({"type":"probe","agent":"dc1","target":"192.168.20.161","proto":"stamp",)"
               R"("session_id":131074,"seq":17,"tx_ns":1700000000000000123,)"
               R"("rx_ns":1700000000008000456,"rtt_ns":8000333,"tx_kernel_ts":true,)"
               R"("fwd_path":"ipsec","rev_path":"express-connect","loss":null,"late":false,)"
               R"("reflector":{"seq":3,"rx_ns":1700000000004000000,"tx_ns":1700000000004010000,)"
               R"("clock_synced":true}})"
               "\n");
  out.clear();
  append_json(lost_icmp(), out);
  const auto j = nlohmann::json::parse(out);
  CHECK(j["rx_ns"].is_null());
  CHECK(j["rtt_ns"].is_null());
  CHECK(j["reflector"].is_null());
  CHECK(j["loss"] == "undetermined");
  CHECK(j.find("agent") == j.end());
}

// Records survive encode → parse unchanged, answered or lost in any direction.
TEST_CASE("record json round trip", "[unit][record_json]") {
  ProbeRecord fwd = lost_icmp();
  fwd.loss = LossDirection::Forward;
  ProbeRecord rev = lost_icmp();
  rev.loss = LossDirection::Reverse;
  for (const auto& r : {stamp_record(), lost_icmp(), fwd, rev}) {
    std::string out;
    append_json(r, out);
    const auto back = parse_json_line(out);
    REQUIRE(back);
    REQUIRE(std::holds_alternative<ProbeRecord>(*back));
    same(std::get<ProbeRecord>(*back), r);
  }
}

// A line written before "loss" existed still parses: a lost probe's direction is then unknown.
TEST_CASE("record json without loss", "[unit][record_json]") {
  for (const auto& r : {stamp_record(), lost_icmp()}) {
    std::string out;
    append_json(r, out);
    auto j = nlohmann::json::parse(out);
    j.erase("loss");
    const auto back = parse_json_line(j.dump());
    REQUIRE(back);
    CHECK(std::get<ProbeRecord>(*back).loss ==
          (r.rx_ns ? LossDirection::None : LossDirection::Undetermined));
  }
  std::string out;
  append_json(lost_icmp(), out);
  auto j = nlohmann::json::parse(out);
  j["loss"] = "sideways";
  CHECK(parse_json_line(j.dump()).error().find("'loss'") != std::string::npos);
}

// Every event type survives encode → parse, carrying the fields of its type only.
TEST_CASE("event json round trip", "[unit][record_json]") {
  PathEvent ob = switchover();
  ob.type = EventType::OutageBegin;
  ob.failback = false;
  ob.to = "none";
  ob.first_ok_on_new_ns = 0;
  ob.outage_ns = 0;
  ob.outage_kind = OutageKind::Undetermined;
  PathEvent oe = switchover();
  oe.type = EventType::OutageEnd;
  oe.failback = false;
  oe.from = "none";
  oe.outage_kind = OutageKind::Bound;
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
    for (const char* k : {"probes_lost_undetermined", "outage_kind", "resolution_ns"}) {
      INFO(k);
      CHECK(j.contains(k) == !asym);
    }
    if (!asym) CHECK(j["outage_kind"] == to_string(e.outage_kind));
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
  j = nlohmann::json::parse(out);
  j["outage_kind"] = "guessed";
  CHECK(parse_json_line(j.dump()).error() == "unknown outage_kind");
  j = nlohmann::json::parse(out);
  j.erase("resolution_ns");
  CHECK(parse_json_line(j.dump()).error().find("'resolution_ns'") != std::string::npos);
}

// The log line of a switchover says what changed, how long it took and what was lost, and
// what the outage figure is: measured (with its resolution), a bound, or undetermined.
TEST_CASE("event log line", "[unit][record_json]") {
  PathEvent e = switchover();
  e.probes_lost_undetermined = 0;
  auto s = describe(e);
  CHECK(s.find("switchover reverse 192.168.20.161 stamp") == 0);
  CHECK(s.find("express-connect -> ipsec (failback), outage 16006.000 ms (resolution 1.000 ms), "
               "16005 probes lost (last ok") != std::string::npos);
  CHECK(s.find("2023-11-14T22:13:20.009000000Z") != std::string::npos);
  SECTION("measured with undetermined losses too") {
    e.probes_lost_undetermined = 7;
    CHECK(describe(e).find("16005 probes lost (and 7 more beyond the tap, direction "
                           "undetermined)") != std::string::npos);
  }
  SECTION("no loss: a bound") {
    e.outage_kind = OutageKind::Bound;
    e.probes_lost = 0;
    e.outage_ns = 1'000'000;
    e.direction = Direction::Forward;
    e.proto = Proto::Icmp;
    e.failback = false;
    CHECK(describe(e).find("switchover forward 192.168.20.161 icmp: express-connect -> ipsec, "
                           "no loss seen, outage at most 1.000 ms (last ok") == 0);
  }
  SECTION("undetermined") {
    e.type = EventType::OutageEnd;
    e.outage_kind = OutageKind::Undetermined;
    e.probes_lost = 0;
    e.probes_lost_undetermined = 272;
    e.outage_ns = 273'000'000;
    e.to = "ipsec";
    CHECK(describe(e).find("outage_end reverse 192.168.20.161 stamp: through again on ipsec, 272 "
                           "probes lost beyond the tap, direction undetermined, outage at most "
                           "273.000 ms at") == 0);
  }
  SECTION("outage begin") {
    e.type = EventType::OutageBegin;
    e.outage_kind = OutageKind::Undetermined;
    e.probes_lost = 0;
    e.probes_lost_undetermined = 3;
    CHECK(describe(e).find("no path after 3 probes lost beyond the tap, direction undetermined "
                           "(was express-connect") != std::string::npos);
    e.outage_kind = OutageKind::Measured;
    e.probes_lost = 3;
    e.probes_lost_undetermined = 0;
    CHECK(describe(e).find("no path after 3 probes lost (was express-connect") !=
          std::string::npos);
  }
}

// A record attributed while taps were down names them; the key is absent when none was.
TEST_CASE("record json taps_down", "[unit][record_json]") {
  ProbeRecord r = lost_icmp();
  r.fwd_path = "unknown";
  r.taps_down = {"tap-inet", "tap-ec"};
  std::string out;
  append_json(r, out);
  const auto j = nlohmann::json::parse(out);
  CHECK(j["taps_down"] == nlohmann::json::array({"tap-inet", "tap-ec"}));
  const auto back = parse_json_line(out);
  REQUIRE(back);
  REQUIRE(std::holds_alternative<ProbeRecord>(*back));
  same(std::get<ProbeRecord>(*back), r);

  out.clear();
  append_json(stamp_record(), out);
  CHECK(out.find("taps_down") == std::string::npos);
  auto jj = nlohmann::json::parse(out);
  jj["taps_down"] = "tap-ec";
  CHECK(parse_json_line(jj.dump()).error().find("'taps_down'") != std::string::npos);
  jj["taps_down"] = nlohmann::json::array({1});
  CHECK(parse_json_line(jj.dump()).error().find("'taps_down'") != std::string::npos);
}

// tap_down / tap_up carry the tap, its path, the reason and times, and no probe stream fields.
TEST_CASE("tap event json round trip and log line", "[unit][record_json]") {
  PathEvent down;
  down.type = EventType::TapDown;
  down.tap = "tap-inet";
  down.path = "ipsec";
  down.reason = "pcap read: The interface disappeared";
  down.ts_ns = 1'700'000'000'009'000'000;
  down.detected_ns = 1'700'000'000'012'000'000;
  PathEvent up = down;
  up.type = EventType::TapUp;
  up.ts_ns = 1'700'000'003'509'000'000;
  up.detected_ns = up.ts_ns;
  up.duration_ns = up.ts_ns - down.ts_ns;
  for (const auto& e : {down, up}) {
    INFO(to_string(e.type));
    std::string out;
    append_json(e, out, "dc1");
    const auto j = nlohmann::json::parse(out);
    CHECK(j["type"] == "event");
    CHECK(j["agent"] == "dc1");
    CHECK(j["event"] == (e.type == EventType::TapDown ? "tap_down" : "tap_up"));
    CHECK(j["tap"] == "tap-inet");
    CHECK(j["path"] == "ipsec");
    CHECK(j["reason"] == e.reason);
    CHECK(j["ts_ns"] == e.ts_ns);
    CHECK(j["detected_ns"] == e.detected_ns);
    CHECK(j.contains("duration_ns") == (e.type == EventType::TapUp));
    for (const char* k : {"target", "proto", "session_id", "seq", "direction", "from", "to"}) {
      CHECK_FALSE(j.contains(k));
    }
    const auto back = parse_json_line(out);
    REQUIRE(back);
    REQUIRE(std::holds_alternative<PathEvent>(*back));
    same(std::get<PathEvent>(*back), e);
  }
  CHECK(describe(down).find("tap_down tap-inet (ipsec): pcap read: The interface disappeared") ==
        0);
  const auto u = describe(up);
  CHECK(u.find("tap_up tap-inet (ipsec): capturing again after 3500.000 ms down") == 0);
  auto j = nlohmann::json::parse([&] {
    std::string o;
    append_json(up, o);
    return o;
  }());
  j.erase("reason");
  CHECK(parse_json_line(j.dump()).error().find("'reason'") != std::string::npos);
}

namespace {

Rollup sample_rollup() {
  Rollup r;
  r.target = "192.168.20.161";
  r.proto = Proto::Stamp;
  r.session_id = 2;
  r.second_ns = 1'767'225'600'000'000'000;
  r.direction = Direction::Reverse;
  r.path = "ipsec";
  r.sent = 1000;
  r.received = 990;
  r.lost_forward = 4;
  r.lost_reverse = 5;
  r.lost_undetermined = 1;
  r.rtt_min_ns = 31'000;
  r.rtt_mean_ns = 52'000;
  r.rtt_p50_ns = 50'000;
  r.rtt_p99_ns = 110'000;
  r.rtt_max_ns = 201'000;
  r.jitter_ns = 7'000;
  return r;
}

TEST_CASE("rollup and batch json round trip", "[unit][record_json]") {
  const Rollup r = sample_rollup();
  std::string out;
  append_json(r, out);
  const auto j = nlohmann::json::parse(out);
  CHECK(j["type"] == "rollup");
  CHECK(j["direction"] == "reverse");
  CHECK(j["lost_reverse"] == 5);
  const auto back = parse_json_line(out);
  REQUIRE(back);
  REQUIRE(std::holds_alternative<Rollup>(*back));
  CHECK(std::get<Rollup>(*back) == r);

  const BatchHeader h{"dc1", "9f1c0a2b3d4e5f60", 17, 1'767'225'601'000'000'000, "0.1.0"};
  out.clear();
  append_json(h, out);
  CHECK(out.rfind(R"({"type":"batch","agent":"dc1","run":"9f1c0a2b3d4e5f60","batch":17,)", 0) == 0);
  const auto hb = parse_json_line(out);
  REQUIRE(hb);
  REQUIRE(std::holds_alternative<BatchHeader>(*hb));
  CHECK(std::get<BatchHeader>(*hb) == h);
}

TEST_CASE("event_id is carried when set", "[unit][record_json]") {
  PathEvent e = switchover();
  std::string out;
  append_json(e, out);
  CHECK(out.find("event_id") == std::string::npos);
  e.event_id = 42;
  out.clear();
  append_json(e, out);
  CHECK(nlohmann::json::parse(out)["event_id"] == 42);
  const auto back = parse_json_line(out);
  REQUIRE(back);
  CHECK(std::get<PathEvent>(*back).event_id == 42);
  CHECK_FALSE(parse_json_line(R"({"type":"event","event":"tap_up","event_id":-1})"));
}

TEST_CASE("rollup and batch parse errors", "[unit][record_json]") {
  std::string good;
  append_json(sample_rollup(), good);
  auto mutate = [&](const char* key, const nlohmann::json& v) {
    auto j = nlohmann::json::parse(good);
    j[key] = v;
    return parse_json_line(j.dump());
  };
  CHECK(mutate("direction", "sideways").error() == "unknown direction");
  CHECK(mutate("proto", "tcp").error() == "unknown proto");
  CHECK(mutate("second_ns", 1'500'000'000).error() == "field 'second_ns' is not a whole second");
  CHECK(mutate("received", 1000).error() == "received and lost add up to more than sent");
  CHECK(mutate("sent", -1).error() == "field 'sent' is not an unsigned integer");
  CHECK(mutate("path", 3).error() == "field 'path' is not a string");
  CHECK(parse_json_line(R"({"type":"batch","agent":"dc1","batch":1,"created_ns":0,"version":""})")
            .error() == "missing field 'run'");
  CHECK(parse_json_line(
            R"({"type":"batch","agent":"","run":"ab","batch":1,"created_ns":0,"version":""})")
            .error() == "field 'agent' is empty");
}

}  // namespace
