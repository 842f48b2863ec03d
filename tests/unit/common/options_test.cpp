#include "pathsentry/common/options.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/toml_file.h"

using pathsentry::ConfigError;
using namespace pathsentry::options;

namespace {

struct Demo {
  double rate = 1000;
  bool quiet = false;
  std::vector<std::string> targets;
  std::vector<std::string> allow;
  std::int64_t port = 862;
};

OptionTable<Demo> demo_table() {
  return OptionTable<Demo>({
      {"--rate",
       {"defaults.rate", "targets[].rate"},
       "PPS",
       "probes per second\n(default 1000)",
       Arg::One,
       [](Demo& d, const Value& v) { d.rate = v.number(1e-6, 1e6); }},
      {"--quiet",
       {"agent.quiet"},
       "",
       "no live summary",
       Arg::None,
       [](Demo& d, const Value& v) { d.quiet = v.boolean(); }},
      {"--target",
       {"targets[].address"},
       "ADDR",
       "target (repeatable)",
       Arg::Repeated,
       [](Demo& d, const Value& v) { d.targets.push_back(v.string()); }},
      {"--allow",
       {"allow"},
       "CIDR",
       "allowed sources",
       Arg::Repeated,
       [](Demo& d, const Value& v) {
         for (const Value& i : v.list()) d.allow.push_back(i.string());
       }},
      {"",
       {"port"},
       "",
       "file only",
       Arg::One,
       [](Demo& d, const Value& v) { d.port = v.integer(1, 65535); }},
  });
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

void apply_all(const OptionTable<Demo>& t, Demo& d, const std::vector<Value>& file) {
  t.apply_file(d, file);
}

}  // namespace

// One table gives the usage text: every flag with its metavar, help aligned, file-only rows left
// out.
TEST_CASE("option table writes the usage text", "[unit][common]") {
  const std::string u = demo_table().usage("usage: demo [options]");
  CHECK(u ==
        "usage: demo [options]\n\n"
        "  --rate PPS             probes per second\n"
        "                         (default 1000)\n"
        "  --quiet                no live summary\n"
        "  --target ADDR          target (repeatable)\n"
        "  --allow CIDR           allowed sources\n");
}

// Flags: both spellings of a value, switches, order kept; every misuse is a ConfigError that
// names the flag.
TEST_CASE("option table parses flags", "[unit][common]") {
  const auto t = demo_table();
  const std::vector<std::string_view> args = {"--rate",   "50",      "--quiet", "--target=10.0.0.1",
                                              "--target", "10.0.0.2"};
  Demo d;
  for (const auto& g : t.parse_args(args)) g.option->apply(d, g.value);
  CHECK(d.rate == 50);
  CHECK(d.quiet);
  CHECK(d.targets == std::vector<std::string>{"10.0.0.1", "10.0.0.2"});

  const std::vector<std::string_view> unknown = {"--nope"};
  CHECK(error_of([&] { (void)t.parse_args(unknown); }) ==
        "command line: --nope: is not a known option (see --help)");
  const std::vector<std::string_view> missing = {"--rate"};
  CHECK(error_of([&] { (void)t.parse_args(missing); }) == "command line: --rate: needs a value");
  const std::vector<std::string_view> valued_switch = {"--quiet=yes"};
  CHECK(error_of([&] { (void)t.parse_args(valued_switch); }) ==
        "command line: --quiet = 'yes': takes no value");
  const std::vector<std::string_view> file_only = {"--port", "1"};
  CHECK_FALSE(error_of([&] { (void)t.parse_args(file_only); }).empty());
  const std::vector<std::string_view> bad_rate = {"--rate", "fast"};
  Demo d2;
  CHECK(error_of([&] {
          for (const auto& g : t.parse_args(bad_rate)) g.option->apply(d2, g.value);
        }) == "command line: --rate = 'fast': must be a number");
}

// A TOML file flattens to key paths with indices; the table finds each key's row by pattern and
// its typed readers name file, key and value on a wrong type or range.
TEST_CASE("toml file flattens and applies through the table", "[unit][common]") {
  const auto t = demo_table();
  const auto file = parse_toml(R"(
port = 863
allow = ["172.16.0.0/16", "fd00::/8"]
[agent]
quiet = true
[defaults]
rate = 200
[[targets]]
address = "192.0.2.1"
rate = 10.5
[[targets]]
address = "192.0.2.2"
)",
                               "demo.toml");
  std::vector<std::string> keys;
  for (const auto& v : file) keys.push_back(v.where);
  CHECK(keys == std::vector<std::string>{"agent.quiet", "allow", "defaults.rate", "port",
                                         "targets[0].address", "targets[0].rate",
                                         "targets[1].address"});
  Demo d;
  apply_all(t, d, file);
  CHECK(d.port == 863);
  CHECK(d.quiet);
  CHECK(d.rate == 10.5);
  CHECK(d.targets == std::vector<std::string>{"192.0.2.1", "192.0.2.2"});
  CHECK(d.allow == std::vector<std::string>{"172.16.0.0/16", "fd00::/8"});

