// The agent's [collector] settings and agent.name: defaults, flags over the file, and every
// mistake named by file, key and value.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "agent/agent_config_helpers.h"
#include "agent/agent_process.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using Catch::Matchers::Contains;
using namespace pathsentry::test::agent_cfg;
using pathsentry::test::ScratchDir;

namespace {

std::string host() {
  char b[256] = {};
  REQUIRE(gethostname(b, sizeof b - 1) == 0);
  return b;
}

}  // namespace

TEST_CASE("collector config: none by default, the host name as agent name", "[integration]") {
  const auto c = parse({"--target", "127.0.0.1"});
  CHECK_FALSE(c.collector.enabled);
  CHECK(c.agent_name == host());
}

TEST_CASE("collector config from a file, flags over it", "[integration]") {
  ScratchDir dir("pathsentry-ship-cfg-");
  std::ofstream(dir.file("tok")) << "  flag-token \n";
  TempFile f(
      "[agent]\nname = \"dc1-probe\"\n[[targets]]\naddress = \"127.0.0.1\"\n"
      "[collector]\nurl = \"http://127.0.0.1:9780\"\ntoken = \"file-token\"\n"
      "spool_dir = \"" +
      dir.file("spool") + "\"\nspool_max_mb = 64\nbatch_ms = 500\n");
  auto c = parse({"--config", f.path});
  REQUIRE(c.collector.enabled);
  CHECK(c.agent_name == "dc1-probe");
  CHECK(c.collector.url == "http://127.0.0.1:9780");
  CHECK(c.collector.parsed.port == "9780");
  CHECK(c.collector.token == "file-token");
  CHECK(c.collector.spool_dir == dir.file("spool"));
  CHECK(c.collector.spool_dir_file == f.path);
  CHECK(c.collector.spool_max_mb == 64);
  CHECK(c.collector.batch_ms == 500);

  c = parse({"--config", f.path, "--collector-url", "unix:/run/c.sock", "--collector-token-file",
             dir.file("tok"), "--spool-dir", dir.file("s2"), "--agent-name", "other"});
  CHECK(c.collector.parsed.unix_socket);
  CHECK(c.collector.token == "flag-token");  // the flag's file beats the file's token
  CHECK(c.collector.spool_dir == dir.file("s2"));
  CHECK(c.collector.spool_dir_key == "--spool-dir");
  CHECK(c.agent_name == "other");

  // Flags alone, with the defaults.
  c = parse({"--target", "127.0.0.1", "--collector-url", "http://[::1]:9780",
             "--collector-token-file", dir.file("tok")});
  REQUIRE(c.collector.enabled);
  CHECK(c.collector.spool_dir == "/var/lib/pathsentry/spool");
  CHECK(c.collector.spool_max_mb == 256);
  CHECK(c.collector.batch_ms == 1000);
}

// A file standing in for a CA bundle (its contents are read by the HTTP client, not the config).
static std::string f_ca(const ScratchDir& dir) {
  const std::string p = dir.file("ca.pem");
  std::ofstream(p) << "-----BEGIN CERTIFICATE-----\n";
  return p;
}

