#include "pathsentry/reflector/reflector.h"

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <new>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/wire/stamp.h"

using pathsentry::ConfigError;
using pathsentry::IpAddress;
using pathsentry::IpPrefix;
using pathsentry::ManualClock;
using pathsentry::probe::Reflector;
using pathsentry::probe::ReflectorConfig;
using pathsentry::probe::Reply;
using pathsentry::probe::Request;
namespace stamp = pathsentry::probe::stamp;
using namespace std::chrono_literals;

// Counts this thread's heap allocations, to check that the hot path makes none.
namespace {
thread_local std::size_t g_allocations = 0;
}  // namespace
#if defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer its allocator's hooks count (a replaced operator new would be paired
// with the sanitizer's own operator delete variants and reported as mismatched).
// Declared here: GCC ships no sanitizer/allocator_interface.h (the runtime has the function).
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             std::size_t),
                                                         void (*free_hook)(const volatile void*));
namespace {
void count_allocation(const volatile void* /*p*/, std::size_t /*n*/) {
  ++g_allocations;
}
void ignore_free(const volatile void* /*p*/) {}
const int g_hooks_installed =
    __sanitizer_install_malloc_and_free_hooks(count_allocation, ignore_free);
}  // namespace
#else
// Replacing the global operator new is program-wide, but this one only counts and forwards to
// malloc. GCC 12 sees free() of what its inlined std::allocator got from operator new and calls
// it mismatched (-Wmismatched-new-delete), though both are these malloc/free replacements: a
// false positive that depends on what gets inlined (ReflectorConfig's size changed it).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop
#endif

namespace {

constexpr std::int64_t kRxNs = 1'700'000'000'123'456'789;

ReflectorConfig config_allowing(std::initializer_list<const char*> prefixes) {
  ReflectorConfig c;
  for (const char* p : prefixes) c.allow.push_back(*IpPrefix::parse(p));
  return c;
}

// A Session-Sender packet (RFC 8762 Figure 1 + RFC 8972 SSID) of `size` bytes whose padding
// is 0xAB (so a reflector echoing it would be caught).
std::vector<std::uint8_t> sender_packet(std::uint32_t seq, std::uint16_t ssid,
                                        std::size_t size = 44) {
  std::vector<std::uint8_t> b(size, 0xAB);
  stamp::SenderPacket p;
  p.sequence = seq;
  p.timestamp = 0x1122334455667788ULL;
  p.error = stamp::ErrorEstimate{true, false, 3, 7};
  p.ssid = ssid;
  if (size >= 44) {
    stamp::encode(p, b);
  }
  return b;
}

Request request(const std::vector<std::uint8_t>& bytes, const char* src = "198.18.0.1",
                std::uint16_t port = 40000) {
  Request r;
  r.bytes = bytes;
  r.source = *IpAddress::parse(src);
  r.source_port = port;
  r.rx_ns = kRxNs;
  r.ttl = 61;
  r.tos = 0xB9;  // DSCP 46 (EF) + ECN 01
  return r;
}

struct Harness {
  explicit Harness(ReflectorConfig c = config_allowing({"198.18.0.0/24", "fd53::/64"}))
      : reflector(c, 1234) {}
  std::optional<Reply> handle(const Request& r) {
    return reflector.handle(r, clock.monotonic_ns(), out);
  }
  std::uint32_t seq_of(const Request& r) {
    const auto reply = handle(r);
    REQUIRE(reply.has_value());
    return reply->sequence;
  }
  ManualClock clock;
  Reflector reflector;
  std::vector<std::uint8_t> out = std::vector<std::uint8_t>(65'536, 0xEE);
};

std::uint64_t be64(const std::vector<std::uint8_t>& b, std::size_t off) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | b[off + i];
  return v;
}

}  // namespace

