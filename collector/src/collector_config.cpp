#include "pathsentry/collector/collector_config.h"

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/options.h"
#include "pathsentry/common/toml_file.h"

namespace pathsentry::collector {
namespace {

using options::Arg;
using options::Value;

constexpr std::int64_t kNs = 1'000'000'000;
constexpr std::int64_t kDayNs = 86'400 * kNs;
constexpr double kMaxSeconds = 86'400.0 * 365 * 100;

std::chrono::milliseconds millis(const Value& v, double lo, double hi) {
  return std::chrono::milliseconds(std::llround(v.number(lo, hi) * 1000));
}

std::int64_t seconds_ns(const Value& v, double lo) {
  return static_cast<std::int64_t>(std::llround(v.number(lo, kMaxSeconds) * kNs));
}

struct Building {
  CollectorConfig c;
  CollectorCommandLine* cli = nullptr;  // set while parsing the command line
};

std::string nonempty(const Value& v) {
  const std::string& s = v.string();
  if (s.empty()) v.fail("must not be empty");
  return s;
}

// A path written in the config file is relative to the file; on the command line, to the cwd.
std::string relative_to_file(const Value& v) {
  std::string p = nonempty(v);
  if (!v.file.empty() && !p.starts_with('/')) {
    p = (std::filesystem::path(v.file).parent_path() / p).string();
  }
  return p;
}

const options::OptionTable<Building>& table() {
  static const options::OptionTable<Building> t({
      {"--listen",
       {"collector.listen"},
       "ADDR:PORT",
       "HTTP listener (default 127.0.0.1:9780; [V6]:PORT; \"off\" = none)",
       Arg::One,
       [](Building& b, const Value& v) {
         const std::string& s = v.string();
         if (s != "off") {
           if (const auto why = listen_error(s)) v.fail(*why);
         }
         b.c.server.listen = s == "off" ? std::string() : s;
       }},
      {"--listen-unix",
       {"collector.listen_unix"},
       "PATH",
       "also listen on this Unix socket (default none)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.server.listen_unix = v.string(); }},
      {"",
       {"collector.max_body_bytes"},
       "",
       "largest request body (default 16 MiB)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.server.max_body_bytes = static_cast<std::size_t>(v.integer(1024, 1LL << 30));
       }},
      {"",
       {"collector.max_connections"},
       "",
       "open connections at most (default 256)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.server.max_connections = static_cast<std::size_t>(v.integer(1, 100'000));
       }},
      {"",
       {"collector.max_connections_per_source"},
       "",
       "open TCP connections one source address may hold (default 64; 0 = no cap)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.server.max_connections_per_source = static_cast<std::size_t>(v.integer(0, 100'000));
       }},
      {"--tls-cert",
       {"collector.tls_cert"},
       "FILE",
       "PEM certificate chain: with tls_key the TCP listener speaks TLS only",
       Arg::One,
       [](Building& b, const Value& v) { b.c.server.tls_cert = relative_to_file(v); }},
      {"--tls-key",
       {"collector.tls_key"},
       "FILE",
       "PEM private key of tls_cert (keep it mode 0600)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.server.tls_key = relative_to_file(v); }},
      {"",
       {"collector.header_timeout_s"},
       "",
       "seconds to receive a request's head (default 10)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.server.header_timeout = millis(v, 0.01, 3600); }},
      {"",
       {"collector.body_timeout_s"},
       "",
       "seconds to receive a request's body (default 60)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.server.body_timeout = millis(v, 0.01, 3600); }},
      {"",
       {"collector.idle_timeout_s"},
       "",
       "seconds a kept-alive connection may wait for its next request (default 60)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.server.idle_timeout = millis(v, 0.01, 86'400); }},
      {"",
       {"collector.worker_threads"},
       "",
       "threads that run requests and wait for the store (default 4)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.server.worker_threads = static_cast<unsigned>(v.integer(1, 256));
       }},
      {"--log-level",
       {"collector.log_level"},
       "LEVEL",
       "trace, debug, info, warn, error, critical, off (default info)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.log_level = v.one_of({"trace", "debug", "info", "warn", "error", "critical", "off"});
       }},
      {"",
       {"ingest.token", "ingest.tokens"},
       "",
       "bearer token(s) agents must present (a string or an array)",
       Arg::One,
       [](Building& b, const Value& v) {
         for (const Value& item : v.list()) b.c.tokens.push_back(nonempty(item));
       }},
      {"--token-file",
       {"ingest.token_file"},
       "FILE",
       "file of bearer tokens, one per line (keep it mode 0600)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.token_file = nonempty(v);
         if (!v.file.empty() && !b.c.token_file.starts_with('/')) {
           // Relative to the config file, like a path written beside it.
           b.c.token_file = (std::filesystem::path(v.file).parent_path() / b.c.token_file).string();
         }
       }},
      {"",
       {"ingest.auth_fail_limit"},
       "",
       "wrong bearer tokens one address may present per window before its ingests are refused "
       "(429) for the rest of it (default 20; 0 = no limit)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.auth_throttle.limit = static_cast<std::uint32_t>(v.integer(0, 1'000'000));
       }},
      {"",
       {"ingest.auth_fail_window_s"},
       "",
       "the window of auth_fail_limit, in seconds (default 60)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.auth_throttle.window_ns = seconds_ns(v, 1); }},
      {"--db",
       {"db.path"},
       "FILE",
       "the SQLite database (default /var/lib/pathsentry/collector.db)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.store.path = nonempty(v); }},
      {"",
       {"db.raw_keep_s"},
       "",
       "seconds raw probe records are kept (default 3600)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.store.raw_keep_ns = seconds_ns(v, 1); }},
      {"",
       {"db.event_window_s"},
       "",
       "raw records within this many seconds of an event are kept with it (default 60)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.store.event_window_ns = seconds_ns(v, 0); }},
      {"",
       {"db.rollup_keep_days"},
       "",
       "days per-second rollups are kept (default 400; 0 = forever)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.store.rollup_keep_ns = v.integer(0, 365 * 100) * kDayNs;
       }},
      {"",
       {"db.event_keep_days"},
       "",
       "days events are kept (default 0 = forever)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.store.event_keep_ns = v.integer(0, 365 * 100) * kDayNs;
       }},
      {"--config",
       {},
       "FILE",
       "TOML config file (flags override it)",
       Arg::One,
       [](Building& b, const Value& v) {
         if (v.text.empty()) v.fail("must name a file");
         b.cli->config_path = v.text;
       }},
      {"--check-config",
       {},
       "",
       "validate the configuration and exit",
       Arg::None,
       [](Building& b, const Value&) { b.cli->check_config = true; }},
      {"--help",
       {},
       "",
       "this text",
       Arg::None,
       [](Building& b, const Value&) { b.cli->help = true; }},
      {"--version",
       {},
       "",
       "the version",
       Arg::None,
       [](Building& b, const Value&) { b.cli->version = true; }},
  });
  return t;
}

bool is_command(std::string_view flag) {
  return flag == "--config" || flag == "--check-config" || flag == "--help" || flag == "--version";
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

std::string seconds_text(std::int64_t ns) {
  std::ostringstream o;
  o << static_cast<double>(ns) / kNs;
  return o.str();
}

}  // namespace

CollectorCommandLine parse_collector_args(std::span<const std::string_view> args) {
  CollectorCommandLine cli;
  Building b;
  b.cli = &cli;
  for (const auto& g : table().parse_args(args)) {
    if (is_command(g.option->flag)) {
      g.option->apply(b, g.value);
    } else {
      cli.overrides.emplace_back(std::string(g.option->flag), g.value.text);
    }
  }
  return cli;
}

CollectorConfig parse_collector_config(std::string_view toml_text, const std::string& file) {
  Building b;
  table().apply_file(b, options::parse_toml(toml_text, file));
  return b.c;
}

std::vector<std::string> read_token_file(const std::string& path,
                                         std::vector<std::string>& warnings) {
  std::ifstream in(path);
  if (!in) throw ConfigError("", "ingest.token_file", path, "cannot be read");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    warnings.push_back("token file " + path + " is readable by every user (mode " + mode +
                       "): chmod 600 it");
  }
  std::vector<std::string> tokens;
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    tokens.push_back(line);
  }
  if (tokens.empty()) throw ConfigError("", "ingest.token_file", path, "holds no token");
  return tokens;
}

