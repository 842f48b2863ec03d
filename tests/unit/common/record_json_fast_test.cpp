// append_json(ProbeRecord) writes into a buffer sized once (issue 14, the offline attribution
// path formats every record). Its output must stay byte for byte what the key-by-key encoder it
// replaced wrote: the collector's fast ingest reads exactly that layout. The reference below is
// that encoder, verbatim.

#include <catch2/catch.hpp>
#include <charconv>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "pathsentry/common/record_json.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {
namespace ref {

void put_raw(std::string& out, std::string_view s) {
  out.append(s.data(), s.size());
}
void put_int(std::string& out, std::int64_t v) {
  char b[24];
  const auto r = std::to_chars(b, b + sizeof b, v);
  out.append(b, static_cast<std::size_t>(r.ptr - b));
}
void put_uint(std::string& out, std::uint64_t v) {
  char b[24];
  const auto r = std::to_chars(b, b + sizeof b, v);
  out.append(b, static_cast<std::size_t>(r.ptr - b));
}
void put_str(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20) {
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}
void key(std::string& out, std::string_view k) {
  if (out.back() != '{') out.push_back(',');
  out.push_back('"');
  put_raw(out, k);
  out.append("\":");
}
void kv(std::string& out, std::string_view k, std::string_view v) {
  key(out, k);
  put_str(out, v);
}
void kv_int(std::string& out, std::string_view k, std::int64_t v) {
  key(out, k);
  put_int(out, v);
}
void kv_uint(std::string& out, std::string_view k, std::uint64_t v) {
  key(out, k);
  put_uint(out, v);
}
void kv_bool(std::string& out, std::string_view k, bool v) {
  key(out, k);
  put_raw(out, v ? "true" : "false");
}

void append_json(const ProbeRecord& r, std::string& out, std::string_view agent) {
  out.push_back('{');
  kv(out, "type", "probe");
  if (!agent.empty()) kv(out, "agent", agent);
  kv(out, "target", r.target);
  kv(out, "proto", to_string(r.proto));
  kv_uint(out, "session_id", r.session_id);
  kv_uint(out, "seq", r.seq);
  kv_int(out, "tx_ns", r.tx_ns);
  key(out, "rx_ns");
  if (r.rx_ns) {
    put_int(out, *r.rx_ns);
  } else {
    put_raw(out, "null");
  }
  key(out, "rtt_ns");
  if (r.rx_ns) {
    put_int(out, r.rtt_ns);
  } else {
    put_raw(out, "null");
  }
  kv_bool(out, "tx_kernel_ts", r.tx_kernel_ts);
  kv(out, "fwd_path", r.fwd_path);
  kv(out, "rev_path", r.rev_path);
  key(out, "loss");
  if (r.loss == LossDirection::None) {
    put_raw(out, "null");
  } else {
    put_str(out, to_string(r.loss));
  }
  kv_bool(out, "late", r.late);
  if (!r.taps_down.empty()) {
    key(out, "taps_down");
    out.push_back('[');
    for (std::size_t i = 0; i < r.taps_down.size(); ++i) {
      if (i != 0) out.push_back(',');
      put_str(out, r.taps_down[i]);
    }
    out.push_back(']');
  }
  key(out, "reflector");
  if (r.reflector_seq) {
    out.push_back('{');
    kv_uint(out, "seq", *r.reflector_seq);
    kv_int(out, "rx_ns", r.reflector_rx_ns.value_or(0));
    kv_int(out, "tx_ns", r.reflector_tx_ns.value_or(0));
    kv_bool(out, "clock_synced", r.reflector_clock_synced);
    out.push_back('}');
  } else {
    put_raw(out, "null");
  }
  out.append("}\n");
}

}  // namespace ref

constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
constexpr auto kMax = std::numeric_limits<std::int64_t>::max();

/// Every byte that needs escaping, a quote, a backslash, DEL and UTF-8.
std::string nasty() {
  std::string s;
  for (int c = 0; c < 0x20; ++c) s.push_back(static_cast<char>(c));
  s += "\"\\/\x7f caf\xc3\xa9 \xff";
  return s;
}

void expect_same(const ProbeRecord& r, std::string_view agent, const std::string& prefix = "") {
  std::string want = prefix;
  std::string got = prefix;
  ref::append_json(r, want, agent);
  append_json(r, got, agent);
  REQUIRE(got == want);
}

}  // namespace

