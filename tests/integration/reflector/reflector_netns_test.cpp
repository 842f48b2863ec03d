#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "netns/netns.h"
#include "pathsentry/common/ip.h"
#include "pathsentry/reflector/reflector.h"
#include "reflector_client.h"

using pathsentry::IpAddress;
using pathsentry::IpPrefix;
using pathsentry::probe::ReflectorConfig;
using pathsentry::test::Child;
using pathsentry::test::eventually;
using pathsentry::test::NetnsPair;
using pathsentry::test::realtime_ns;
using pathsentry::test::reflector_binary;
using pathsentry::test::RunningReflector;
using pathsentry::test::StampClient;
namespace stamp = pathsentry::probe::stamp;

namespace {

ReflectorConfig config_allowing(std::vector<const char*> prefixes) {
  ReflectorConfig c;
  for (const char* p : prefixes) c.allow.push_back(*IpPrefix::parse(p));
  c.port = 0;  // default bind: 0.0.0.0 and :: in namespace b
  return c;
}

// Starts a reflector whose sockets live in namespace `ns`.
std::unique_ptr<RunningReflector> start_in(const std::string& ns, const ReflectorConfig& c) {
  std::unique_ptr<RunningReflector> r;
  NetnsPair::in_ns(ns, [&] { r = std::make_unique<RunningReflector>(c); });
  return r;
}

// A client whose socket lives in namespace `ns`.
std::unique_ptr<StampClient> client_in(const std::string& ns, const char* target,
                                       std::uint16_t port) {
  std::unique_ptr<StampClient> c;
  NetnsPair::in_ns(ns, [&] { c = std::make_unique<StampClient>(target, port); });
  return c;
}

}  // namespace