// Every field of the reply sits at its RFC 8762 Figure 3 offset, with the sender's fields
// copied, t2 from the kernel timestamp, the TTL as received and the MBZ fields zero.
TEST_CASE("reflector reply byte layout", "[unit][reflector]") {
  Harness h;
  const auto req_bytes = sender_packet(0x01020304, 0xBEEF, 48);
  const auto reply = h.handle(request(req_bytes));
  REQUIRE(reply.has_value());
  REQUIRE(reply->size == 48);
  Reflector::set_tx_timestamp({h.out.data(), reply->size}, kRxNs + 5000);
  const auto& b = h.out;
  const std::uint64_t t2 = stamp::ns_to_ntp(kRxNs);
  const std::uint64_t t3 = stamp::ns_to_ntp(kRxNs + 5000);
  const std::uint16_t err = h.reflector.error_estimate().encode();
  const std::vector<std::uint8_t> expected = {0x00,
                                              0x00,
                                              0x00,
                                              0x00,  // 0: reflector sequence (first in session)
                                              static_cast<std::uint8_t>(t3 >> 56),
                                              static_cast<std::uint8_t>(t3 >> 48),
                                              static_cast<std::uint8_t>(t3 >> 40),
                                              static_cast<std::uint8_t>(t3 >> 32),
                                              static_cast<std::uint8_t>(t3 >> 24),
                                              static_cast<std::uint8_t>(t3 >> 16),
                                              static_cast<std::uint8_t>(t3 >> 8),
                                              static_cast<std::uint8_t>(t3),  // 4: t3
                                              static_cast<std::uint8_t>(err >> 8),
                                              static_cast<std::uint8_t>(err),  // 12: error est.
                                              0xBE,
                                              0xEF,  // 14: SSID
                                              static_cast<std::uint8_t>(t2 >> 56),
                                              static_cast<std::uint8_t>(t2 >> 48),
                                              static_cast<std::uint8_t>(t2 >> 40),
                                              static_cast<std::uint8_t>(t2 >> 32),
                                              static_cast<std::uint8_t>(t2 >> 24),
                                              static_cast<std::uint8_t>(t2 >> 16),
                                              static_cast<std::uint8_t>(t2 >> 8),
                                              static_cast<std::uint8_t>(t2),  // 16: t2
                                              0x01,
                                              0x02,
                                              0x03,
                                              0x04,  // 24: sender seq
                                              0x11,
                                              0x22,
                                              0x33,
                                              0x44,
                                              0x55,
                                              0x66,
                                              0x77,
                                              0x88,  // 28: sender ts
                                              0x83,
                                              0x07,  // 36: sender err
                                              0x00,
                                              0x00,  // 38: MBZ
                                              61,    // 40: sender TTL
                                              0x00,
                                              0x00,
                                              0x00,  // 41: MBZ
                                              0x00,
                                              0x00,
                                              0x00,
                                              0x00};  // 44: padding
  REQUIRE(std::vector<std::uint8_t>(b.begin(), b.begin() + 48) == expected);
  REQUIRE(h.out[48] == 0xEE);  // nothing written past the reply
  // And the codec reads it back.
  const auto decoded = stamp::decode_reflector({b.data(), 48});
  REQUIRE(decoded.has_value());
  REQUIRE(decoded->sender_sequence == 0x01020304);
  REQUIRE(stamp::ntp_to_ns(decoded->receive_timestamp) == kRxNs);
  REQUIRE(stamp::ntp_to_ns(decoded->timestamp) == kRxNs + 5000);
}

// Before set_tx_timestamp the reply's t3 is t2, never an uninitialised value.
TEST_CASE("reflector reply t3 defaults to t2", "[unit][reflector]") {
  Harness h;
  const auto req = sender_packet(1, 0);
  REQUIRE(h.handle(request(req)).has_value());
  REQUIRE(be64(h.out, 4) == be64(h.out, 16));
}

