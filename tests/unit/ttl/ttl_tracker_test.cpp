#include <catch2/catch.hpp>

#include "pathsentry/common/record.h"
#include "pathsentry/probe/ttl/ttl_probe.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

TtlSessionConfig config() {
  TtlSessionConfig c;
  c.agent_id = 3;
  c.session_id = 0x00AB0005;
  c.target = ip("192.168.20.161");
  c.ttl = 2;
  c.timeout_ns = 1'000'000'000;
  c.reorder_grace_ns = 50'000'000;
  c.hops = {TtlHop{ip("10.1.0.1"), "express-connect", "--ttl-hop"},
            TtlHop{ip("192.168.255.254"), "ipsec", "--ttl-hop"}};
  return c;
}

// The ICMP error a router sends for `p`, quoting all of the payload.
TtlIcmpError error_for(const TtlPayload& p, const char* from, std::uint8_t type = 11) {
  TtlIcmpError e;
  e.offender = ip(from);
  e.icmp_type = type;
  e.icmp_code = type == 3 ? 3 : 0;
  encode_ttl_payload(p, std::span<std::uint8_t, kTtlPayloadSize>(e.quoted));
  e.quoted_size = kTtlPayloadSize;
  e.rx_ns = p.tx_ns + 70'000;
  return e;
}

constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;

}  // namespace

// The payload carries identity, 64-bit sequence and send time, and only our magic decodes.
TEST_CASE("ttl payload round trip", "[unit]") {
  std::array<std::uint8_t, kTtlPayloadSize> b{};
  encode_ttl_payload(TtlPayload{7, 0xDEADBEEF, 0x1122334455667788ULL, kT0},
                     std::span<std::uint8_t, kTtlPayloadSize>(b));
  const auto p = decode_ttl_payload(b);
  REQUIRE(p);
  CHECK(p->agent_id == 7);
  CHECK(p->session_id == 0xDEADBEEF);
  CHECK(p->seq == 0x1122334455667788ULL);
  CHECK(p->tx_ns == kT0);
  b[0] ^= 1;
  CHECK_FALSE(decode_ttl_payload(b));
  CHECK_FALSE(decode_ttl_payload(std::span<const std::uint8_t>(b.data(), 8)));
}

// A time-exceeded from a configured hop gives that hop's path label, counted per path.
TEST_CASE("ttl tracker: hop answer names the path", "[unit]") {
  TtlTracker t(config());
  std::vector<TtlResult> out;
  const TtlPayload a = t.next_probe(kT0);
  t.on_sent(a);
  const TtlPayload b = t.next_probe(kT0 + 10'000'000);
  t.on_sent(b);
  t.on_error(error_for(b, "192.168.255.254"), out);
  t.on_error(error_for(a, "10.1.0.1"), out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].seq == 1);
  CHECK(out[0].path == "ipsec");
  CHECK(out[0].outcome == TtlOutcome::Hop);
  CHECK(out[0].rx_ns == kT0 + 10'000'000 + 70'000);
  CHECK(out[1].seq == 0);
  CHECK(out[1].path == "express-connect");
  CHECK(t.stats().per_path.at("ipsec") == 1);
  CHECK(t.stats().per_path.at("express-connect") == 1);
  CHECK(t.outstanding() == 0);
}

// A time-exceeded from an address no hop names is "unknown", counted with the address.
TEST_CASE("ttl tracker: unmapped hop is unknown", "[unit]") {
  TtlTracker t(config());
  std::vector<TtlResult> out;
  const TtlPayload a = t.next_probe(kT0);
  t.on_sent(a);
  t.on_error(error_for(a, "100.64.0.2"), out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].path == kPathUnknown);
  CHECK(out[0].outcome == TtlOutcome::Unmapped);
  CHECK(t.stats().unmapped.at("100.64.0.2") == 1);
  CHECK(t.stats().hop_answers == 0);
}

// The target's own port unreachable means the TTL reached it: "unknown", counted as such.
TEST_CASE("ttl tracker: an answer from the target is unknown", "[unit]") {
  TtlTracker t(config());
  std::vector<TtlResult> out;
  const TtlPayload a = t.next_probe(kT0);
  t.on_sent(a);
  t.on_error(error_for(a, "192.168.20.161", 3), out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].outcome == TtlOutcome::Target);
  CHECK(out[0].path == kPathUnknown);
  CHECK(t.stats().target_answers == 1);
}

