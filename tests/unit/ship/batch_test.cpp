// Batch bodies: what the collector's parser (record_json's parse_json_line) accepts, line by line.
#include "pathsentry/probe/ship/batch.h"

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "common/sample_records.h"
#include "pathsentry/common/record_json.h"
#include "pathsentry/probe/ship/shipper.h"
#include "pathsentry/probe/ship/spool.h"

using namespace pathsentry;
using namespace pathsentry::probe;
namespace sample = pathsentry::test::sample_records;

namespace {

std::vector<std::string> lines_of(const std::string& body) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < body.size()) {
    const std::size_t nl = body.find('\n', pos);
    REQUIRE(nl != std::string::npos);  // every line ends in '\n'
    out.push_back(body.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

Rollup sample_rollup() {
  Rollup r;
  r.target = "192.168.20.161";
  r.proto = Proto::Stamp;
  r.session_id = 131074;
  r.second_ns = 1'700'000'016'000'000'000;
  r.direction = Direction::Reverse;
  r.path = "express-connect";
  r.sent = 1000;
  r.received = 998;
  r.lost_forward = 1;
  r.lost_undetermined = 1;
  r.rtt_min_ns = 1;
  r.rtt_mean_ns = 2;
  r.rtt_p50_ns = 3;
  r.rtt_p99_ns = 4;
  r.rtt_max_ns = 5;
  r.jitter_ns = 6;
  return r;
}

}  // namespace

TEST_CASE("batch body: a batch line, then rollups, events and probes, each parsing back equal",
          "[unit]") {
  BatchHeader h{"dc1", "9f1c0a2b3d4e5f60", 17, 1'700'000'017'000'000'000, "0.1.0"};
  const std::vector<Rollup> rollups{sample_rollup()};
  PathEvent ev = sample::switchover();
  ev.event_id = 3;
  const std::vector<PathEvent> events{ev};
  const std::vector<ProbeRecord> records{sample::stamp_record(), sample::lost_icmp()};
  const std::string body = encode_batch(h, rollups, events, records);
  const auto lines = lines_of(body);
  REQUIRE(lines.size() == 5);
  std::vector<JsonLine> parsed;
  for (const auto& l : lines) {
    auto p = parse_json_line(l);
    INFO(l);
    REQUIRE(p);
    parsed.push_back(*p);
    if (!std::holds_alternative<BatchHeader>(*p)) CHECK(l.find("\"agent\"") == std::string::npos);
  }
  CHECK(std::get<BatchHeader>(parsed[0]) == h);
  CHECK(std::get<Rollup>(parsed[1]) == rollups[0]);
  CHECK(std::get<PathEvent>(parsed[2]).event_id == 3);
  CHECK(std::get<PathEvent>(parsed[2]).probes_lost == ev.probes_lost);
  CHECK(std::get<ProbeRecord>(parsed[3]).seq == records[0].seq);
  CHECK(std::get<ProbeRecord>(parsed[3]).rtt_ns == records[0].rtt_ns);
  CHECK(std::get<ProbeRecord>(parsed[4]).seq == records[1].seq);
  CHECK(std::get<ProbeRecord>(parsed[4]).loss == LossDirection::Undetermined);

  std::uint64_t dropped = 0;
  const std::string stripped = strip_probe_lines(body, dropped);
  CHECK(dropped == 2);
  const auto kept = lines_of(stripped);
  REQUIRE(kept.size() == 3);
  CHECK(kept[0] == lines[0]);
  CHECK(kept[1] == lines[1]);
  CHECK(kept[2] == lines[2]);
  CHECK(strip_probe_lines(stripped, dropped) == stripped);
  CHECK(dropped == 0);
}

TEST_CASE("run ids are 16 hex digits from getrandom, spool names sort by batch", "[unit]") {
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    const std::string id = new_run_id();
    REQUIRE(id.size() == 16);
    CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
    ids.insert(id);
  }
  CHECK(ids.size() == 50);
  CHECK(Spool::file_name("9f1c0a2b3d4e5f60", 17) == "9f1c0a2b3d4e5f60-000000000017.ndjson");
  CHECK(Spool::file_name("a", 9) < Spool::file_name("a", 10));
  CHECK(Spool::file_name("a", 99) < Spool::file_name("a", 100));
}

TEST_CASE("shipping backoff: 0.5 s doubling to 30 s", "[unit]") {
  constexpr std::int64_t kI = 500'000'000;
  constexpr std::int64_t kM = 30'000'000'000;
  CHECK(ship_backoff_ns(1, kI, kM) == 500'000'000);
  CHECK(ship_backoff_ns(2, kI, kM) == 1'000'000'000);
  CHECK(ship_backoff_ns(3, kI, kM) == 2'000'000'000);
  CHECK(ship_backoff_ns(7, kI, kM) == 30'000'000'000);  // 32 s capped
  CHECK(ship_backoff_ns(6, kI, kM) == 16'000'000'000);
  CHECK(ship_backoff_ns(1000, kI, kM) == 30'000'000'000);
}
