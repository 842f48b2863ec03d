#include "ttl/ttl_netns.h"

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "netns/netns.h"
#include "pathsentry/common/clock.h"
#include "pathsentry/probe/ttl/ttl_probe.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace pathsentry::test;

namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

// Runs a TTL session from the agent namespace for `probes` probes at `rate`, returns results.
std::vector<TtlResult> run_session(const NetnsChain& chain, std::uint8_t ttl, double rate,
                                   std::size_t probes, TtlStats* stats) {
  std::vector<TtlResult> got;
  NetnsPair::in_ns(chain.agent(), [&] {
    TtlSocketOptions o;
    o.target = ip(NetnsChain::kTarget);
    o.ttl = ttl;
    auto sock = open_ttl_socket(o);
    REQUIRE(sock);
    TtlSessionConfig c;
    c.session_id = 0x00010001;
    c.target = o.target;
    c.ttl = ttl;
    c.rate_pps = rate;
    c.timeout_ns = 2'000'000'000;  // a loaded machine's delays are not losses
    c.hops = {TtlHop{ip(NetnsChain::kRouterAgentSide), "path-a", ""}};
    SystemClock clock;
    std::mutex mu;
    TtlProber p(clock, c, std::move(*sock), [&](const TtlResult& r) {
      std::lock_guard lock(mu);
      got.push_back(r);
    });
    p.start();
    while (p.stats().sent < probes) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    p.stop();
    *stats = p.stats();
  });
  std::sort(got.begin(), got.end(),
            [](const TtlResult& a, const TtlResult& b) { return a.seq < b.seq; });
  return got;
}

}  // namespace

TEST_CASE("ttl netns: the router's time exceeded names the configured path", "[privileged]") {
  // TTL 1 expires at the router, which answers from its agent-side address: every probe is
  // attributed to that hop's path, with the 64-bit sequence read back from the quoted payload.
  REQUIRE(geteuid() == 0);
  NetnsChain chain;
  TtlStats st;
  const auto got = run_session(chain, 1, 100, 20, &st);
  REQUIRE(got.size() == st.sent);
  REQUIRE(got.size() >= 20);
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].seq == i);
    CHECK(got[i].outcome == TtlOutcome::Hop);
    CHECK(got[i].path == "path-a");
    REQUIRE(got[i].from);
    CHECK(*got[i].from == ip(NetnsChain::kRouterAgentSide));
    CHECK(got[i].icmp_type == 11);
    REQUIRE(got[i].rx_ns);
    CHECK(*got[i].rx_ns > got[i].tx_ns);
  }
  CHECK(st.per_path.at("path-a") == st.sent);
  CHECK(st.by_order == 0);
}

TEST_CASE("ttl netns: a TTL that reaches the target is counted as such", "[privileged]") {
  // TTL 2 passes the router; the target answers port unreachable: outcome target, path unknown.
  REQUIRE(geteuid() == 0);
  NetnsChain chain;
  TtlStats st;
  const auto got = run_session(chain, 2, 2, 3, &st);
  REQUIRE(got.size() >= 3);
  CHECK(st.target_answers >= 1);
  CHECK(st.hop_answers == 0);
  for (const auto& r : got) {
    if (r.outcome == TtlOutcome::None) continue;  // the target's own policing (1/s, burst 6)
    CHECK(r.outcome == TtlOutcome::Target);
    CHECK(r.path == "unknown");
    CHECK(*r.from == ip(NetnsChain::kTarget));
  }
}

TEST_CASE("ttl netns: a router's default ICMP policing answers about one probe a second",
          "[privileged]") {
  // With net.ipv4.icmp_ratelimit left at its default, 50 probes at 100/s get the burst (6) and
  // little more: the rest are "none". This is why the default --ttl-rate is 1/s.
  REQUIRE(geteuid() == 0);
  NetnsChain chain(false);
  TtlStats st;
  const auto got = run_session(chain, 1, 100, 50, &st);
  REQUIRE(got.size() == st.sent);
  CHECK(st.hop_answers >= 1);
  CHECK(st.hop_answers <= 10);
  CHECK(st.no_answer == st.sent - st.hop_answers);
}