// The reflector keeps one sequence per (address, port, SSID) session, from 0, independent of
// the sender's sequence.
TEST_CASE("reflector sequence is per session", "[unit][reflector]") {
  Harness h;
  const auto a = sender_packet(1000, 1);
  const auto a2 = sender_packet(5, 1);
  const auto other_ssid = sender_packet(1000, 2);
  REQUIRE(h.seq_of(request(a)) == 0);
  REQUIRE(h.seq_of(request(a2)) == 1);
  REQUIRE(h.seq_of(request(a)) == 2);
  REQUIRE(h.seq_of(request(a, "198.18.0.1", 40001)) == 0);  // other port
  REQUIRE(h.seq_of(request(other_ssid)) == 0);              // other SSID
  REQUIRE(h.seq_of(request(a, "198.18.0.9")) == 0);         // other address
  REQUIRE(h.seq_of(request(a, "fd53::1")) == 0);            // other family
  REQUIRE(h.seq_of(request(a)) == 3);
  REQUIRE(h.seq_of(request(other_ssid)) == 1);
}

// An idle session expires after the timeout and restarts at 0; activity keeps it alive.
TEST_CASE("reflector sessions expire when idle", "[unit][reflector]") {
  auto c = config_allowing({"198.18.0.0/24"});
  c.session_timeout_ns = 10'000'000'000;
  Harness h(c);
  const auto p = sender_packet(1, 9);
  REQUIRE(h.seq_of(request(p)) == 0);
  h.clock.advance(9s);
  REQUIRE(h.seq_of(request(p)) == 1);
  h.clock.advance(10s);
  REQUIRE(h.seq_of(request(p)) == 2);
  REQUIRE(h.reflector.active_sessions(h.clock.monotonic_ns()) == 1);
  h.clock.advance(10001ms);
  REQUIRE(h.reflector.active_sessions(h.clock.monotonic_ns()) == 0);
  REQUIRE(h.seq_of(request(p)) == 0);
}

// The session table is bounded: many more sessions than max_sessions cost no more slots; a
// full table refuses new sessions (counted) and the established ones go on.
TEST_CASE("reflector session table is bounded", "[unit][reflector]") {
  auto c = config_allowing({"198.18.0.0/16"});
  c.max_sessions = 64;
  c.max_sessions_per_source = 100'000;
  c.rate_limit = {1'000'000, 1'000'000};
  Harness h(c);
  const auto p = sender_packet(1, 0);
  std::vector<std::uint16_t> answered;
  for (std::uint16_t port = 40001; port <= 41000; ++port) {
    const auto r = h.handle(request(p, "198.18.0.1", port));
    if (r) {
      REQUIRE(r->sequence == 0);
      answered.push_back(port);
    }
  }
  REQUIRE(answered.size() <= 64);
  REQUIRE(answered.size() >= 32);  // 8 sets of 8: most fill before the first refusal
  REQUIRE(h.reflector.active_sessions(h.clock.monotonic_ns()) == answered.size());
  REQUIRE(h.reflector.counters().refused_session_table_full == 1000 - answered.size());
  for (const auto port : answered) REQUIRE(h.seq_of(request(p, "198.18.0.1", port)) == 1);
  // Once the sessions have expired, new ones take their slots.
  h.clock.advance(std::chrono::nanoseconds(c.session_timeout_ns + 1));
  REQUIRE(h.seq_of(request(p, "198.18.0.1", 41001)) == 0);
}

