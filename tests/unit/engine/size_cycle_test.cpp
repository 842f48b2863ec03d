// Size cycling: consecutive probes of the agent get distinct sizes (docs/attribution.md §2).

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/agent_config_helpers.h"
#include "engine/fake_socket.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/agent/agent_config.h"
#include "pathsentry/probe/engine/engine.h"
#include "pathsentry/probe/engine/probe_session.h"
#include "pathsentry/probe/wire/icmp_payload.h"
#include "pathsentry/probe/wire/stamp.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using namespace pathsentry::test::agent_cfg;
using pathsentry::test::CollectingSink;
using pathsentry::test::FakeSocket;

namespace {

constexpr std::uint32_t kIpv4Header = 20;

// Two sessions (ICMP and STAMP, same base IP total length of 72 bytes) on fake sockets, added
// to one engine so they share its size cycle. The engine is never run: the test drives
// send_due() as the sender thread would.
struct TwoSessions {
  ManualClock clock;
  CollectingSink sink;
  Engine engine{clock, EngineOptions{}};
  std::vector<FakeSocket*> socks;
  std::vector<WireFormat> wfs;

  TwoSessions(std::uint32_t cycle, std::uint32_t step) {
    for (Proto p : {Proto::Icmp, Proto::Stamp}) {
      SessionConfig c;
      c.target = *IpAddress::parse("198.18.0.2");
      c.proto = p;
      c.rate_pps = 1000;
      c.timeout_ns = 100'000'000;
      c.max_lag_ns = 1'000'000'000;  // a late slot is sent, not missed (the batch test)
      c.agent_id = 7;
      c.session_id = p == Proto::Icmp ? 0x12340001 : 0x12340002;
      c.size = 52;  // IP payload: ICMP 52 (> 40 minimum), STAMP 8 + 44
      c.size_cycle = cycle;
      c.size_step = step;
      WireFormat wf;
      wf.proto = p;
      wf.family = AF_INET;
      wf.icmp_raw = true;
      wf.echo_id = 0x4321;
      wf.agent_id = c.agent_id;
      wf.session_id = c.session_id;
      wf.datagram_size = datagram_size_for(p, c.size);
      auto fs = std::make_unique<FakeSocket>(clock);
      socks.push_back(fs.get());
      wfs.push_back(wf);
      engine.add_session(std::make_unique<ProbeSession>(c, wf, std::move(fs), sink));
    }
    for (const auto& s : engine.sessions()) s->start(clock.monotonic_ns());
  }
  ProbeSession& session(std::size_t i) { return *engine.sessions()[i]; }
  // IP total length of what session `i` handed to its socket as datagram `n`.
  std::uint32_t ip_total(std::size_t i, std::size_t n) const {
    const auto bytes = static_cast<std::uint32_t>(socks[i]->sent.at(n).bytes.size());
    return kIpv4Header + bytes + (wfs[i].proto == Proto::Stamp ? 8 : 0);
  }
  // One ms: session 0 sends what is due, then session 1 (the sender thread's order).
  void tick() {
    for (const auto& s : engine.sessions()) s->send_due(clock);
    clock.advance(1ms);
  }
  // The receiver thread's wake-up: replies and TX timestamps read, every probe sent so far
  // announced (expire() announces first; nothing is old enough to expire).
  void announce() {
    for (const auto& s : engine.sessions()) {
      s->service_io(clock);
      s->expire(clock.monotonic_ns());
    }
  }
};

}  // namespace

// The cycle hands out 0, step, 2·step, … and wraps after `count` sizes; 0 or 1 sizes = fixed.
TEST_CASE("size cycle wraps after count sizes", "[unit][size-cycle]") {
  SizeCycle c(3, 16);
  std::vector<std::uint32_t> got;
  for (int i = 0; i < 7; ++i) got.push_back(c.next());
  REQUIRE(got == std::vector<std::uint32_t>{0, 16, 32, 0, 16, 32, 0});
  REQUIRE(c.max_extra() == 32);
  for (std::uint32_t n : {0U, 1U}) {
    SizeCycle fixed(n, 16);
    REQUIRE(fixed.next() == 0);
    REQUIRE(fixed.next() == 0);
    REQUIRE(fixed.max_extra() == 0);
  }
}