  SECTION("unknown key") {
    CHECK(error_of([&] { apply_all(t, d, parse_toml("[agent]\nloud = 1\n", "f.toml")); }) ==
          "f.toml: agent.loud = '1': is not a known key");
  }
  SECTION("wrong type") {
    CHECK(error_of([&] { apply_all(t, d, parse_toml("port = \"862\"\n", "f.toml")); }) ==
          "f.toml: port = '862': must be an integer");
    CHECK(error_of([&] { apply_all(t, d, parse_toml("[agent]\nquiet = 1\n", "f.toml")); }) ==
          "f.toml: agent.quiet = '1': must be true or false");
    CHECK(error_of([&] { apply_all(t, d, parse_toml("allow = [1]\n", "f.toml")); }) ==
          "f.toml: allow[0] = '1': must be a string");
  }
  SECTION("out of range") {
    CHECK(error_of([&] { apply_all(t, d, parse_toml("port = 70000\n", "f.toml")); }) ==
          "f.toml: port = '70000': must be between 1 and 65535");
  }
  SECTION("an empty element of an array of tables is refused") {
    CHECK(error_of([&] {
            (void)parse_toml("[[targets]]\naddress = \"192.0.2.1\"\n[[targets]]\n", "f.toml");
          }) == "f.toml: targets[1]: is an empty table ([[targets]])");
  }
  SECTION("syntax error names line and column") {
    CHECK(error_of([&] { (void)parse_toml("port = \n", "f.toml"); }).rfind("f.toml: line 1", 0) ==
          0);
  }
  SECTION("unreadable file") {
    CHECK(error_of([] { (void)read_toml_file("/nonexistent/pathsentry.toml"); }) ==
          "/nonexistent/pathsentry.toml: (file): cannot be read");
  }
}

// key_pattern drops indices, so one row serves every element of an array of tables.
TEST_CASE("key patterns drop array indices", "[unit][common]") {
  CHECK(detail::key_pattern("targets[12].icmp.rate") == "targets[].icmp.rate");
  CHECK(detail::key_pattern("agent.rate") == "agent.rate");
  CHECK(demo_table().find_key("targets[3].rate") != nullptr);
  CHECK(demo_table().find_key("targets.rate") == nullptr);
}

// A `.*` pattern takes every key below it (a table whose keys are data); a value where the table
// expects a table, or an array of tables, says so instead of "is not a known key".
TEST_CASE("option table: data-keyed tables and values where tables belong", "[unit][common]") {
  struct Hops {
    std::vector<std::string> hops;
    std::string name;
  };
  const OptionTable<Hops> t({
      {"",
       {"ttl.hops.*"},
       "",
       "",
       Arg::One,
       [](Hops& h, const Value& v) { h.hops.push_back(v.where + "=" + v.string()); }},
      {"--name",
       {"targets[].name"},
       "NAME",
       "",
       Arg::One,
       [](Hops& h, const Value& v) { h.name = v.string(); }},
  });
  Hops h;
  t.apply_file(
      h, parse_toml("[ttl]\nhops = { \"10.1.0.1\" = \"ec\", \"fd00::1\" = \"vpn\" }\n", "f.toml"));
  CHECK(h.hops == std::vector<std::string>{"ttl.hops.10.1.0.1=ec", "ttl.hops.fd00::1=vpn"});
  CHECK(error_of([&] { t.apply_file(h, parse_toml("ttl = 3\n", "f.toml")); }) ==
        "f.toml: ttl = '3': must be a table ([ttl])");
  CHECK(error_of([&] { t.apply_file(h, parse_toml("targets = 3\n", "f.toml")); }) ==
        "f.toml: targets = '3': must be an array of tables ([[targets]])");
  CHECK(error_of([&] { t.apply_file(h, parse_toml("[ttl]\nhop = 3\n", "f.toml")); }) ==
        "f.toml: ttl.hop = '3': is not a known key");
}