TEST_CASE("record json: the one-pass encoder writes the reference layout", "[unit][record_json]") {
  ProbeRecord r;
  SECTION("defaults: nothing received, empty strings") {
    expect_same(r, "");
  }
  SECTION("answered STAMP probe with reflector") {
    r.target = "192.168.20.161";
    r.proto = Proto::Stamp;
    r.session_id = 4;
    r.seq = 17;
    r.tx_ns = 1'700'000'000'123'456'789;
    r.rx_ns = 1'700'000'000'131'456'789;
    r.rtt_ns = 8'000'000;
    r.tx_kernel_ts = true;
    r.reflector_seq = 3;
    r.reflector_rx_ns = 1'700'000'000'127'000'000;
    r.reflector_tx_ns = 1'700'000'000'127'005'000;
    r.reflector_clock_synced = true;
    r.fwd_path = "express-connect";
    r.rev_path = "ipsec";
    expect_same(r, "");
    expect_same(r, "dc1");
    expect_same(r, "dc1", "{\"type\":\"x\"}\n");  // appends after what is there
    expect_same(r, "dc1", "{");  // the reference decided its commas from the last byte
  }
  SECTION("reflector seq without its times (absent fields are 0)") {
    r.reflector_seq = 0;
    expect_same(r, "");
    r.reflector_seq = std::numeric_limits<std::uint32_t>::max();
    r.reflector_rx_ns = kMin;
    expect_same(r, "");
  }
  SECTION("negative and extreme numbers") {
    r.session_id = std::numeric_limits<std::uint32_t>::max();
    r.seq = std::numeric_limits<std::uint64_t>::max();
    r.tx_ns = kMin;
    r.rx_ns = kMax;
    r.rtt_ns = kMin;
    r.reflector_seq = 1;
    r.reflector_rx_ns = kMin;
    r.reflector_tx_ns = -1;
    expect_same(r, "");
    r.rx_ns = -1;
    r.rtt_ns = 0;
    expect_same(r, "");
    r.rx_ns = std::nullopt;  // rtt_ns is not written without rx_ns
    r.rtt_ns = 5;
    expect_same(r, "");
  }
  SECTION("every number of digits, each side of each power of ten") {
    std::uint64_t p10 = 1;
    for (int k = 0; k <= 19; ++k) {
      for (const std::uint64_t u : {p10 - 1, p10, p10 + 1, 2 * p10 - 1, 5 * p10 + 7}) {
        r.seq = u;
        r.tx_ns = static_cast<std::int64_t>(u & 0x7FFFFFFFFFFFFFFF);
        r.rx_ns = -static_cast<std::int64_t>(u & 0x7FFFFFFFFFFFFFFF);
        r.rtt_ns = static_cast<std::int64_t>(u);  // wraps to negative for the largest
        r.session_id = static_cast<std::uint32_t>(u);
        r.reflector_seq = static_cast<std::uint32_t>(u >> 3);
        r.reflector_rx_ns = r.rtt_ns;
        r.reflector_tx_ns = -r.tx_ns;
        expect_same(r, "");
      }
      if (k < 19) p10 *= 10;
    }
    r.seq = std::numeric_limits<std::uint64_t>::max();
    r.tx_ns = kMin;
    r.rx_ns = kMin + 1;
    expect_same(r, "");
  }
  SECTION("escaping in every string field, the agent and taps_down") {
    r.target = nasty();
    r.fwd_path = nasty();
    r.rev_path = "\"";
    r.taps_down = {nasty(), "", "tap\\1", std::string(300, '\x01')};
    expect_same(r, nasty());
    expect_same(r, std::string(1000, '"'));
  }
  SECTION("every loss, proto, late and taps_down count") {
    for (const auto loss : {LossDirection::None, LossDirection::Forward, LossDirection::Reverse,
                            LossDirection::Undetermined}) {
      for (const auto proto : {Proto::Icmp, Proto::Stamp, Proto::Ttl}) {
        for (int taps = 0; taps < 3; ++taps) {
          r.loss = loss;
          r.proto = proto;
          r.late = taps % 2 == 1;
          r.tx_kernel_ts = taps == 2;
          r.taps_down.assign(static_cast<std::size_t>(taps), "tap-inet");
          expect_same(r, "");
          expect_same(r, "agent-7");
        }
      }
    }
  }
}

TEST_CASE("record json: one-pass encoder on random records into one buffer",
          "[unit][record_json]") {
  std::mt19937_64 rng(14);
  auto pick = [&](std::uint64_t n) { return rng() % n; };
  auto text = [&] {
    std::string s(pick(24), ' ');
    for (auto& c : s) c = static_cast<char>(pick(4) == 0 ? pick(0x20) : 0x20 + pick(0x60));
    return s;
  };
  std::string want;
  std::string got;
  for (int i = 0; i < 2000; ++i) {
    ProbeRecord r;
    r.target = text();
    r.proto = static_cast<Proto>(pick(3));
    r.session_id = static_cast<std::uint32_t>(rng());
    r.seq = rng() >> pick(64);
    r.tx_ns = static_cast<std::int64_t>(rng());
    if (pick(2) != 0) r.rx_ns = static_cast<std::int64_t>(rng() >> pick(64));
    r.rtt_ns = static_cast<std::int64_t>(rng());
    r.tx_kernel_ts = pick(2) != 0;
    if (pick(2) != 0) r.reflector_seq = static_cast<std::uint32_t>(rng());
    if (pick(2) != 0) r.reflector_rx_ns = static_cast<std::int64_t>(rng());
    if (pick(2) != 0) r.reflector_tx_ns = -static_cast<std::int64_t>(rng() >> 1);
    r.reflector_clock_synced = pick(2) != 0;
    r.fwd_path = text();
    r.rev_path = text();
    r.loss = static_cast<LossDirection>(pick(4));
    r.late = pick(2) != 0;
    for (auto n = pick(3); n > 0; --n) r.taps_down.push_back(text());
    const std::string agent = pick(2) != 0 ? text() : std::string();
    ref::append_json(r, want, agent);
    append_json(r, got, agent);
  }
  REQUIRE(got.size() == want.size());
  REQUIRE(got == want);
}