// Issue 13, the churn attack: one source (allowed, or spoofing an allowed address) cycling
// ports and SSIDs at a high rate. Before, a full table evicted the least recently used live
// session, so a legitimate session restarted at sequence 0 (corrupting the agent's
// forward/reverse split). Now it is never evicted: its sequence keeps going.
TEST_CASE("reflector churn from one source never restarts an established session",
          "[unit][reflector]") {
  auto c = config_allowing({"198.18.0.0/16"});
  c.max_sessions = 1024;
  c.rate_limit = {100'000'000, 1'000'000};
  c.global_rate_limit = {100'000'000, 1'000'000};
  // another host, or one spoofing the legitimate sender's address
  const std::string attacker = GENERATE(as<std::string>{}, "198.18.0.66", "198.18.0.1");
  Harness h(c);
  const auto legit = sender_packet(1, 0x5151);
  std::uint32_t expected = 0;
  std::uint32_t ssid = 0;
  std::uint16_t port = 1024;
  for (int round = 0; round < 50; ++round) {
    REQUIRE(h.seq_of(request(legit, "198.18.0.1", 40000)) == expected++);
    for (int i = 0; i < 2000; ++i) {  // 2000 new sessions per legitimate probe (2 M/s)
      if (++port == 0) port = 1024;
      ssid = (ssid + 1) & 0xFFFF;
      const auto spam = sender_packet(1, static_cast<std::uint16_t>(ssid));
      (void)h.handle(request(spam, attacker.c_str(), port));
      h.clock.advance(500ns);
    }
  }
  const auto k = h.reflector.counters();
  INFO(k.to_string());
  REQUIRE(k.refused_session_table_full + k.refused_sessions_per_source > 0);
  REQUIRE(h.reflector.active_sessions(h.clock.monotonic_ns()) <= 1024);
}

// A source may hold at most max_sessions_per_source live sessions: the next is refused
// (counted), other sources are not affected, and once its sessions expire it gets new ones.
TEST_CASE("reflector caps live sessions per source", "[unit][reflector]") {
  auto c = config_allowing({"198.18.0.0/16"});
  c.max_sessions_per_source = 4;
  Harness h(c);
  const auto p = sender_packet(1, 9);
  for (std::uint16_t port = 40001; port <= 40004; ++port) {
    REQUIRE(h.seq_of(request(p, "198.18.0.1", port)) == 0);
  }
  REQUIRE_FALSE(h.handle(request(p, "198.18.0.1", 40005)).has_value());
  REQUIRE(h.reflector.counters().refused_sessions_per_source == 1);
  REQUIRE(h.seq_of(request(p, "198.18.0.1", 40001)) == 1);  // established: still answered
  REQUIRE(h.seq_of(request(p, "198.18.0.2", 40005)) == 0);  // another source
  // An agent restarted with new ports: its old sessions stop, and once they expire its new
  // ones are taken, though the source itself never went quiet.
  const auto timeout = std::chrono::nanoseconds(c.session_timeout_ns);
  for (int i = 0; i < 4; ++i) {
    h.clock.advance(timeout / 4);
    (void)h.handle(request(p, "198.18.0.1", 40005));  // refused, but keeps the source busy
  }
  h.clock.advance(2ms);
  h.reflector.expire_sessions(h.clock.monotonic_ns());
  for (std::uint16_t port = 40005; port <= 40008; ++port) {
    REQUIRE(h.seq_of(request(p, "198.18.0.1", port)) == 0);
  }
  REQUIRE_FALSE(h.handle(request(p, "198.18.0.1", 40009)).has_value());
}

// The global reply cap holds over all sources together; a request it drops does not advance
// its session's sequence (like one lost on the way in).
TEST_CASE("reflector caps replies per second over all sources", "[unit][reflector]") {
  auto c = config_allowing({"198.18.0.0/16"});
  c.global_rate_limit = {1000, 10};
  Harness h(c);
  const auto p = sender_packet(1, 9);
  std::uint64_t answered = 0;
  for (int i = 0; i < 4000; ++i) {  // 4 sources x 1000 requests over 1 s: 4000/s offered
    const std::string src = "198.18.1." + std::to_string(1 + i % 4);
    answered += h.handle(request(p, src.c_str(), 40000)).has_value() ? 1 : 0;
    h.clock.advance(250us);
  }
  const auto k = h.reflector.counters();
  REQUIRE(answered >= 1000);
  REQUIRE(answered <= 1000 + 10);
  REQUIRE(k.dropped_global_rate_limited == 4000 - answered);
  REQUIRE(k.dropped_rate_limited == 0);
  h.clock.advance(1ms);
  REQUIRE(h.seq_of(request(p, "198.18.9.9", 40000)) == 0);
}

