#include "pathsentry/probe/agent/agent_config.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "agent/agent_config_helpers.h"
#include "pathsentry/common/config_error.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using Catch::Matchers::Contains;
using namespace pathsentry::test::agent_cfg;

// Without a target anywhere the agent refuses to start: there is no built-in one.
TEST_CASE("config requires a target", "[unit][config]") {
  REQUIRE_THAT(error_of({}), Contains("no target configured"));
  REQUIRE_THAT(error_of({"--rate", "10"}), Contains("no built-in target"));
}

// Flags alone make one ICMP and one STAMP session per target, with the defaults.
TEST_CASE("config from flags", "[unit][config]") {
  const auto c = parse({"--target", "198.18.0.2", "--target=fd53::2", "--rate", "2500", "--dscp",
                        "46", "--timeout-ms", "250", "--duration", "5"});
  REQUIRE(c.sessions.size() == 4);
  REQUIRE(c.sessions[0].proto == Proto::Icmp);
  REQUIRE(c.sessions[1].proto == Proto::Stamp);
  REQUIRE(c.sessions[2].target.to_string() == "fd53::2");
  for (const auto& s : c.sessions) {
    REQUIRE(s.rate_pps == 2500);
    REQUIRE(s.dscp == 46);
    REQUIRE(s.timeout_ns == 250'000'000);
    REQUIRE(s.stamp_port == 862);
  }
  REQUIRE(c.duration_ns == 5'000'000'000);
  REQUIRE(c.sessions[0].session_id == 0x00AB0001u);
  REQUIRE(c.sessions[3].session_id == 0x00AB0004u);
  REQUIRE(parse({"--target", "198.18.0.2", "--proto", "stamp"}).sessions.size() == 1);
}

// Bad flag values are named with the flag and the value.
TEST_CASE("config rejects bad flags", "[unit][config]") {
  REQUIRE_THAT(error_of({"--target", "198.18.0.300"}),
               Contains("--target = '198.18.0.300'") && Contains("not an IPv4 or IPv6"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--rate", "abc"}), Contains("--rate = 'abc'"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--rate", "0"}), Contains("--rate = '0'"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--dscp", "64"}), Contains("--dscp = '64'"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--proto", "tcp"}), Contains("--proto = 'tcp'"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--bogus"}), Contains("--bogus"));
  REQUIRE_THAT(error_of({"--target"}), Contains("needs a value"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--size", "30", "--proto", "icmp"}),
               Contains("--size = '30'") && Contains("40 bytes"));
  REQUIRE_THAT(error_of({"--target", "fd53::2", "--source", "198.18.0.1"}),
               Contains("--source = '198.18.0.1'") && Contains("same IP family"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--rate", "1000000", "--timeout-ms", "5000"}),
               Contains("--rate") && Contains("in flight"));
}

// The file sets defaults, targets and per-protocol overrides; flags override the file.
TEST_CASE("config file layers and flag overrides", "[unit][config]") {
  TempFile f(R"(
[agent]
id = 42
records = "out.jsonl"

[defaults]
rate = 500
source = "198.18.0.1"
stamp_port = 8620

[[targets]]
address = "198.18.0.2"
dscp = 10
[targets.stamp]
rate = 2000
port = 9000

[[targets]]
address = "198.18.0.3"
proto = "icmp"
interface = "va"
)");
  auto c = parse({"--config", f.path});
  REQUIRE(c.agent_id == 42);
  REQUIRE(c.records == "out.jsonl");
  REQUIRE(c.sessions.size() == 3);
  REQUIRE(c.sessions[0].rate_pps == 500);
  REQUIRE(c.sessions[0].dscp == 10);
  REQUIRE(c.sessions[0].source->to_string() == "198.18.0.1");
  REQUIRE(c.sessions[0].agent_id == 42);
  REQUIRE(c.sessions[1].rate_pps == 2000);
  REQUIRE(c.sessions[1].stamp_port == 9000);
  REQUIRE(c.sessions[2].interface == "va");
  REQUIRE(c.sessions[2].dscp == 0);

  c = parse({"--config", f.path, "--rate", "7", "--agent-id", "3", "--records", "-"});
  for (const auto& s : c.sessions) REQUIRE(s.rate_pps == 7);
  REQUIRE(c.agent_id == 3);
  REQUIRE(c.records == "-");
  c = parse({"--config", f.path, "--target", "198.18.0.9"});  // flags replace the targets
  REQUIRE(c.sessions.size() == 2);
  REQUIRE(c.sessions[0].target.to_string() == "198.18.0.9");
  REQUIRE(c.sessions[0].source->to_string() == "198.18.0.1");  // defaults still apply
}

// File errors name the file, the full key and the bad value.
TEST_CASE("config file errors name file and key and value", "[unit][config]") {
  SECTION("unknown key") {
    TempFile f("[[targets]]\naddress = \"198.18.0.2\"\nrat = 5\n");
    REQUIRE_THAT(error_of({"--config", f.path}),
                 Contains(f.path) && Contains("targets[0].rat = '5'") && Contains("not a known"));
  }
  SECTION("bad value in a nested table") {
    TempFile f("[[targets]]\naddress = \"198.18.0.2\"\n[targets.icmp]\ndscp = 99\n");
    REQUIRE_THAT(error_of({"--config", f.path}),
                 Contains(f.path) && Contains("targets[0].icmp.dscp = '99'"));
  }
  SECTION("wrong type") {
    TempFile f("[defaults]\nrate = \"fast\"\n[[targets]]\naddress = \"198.18.0.2\"\n");
    REQUIRE_THAT(error_of({"--config", f.path}), Contains("defaults.rate = 'fast'"));
  }
  SECTION("bad address") {
    TempFile f("[[targets]]\naddress = \"ecs.example\"\n");
    REQUIRE_THAT(error_of({"--config", f.path}), Contains("targets[0].address = 'ecs.example'"));
  }
  SECTION("syntax error") {
    TempFile f("[agent\nid = 1\n");
    REQUIRE_THAT(error_of({"--config", f.path}), Contains(f.path) && Contains("line 1"));
  }
  SECTION("missing file") {
    REQUIRE_THAT(error_of({"--config", "/nonexistent/pathsentry.toml"}),
                 Contains("/nonexistent/pathsentry.toml"));
  }
  SECTION("family mismatch names where the source came from") {
    TempFile f("[defaults]\nsource = \"198.18.0.1\"\n[[targets]]\naddress = \"fd53::2\"\n");
    REQUIRE_THAT(error_of({"--config", f.path}),
                 Contains(f.path) && Contains("defaults.source = '198.18.0.1'"));
  }
  SECTION("a target without an address") {
    TempFile f("[[targets]]\nrate = 5\n[[targets]]\naddress = \"198.18.0.2\"\n");
    REQUIRE_THAT(error_of({"--config", f.path}),
                 Contains(f.path) && Contains("targets[0].address") && Contains("is required"));
  }
  SECTION("an empty [[targets]] or [[tap]], last or not") {
    for (const char* text : {"[[targets]]\n[[targets]]\naddress = \"198.18.0.2\"\n",
                             "[[targets]]\naddress = \"198.18.0.2\"\n[[targets]]\n",
                             "[[targets]]\naddress = \"198.18.0.2\"\n[[tap]]\n"}) {
      TempFile f(text);
      REQUIRE_THAT(error_of({"--config", f.path}),
                   Contains(f.path) && Contains("is an empty table"));
    }
  }
  SECTION("a value where a table belongs") {
    TempFile f("targets = \"198.18.0.2\"\n");
    REQUIRE_THAT(error_of({"--config", f.path}),
                 Contains(f.path) && Contains("targets = '198.18.0.2'") &&
                     Contains("must be an array of tables ([[targets]])"));
  }
  SECTION("no targets in the file") {
    TempFile f("[agent]\nid = 1\n");
    REQUIRE_THAT(error_of({"--config", f.path}), Contains(f.path) && Contains("no target"));
  }
}

// --check-config and --help are recognised.
TEST_CASE("config check and help flags", "[unit][config]") {
  REQUIRE(parse({"--target", "198.18.0.2", "--check-config"}).check_only);
  REQUIRE(parse({"--help"}).help);
  REQUIRE_THAT(agent_usage(), Contains("--summary-json"));
}

// Issue 13: STAMP SSIDs are random, non-zero and distinct within the agent, not the session's
// index (which an off-path sender could guess); they differ from one run to the next.
TEST_CASE("config draws random distinct STAMP SSIDs", "[unit][config]") {
  std::vector<std::string> argv;
  for (int i = 1; i <= 40; ++i) {
    argv.push_back("--target");
    argv.push_back("198.18.0." + std::to_string(i));
  }
  argv.push_back("--proto");
  argv.push_back("stamp");
  const auto a = parse(argv);
  const auto b = parse(argv);
  REQUIRE(a.sessions.size() == 40);
  std::set<std::uint16_t> seen;
  std::size_t index_like = 0;
  std::size_t same_as_b = 0;
  for (std::size_t i = 0; i < a.sessions.size(); ++i) {
    const auto ssid = a.sessions[i].stamp_ssid;
    REQUIRE(ssid != 0);
    seen.insert(ssid);
    index_like += ssid == (a.sessions[i].session_id & 0xFFFF) ? 1 : 0;
    same_as_b += ssid == b.sessions[i].stamp_ssid ? 1 : 0;
  }
  REQUIRE(seen.size() == 40);
  REQUIRE(index_like < 5);  // 40 draws from 65535: a handful of matches would be a surprise
  REQUIRE(same_as_b < 5);
}

// Issue 14: pacing defaults (a slot is missed only when still unsent 50 ms after its deadline;
// the sender coalesces up to 1 ms) and their flags, with bad values refused by name.
TEST_CASE("config: pacing lag and send coalescing", "[unit][config]") {
  const auto d = parse({"--target", "198.18.0.2"});
  REQUIRE(d.send_coalesce_ns == 1'000'000);
  for (const auto& s : d.sessions) REQUIRE(s.max_lag_ns == 50'000'000);
  const auto c =
      parse({"--target", "198.18.0.2", "--send-coalesce-us", "0", "--max-lag-us", "300"});
  REQUIRE(c.send_coalesce_ns == 0);
  for (const auto& s : c.sessions) REQUIRE(s.max_lag_ns == 300'000);
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--send-coalesce-us", "-1"}),
               Contains("--send-coalesce-us = '-1'"));
  // Launch-time pacing: off unless asked for.
  REQUIRE(d.launch_ahead_ns == 0);
  REQUIRE(parse({"--target", "198.18.0.2", "--launch-ahead-us", "8000"}).launch_ahead_ns ==
          8'000'000);
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--launch-ahead-us", "-5"}),
               Contains("--launch-ahead-us = '-5'"));
  REQUIRE_THAT(error_of({"--target", "198.18.0.2", "--send-coalesce-us", "200000"}),
               Contains("--send-coalesce-us = '200000'"));
}
