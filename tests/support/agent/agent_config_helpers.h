#pragma once
// Helpers for tests of the agent's configuration: parse a command line, catch its ConfigError,
// and write a config file that is removed at the end of the test.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/agent/agent_config.h"

namespace pathsentry::test::agent_cfg {

/// parse_agent_config over `argv` (without argv[0]), run nonce 0x00AB.
inline probe::AgentConfig parse(std::vector<std::string> argv) {
  std::vector<std::string_view> v(argv.begin(), argv.end());
  return probe::parse_agent_config(v, 0x00AB);
}

/// The ConfigError message parsing `argv` gives, or "(no error)".
inline std::string error_of(std::vector<std::string> argv) {
  try {
    (void)parse(std::move(argv));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

/// A config file (probe.toml) in a fresh temporary directory, removed at the end of the test.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& text) {
    char dir[] = "/tmp/pathsentry-probe-cfg-XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    path = std::string(dir) + "/probe.toml";
    std::ofstream(path) << text;
  }
  ~TempFile() {
    std::remove(path.c_str());
    rmdir(path.substr(0, path.rfind('/')).c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
};

}  // namespace pathsentry::test::agent_cfg
