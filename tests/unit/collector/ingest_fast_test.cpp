// The probe-line fast path (parse_canonical_probe_line) against the general parser
// (record_json's parse_json_line): where the fast path gives a record, it is the general
// parser's; every other line falls through to the general parser.

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "pathsentry/collector/ingest.h"
#include "pathsentry/common/record_json.h"

using namespace pathsentry;

namespace {

std::string line_of(const ProbeRecord& r) {
  std::string s;
  probe::append_json(r, s);
  s.pop_back();  // the '\n'
  return s;
}

// What the general parser makes of `line`, re-serialised (append_json writes every field).
std::string general(const std::string& line) {
  auto p = probe::parse_json_line(line);
  REQUIRE(p.has_value());
  auto* r = std::get_if<ProbeRecord>(&*p);
  REQUIRE(r != nullptr);
  return line_of(*r);
}

ProbeRecord random_probe(std::mt19937_64& rng) {
  const auto pick = [&](std::uint64_t n) { return rng() % n; };
  static const std::vector<std::string> strs = {
      "",     "192.0.2.1",   "2001:db8::1", "express-connect", "ipsec", "none",
      "a\"b", "back\\slash", "tab\there",   "caf\xc3\xa9",     "\x7f",  "x y"};
  static const std::vector<std::int64_t> ints = {
      0, 1, -1, 9, 10, 1'780'000'000'000'000'000, INT64_MAX, INT64_MIN, INT64_MAX - 1, -10};
  ProbeRecord r;
  r.target = strs[pick(strs.size())];
  r.proto = static_cast<Proto>(pick(3));
  r.session_id = pick(2) == 0 ? static_cast<std::uint32_t>(rng()) : 0xFFFFFFFFu;
  r.seq = pick(3) == 0 ? UINT64_MAX : pick(4) == 0 ? 0 : rng();
  r.tx_ns = ints[pick(ints.size())];
  if (pick(4) != 0) {
    r.rx_ns = ints[pick(ints.size())];
    r.rtt_ns = ints[pick(ints.size())];
  }
  r.tx_kernel_ts = pick(2) == 0;
  r.fwd_path = strs[pick(strs.size())];
  r.rev_path = strs[pick(strs.size())];
  r.loss = static_cast<LossDirection>(pick(4));
  r.late = pick(2) == 0;
  for (std::uint64_t i = pick(3); i > 0; --i) r.taps_down.push_back(strs[pick(strs.size())]);
  if (pick(2) == 0) {
    r.reflector_seq = pick(2) == 0 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(rng());
    r.reflector_rx_ns = ints[pick(ints.size())];
    r.reflector_tx_ns = ints[pick(ints.size())];
    r.reflector_clock_synced = pick(2) == 0;
  }
  return r;
}

}  // namespace

TEST_CASE("probe fast path: same record as the general parser on what append_json writes",
          "[unit]") {
  std::mt19937_64 rng(20261203);
  int fast = 0;
  for (int i = 0; i < 20000; ++i) {
    const auto r = random_probe(rng);
    const auto line = line_of(r);
    INFO(line);
    const auto want = general(line);
    const auto got = collector::parse_canonical_probe_line(line);
    const bool plain = line.find('\\') == std::string::npos &&
                       std::none_of(line.begin(), line.end(),
                                    [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    // Every plain-ASCII line append_json writes takes the fast path; escapes and UTF-8 do not.
    CHECK(got.has_value() == plain);
    if (got) {
      CHECK(line_of(*got) == want);
      CHECK(line_of(*got) == line);
      ++fast;
    }
  }
  CHECK(fast > 3000);  // 4241 with this seed: plain lines are well covered
}

TEST_CASE("probe fast path: any other line falls through to the general parser", "[unit]") {
  const std::string base =
      R"({"type":"probe","target":"t","proto":"icmp","session_id":1,"seq":2,"tx_ns":3,)"
      R"("rx_ns":4,"rtt_ns":1,"tx_kernel_ts":true,"fwd_path":"a","rev_path":"a","loss":null,)"
      R"("late":false,"reflector":null})";
  REQUIRE(collector::parse_canonical_probe_line(base).has_value());
  const auto with = [&](const std::string& from, const std::string& to) {
    auto s = base;
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    return s;
  };
  const std::vector<std::string> others = {
      with(R"("type":"probe",)", R"("type":"probe","agent":"dc1",)"),  // agent: general checks
      with(R"("seq":2)", R"("seq": 2)"),                               // whitespace
      with(R"("seq":2)", R"("seq":02)"),                               // leading zero: bad JSON
      with(R"("seq":2)", R"("seq":2.0)"),                              // not an integer
      with(R"("seq":2)", R"("seq":2e0)"),
      with(R"("seq":2)", R"("seq":-2)"),                       // negative unsigned
      with(R"("seq":2)", R"("seq":18446744073709551616)"),     // over uint64
      with(R"("tx_ns":3)", R"("tx_ns":9223372036854775808)"),  // over int64
      with(R"("tx_ns":3)", R"("tx_ns":-9223372036854775809)"),
      with(R"("session_id":1)", R"("session_id":4294967296)"),  // out of range
      with(R"("proto":"icmp")", R"("proto":"udp")"),            // unknown enum
      with(R"("loss":null)", R"("loss":"sideways")"),
      with(R"("late":false)", R"("late":0)"),  // wrong type
      with(R"("target":"t")", R"("target":1)"),
      with(R"("target":"t")", R"("target":"t\u0041")"),  // escape
      with(R"("reflector":null)", R"("reflector":{"seq":1,"rx_ns":2,"tx_ns":3})"),
      with(R"("reflector":null)", R"("reflector":null,"extra":1)"),                  // extra key
      with(R"("late":false,)", ""),                                                  // missing key
      with(R"("proto":"icmp","session_id":1)", R"("session_id":1,"proto":"icmp")"),  // order
      base + " ",
      base + "x",
      base.substr(0, base.size() - 1),
  };
  for (const auto& line : others) {
    INFO(line);
    CHECK_FALSE(collector::parse_canonical_probe_line(line).has_value());
  }
  // Through the body parser: the general parser's verdicts, as before the fast path.
  std::string header;
  probe::append_json(BatchHeader{"dc1", "0123456789abcdef", 1, 1, "0.1.0"}, header);
  header.pop_back();
  const auto body_with = [&](const std::string& line) { return header + "\n" + line + "\n"; };
  CHECK(collector::parse_ingest_body(body_with(others[0])).has_value());
  CHECK(collector::parse_ingest_body(body_with(with(R"("seq":2)", R"("seq": 2)"))).has_value());
  const auto seq_neg = collector::parse_ingest_body(body_with(others[5]));
  REQUIRE_FALSE(seq_neg.has_value());
  CHECK(seq_neg.error() == "line 2: field 'seq' is not an unsigned integer");
  const auto big = collector::parse_ingest_body(body_with(others[6]));
  REQUIRE_FALSE(big.has_value());
  CHECK(big.error() == "line 2: field 'seq' is not an unsigned integer");
  const auto mismatch = collector::parse_ingest_body(
      body_with(with(R"("type":"probe",)", R"("type":"probe","agent":"dc2",)")));
  REQUIRE_FALSE(mismatch.has_value());
  CHECK(mismatch.error() == "line 2: agent 'dc2' differs from the batch header's 'dc1'");
  const auto ok = collector::parse_ingest_body(body_with(base));
  REQUIRE(ok.has_value());
  REQUIRE(ok->probes.size() == 1);
  CHECK(line_of(ok->probes[0]) == base);
}