// Two sessions of one engine take turns in one cycle: probe k of the agent, whichever session
// sent it, has IP size base + (k mod N)·step, so N consecutive probes never share a size.
TEST_CASE("sizes cycle across the sessions of an engine", "[unit][size-cycle]") {
  TwoSessions t(4, 16);
  for (int i = 0; i < 6; ++i) t.tick();  // ICMP, STAMP, ICMP, STAMP, …
  REQUIRE(t.socks[0]->sent.size() == 6);
  REQUIRE(t.socks[1]->sent.size() == 6);
  for (std::size_t n = 0; n < 6; ++n) {
    const std::uint32_t k_icmp = static_cast<std::uint32_t>(2 * n);
    REQUIRE(t.ip_total(0, n) == 72 + (k_icmp % 4) * 16);
    REQUIRE(t.ip_total(1, n) == 72 + ((k_icmp + 1) % 4) * 16);
  }
}

// A session sending a batch (it fell behind) still gives each probe of the batch the next
// size, and the other session continues the cycle after it.
TEST_CASE("a batch of probes takes consecutive sizes", "[unit][size-cycle]") {
  TwoSessions t(8, 4);
  t.clock.advance(2ms);  // three slots due for each session
  t.tick();
  REQUIRE(t.socks[0]->sent.size() == 3);
  REQUIRE(t.socks[1]->sent.size() == 3);
  std::vector<std::uint32_t> order;
  for (std::size_t i = 0; i < 2; ++i) {
    for (std::size_t n = 0; n < 3; ++n) order.push_back(t.ip_total(i, n));
  }
  REQUIRE(order == std::vector<std::uint32_t>{72, 76, 80, 84, 88, 92});
}

// Each probe's announced wire_bytes is the IP total length of exactly what went to the
// socket, and the smallest and largest sizes are the base and base + (N-1)·step.
TEST_CASE("announced wire bytes match the datagrams sent", "[unit][size-cycle]") {
  TwoSessions t(5, 16);
  for (int i = 0; i < 20; ++i) t.tick();
  t.announce();
  REQUIRE(t.sink.sent.size() == 40);
  std::set<std::uint32_t> sizes;
  std::size_t checked = 0;
  for (const SentNotice& s : t.sink.sent) {
    const std::size_t i = s.session_id == 0x12340001 ? 0 : 1;
    REQUIRE(s.wire_bytes == t.ip_total(i, s.seq));
    sizes.insert(s.wire_bytes);
    ++checked;
  }
  REQUIRE(checked == 40);
  REQUIRE(sizes == std::set<std::uint32_t>{72, 88, 104, 120, 136});
  REQUIRE(t.session(0).max_datagram_size() == 72 - 20 + 64);
  REQUIRE(t.session(1).max_datagram_size() == 72 - 28 + 64);
}

