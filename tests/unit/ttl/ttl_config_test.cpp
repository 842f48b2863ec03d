#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "agent/agent_config_helpers.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/agent/agent_config.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using Catch::Matchers::Contains;
using namespace pathsentry::test::agent_cfg;

namespace {

const std::vector<std::string> kBase = {"--target", "192.168.20.161"};

std::vector<std::string> with(std::vector<std::string> more) {
  std::vector<std::string> v = kBase;
  v.insert(v.end(), more.begin(), more.end());
  return v;
}

}  // namespace

// Without TTL flags the method is off and nothing else changes.
TEST_CASE("ttl config: off by default", "[unit]") {
  const auto c = parse(kBase);
  CHECK(c.tap.ttl.ttl == 0);
  CHECK(c.tap.ttl.hops.empty());
}

// The flags set TTL, hops (in order), rate, port and timeout.
TEST_CASE("ttl config: flags", "[unit]") {
  const auto c = parse(with({"--ttl-probe", "2", "--ttl-hop", "10.1.0.1=express-connect",
                             "--ttl-hop=[fd00::1]=ipsec", "--ttl-rate", "200", "--ttl-port",
                             "40000", "--ttl-timeout-ms", "250"}));
  CHECK(c.tap.ttl.ttl == 2);
  REQUIRE(c.tap.ttl.hops.size() == 2);
  CHECK(c.tap.ttl.hops[0].address == *IpAddress::parse("10.1.0.1"));
  CHECK(c.tap.ttl.hops[0].path == "express-connect");
  CHECK(c.tap.ttl.hops[1].address == *IpAddress::parse("fd00::1"));
  CHECK(c.tap.ttl.hops[1].path == "ipsec");
  CHECK(c.tap.ttl.rate_pps == 200);
  CHECK(c.tap.ttl.port == 40000);
  CHECK(c.tap.ttl.timeout_ns == 250'000'000);
}

// The [ttl] table reads the same settings; the defaults stay for keys it leaves out.
TEST_CASE("ttl config: [ttl] table", "[unit]") {
  TempFile f(R"([[targets]]
address = "192.168.20.161"
[ttl]
ttl = 2
hops = { "10.1.0.1" = "express-connect", "192.168.255.254" = "ipsec" }
)");
  const auto c = parse({"--config", f.path});
  CHECK(c.tap.ttl.ttl == 2);
  CHECK(c.tap.ttl.hops.size() == 2);
  CHECK(c.tap.ttl.rate_pps == 1);
  CHECK(c.tap.ttl.port == 33434);
  CHECK(c.tap.ttl.timeout_ns == 1'000'000'000);
}

// --ttl-hop flags replace the file's hops instead of adding to them.
TEST_CASE("ttl config: hop flags replace the file's hops", "[unit]") {
  TempFile f(R"([[targets]]
address = "192.168.20.161"
[ttl]
ttl = 3
hops = { "10.1.0.1" = "express-connect", "192.168.255.254" = "ipsec" }
)");
  const auto c = parse({"--config", f.path, "--ttl-hop", "10.9.9.9=ipsec"});
  CHECK(c.tap.ttl.ttl == 3);
  REQUIRE(c.tap.ttl.hops.size() == 1);
  CHECK(c.tap.ttl.hops[0].address == *IpAddress::parse("10.9.9.9"));
}

// Bad flag values are refused naming the flag and the value.
TEST_CASE("ttl config: flag errors name flag and value", "[unit]") {
  CHECK_THAT(error_of(with({"--ttl-probe", "0"})),
             Contains("--ttl-probe") && Contains("0") && Contains("between 1 and 255"));
  CHECK_THAT(error_of(with({"--ttl-probe", "two"})), Contains("must be an integer"));
  CHECK_THAT(error_of(with({"--ttl-hop", "10.1.0.1"})),
             Contains("--ttl-hop") && Contains("10.1.0.1") && Contains("ADDR=PATH"));
  CHECK_THAT(error_of(with({"--ttl-hop", "10.1.0=ec"})),
             Contains("10.1.0") && Contains("not an IPv4 or IPv6 address"));
  CHECK_THAT(error_of(with({"--ttl-hop", "10.1.0.1=unknown"})), Contains("path label"));
  CHECK_THAT(error_of(with({"--ttl-rate", "0"})), Contains("--ttl-rate"));
  CHECK_THAT(error_of(with({"--ttl-port", "70000"})), Contains("--ttl-port"));
}

// Hops without a TTL, a TTL without hops and an address mapped twice are refused.
TEST_CASE("ttl config: inconsistent settings", "[unit]") {
  CHECK_THAT(error_of(with({"--ttl-hop", "10.1.0.1=ec"})), Contains("needs a TTL"));
  CHECK_THAT(error_of(with({"--ttl-probe", "2"})), Contains("at least one hop"));
  CHECK_THAT(
      error_of(with({"--ttl-probe", "2", "--ttl-hop", "10.1.0.1=a", "--ttl-hop", "10.1.0.1=b"})),
      Contains("mapped twice"));
}

// With taps, a hop path no tap carries is refused (the cross-check compares labels).
TEST_CASE("ttl config: hop paths must be tap paths when taps exist", "[unit]") {
  CHECK_THAT(error_of(with({"--tap", "tap-ec:express-connect:clear", "--ttl-probe", "2",
                            "--ttl-hop", "10.1.0.1=ec"})),
             Contains("--ttl-hop") && Contains("ec") && Contains("not the path of any tap"));
  const auto c = parse(with({"--tap", "tap-ec:express-connect:clear", "--ttl-probe", "2",
                             "--ttl-hop", "10.1.0.1=express-connect"}));
  CHECK(c.tap.ttl.hops.size() == 1);
}

// Bad [ttl] values name file, key and value.
TEST_CASE("ttl config: file errors name file, key and value", "[unit]") {
  TempFile f(R"([[targets]]
address = "192.168.20.161"
[ttl]
ttl = 2
hops = { "10.1.0.300" = "express-connect" }
)");
  const std::string e = error_of({"--config", f.path});
  CHECK_THAT(e, Contains(f.path) && Contains("ttl.hops.10.1.0.300") &&
                    Contains("not an IPv4 or IPv6 address"));
  TempFile g(R"([[targets]]
address = "192.168.20.161"
[ttl]
ttl = 2
hop = { "10.1.0.1" = "express-connect" }
)");
  CHECK_THAT(error_of({"--config", g.path}), Contains("ttl.hop") && Contains("not a known key"));
  TempFile h(R"([[targets]]
address = "192.168.20.161"
[ttl]
ttl = 2
hops = { "10.1.0.1" = 5 }
)");
  CHECK_THAT(error_of({"--config", h.path}), Contains("ttl.hops.10.1.0.1") && Contains("5"));
}
