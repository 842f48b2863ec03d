#include "pathsentry/probe/agent/tap_config.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "agent/agent_config_helpers.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/agent/agent_config.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using Catch::Matchers::Contains;

namespace {

// The taps and detector settings of an agent config file (probe.toml) that has `text` and one
// target.
TapSettings from_toml(std::string_view text) {
  test::agent_cfg::TempFile f(std::string(text) + "\n[[targets]]\naddress = \"192.0.2.1\"\n");
  return test::agent_cfg::parse({"--config", f.path}).tap;
}

std::string toml_error(std::string_view text) {
  try {
    (void)from_toml(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string flag_error(const std::string& text) {
  try {
    (void)parse_tap_flag("--tap", text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("tap flag: clear tap", "[unit]") {
  // IFACE:PATH:clear gives a clear tap with that interface and label.
  const TapSpec t = parse_tap_flag("--tap", "tap-ec:express-connect:clear");
  CHECK(t.interface == "tap-ec");
  CHECK(t.path == "express-connect");
  CHECK(t.encap == Encap::Clear);
}

TEST_CASE("tap flag: esp tap with transform and window", "[unit]") {
  // The esp form carries both endpoints, the transform preset and the window in microseconds.
  const TapSpec t = parse_tap_flag(
      "--tap", "tap-inet:ipsec:esp:198.51.100.68:203.0.113.10:aes-cbc-sha256:-200:800");
  CHECK(t.encap == Encap::Esp);
  CHECK(t.local_endpoint == *IpAddress::parse("198.51.100.68"));
  CHECK(t.remote_endpoint == *IpAddress::parse("203.0.113.10"));
  REQUIRE(t.transform);
  CHECK(t.transform->esp_length(60) == EspTransform::preset("aes-cbc-sha256")->esp_length(60));
  CHECK(t.window_lo_ns == -200'000);
  CHECK(t.window_hi_ns == 800'000);
}

TEST_CASE("tap flag: a reverse window of its own", "[unit]") {
  // Two more fields set the reverse window; without them it is the forward one.
  const TapSpec t = parse_tap_flag("--tap", "i:p:esp:1.2.3.4:5.6.7.8:learn:-100:600:-50:900");
  CHECK(t.lo_ns(Direction::Forward) == -100'000);
  CHECK(t.hi_ns(Direction::Forward) == 600'000);
  CHECK(t.lo_ns(Direction::Reverse) == -50'000);
  CHECK(t.hi_ns(Direction::Reverse) == 900'000);
  const TapSpec same = parse_tap_flag("--tap", "i:p:esp:1.2.3.4:5.6.7.8:learn:-100:600");
  CHECK(same.hi_ns(Direction::Reverse) == 600'000);
  CHECK_THAT(flag_error("i:p:esp:1.2.3.4:5.6.7.8:learn:-100:600:900:100"),
             Contains("reverse window"));
}

TEST_CASE("tap flag: bracketed IPv6 endpoints, learned lengths", "[unit]") {
  // IPv6 endpoints in brackets keep their colons; without a transform lengths are learned.
  const TapSpec t = parse_tap_flag("--tap", "eth1:vpn:esp:[2001:db8::1]:[2001:db8::2]");
  CHECK(t.local_endpoint == *IpAddress::parse("2001:db8::1"));
  CHECK(t.remote_endpoint == *IpAddress::parse("2001:db8::2"));
  CHECK_FALSE(t.transform);
}

TEST_CASE("tap flag: errors name the flag and the value", "[unit]") {
  // Every malformed form is refused with the flag, the value and why.
  CHECK_THAT(flag_error("tap-ec:express-connect"), Contains("--tap") && Contains("IFACE:PATH"));
  CHECK_THAT(flag_error("tap-ec:express-connect:gre"), Contains("must be clear or esp"));
  CHECK_THAT(flag_error("tap-ec:none:clear"), Contains("path label"));
  CHECK_THAT(flag_error("tap-inet:ipsec:esp:1.2.3.4"), Contains("IFACE:PATH"));
  CHECK_THAT(flag_error("tap-inet:ipsec:esp:1.2.3.4:nope"), Contains("nope"));
  CHECK_THAT(flag_error("tap-inet:ipsec:esp:1.2.3.4:5.6.7.8:aes-xyz"), Contains("aes-xyz"));
  CHECK_THAT(flag_error("tap-inet:ipsec:esp:1.2.3.4:5.6.7.8:learn:900:100"), Contains("high end"));
  CHECK_THAT(flag_error("tap-inet:ipsec:esp:1.2.3.4:1.2.3.4"), Contains("differ"));
  CHECK_THAT(flag_error("a-very-long-interface-name:p:clear"), Contains("interface name"));
}

TEST_CASE("tap toml: [[tap]] tables and [detector]", "[unit]") {
  // The file form gives the same taps and the detector's N and K.
  const TapSettings s = from_toml(R"(
[[tap]]
interface = "tap-ec"
path = "express-connect"
[[tap]]
interface = "tap-inet"
path = "ipsec"
encap = "esp"
local = "198.51.100.68"
remote = "203.0.113.10"
udp_port = 4500
transform = "aes-gcm-16"
window_hi_us = 900
rev_window_hi_us = 1200
[detector]
confirm_probes = 5
outage_losses = 4
late_hold_ms = 250
)");
  REQUIRE(s.taps.size() == 2);
  CHECK(s.taps[0].encap == Encap::Clear);
  CHECK(s.taps[1].encap == Encap::Esp);
  CHECK(s.taps[1].window_hi_ns == 900'000);
  CHECK(s.taps[1].window_lo_ns == TapSpec{}.window_lo_ns);
  CHECK(s.taps[1].hi_ns(Direction::Reverse) == 1'200'000);
  CHECK(s.tap_keys == std::vector<std::string>{"tap[0]", "tap[1]"});
  CHECK(s.detector.confirm_probes == 5);
  CHECK(s.detector.outage_losses == 4);
  CHECK(s.detector.late_hold_ns == 250'000'000);
}

TEST_CASE("tap toml: errors name file, key and value", "[unit]") {
  // Unknown keys, missing endpoints, esp-only keys on a clear tap, other UDP ports, duplicate
  // interfaces and bad detector values are refused with where they are.
  CHECK_THAT(toml_error("[[tap]]\ninterface = \"a\"\npath = \"p\"\ncolour = 1\n"),
             Contains("probe.toml") && Contains("tap[0].colour"));
  CHECK_THAT(toml_error("[[tap]]\ninterface = \"a\"\npath = \"p\"\nencap = \"esp\"\n"),
             Contains("tap[0].local") && Contains("required"));
  CHECK_THAT(toml_error("[[tap]]\ninterface = \"a\"\npath = \"p\"\nlocal = \"1.2.3.4\"\n"),
             Contains("tap[0].local") && Contains("esp"));
  CHECK_THAT(toml_error("[[tap]]\ninterface = \"a\"\npath = \"p\"\nencap = \"esp\"\nlocal = "
                        "\"1.2.3.4\"\nremote = \"5.6.7.8\"\nudp_port = 500\n"),
             Contains("tap[0].udp_port") && Contains("500"));
  CHECK_THAT(toml_error("[[tap]]\ninterface = \"a\"\npath = \"p\"\n[[tap]]\ninterface = "
                        "\"a\"\npath = \"q\"\n"),
             Contains("tap[1].interface") && Contains("already"));
  CHECK_THAT(toml_error("[detector]\nconfirm_probes = 0\n"),
             Contains("detector.confirm_probes") && Contains("between 1"));
  CHECK_THAT(toml_error("[detector]\nhold = 1\n"), Contains("detector.hold"));
  CHECK_THAT(toml_error("[detector]\nlate_hold_ms = -1\n"), Contains("detector.late_hold_ms"));
  CHECK_THAT(toml_error("tap = 3\n"), Contains("[[tap]]"));
}

TEST_CASE("agent flags: --tap replaces the taps, detector flags set N and K", "[unit]") {
  // The agent's command line takes repeated --tap and the detector settings.
  std::vector<std::string> argv = {"--target",
                                   "192.0.2.1",
                                   "--tap",
                                   "tap-ec:express-connect:clear",
                                   "--tap=tap-inet:ipsec:esp:198.51.100.68:203.0.113.10",
                                   "--confirm-probes",
                                   "2",
                                   "--outage-losses=7",
                                   "--late-hold-ms=0"};
  std::vector<std::string_view> v(argv.begin(), argv.end());
  const AgentConfig cfg = parse_agent_config(v, 1);
  REQUIRE(cfg.tap.taps.size() == 2);
  CHECK(cfg.tap.taps[1].path == "ipsec");
  CHECK(cfg.tap.tap_keys == std::vector<std::string>{"--tap", "--tap"});
  CHECK(cfg.tap.detector.confirm_probes == 2);
  CHECK(cfg.tap.detector.outage_losses == 7);
  CHECK(cfg.tap.detector.late_hold_ns == 0);
  CHECK(AgentConfig{}.tap.detector.late_hold_ns == 1'000'000'000);
}

TEST_CASE("agent flags: two --tap on one interface are refused", "[unit]") {
  // A second tap on the same interface is an error naming --tap and the interface.
  std::vector<std::string> argv = {"--target",  "192.0.2.1", "--tap",
                                   "x:a:clear", "--tap",     "x:b:clear"};
  std::vector<std::string_view> v(argv.begin(), argv.end());
  try {
    (void)parse_agent_config(v, 1);
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK_THAT(std::string(e.what()), Contains("--tap") && Contains("already"));
  }
}

// [healthcheck] / --healthcheck*: on by default with CEN's values (gateway and interval learned);
// the file and the flags set each value; bad values are refused naming the key or flag.
TEST_CASE("healthcheck settings: defaults, file, flags, errors", "[unit]") {
  const TapSettings d = from_toml("");
  CHECK(d.healthcheck.enabled);
  CHECK(d.healthcheck.prefix.to_string() == "100.96.0.0/16");
  CHECK_FALSE(d.healthcheck.gateway.has_value());
  CHECK(d.healthcheck.fall == 8);
  CHECK(d.healthcheck.interval_ns == 0);

  const TapSettings f = from_toml(R"(
[healthcheck]
enabled = false
prefix = "100.100.0.0/20"
gateway = "10.9.0.2"
fall = 3
interval_ms = 2500
)");
  CHECK_FALSE(f.healthcheck.enabled);
  CHECK(f.healthcheck.prefix.to_string() == "100.100.0.0/20");
  REQUIRE(f.healthcheck.gateway.has_value());
  CHECK(f.healthcheck.gateway->to_string() == "10.9.0.2");
  CHECK(f.healthcheck.fall == 3);
  CHECK(f.healthcheck.interval_ns == 2'500'000'000);

  const auto flags = test::agent_cfg::parse({"--target", "192.0.2.1", "--healthcheck", "off",
                                             "--healthcheck-fall", "5", "--healthcheck-prefix",
                                             "100.96.1.0/24", "--healthcheck-interval-ms", "200"});
  CHECK_FALSE(flags.tap.healthcheck.enabled);
  CHECK(flags.tap.healthcheck.fall == 5);
  CHECK(flags.tap.healthcheck.prefix.to_string() == "100.96.1.0/24");
  CHECK(flags.tap.healthcheck.interval_ns == 200'000'000);
  CHECK(test::agent_cfg::parse({"--target", "192.0.2.1", "--healthcheck", "on"})
            .tap.healthcheck.enabled);

  CHECK_THAT(toml_error("[healthcheck]\nprefix = \"100.96/33\"\n"),
             Contains("healthcheck.prefix = '100.96/33'"));
  CHECK_THAT(toml_error("[healthcheck]\nfall = 0\n"), Contains("healthcheck.fall = '0'"));
  CHECK_THAT(toml_error("[healthcheck]\ninterval_ms = -1\n"),
             Contains("healthcheck.interval_ms = '-1'"));
  CHECK_THAT(toml_error("[healthcheck]\ngateway = \"gw\"\n"), Contains("healthcheck.gateway"));
  CHECK_THAT(toml_error("[healthcheck]\ngateway = \"fd00::2\"\n"),
             Contains("probe.toml") && Contains("healthcheck.gateway = 'fd00::2'") &&
                 Contains("same IP family"));
  CHECK(from_toml("[healthcheck]\nprefix = \"fd00:96::/32\"\ngateway = \"fd00::2\"\n")
            .healthcheck.gateway->to_string() == "fd00::2");
  CHECK_THAT(test::agent_cfg::error_of({"--target", "192.0.2.1", "--healthcheck", "maybe"}),
             Contains("--healthcheck = 'maybe'"));
}

TEST_CASE("esp tap: the default window is fitted to the spacing of equal-sized probes", "[unit]") {
  // 64 sizes (the default cycle's cap) at 10 000 probes/s: one size every 6.4 ms, narrower than
  // the default 10.2 ms window, which would then hold the next probe of the same size.
  auto tap_at = [](const std::string& rate, const std::string& tap) {
    return test::agent_cfg::parse(
               {"--target", "192.0.2.1", "--proto", "both", "--rate", rate, "--tap", tap})
        .tap.taps.at(0);
  };
  const std::string dflt = "i:p:esp:1.2.3.4:5.6.7.8";
  const TapSpec fast = tap_at("5000", dflt);  // 10 000/s in all
  CHECK(fast.window_lo_ns == -200'000);
  CHECK(fast.window_hi_ns == 5'560'000);  // 0.9 x 6.4 ms - 0.2 ms
  CHECK(!fast.rev_window_hi_ns);          // the reverse one is learned (docs/attribution.md §2)
  CHECK(tap_at("500", dflt).window_hi_ns == 10'000'000);  // 1000/s: the default fits
  // A window set to anything else is kept.
  CHECK(tap_at("5000", dflt + ":learn:-200:9000").window_hi_ns == 9'000'000);
  CHECK(tap_at("5000", dflt + ":learn:-200:10000:-200:4000").window_hi_ns == 10'000'000);
}
