// The collector's configuration: every key's default and value, and refusals naming the key.
#include "pathsentry/collector/collector_config.h"

#include <catch2/catch.hpp>

#include "pathsentry/common/config_error.h"

namespace pathsentry::collector {

TEST_CASE("collector config: defaults", "[unit]") {
  const auto c = parse_collector_config("", "c.toml");
  CHECK(c.server.listen == "127.0.0.1:9780");
  CHECK(c.server.listen_unix.empty());
  CHECK(c.server.max_body_bytes == 16u << 20);
  CHECK(c.server.max_connections == 256);
  CHECK(c.store.path == "/var/lib/pathsentry/collector.db");
  CHECK(c.store.raw_keep_ns == 3600LL * 1'000'000'000);
  CHECK(c.store.event_window_ns == 60LL * 1'000'000'000);
  CHECK(c.store.rollup_keep_ns == 400LL * 86'400 * 1'000'000'000);
  CHECK(c.store.event_keep_ns == 0);
  CHECK(c.tokens.empty());
  CHECK(c.auth_throttle.limit == 20);
  CHECK(c.auth_throttle.window_ns == 60LL * 1'000'000'000);
}

TEST_CASE("collector config: every key", "[unit]") {
  const auto c = parse_collector_config(
      "[collector]\nlisten = \"[::1]:9000\"\nlisten_unix = \"/run/c.sock\"\n"
      "max_body_bytes = 4096\nmax_connections = 9\nheader_timeout_s = 2.5\nbody_timeout_s = 7\n"
      "idle_timeout_s = 30\nworker_threads = 3\nlog_level = \"debug\"\n"
      "[ingest]\ntokens = [\"aaaaaaaaaaaaaaaa\", \"bbbbbbbbbbbbbbbb\"]\ntoken_file = \"t\"\n"
      "auth_fail_limit = 5\nauth_fail_window_s = 300\n"
      "[db]\npath = \"/srv/c.db\"\nraw_keep_s = 120\nevent_window_s = 5\nrollup_keep_days = 30\n"
      "event_keep_days = 700\n",
      "/etc/pathsentry/collector.toml");
  CHECK(c.server.listen == "[::1]:9000");
  CHECK(c.server.listen_unix == "/run/c.sock");
  CHECK(c.server.max_body_bytes == 4096);
  CHECK(c.server.max_connections == 9);
  CHECK(c.server.header_timeout == std::chrono::milliseconds(2500));
  CHECK(c.server.body_timeout == std::chrono::milliseconds(7000));
  CHECK(c.server.idle_timeout == std::chrono::milliseconds(30000));
  CHECK(c.server.worker_threads == 3);
  CHECK(c.log_level == "debug");
  CHECK(c.tokens == std::vector<std::string>{"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"});
  CHECK(c.token_file == "/etc/pathsentry/t");  // relative to the config file
  CHECK(c.auth_throttle.limit == 5);
  CHECK(c.auth_throttle.window_ns == 300LL * 1'000'000'000);
  CHECK(parse_collector_config("[ingest]\nauth_fail_limit = 0\n", "c").auth_throttle.limit == 0);
  CHECK(c.store.path == "/srv/c.db");
  CHECK(c.store.raw_keep_ns == 120LL * 1'000'000'000);
  CHECK(c.store.event_window_ns == 5LL * 1'000'000'000);
  CHECK(c.store.rollup_keep_ns == 30LL * 86'400 * 1'000'000'000);
  CHECK(c.store.event_keep_ns == 700LL * 86'400 * 1'000'000'000);
  CHECK(parse_collector_config("[ingest]\ntoken = \"one\"\n", "c").tokens ==
        std::vector<std::string>{"one"});
  CHECK(parse_collector_config("[collector]\nlisten = \"off\"\n", "c").server.listen.empty());
}

TEST_CASE("collector config: refusals name file, key and value", "[unit]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[collector]\nmax_body_bytes = 10\n", "collector.max_body_bytes"},
      {"[collector]\nworker_threads = 0\n", "collector.worker_threads"},
      {"[collector]\nlog_level = \"loud\"\n", "collector.log_level"},
      {"[ingest]\ntoken = \"\"\n", "ingest.token"},
      {"[ingest]\ntokens = [1]\n", "ingest.tokens[0]"},
      {"[db]\nraw_keep_s = 0\n", "db.raw_keep_s"},
      {"[ingest]\nauth_fail_limit = -1\n", "ingest.auth_fail_limit"},
      {"[ingest]\nauth_fail_window_s = 0\n", "ingest.auth_fail_window_s"},
      {"[db]\nvacuum = true\n", "db.vacuum"},
      {"collector = 1\n", "collector"},
  };
  for (const auto& [toml, key] : cases) {
    INFO(toml);
    try {
      (void)parse_collector_config(toml, "x.toml");
      FAIL("accepted");
    } catch (const ConfigError& e) {
      const std::string m = e.what();
      INFO(m);
      CHECK(m.find("x.toml") != std::string::npos);
      CHECK(m.find(key) != std::string::npos);
    }
  }
}

}  // namespace pathsentry::collector