// Padded probes stay valid: the ICMP checksum covers the padding, the payload still decodes,
// STAMP requests decode with zero padding, and replies of the request's size are matched.
TEST_CASE("cycled probes are valid and their replies are matched", "[unit][size-cycle]") {
  TwoSessions t(4, 16);
  for (int i = 0; i < 8; ++i) t.tick();
  for (std::size_t n = 0; n < 8; ++n) {
    const auto& icmp = t.socks[0]->sent.at(n).bytes;
    REQUIRE(internet_checksum(icmp) == 0);
    const auto p = icmp::decode(std::span(icmp).subspan(kIcmpHeaderSize));
    REQUIRE(p.has_value());
    REQUIRE(p->seq == n);
    for (std::size_t b = kIcmpHeaderSize + icmp::kPayloadSize; b < icmp.size(); ++b) {
      REQUIRE(icmp[b] == 0);
    }
    const auto& st = t.socks[1]->sent.at(n).bytes;
    REQUIRE(stamp::decode_sender(st).has_value());
    for (std::size_t b = stamp::kBasePacketSize; b < st.size(); ++b) REQUIRE(st[b] == 0);
    t.socks[0]->deliver(test::icmp_echo_reply(t.wfs[0], icmp), t.clock.system_ns());
    t.socks[1]->deliver(test::stamp_reply(st, static_cast<std::uint32_t>(n), 1, 2),
                        t.clock.system_ns());
  }
  t.announce();
  REQUIRE(t.sink.records.size() == 16);
  REQUIRE(t.session(0).summary().counters.unmatched == 0);
  REQUIRE(t.session(1).summary().counters.unmatched == 0);
  REQUIRE(t.session(0).summary().counters.received == 8);
  REQUIRE(t.session(1).summary().counters.received == 8);
}

// Without cycling every probe has the session's one size.
TEST_CASE("a fixed size does not cycle", "[unit][size-cycle]") {
  TwoSessions t(1, 16);
  for (int i = 0; i < 5; ++i) t.tick();
  t.announce();
  for (const SentNotice& s : t.sink.sent) REQUIRE(s.wire_bytes == 72);
}

// Sessions that disagree on the cycle cannot share one: the engine refuses the second.
TEST_CASE("the engine refuses sessions with another cycle", "[unit][size-cycle]") {
  ManualClock clock;
  CollectingSink sink;
  Engine engine(clock, EngineOptions{});
  auto make = [&](std::uint32_t cycle) {
    SessionConfig c;
    c.target = *IpAddress::parse("198.18.0.2");
    c.size_cycle = cycle;
    WireFormat wf;
    wf.datagram_size = datagram_size_for(Proto::Icmp, 0);
    return std::make_unique<ProbeSession>(c, wf, std::make_unique<FakeSocket>(clock), sink);
  };
  engine.add_session(make(8));
  REQUIRE_THROWS_AS(engine.add_session(make(4)), std::invalid_argument);
}

// ---------------------------------------------------------------- configuration

namespace {

std::uint32_t ip_total(const SessionConfig& s) {
  return static_cast<std::uint32_t>((s.target.family == AF_INET ? 20 : 40) +
                                    std::max(s.size, min_ip_payload(s.proto)));
}

const std::string kEspTap = "tap-inet:ipsec:esp:198.51.100.68:203.0.113.10:aes-cbc-sha256:-200:800";

}  // namespace

// --size-cycle/--size-step reach every session, whose sizes are raised to one common base
// (the largest request: here the IPv6 STAMP one, 40 + 8 + 44 = 92 bytes).
TEST_CASE("size cycle flags give all sessions one base and cycle", "[unit][size-cycle]") {
  const auto c = parse(
      {"--target", "198.18.0.2", "--target", "fd53::2", "--size-cycle", "8", "--size-step", "4"});
  REQUIRE(c.size_cycle == 8);
  REQUIRE(c.size_step == 4);
  REQUIRE(c.sessions.size() == 4);
  for (const auto& s : c.sessions) {
    REQUIRE(s.size_cycle == 8);
    REQUIRE(s.size_step == 4);
    REQUIRE(ip_total(s) == 92);
  }
}

// --size is the base; without cycling each session keeps its own size.
TEST_CASE("size cycle keeps --size as the base", "[unit][size-cycle]") {
  const auto cyc = parse({"--target", "198.18.0.2", "--size", "200", "--size-cycle", "4"});
  for (const auto& s : cyc.sessions) REQUIRE(ip_total(s) == 220);
  const auto fixed = parse({"--target", "198.18.0.2", "--size-cycle", "1"});
  REQUIRE(fixed.size_cycle == 1);
  REQUIRE(ip_total(fixed.sessions[0]) == 60);  // ICMP
  REQUIRE(ip_total(fixed.sessions[1]) == 72);  // STAMP
}