// An unreachable from some router is "other", counted with address and type/code.
TEST_CASE("ttl tracker: another ICMP error is unknown and counted", "[unit]") {
  TtlTracker t(config());
  std::vector<TtlResult> out;
  const TtlPayload a = t.next_probe(kT0);
  t.on_sent(a);
  TtlIcmpError e = error_for(a, "172.16.1.1", 3);
  e.icmp_code = 1;
  t.on_error(e, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].outcome == TtlOutcome::Other);
  CHECK(out[0].path == kPathUnknown);
  CHECK(t.stats().other.at("172.16.1.1 type 3/1") == 1);
}

// A probe unanswered for the timeout becomes "none"; not before.
TEST_CASE("ttl tracker: timeout makes none", "[unit]") {
  TtlTracker t(config());
  std::vector<TtlResult> out;
  t.on_sent(t.next_probe(kT0));
  t.poll(kT0 + 999'999'999, out);
  CHECK(out.empty());
  t.poll(kT0 + 1'000'000'000, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].path == kPathNone);
  CHECK(out[0].outcome == TtlOutcome::None);
  CHECK_FALSE(out[0].rx_ns);
  CHECK(t.stats().no_answer == 1);
}

// An answer for a probe sent more than the grace after an unanswered one makes that one
// "none" at once; a closer one keeps waiting.
TEST_CASE("ttl tracker: later answer ends earlier probes", "[unit]") {
  TtlTracker t(config());
  std::vector<TtlResult> out;
  const TtlPayload a = t.next_probe(kT0);
  t.on_sent(a);
  const TtlPayload b = t.next_probe(kT0 + 40'000'000);
  t.on_sent(b);
  const TtlPayload c = t.next_probe(kT0 + 60'000'000);
  t.on_sent(c);
  t.on_error(error_for(c, "10.1.0.1"), out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].seq == 2);
  CHECK(out[1].seq == 0);
  CHECK(out[1].path == kPathNone);
  CHECK(t.outstanding() == 1);  // b: only 20 ms before c
}

// By default an answer ends no other probe: only the timeout makes "none".
TEST_CASE("ttl tracker: no early none by default", "[unit]") {
  TtlSessionConfig c = config();
  c.reorder_grace_ns = 0;
  TtlTracker t(c);
  std::vector<TtlResult> out;
  t.on_sent(t.next_probe(kT0));
  const TtlPayload b = t.next_probe(kT0 + 500'000'000);
  t.on_sent(b);
  t.on_error(error_for(b, "10.1.0.1"), out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 1);
  CHECK(t.outstanding() == 1);
}

// A router that quotes only the UDP header: the error goes to the only probe in flight, and
// is not matched when two are in flight.
TEST_CASE("ttl tracker: short quotes match by order only when unambiguous", "[unit]") {
  TtlTracker t(config());
  std::vector<TtlResult> out;
  const TtlPayload a = t.next_probe(kT0);
  t.on_sent(a);
  TtlIcmpError e = error_for(a, "10.1.0.1");
  e.quoted_size = 0;
  t.on_error(e, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 0);
  CHECK(out[0].path == "express-connect");
  CHECK(t.stats().by_order == 1);
  t.on_sent(t.next_probe(kT0 + 1));
  t.on_sent(t.next_probe(kT0 + 2));
  t.on_error(e, out);
  CHECK(out.size() == 1);
  CHECK(t.stats().unmatched == 1);
}

// Errors quoting another session's probe (unmatched) or an already finished one (late) are
// counted, not used.
TEST_CASE("ttl tracker: foreign and late errors are unmatched", "[unit]") {
  TtlTracker t(config());
  std::vector<TtlResult> out;
  const TtlPayload a = t.next_probe(kT0);
  t.on_sent(a);
  TtlPayload other = a;
  other.session_id = 99;
  t.on_error(error_for(other, "10.1.0.1"), out);
  CHECK(out.empty());
  t.on_error(error_for(a, "10.1.0.1"), out);
  t.on_error(error_for(a, "10.1.0.1"), out);
  CHECK(out.size() == 1);
  CHECK(t.stats().unmatched == 1);
  CHECK(t.stats().late == 1);
}

// The hop map finds configured addresses only and lists each label once.
TEST_CASE("ttl hop map", "[unit]") {
  TtlHopMap m({TtlHop{ip("10.1.0.1"), "express-connect", ""}, TtlHop{ip("fd00::1"), "ipsec", ""},
               TtlHop{ip("10.9.9.9"), "ipsec", ""}});
  REQUIRE(m.find(ip("fd00::1")) != nullptr);
  CHECK(*m.find(ip("fd00::1")) == "ipsec");
  CHECK(*m.find(ip("10.1.0.1")) == "express-connect");
  CHECK(m.find(ip("10.1.0.2")) == nullptr);
  CHECK(m.labels() == std::vector<std::string>{"express-connect", "ipsec"});
}