// A sender in namespace a reaches the reflector in namespace b over the veth, on IPv4 and
// IPv6: replies come from the address asked, with t_tx <= t2 <= t3 <= t_rx, the sender's
// sequence echoed, the reflector's own sequence counting per session, and the request's TTL.
TEST_CASE("reflector answers across namespaces over IPv4 and IPv6", "[privileged][reflector]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  auto r = start_in(pair.b(), config_allowing({"198.18.0.0/24", "fd53::/64"}));
  const auto port = r->server.port();
  for (const char* target : {NetnsPair::kAddrB4, NetnsPair::kAddrB6}) {
    INFO(target);
    auto client = client_in(pair.a(), target, port);
    client->set_ttl_tos(33, 0x28);
    for (std::uint32_t i = 0; i < 20; ++i) {
      const std::int64_t tx = realtime_ns();
      REQUIRE(client->send(50'000 + i, 3, 44 + i, tx) == static_cast<ssize_t>(44 + i));
      const auto reply = client->receive(2000);
      REQUIRE(reply.has_value());
      REQUIRE(reply->bytes.size() == 44 + i);
      REQUIRE(reply->from == *IpAddress::parse(target));
      REQUIRE(reply->from_port == port);
      const auto& p = reply->packet;
      REQUIRE(p.sender_sequence == 50'000 + i);
      REQUIRE(p.sequence == i);
      REQUIRE(p.ssid == 3);
      REQUIRE(p.sender_ttl == 33);
      REQUIRE((p.error.encode() & 0x8000) == 0);  // clock not declared synchronized
      const auto t2 = stamp::ntp_to_ns(p.receive_timestamp);
      const auto t3 = stamp::ntp_to_ns(p.timestamp);
      REQUIRE(tx <= t2);
      REQUIRE(t2 <= t3);
      REQUIRE(t3 <= reply->rx_ns);
      REQUIRE(reply->tos == 0x28);
    }
  }
  REQUIRE(eventually([&] { return r->server.counters().replied == 40; }));
}

// A sender outside the allowlist gets no answer at all, and the counter says why.
TEST_CASE("reflector ignores senders outside the allowlist", "[privileged][reflector]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  auto r = start_in(pair.b(), config_allowing({"198.18.0.99/32", "fd53::99/128"}));
  const auto port = r->server.port();
  auto v4 = client_in(pair.a(), NetnsPair::kAddrB4, port);
  auto v6 = client_in(pair.a(), NetnsPair::kAddrB6, port);
  for (std::uint32_t i = 0; i < 10; ++i) {
    REQUIRE(v4->send(i) == 44);
    REQUIRE(v6->send(i) == 44);
  }
  REQUIRE(eventually([&] { return r->server.counters().dropped_not_allowed == 20; }));
  REQUIRE_FALSE(v4->receive(200).has_value());
  REQUIRE_FALSE(v6->receive(0).has_value());
  const auto c = r->server.counters();
  REQUIRE(c.received == 20);
  REQUIRE(c.replied == 0);
}

// A flood from one source is cut to the rate limit: the burst passes, then no more than
// pps * elapsed more, and everything else is counted as rate-limited (none lost silently).
TEST_CASE("reflector cuts a flood to the rate limit", "[privileged][reflector]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  auto config = config_allowing({"198.18.0.0/24"});
  config.rate_limit = {1000, 100};
  auto r = start_in(pair.b(), config);
  auto client = client_in(pair.a(), NetnsPair::kAddrB4, r->server.port());
  constexpr std::uint32_t kFlood = 5000;
  const std::int64_t start = realtime_ns();
  for (std::uint32_t i = 0; i < kFlood; ++i) REQUIRE(client->send(i) == 44);
  REQUIRE(eventually([&] { return r->server.counters().received == kFlood; }));
  std::uint64_t replies = 0;
  std::int64_t last_rx = start;  // the last reply's arrival: after its request was handled
  while (const auto reply = client->receive(300)) {
    ++replies;
    last_rx = std::max(last_rx, reply->rx_ns);
  }
  const auto c = r->server.counters();
  INFO("replies " << replies << " over " << (last_rx - start) << " ns");
  REQUIRE(replies == c.replied);
  REQUIRE(c.replied + c.dropped_rate_limited == kFlood);
  REQUIRE(replies >= 100);
  // The burst plus the tokens earned between the first send and the last reply's arrival
  // (which bracket the handling of the first and last answered requests).
  const double earned = 1000.0 * static_cast<double>(last_rx - start) / 1e9;
  REQUIRE(static_cast<double>(replies) <= 100 + earned + 1);
  REQUIRE(c.dropped_rate_limited > 0);
}

// The binary, started in namespace b as the sender teammate's tests do, prints its readiness
// line with the port it chose, answers namespace a, and exits 0 on SIGTERM.
TEST_CASE("reflector binary serves across namespaces", "[privileged][reflector]") {
  REQUIRE(geteuid() == 0);
  REQUIRE(std::filesystem::exists(reflector_binary()));
  NetnsPair pair;
  Child child({"/usr/bin/env", "ip", "netns", "exec", pair.b(), reflector_binary(), "--allow",
               "198.18.0.1/32", "--allow", "fd53::1/128", "--port", "0", "--log-level", "warn"});
  const auto ready = child.wait_line("reflector listening on ");
  REQUIRE(ready.has_value());
  const auto port = pathsentry::test::port_of_ready_line(*ready);
  REQUIRE(*ready == "reflector listening on 0.0.0.0:" + std::to_string(port) +
                        " [::]:" + std::to_string(port));
  for (const char* target : {NetnsPair::kAddrB4, NetnsPair::kAddrB6}) {
    auto client = client_in(pair.a(), target, port);
    for (std::uint32_t i = 0; i < 3; ++i) {
      REQUIRE(client->send(i, 1, 60) == 60);
      const auto reply = client->receive(2000);
      REQUIRE(reply.has_value());
      REQUIRE(reply->bytes.size() == 60);
      REQUIRE(reply->packet.sequence == i);
    }
  }
  REQUIRE(child.stop() == 0);
  REQUIRE_THAT(child.rest(), Catch::Contains("reflector counters: received=6 replied=6 "));
}