// Reply size always equals request size; the padding length is kept, its content is not.
TEST_CASE("reflector reply has the request's size with zeroed padding", "[unit][reflector]") {
  Harness h;
  for (const std::size_t size : {44u, 45u, 100u, 1472u, 9000u, 65'507u}) {
    const auto req = sender_packet(1, 0, size);
    const auto reply = h.handle(request(req));
    REQUIRE(reply.has_value());
    REQUIRE(reply->size == size);
    for (std::size_t i = 44; i < size; ++i) REQUIRE(h.out[i] == 0);
  }
}

// Short, truncated, or otherwise unanswerable requests get no reply and count as malformed.
TEST_CASE("reflector drops and counts malformed requests", "[unit][reflector]") {
  Harness h;
  std::uint64_t expected = 0;
  SECTION("shorter than 44 bytes") {
    for (const std::size_t size : {0u, 1u, 16u, 43u}) {
      const auto req = sender_packet(1, 0, size);
      REQUIRE_FALSE(h.handle(request(req)).has_value());
      ++expected;
    }
  }
  SECTION("truncated by the receive buffer") {
    const auto bytes = sender_packet(1, 0, 100);
    auto req = request(bytes);
    req.truncated = true;
    REQUIRE_FALSE(h.handle(req).has_value());
    ++expected;
  }
  SECTION("source port 0") {
    const auto bytes = sender_packet(1, 0);
    REQUIRE_FALSE(h.handle(request(bytes, "198.18.0.1", 0)).has_value());
    ++expected;
  }
  SECTION("not sent to a unicast address") {
    const auto bytes = sender_packet(1, 0);
    auto req = request(bytes);
    req.to_unicast = false;
    REQUIRE_FALSE(h.handle(req).has_value());
    ++expected;
  }
  SECTION("a reflected packet (loop guard)") {
    auto bytes = sender_packet(1, 0);
    bytes[20] = 1;  // a receive timestamp where a Session-Sender has MBZ
    REQUIRE_FALSE(h.handle(request(bytes)).has_value());
    ++expected;
  }
  SECTION("multicast or unspecified source") {
    Harness open(config_allowing({"0.0.0.0/0", "::/0"}));
    const auto bytes = sender_packet(1, 0);
    for (const char* src : {"224.0.0.1", "255.255.255.255", "0.0.0.0", "ff02::1", "::"}) {
      REQUIRE_FALSE(open.handle(request(bytes, src)).has_value());
    }
    REQUIRE(open.reflector.counters().malformed == 5);
    REQUIRE(open.reflector.counters().received == 5);
  }
  REQUIRE(h.reflector.counters().malformed == expected);
  REQUIRE(h.reflector.counters().received == expected);
  REQUIRE(h.reflector.counters().replied == 0);
}

// Sources outside every allowed prefix get nothing and are counted; v4 and v6 prefixes only
// match their own family.
TEST_CASE("reflector answers only the allowlist", "[unit][reflector]") {
  Harness h(config_allowing({"198.18.0.0/30", "fd53::/126"}));
  const auto p = sender_packet(1, 0);
  REQUIRE(h.handle(request(p, "198.18.0.3")).has_value());
  REQUIRE(h.handle(request(p, "fd53::3")).has_value());
  REQUIRE_FALSE(h.handle(request(p, "198.18.0.4")).has_value());
  REQUIRE_FALSE(h.handle(request(p, "fd53::4")).has_value());
  REQUIRE_FALSE(h.handle(request(p, "10.1.0.1")).has_value());
  REQUIRE_FALSE(h.handle(request(p, "::ffff:198.18.0.1")).has_value());
  const auto c = h.reflector.counters();
  REQUIRE(c.dropped_not_allowed == 4);
  REQUIRE(c.received == 6);
}

// A request from a system port (< 1024) gets no reply: spoofed, it would aim the reply at a
// service (another reflector's 862, DNS 53); senders use ephemeral ports. 1024 is answered.
TEST_CASE("reflector never answers a source port below 1024", "[unit][reflector]") {
  Harness h;
  const auto p = sender_packet(1, 0);
  for (const std::uint16_t port : {1, 53, 123, 862, 1023}) {
    INFO(port);
    REQUIRE_FALSE(h.handle(request(p, "198.18.0.1", port)).has_value());
  }
  REQUIRE(h.handle(request(p, "198.18.0.1", 1024)).has_value());
  const auto c = h.reflector.counters();
  REQUIRE(c.dropped_low_port == 5);
  REQUIRE(c.malformed == 0);
  REQUIRE(c.to_string().find("dropped_low_port=5") != std::string::npos);
}

// Even a short packet from a source outside the allowlist counts as not allowed: outsiders
// learn nothing and cost a prefix scan.
TEST_CASE("reflector checks the allowlist before anything else", "[unit][reflector]") {
  Harness h;
  const auto p = sender_packet(1, 0, 10);
  REQUIRE_FALSE(h.handle(request(p, "203.0.113.1")).has_value());
  REQUIRE(h.reflector.counters().dropped_not_allowed == 1);
  REQUIRE(h.reflector.counters().malformed == 0);
}

// A reflector with an empty allowlist refuses to exist.
TEST_CASE("reflector refuses an empty allowlist", "[unit][reflector]") {
  ReflectorConfig c;
  REQUIRE_THROWS_AS(Reflector(c, 1), ConfigError);
  REQUIRE_THROWS_WITH(Reflector(c, 1), Catch::Contains("allow") && Catch::Contains("empty"));
}

// Per-source rate limit: a burst passes, then requests are dropped and counted until time
// refills the bucket; another source is unaffected.
TEST_CASE("reflector rate-limits per source", "[unit][reflector]") {
  auto c = config_allowing({"198.18.0.0/24"});
  c.rate_limit = {100, 4};
  Harness h(c);
  const auto p = sender_packet(1, 0);
  for (int i = 0; i < 4; ++i) REQUIRE(h.handle(request(p)).has_value());
  REQUIRE_FALSE(h.handle(request(p)).has_value());
  REQUIRE_FALSE(h.handle(request(p, "198.18.0.1", 40001)).has_value());  // same source address
  REQUIRE(h.handle(request(p, "198.18.0.2")).has_value());
  h.clock.advance(10ms);
  REQUIRE(h.handle(request(p)).has_value());
  REQUIRE_FALSE(h.handle(request(p)).has_value());
  const auto k = h.reflector.counters();
  REQUIRE(k.dropped_rate_limited == 3);
  REQUIRE(k.received == 9);
}

// Rate-limited requests do not consume session sequence numbers.
TEST_CASE("reflector sequence skips nothing for rate-limited requests", "[unit][reflector]") {
  auto c = config_allowing({"198.18.0.0/24"});
  c.rate_limit = {1000, 1};
  Harness h(c);
  const auto p = sender_packet(1, 0);
  REQUIRE(h.seq_of(request(p)) == 0);
  REQUIRE_FALSE(h.handle(request(p)).has_value());
  h.clock.advance(1ms);
  REQUIRE(h.seq_of(request(p)) == 1);
}

// By default the reply carries the request's DSCP with ECN cleared; a configured TOS wins.
TEST_CASE("reflector reply tos", "[unit][reflector]") {
  const auto p = sender_packet(1, 0);
  SECTION("copy DSCP") {
    Harness h;
    REQUIRE(h.handle(request(p))->tos == 0xB8);
    auto r = request(p);
    r.tos.reset();
    REQUIRE(h.handle(r)->tos == 0);
  }
  SECTION("fixed") {
    auto c = config_allowing({"198.18.0.0/24"});
    c.reply_tos = 0x20;
    Harness h(c);
    REQUIRE(h.handle(request(p))->tos == 0x20);
  }
}

// The S bit is set only when the clock is configured as synchronized; the estimate encodes
// the configured error, rounded up, with a non-zero multiplier.
TEST_CASE("reflector error estimate", "[unit][reflector]") {
  const auto p = sender_packet(1, 0);
  SECTION("unsynchronized by default") {
    Harness h;
    REQUIRE(h.handle(request(p)).has_value());
    REQUIRE((h.out[12] & 0x80) == 0);
  }
  SECTION("synchronized when configured") {
    auto c = config_allowing({"198.18.0.0/24"});
    c.clock_synchronized = true;
    Harness h(c);
    REQUIRE(h.handle(request(p)).has_value());
    REQUIRE((h.out[12] & 0x80) != 0);
  }
  SECTION("encoding") {
    for (const std::int64_t ns : {std::int64_t{1}, std::int64_t{1000}, std::int64_t{1'000'000},
                                  std::int64_t{1'000'000'000}, std::int64_t{3'600'000'000'000}}) {
      const auto e = Reflector::error_estimate_for(ns, false);
      REQUIRE(e.multiplier >= 1);
      REQUIRE_FALSE(e.ptp);
      const double s = e.multiplier * std::ldexp(1.0, e.scale - 32);
      REQUIRE(s >= static_cast<double>(ns) / 1e9);
      REQUIRE(s <= 2.0 * static_cast<double>(ns) / 1e9 + std::ldexp(1.0, -32));
    }
  }
}

// Every received request ends in exactly one counter once sends are accounted.
TEST_CASE("reflector counters add up", "[unit][reflector]") {
  auto c = config_allowing({"198.18.0.0/24"});
  c.rate_limit = {10, 2};
  Harness h(c);
  const auto ok = sender_packet(1, 0);
  const auto bad = sender_packet(1, 0, 20);
  std::uint64_t built = 0;
  for (int i = 0; i < 5; ++i) built += h.handle(request(ok)).has_value() ? 1 : 0;
  (void)h.handle(request(bad));
  (void)h.handle(request(ok, "203.0.113.9"));
  (void)h.handle(request(ok, "198.18.0.1", 53));
  h.reflector.count_sent(built - 1, 1);
  const auto k = h.reflector.counters();
  REQUIRE(k.received == 8);
  REQUIRE(k.replied == 1);
  REQUIRE(k.send_errors == 1);
  REQUIRE(k.received == k.replied + k.send_errors + k.dropped_not_allowed + k.dropped_low_port +
                            k.dropped_rate_limited + k.dropped_global_rate_limited + k.malformed +
                            k.refused_session_table_full + k.refused_sessions_per_source);
  REQUIRE(k.to_string().find("dropped_rate_limited=3") != std::string::npos);
}

// Once constructed, the reflector handles requests of every outcome (new sessions, table
// evictions, drops, big padding) without a single heap allocation.
TEST_CASE("reflector handle makes no heap allocation", "[unit][reflector]") {
  auto c = config_allowing({"198.18.0.0/16"});
  c.max_sessions = 64;
  c.max_sources = 64;
  c.rate_limit = {1000, 5};
  Harness h(c);
  const auto ok = sender_packet(1, 0, 1500);
  const auto shorty = sender_packet(1, 0, 10);
  std::vector<Request> requests;
  for (std::uint16_t port = 40001; port <= 40500; ++port) {
    requests.push_back(request(ok, port % 2 ? "198.18.0.1" : "198.18.7.9", port));
  }
  requests.push_back(request(shorty));
  requests.push_back(request(ok, "10.0.0.1"));
  std::size_t replies = 0;
  const std::size_t before = g_allocations;
  for (const auto& r : requests) {
    replies += h.handle(r).has_value() ? 1 : 0;
    h.clock.advance(100us);
  }
  const std::size_t allocations = g_allocations - before;
  REQUIRE(allocations == 0);
  const std::size_t check = g_allocations;
  std::vector<int> one(1);
  REQUIRE(g_allocations == check + 1);  // the counter does see allocations
  const auto k = h.reflector.counters();
  REQUIRE(replies == k.received - k.dropped_not_allowed - k.dropped_rate_limited - k.malformed -
                         k.refused_session_table_full);
  REQUIRE(k.dropped_rate_limited > 0);
  REQUIRE(k.refused_session_table_full > 0);
}
