// The shipped deploy/config/probe.example.toml parses into the deployment it documents.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/probe/agent/agent_config.h"

using pathsentry::Proto;
using pathsentry::probe::Encap;
using pathsentry::probe::parse_agent_config;

namespace {

std::string example_path() {
  return (std::filesystem::path(__FILE__).parent_path() /
          "../../../deploy/config/probe.example.toml")
      .string();
}

}  // namespace

// The example names the seed's ECS, both sessions, both taps and the detector settings.
TEST_CASE("probe example config describes the seed deployment", "[integration][agent_config]") {
  const std::string path = example_path();
  const std::vector<std::string_view> args{"--config", path, "--check-config"};
  const auto cfg = parse_agent_config(args, 1);
  REQUIRE(cfg.check_only);
  REQUIRE(cfg.sessions.size() == 2);
  REQUIRE(cfg.sessions[0].target.to_string() == "192.168.20.161");
  REQUIRE(cfg.sessions[0].proto == Proto::Icmp);
  REQUIRE(cfg.sessions[1].proto == Proto::Stamp);
  REQUIRE(cfg.sessions[1].dscp == 46);
  REQUIRE(cfg.sessions[0].source.has_value());
  REQUIRE(cfg.sessions[0].source->to_string() == "172.16.1.188");
  REQUIRE(cfg.tap.taps.size() == 2);
  REQUIRE(cfg.tap.taps[0].path == "express-connect");
  REQUIRE(cfg.tap.taps[0].encap == Encap::Clear);
  REQUIRE(cfg.tap.taps[1].path == "ipsec");
  REQUIRE(cfg.tap.taps[1].encap == Encap::Esp);
  REQUIRE(cfg.tap.taps[1].local_endpoint.to_string() == "198.51.100.68");
  REQUIRE(cfg.tap.detector.confirm_probes == 3);
}
