#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "pathsentry/common/config_error.h"
#include "pathsentry/reflector/reflector_config.h"

using Catch::Contains;
using pathsentry::ConfigError;
using pathsentry::probe::parse_reflector_args;
using pathsentry::probe::ReflectorCommandLine;
using pathsentry::probe::resolve_reflector_config;

namespace {

ReflectorCommandLine args(std::vector<std::string_view> a) {
  return parse_reflector_args(a);
}

template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// A file in /tmp with `text`, removed at scope exit.
struct TempFile {
  explicit TempFile(const std::string& text) {
    char tmpl[] = "/tmp/pathsentry-reflector-test-XXXXXX";
    const int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    path = tmpl;
    std::ofstream(path) << text;
  }
  ~TempFile() { std::remove(path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path;
};

}  // namespace

// Flags override the file: --allow and --bind replace the file's lists, scalars win.
TEST_CASE("reflector flags override the config file", "[integration][reflector_config]") {
  TempFile f("allow = [\"172.16.0.0/16\"]\nport = 9000\nburst = 7\n");
  const auto from_file = resolve_reflector_config(args({"--config", f.path}));
  REQUIRE(from_file.allow.size() == 1);
  REQUIRE(from_file.port == 9000);
  const auto c = resolve_reflector_config(
      args({"--config", f.path, "--allow", "10.0.0.0/8", "--allow", "fd00::/8", "--port", "0"}));
  REQUIRE(c.allow.size() == 2);
  REQUIRE(c.allow[0].to_string() == "10.0.0.0/8");
  REQUIRE(c.port == 0);
  REQUIRE(c.rate_limit.burst == 7);
}

// A file error names the file, whether it is missing or wrong.
TEST_CASE("reflector config file errors name the file", "[integration][reflector_config]") {
  REQUIRE_THAT(error_of([] {
                 (void)resolve_reflector_config(args({"--config", "/nonexistent/r.toml"}));
               }),
               Contains("/nonexistent/r.toml") && Contains("cannot be read"));
  TempFile f("allow = [\"172.16.0.0/16\"]\nport = 99999\n");
  REQUIRE_THAT(error_of([&] {
                 (void)resolve_reflector_config(args({"--config", f.path}));
               }),
               Contains(f.path) && Contains("port = '99999'"));
  TempFile empty("port = 862\n");
  REQUIRE_THAT(error_of([&] {
                 (void)resolve_reflector_config(args({"--config", empty.path}));
               }),
               Contains(empty.path + ": allow"));
}

// The shipped example config is valid.
TEST_CASE("reflector example config is valid", "[integration][reflector_config]") {
  const auto path = std::filesystem::path(__FILE__).parent_path() /
                    "../../../deploy/config/reflector.example.toml";
  const auto c = resolve_reflector_config(args({"--config", path.string()}));
  REQUIRE(c.allow.size() >= 1);
  REQUIRE(c.allow[0].to_string() == "172.16.0.0/16");
  REQUIRE(c.port == 862);
}