// Default: fixed without taps; with an ESP tap at least 16 sizes, more when the rate times
// the widest window asks for it, at most 64.
TEST_CASE("size cycle default follows the ESP taps", "[unit][size-cycle]") {
  REQUIRE(parse({"--target", "198.18.0.2"}).size_cycle == 1);
  REQUIRE(parse({"--target", "198.18.0.2", "--tap", "tap-ec:express-connect:clear"}).size_cycle ==
          1);
  REQUIRE(parse({"--target", "198.18.0.2", "--tap", kEspTap}).size_cycle == 16);
  // 2 × 20000/s × 1 ms = 40 sizes.
  REQUIRE(parse({"--target", "198.18.0.2", "--rate", "10000", "--tap", kEspTap}).size_cycle == 40);
  REQUIRE(parse({"--target", "198.18.0.2", "--rate", "100000", "--tap", kEspTap}).size_cycle == 64);
  REQUIRE(parse({"--target", "198.18.0.2", "--tap", kEspTap, "--size-cycle", "0"}).size_cycle == 1);
}

// The TOML keys agent.size_cycle and agent.size_step; flags override them.
TEST_CASE("size cycle from the config file", "[unit][size-cycle]") {
  TempFile f("[agent]\nsize_cycle = 12\nsize_step = 32\n[[targets]]\naddress = \"198.18.0.2\"\n");
  const auto c = parse({"--config", f.path});
  REQUIRE(c.size_cycle == 12);
  REQUIRE(c.size_step == 32);
  REQUIRE(parse({"--config", f.path, "--size-cycle", "3"}).size_cycle == 3);
}

// Bad values name the flag or file key and the value.
TEST_CASE("size cycle errors name key and value", "[unit][size-cycle]") {
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--size-cycle", "many"}),
               Contains("--size-cycle = 'many'") && Contains("integer"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--size-cycle", "5000"}),
               Contains("--size-cycle = '5000'") && Contains("between 0 and 1024"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--size-step", "0"}),
               Contains("--size-step = '0'") && Contains("between 1 and 4096"));
  // AES-CBC pads to 16 bytes: a 4-byte step would give several sizes one ESP length.
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--tap", kEspTap, "--size-step", "4"}),
               Contains("--size-step = '4'") && Contains("multiple of the ESP padding block") &&
                   Contains("tap-inet"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--size", "60000", "--size-cycle", "1024",
                         "--size-step", "16"}),
               Contains("--size-cycle = '1024'") && Contains("65535"));
  {
    TempFile f("[agent]\nsize_cycle = -1\n[[targets]]\naddress = \"198.18.0.2\"\n");
    REQUIRE_THAT(error_of({"--config", f.path}),
                 Contains(f.path) && Contains("agent.size_cycle = '-1'"));
  }
  {
    TempFile f("[agent]\nsize_step = \"16\"\n[[targets]]\naddress = \"198.18.0.2\"\n");
    REQUIRE_THAT(error_of({"--config", f.path}),
                 Contains(f.path) && Contains("agent.size_step = '16'") && Contains("integer"));
  }
  {
    TempFile f(
        "[agent]\nsize_step = 8\n[[targets]]\naddress = \"198.18.0.2\"\n[[tap]]\n"
        "interface = \"tap-inet\"\npath = \"ipsec\"\nencap = \"esp\"\n"
        "local = \"198.51.100.68\"\nremote = \"203.0.113.10\"\n"
        "transform = \"aes-cbc-sha1\"\n");
    REQUIRE_THAT(error_of({"--config", f.path}),
                 Contains(f.path) && Contains("agent.size_step = '8'") && Contains("16 bytes"));
  }
}