TEST_CASE("collector config errors name file, key and value", "[integration]") {
  ScratchDir dir("pathsentry-ship-cfg-");
  const std::string t = "[[targets]]\naddress = \"127.0.0.1\"\n";
  {
    TempFile f(t + "[collector]\nspool_dir = \"/tmp/x\"\n");
    CHECK_THAT(error_of({"--config", f.path}),
               Contains(f.path + ": collector.spool_dir = '/tmp/x': needs collector.url"));
  }
  {
    TempFile f(t + "[collector]\nurl = \"http://c:1\"\ntoken = \"x\"\nca_file = \"" + f_ca(dir) +
               "\"\n");
    CHECK_THAT(error_of({"--config", f.path}),
               Contains(f.path + ": collector.ca_file = '" + f_ca(dir) +
                        "': is for an https:// collector.url"));
  }
  {
    TempFile f(t + "[collector]\nurl = \"https://c:1\"\ntoken = \"x\"\nca_file = \"" +
               dir.file("none.pem") + "\"\n");
    CHECK_THAT(error_of({"--config", f.path}),
               Contains("collector.ca_file = '" + dir.file("none.pem") + "': cannot be read"));
  }
  {
    TempFile f(t + "[collector]\nurl = \"http://c:1\"\n");
    CHECK_THAT(error_of({"--config", f.path}),
               Contains(f.path + ": collector.url = 'http://c:1': needs collector.token"));
  }
  {
    std::ofstream(dir.file("tok")) << "a\n";
    TempFile f(t + "[collector]\nurl = \"http://c:1\"\ntoken = \"x\"\ntoken_file = \"" +
               dir.file("tok") + "\"\n");
    CHECK_THAT(error_of({"--config", f.path}),
               Contains(f.path + ": collector.token_file = '" + dir.file("tok") +
                        "': give collector.token or collector.token_file, not both"));
  }
  {
    TempFile f(t + "[collector]\nurl = \"http://c:1\"\ntoken = \"two words\"\n");
    CHECK_THAT(error_of({"--config", f.path}),
               Contains(f.path + ": collector.token = 'two words': the token may hold only"));
  }
  {
    TempFile f(t + "[collector]\nurl = \"http://c:1\"\ntoken = \"x\"\nspool_max_mb = 0\n");
    CHECK_THAT(error_of({"--config", f.path}), Contains(f.path + ": collector.spool_max_mb = '0'"));
  }
  {
    TempFile f(t + "[collector]\nurl = \"http://c:1\"\ntoken = \"x\"\nbatch_ms = 5\n");
    CHECK_THAT(error_of({"--config", f.path}), Contains(f.path + ": collector.batch_ms = '5'"));
  }
  {
    TempFile f(t + "[collector]\nurl = \"http://c:1\"\ntoken = \"x\"\nspool = 1\n");
    CHECK_THAT(error_of({"--config", f.path}),
               Contains(f.path + ": collector.spool = '1': is not a known key"));
  }
  CHECK_THAT(error_of({"--target", "127.0.0.1", "--collector-url", "http://c:1",
                       "--collector-token-file", dir.file("missing")}),
             Contains("command line: --collector-token-file = '" + dir.file("missing") +
                      "': cannot read: No such file or directory"));
  std::ofstream(dir.file("empty")) << "\n\n";
  CHECK_THAT(
      error_of({"--target", "127.0.0.1", "--collector-url", "http://c:1", "--collector-token-file",
                dir.file("empty")}),
      Contains("--collector-token-file = '" + dir.file("empty") + "': the file holds no token"));
  std::ofstream(dir.file("two")) << "a\nb\n";
  CHECK_THAT(error_of({"--target", "127.0.0.1", "--collector-url", "http://c:1",
                       "--collector-token-file", dir.file("two")}),
             Contains("': the file must hold one token on one line"));
  CHECK_THAT(error_of({"--target", "127.0.0.1", "--collector-url", "nope"}),
             Contains("command line: --collector-url = 'nope': must be http://"));
  CHECK_THAT(error_of({"--target", "127.0.0.1", "--agent-name", "a\"b"}),
             Contains("command line: --agent-name = 'a\"b': must not hold"));
}

// The example's [collector] block, uncommented (with a token file of the test's), is valid.
TEST_CASE("collector config: the example's commented [collector] block parses", "[integration]") {
  const std::string example =
      (std::filesystem::path(__FILE__).parent_path() / "../../../deploy/config/probe.example.toml")
          .string();
  const std::string text = pathsentry::test::slurp(example);
  REQUIRE_FALSE(text.empty());
  ScratchDir dir("pathsentry-ship-cfg-");
  std::ofstream(dir.file("agent.token")) << "example-token\n";
  std::string block;
  bool in = false;
  std::istringstream lines(text);
  for (std::string l; std::getline(lines, l);) {
    if (l == "# [collector]") in = true;
    if (in && (l.empty() || l.rfind("# ", 0) != 0)) break;
    if (in) block += l.substr(2) + "\n";
  }
  REQUIRE_THAT(block, Contains("url = "));
  const auto at = block.find("/etc/pathsentry/agent.token");
  REQUIRE(at != std::string::npos);
  block.replace(at, std::string("/etc/pathsentry/agent.token").size(), dir.file("agent.token"));
  TempFile f("[[targets]]\naddress = \"127.0.0.1\"\n" + block);
  const auto c = parse({"--config", f.path});
  REQUIRE(c.collector.enabled);
  CHECK(c.collector.url == "http://127.0.0.1:9780");
  CHECK(c.collector.token == "example-token");
  CHECK(c.collector.spool_dir == "/var/lib/pathsentry/spool");
  CHECK(c.collector.spool_max_mb == 256);
  CHECK(c.collector.batch_ms == 1000);
  // And the example as it is still parses (nothing shipped).
  const auto plain = parse({"--config", example, "--check-config"});
  CHECK_FALSE(plain.collector.enabled);
}