// Issue 13: a forged time exceeded needs only the 4-tuple to be matched by order (a short
// quote carries nothing of ours). Once a hop has quoted our payload, a short quote claiming
// to come from it is refused (a router quotes alike every time), and so is one that arrives
// before the only probe in flight left.
TEST_CASE("ttl tracker: short quotes from a hop that quoted our payload are refused", "[unit]") {
  TtlSessionConfig c = config();
  c.reorder_grace_ns = 0;
  TtlTracker t(c);
  std::vector<TtlResult> out;
  const TtlPayload a = t.next_probe(kT0);
  t.on_sent(a);
  t.on_error(error_for(a, "10.1.0.1"), out);  // the real hop: full quote
  REQUIRE(out.size() == 1);
  const TtlPayload b = t.next_probe(kT0 + 1'000'000);
  t.on_sent(b);
  TtlIcmpError forged = error_for(b, "10.1.0.1");
  forged.quoted_size = 0;  // only the 4-tuple: what an off-path sender can forge
  t.on_error(forged, out);
  CHECK(out.size() == 1);
  CHECK(t.stats().short_quote_refused == 1);
  CHECK(t.stats().by_order == 0);
  CHECK(t.outstanding() == 1);
  // From a hop never seen quoting more: still matched by order, unless it predates the probe.
  TtlIcmpError early = error_for(b, "192.168.255.254");
  early.quoted_size = 0;
  early.rx_ns = b.tx_ns - 1;
  t.on_error(early, out);
  CHECK(t.stats().short_quote_refused == 2);
  TtlIcmpError short_quote = error_for(b, "192.168.255.254");
  short_quote.quoted_size = 0;
  t.on_error(short_quote, out);
  REQUIRE(out.size() == 2);
  CHECK(out[1].path == "ipsec");
  CHECK(t.stats().by_order == 1);
}

// Time exceeded (and other errors) from ever new addresses are counted one by one only up to
// kTtlMaxAddresses each; beyond, they go to one overflow counter, so the maps stay bounded.
TEST_CASE("ttl tracker: per-address counts are bounded", "[unit]") {
  TtlTracker t(config());
  std::vector<TtlResult> out;
  const std::size_t n = kTtlMaxAddresses + 10;
  for (std::size_t i = 0; i < n; ++i) {
    const TtlPayload p = t.next_probe(kT0 + static_cast<std::int64_t>(i) * 1000);
    t.on_sent(p);
    const std::string from = "100.64." + std::to_string(i / 200) + "." + std::to_string(i % 200);
    t.on_error(error_for(p, from.c_str()), out);
    const TtlPayload q = t.next_probe(kT0 + static_cast<std::int64_t>(i) * 1000 + 500);
    t.on_sent(q);
    const std::string other = "100.65." + std::to_string(i / 200) + "." + std::to_string(i % 200);
    t.on_error(error_for(q, other.c_str(), 3), out);
  }
  REQUIRE(out.size() == 2 * n);  // every probe still gets its result
  CHECK(t.stats().unmapped.size() == kTtlMaxAddresses);
  CHECK(t.stats().unmapped_overflow == 10);
  CHECK(t.stats().other.size() == kTtlMaxAddresses);
  CHECK(t.stats().other_overflow == 10);
  // A known address is still counted as itself.
  const TtlPayload p = t.next_probe(kT0 + 1'000'000'000);
  t.on_sent(p);
  t.on_error(error_for(p, "100.64.0.0"), out);
  CHECK(t.stats().unmapped.at("100.64.0.0") == 2);
  CHECK(t.stats().unmapped_overflow == 10);
  CHECK_THAT(format_ttl_stats(config(), t.stats()),
             Catch::Contains("from more than 64 addresses: unmapped 10 other 10"));
}

TEST_CASE("ttl: the logged-address set is bounded", "[unit]") {
  BoundedAddressSet s(2);
  CHECK(s.insert(ip("10.0.0.1")) == BoundedAddressSet::Insert::New);
  CHECK(s.insert(ip("10.0.0.1")) == BoundedAddressSet::Insert::Known);
  CHECK(s.insert(ip("10.0.0.2")) == BoundedAddressSet::Insert::New);
  CHECK(s.insert(ip("10.0.0.3")) == BoundedAddressSet::Insert::Full);
  CHECK(s.insert(ip("10.0.0.4")) == BoundedAddressSet::Insert::Full);
  CHECK(s.insert(ip("10.0.0.2")) == BoundedAddressSet::Insert::Known);
  CHECK(s.size() == 2);
  CHECK(s.refused() == 2);
}
