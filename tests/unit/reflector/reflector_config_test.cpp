#include "pathsentry/reflector/reflector_config.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "pathsentry/common/config_error.h"

using Catch::Contains;
using pathsentry::ConfigError;
using pathsentry::IpAddress;
using pathsentry::probe::parse_reflector_args;
using pathsentry::probe::parse_reflector_config;
using pathsentry::probe::ReflectorCommandLine;
using pathsentry::probe::ReflectorConfig;
using pathsentry::probe::resolve_reflector_config;
using pathsentry::probe::validate_reflector_config;

namespace {

const std::string kFile = "/etc/pathsentry/reflector.toml";

ReflectorConfig parse(const std::string& text) {
  return parse_reflector_config(text, kFile);
}

ReflectorCommandLine args(std::vector<std::string_view> a) {
  return parse_reflector_args(a);
}

// The message of the ConfigError `fn` throws ("" when it does not throw).
template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// An empty file gives the documented defaults (and the empty allowlist is left to validate).
TEST_CASE("reflector config defaults", "[unit][reflector_config]") {
  const auto c = parse("");
  REQUIRE(c.allow.empty());
  REQUIRE(c.bind.empty());
  REQUIRE(c.port == 862);
  // Issue 14 goal 7: one agent host at the agent's documented top rate (100 000/s, all its
  // sessions from one address) is not cut by the per-source limit.
  REQUIRE(c.rate_limit.pps == 100'000);
  REQUIRE(c.rate_limit.burst == 10'000);
  REQUIRE(c.global_rate_limit.pps == 200'000);
  REQUIRE(c.global_rate_limit.pps >= c.rate_limit.pps);
  REQUIRE(c.max_sessions_per_source == 1024);
  REQUIRE_FALSE(c.allow_broad);
  REQUIRE_FALSE(c.reply_tos.has_value());
  REQUIRE_FALSE(c.clock_synchronized);
  REQUIRE(c.rt_priority == 0);  // the default policy unless asked
}

// Every key is read into its field.
TEST_CASE("reflector config reads every key", "[unit][reflector_config]") {
  const auto c = parse(R"(
allow = ["172.16.0.0/16", "fd00::/8"]
bind = ["192.168.20.161", "::1"]
port = 8620
rate_limit_pps = 2000
burst = 50
max_sources = 1000
max_sessions = 2000
session_timeout_s = 30
stats_interval_s = 2.5
reply_tos = 184
clock_synchronized = true
clock_error_us = 250
log_level = "debug"
global_rate_limit_pps = 5000
global_burst = 70
max_sessions_per_source = 12
allow_broad = true
rt_priority = 20
)");
  REQUIRE(c.rt_priority == 20);
  REQUIRE(c.global_rate_limit.pps == 5000);
  REQUIRE(c.global_rate_limit.burst == 70);
  REQUIRE(c.max_sessions_per_source == 12);
  REQUIRE(c.allow_broad);
  REQUIRE(c.allow.size() == 2);
  REQUIRE(c.allow[0].to_string() == "172.16.0.0/16");
  REQUIRE(c.allow[1].to_string() == "fd00::/8");
  REQUIRE(c.bind.size() == 2);
  REQUIRE(c.bind[0] == *IpAddress::parse("192.168.20.161"));
  REQUIRE(c.port == 8620);
  REQUIRE(c.rate_limit.pps == 2000);
  REQUIRE(c.rate_limit.burst == 50);
  REQUIRE(c.max_sources == 1000);
  REQUIRE(c.max_sessions == 2000);
  REQUIRE(c.session_timeout_ns == 30'000'000'000);
  REQUIRE(c.stats_interval_ns == 2'500'000'000);
  REQUIRE(c.reply_tos == 184);
  REQUIRE(c.clock_synchronized);
  REQUIRE(c.clock_error_ns == 250'000);
  REQUIRE(c.log_level == "debug");
  REQUIRE(parse("reply_tos = \"copy\"").reply_tos == std::nullopt);
}

// An empty allowlist is refused at validation, naming the file and the key.
TEST_CASE("reflector config refuses an empty allowlist", "[unit][reflector_config]") {
  const auto c = parse("allow = []");
  const auto msg = error_of([&] { validate_reflector_config(c, kFile); });
  REQUIRE_THAT(msg, Contains(kFile) && Contains("allow") && Contains("empty"));
  REQUIRE_THAT(error_of([] {
                 (void)resolve_reflector_config(args({"--port", "1"}));
               }),
               Contains("command line") && Contains("allow") && Contains("--allow CIDR"));
}

// A bad prefix names the file, the key with its index, and the value.
TEST_CASE("reflector config rejects a bad CIDR", "[unit][reflector_config]") {
  const auto msg = error_of([] { (void)parse(R"(allow = ["10.0.0.0/8", "172.16.0.0/40"])"); });
  REQUIRE_THAT(msg, Contains(kFile) && Contains("allow[1]") && Contains("172.16.0.0/40"));
  REQUIRE_THAT(error_of([] { (void)parse(R"(allow = "not-an-address")"); }),
               Contains("allow") && Contains("not-an-address"));
  REQUIRE_THAT(error_of([] { (void)parse(R"(allow = [1, 2])"); }),
               Contains("allow[0]") && Contains("must be a string"));
  REQUIRE_THAT(error_of([] { (void)parse(R"(bind = ["300.1.1.1"])"); }),
               Contains("bind[0]") && Contains("300.1.1.1"));
}

// Ports outside 0..65535 or of the wrong type are refused with file, key and value.
TEST_CASE("reflector config rejects a bad port", "[unit][reflector_config]") {
  REQUIRE_THAT(error_of([] { (void)parse("port = 70000"); }), Contains(kFile) && Contains("port") &&
                                                                  Contains("70000") &&
                                                                  Contains("between 0 and 65535"));
  REQUIRE_THAT(error_of([] { (void)parse("port = -1"); }), Contains("'-1'"));
  REQUIRE_THAT(error_of([] { (void)parse("port = \"862\""); }),
               Contains("port = '862'") && Contains("must be an integer"));
}

// A key the reflector does not know is an error, not silently ignored (typos would be).
TEST_CASE("reflector config rejects an unknown key", "[unit][reflector_config]") {
  const auto msg = error_of([] { (void)parse("allow = [\"10.0.0.0/8\"]\nrate_limit = 5\n"); });
  REQUIRE_THAT(msg, Contains(kFile) && Contains("rate_limit") && Contains("not a known key"));
  REQUIRE_THAT(error_of([] { (void)parse("[reflector]\nport = 1\n"); }),
               Contains("reflector") && Contains("not a known key"));
}

// Out-of-range and mistyped values of the other keys are refused.
TEST_CASE("reflector config rejects bad values", "[unit][reflector_config]") {
  REQUIRE_THAT(error_of([] { (void)parse("burst = 0"); }), Contains("burst = '0'"));
  REQUIRE_THAT(error_of([] { (void)parse("rate_limit_pps = 0"); }), Contains("rate_limit_pps"));
  REQUIRE_THAT(error_of([] { (void)parse("max_sessions = 0"); }), Contains("max_sessions"));
  REQUIRE_THAT(error_of([] { (void)parse("session_timeout_s = -3"); }),
               Contains("session_timeout_s = '-3'"));
  REQUIRE_THAT(error_of([] { (void)parse("reply_tos = 256"); }), Contains("reply_tos"));
  REQUIRE_THAT(error_of([] { (void)parse("reply_tos = \"ef\""); }), Contains("'ef'"));
  REQUIRE_THAT(error_of([] { (void)parse("clock_synchronized = 1"); }),
               Contains("clock_synchronized = '1'") && Contains("true or false"));
  REQUIRE_THAT(error_of([] { (void)parse("log_level = \"loud\""); }), Contains("'loud'"));
  REQUIRE_THAT(error_of([] { (void)parse("rt_priority = 100"); }), Contains("rt_priority = '100'"));
  REQUIRE_THAT(error_of([] { (void)parse("rt_priority = -1"); }), Contains("rt_priority = '-1'"));
}

// A TOML syntax error names the file, line and column.
TEST_CASE("reflector config reports syntax errors with their position",
          "[unit][reflector_config]") {
  const auto msg = error_of([] { (void)parse("port = 1\nallow = [\"10.0.0.0/8\"\n"); });
  REQUIRE_THAT(msg, Contains(kFile) && Contains("line 2") && Contains("syntax error"));
}

// Flags parse in both spellings; unknown flags and missing values name the flag.
TEST_CASE("reflector command line parsing", "[unit][reflector_config]") {
  const auto cli = args({"--allow", "10.0.0.0/8", "--port=0", "--check-config", "--config",
                         "x.toml", "--clock-synchronized"});
  REQUIRE(cli.check_config);
  REQUIRE(cli.config_path == "x.toml");
  REQUIRE(cli.overrides.size() == 3);
  REQUIRE(cli.overrides[1] == std::pair<std::string, std::string>{"--port", "0"});
  REQUIRE_THAT(error_of([] {
                 (void)args({"--alow", "1.2.3.4"});
               }),
               Contains("command line") && Contains("--alow") && Contains("not a known option"));
  REQUIRE_THAT(error_of([] {
                 (void)args({"--allow", "1.0.0.0/8", "--port"});
               }),
               Contains("--port") && Contains("needs a value"));
  REQUIRE_THAT(error_of([] { (void)args({"10.0.0.0/8"}); }), Contains("10.0.0.0/8"));
}

// Flag values are checked like file values and name the flag and value.
TEST_CASE("reflector command line rejects bad values", "[unit][reflector_config]") {
  REQUIRE_THAT(error_of([] {
                 (void)resolve_reflector_config(args({"--allow", "10.0.0.0/99"}));
               }),
               Contains("command line") && Contains("--allow = '10.0.0.0/99'"));
  REQUIRE_THAT(error_of([] {
                 (void)resolve_reflector_config(args({"--allow", "10.0.0.0/8", "--port", "65536"}));
               }),
               Contains("--port = '65536'"));
  REQUIRE_THAT(error_of([] {
                 (void)resolve_reflector_config(args({"--allow", "10.0.0.0/8", "--port", "86x"}));
               }),
               Contains("--port = '86x'") && Contains("integer"));
  REQUIRE_THAT(
      error_of([] {
        (void)resolve_reflector_config(args({"--allow", "10.0.0.0/8", "--rate-limit", "0"}));
      }),
      Contains("--rate-limit = '0'"));
  REQUIRE_THAT(error_of([] {
                 (void)resolve_reflector_config(args({"--allow", "10.0.0.0/8", "--tos", "x"}));
               }),
               Contains("--tos = 'x'"));
  REQUIRE_THAT(
      error_of([] {
        (void)resolve_reflector_config(args({"--allow", "10.0.0.0/8", "--rt-priority", "99x"}));
      }),
      Contains("--rt-priority = '99x'"));
  REQUIRE(resolve_reflector_config(args({"--allow", "10.0.0.0/8", "--rt-priority", "15"}))
              .rt_priority == 15);
}

// An allowed prefix that no bind address can ever receive from is a configuration mistake.
TEST_CASE("reflector config refuses allow families nothing listens on",
          "[unit][reflector_config]") {
  REQUIRE_THAT(
      error_of([] {
        (void)resolve_reflector_config(args({"--allow", "fd00::/8", "--bind", "127.0.0.1"}));
      }),
      Contains("allow = 'fd00::/8'"));
}

// Issue 13: an allow prefix shorter than /8 (a /0 above all) makes the reflector answer
// spoofed requests from most of the Internet: refused at the config check unless
// allow_broad says it is meant.
TEST_CASE("reflector config refuses broad allow prefixes unless forced",
          "[unit][reflector_config]") {
  for (const char* broad : {"0.0.0.0/0", "::/0", "128.0.0.0/1", "10.0.0.0/7", "2000::/3"}) {
    INFO(broad);
    const auto msg = error_of([&] { (void)resolve_reflector_config(args({"--allow", broad})); });
    REQUIRE_THAT(msg, Contains("allow") && Contains("allow_broad"));
    const auto c = resolve_reflector_config(args({"--allow", broad, "--allow-broad"}));
    REQUIRE(c.allow_broad);
    const auto f = parse(std::string("allow = [\"") + broad + "\"]\nallow_broad = true");
    REQUIRE_NOTHROW(validate_reflector_config(f, kFile));
  }
  for (const char* fine : {"10.0.0.0/8", "fd00::/8", "198.18.0.1/32"}) {
    INFO(fine);
    REQUIRE_NOTHROW(resolve_reflector_config(args({"--allow", fine})));
  }
  const auto file = parse("allow = [\"172.16.0.0/16\", \"0.0.0.0/0\"]");
  REQUIRE_THAT(error_of([&] { validate_reflector_config(file, kFile); }),
               Contains(kFile) && Contains("0.0.0.0/0"));
}