CollectorConfig resolve_collector_config(const CollectorCommandLine& cli) {
  Building b;
  std::string file;
  if (cli.config_path) {
    file = *cli.config_path;
    table().apply_file(b, options::read_toml_file(file));
  }
  for (const auto& [flag, text] : cli.overrides) {
    const auto* o = table().find_flag(flag);
    if (o == nullptr) throw ConfigError("", flag, text, "is not a known option (see --help)");
    Value v;
    v.text = text;
    v.where = flag;
    o->apply(b, v);
  }
  CollectorConfig& c = b.c;
  if (!c.token_file.empty()) {
    for (auto& t : read_token_file(c.token_file, c.warnings)) c.tokens.push_back(std::move(t));
  }
  if (c.tokens.empty()) {
    throw ConfigError(file, "ingest.token", "",
                      "no ingest token: give [ingest] token_file (or token/tokens) or "
                      "--token-file; agents present it as \"Authorization: Bearer <token>\"");
  }
  for (const auto& t : c.tokens) {
    if (t.size() < 16) {
      c.warnings.emplace_back("an ingest token is shorter than 16 characters: guessable");
      break;
    }
  }
  if (c.server.listen.empty() && c.server.listen_unix.empty()) {
    throw ConfigError(file, "collector.listen", "off",
                      "no listener: give listen (ADDR:PORT) or listen_unix (a socket path)");
  }
  if (c.server.tls_cert.empty() != c.server.tls_key.empty()) {
    throw ConfigError(file, c.server.tls_cert.empty() ? "collector.tls_cert" : "collector.tls_key",
                      "", "TLS needs both tls_cert and tls_key (PEM files)");
  }
  if (!c.server.tls_cert.empty() && c.server.listen.empty()) {
    throw ConfigError(file, "collector.tls_cert", c.server.tls_cert,
                      "TLS is for the TCP listener and listen is off");
  }
  for (const auto& [key, path] : {std::pair{"collector.tls_cert", c.server.tls_cert},
                                  std::pair{"collector.tls_key", c.server.tls_key}}) {
    if (!path.empty() && !std::ifstream(path)) {
      throw ConfigError(file, key, path, "cannot be read");
    }
  }
  if (!c.server.tls_key.empty()) {
    struct stat st {};
    if (::stat(c.server.tls_key.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
      c.warnings.push_back("TLS key " + c.server.tls_key +
                           " is readable by every user: chmod 600 it");
    }
  }
  const auto dir = std::filesystem::path(c.store.path).parent_path();
  std::error_code ec;
  if (!dir.empty() && !std::filesystem::is_directory(dir, ec)) {
    throw ConfigError(file, "db.path", c.store.path,
                      "its directory " + dir.string() + " does not exist");
  }
  return c;
}

std::string collector_usage() {
  return table().usage(
             "usage: pathsentry-collector [--config FILE] [options]\n\n"
             "Takes the agents' batches (POST /api/v1/ingest, bearer token) into a SQLite "
             "store and\nserves the JSON API and the live stream (docs/collector.md).") +
         "\nKeys without a flag are config file keys only (docs/collector.md "
         "\"Configuration\").\nOnce listening it prints \"collector listening on ENDPOINT...\" "
         "on stdout.\n";
}

std::string describe(const CollectorConfig& c) {
  const auto& s = c.server;
  return "listen=" + (s.listen.empty() ? std::string("off") : s.listen) +
         " listen_unix=" + (s.listen_unix.empty() ? std::string("none") : s.listen_unix) +
         " max_body_bytes=" + std::to_string(s.max_body_bytes) +
         " max_connections=" + std::to_string(s.max_connections) +
         " max_connections_per_source=" + std::to_string(s.max_connections_per_source) +
         " tls=" + (s.tls_cert.empty() ? std::string("off") : "on") +
         " header_timeout_s=" + seconds_text(s.header_timeout.count() * 1'000'000) +
         " body_timeout_s=" + seconds_text(s.body_timeout.count() * 1'000'000) +
         " idle_timeout_s=" + seconds_text(s.idle_timeout.count() * 1'000'000) +
         " worker_threads=" + std::to_string(s.worker_threads) +
         " tokens=" + std::to_string(c.tokens.size()) +
         " auth_fail_limit=" + std::to_string(c.auth_throttle.limit) +
         " auth_fail_window_s=" + seconds_text(c.auth_throttle.window_ns) +
         " db.path=" + c.store.path + " raw_keep_s=" + seconds_text(c.store.raw_keep_ns) +
         " event_window_s=" + seconds_text(c.store.event_window_ns) +
         " rollup_keep_days=" + std::to_string(c.store.rollup_keep_ns / kDayNs) +
         " event_keep_days=" + std::to_string(c.store.event_keep_ns / kDayNs);
}

}  // namespace pathsentry::collector
