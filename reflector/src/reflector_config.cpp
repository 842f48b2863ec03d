#include "pathsentry/reflector/reflector_config.h"

#include <toml++/toml.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/parse.h"

namespace pathsentry::probe {
namespace {

constexpr std::int64_t kNs = 1'000'000'000;
constexpr std::size_t kMaxTableEntries = 16'777'216;
constexpr double kMaxSeconds = 86'400.0 * 365;

const std::vector<std::string_view> kLogLevels = {"trace", "debug",    "info", "warn",
                                                  "error", "critical", "off"};

// Where a value came from, for error messages: the file ("" = command line) and the key (or
// the flag, spelled as typed).
struct Where {
  const std::string& file;
  std::string key;
  [[noreturn]] void fail(const std::string& value, const std::string& why) const {
    throw ConfigError(file, key, value, why);
  }
};

std::string seconds_text(double s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

// Typed setters shared by the TOML file and the flags; each checks its range.
std::uint64_t checked_uint(const Where& w, std::int64_t v, std::int64_t lo, std::int64_t hi) {
  if (v < lo || v > hi) {
    w.fail(std::to_string(v),
           "must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
  }
  return static_cast<std::uint64_t>(v);
}

std::int64_t checked_seconds(const Where& w, double s, double lo) {
  if (!std::isfinite(s) || s < lo || s > kMaxSeconds) {
    w.fail(seconds_text(s),
           "must be a number of seconds in " + seconds_text(lo) + ".." + seconds_text(kMaxSeconds));
  }
  return static_cast<std::int64_t>(std::llround(s * static_cast<double>(kNs)));
}

IpPrefix checked_prefix(const Where& w, std::string_view text) {
  const auto p = IpPrefix::parse(text);
  if (!p) w.fail(std::string(text), "not a CIDR prefix (like 172.16.0.0/16 or fd00::/8)");
  return *p;
}

IpAddress checked_address(const Where& w, std::string_view text) {
  const auto a = IpAddress::parse(text);
  if (!a) w.fail(std::string(text), "not an IPv4 or IPv6 address");
  return *a;
}

std::optional<std::uint8_t> checked_tos(const Where& w, std::string_view text) {
  if (text == "copy") return std::nullopt;
  const auto v = parse_number<int>(text);
  if (!v || *v < 0 || *v > 255)
    w.fail(std::string(text), "must be \"copy\" or an integer in 0..255");
  return static_cast<std::uint8_t>(*v);
}

std::string checked_level(const Where& w, std::string_view text) {
  for (auto l : kLogLevels) {
    if (l == text) return std::string(text);
  }
  w.fail(std::string(text), "must be one of trace, debug, info, warn, error, critical, off");
}

// ---- TOML ----

std::string node_text(const toml::node& n) {
  if (const auto* s = n.as_string()) return s->get();
  std::ostringstream o;
  n.visit([&](const auto& v) { o << v; });
  return o.str();
}

std::int64_t toml_int(const Where& w, const toml::node& n) {
  if (const auto* i = n.as_integer()) return i->get();
  w.fail(node_text(n), "must be an integer");
}

double toml_number(const Where& w, const toml::node& n) {
  if (const auto* i = n.as_integer()) return static_cast<double>(i->get());
  if (const auto* f = n.as_floating_point()) return f->get();
  w.fail(node_text(n), "must be a number");
}

std::string toml_string(const Where& w, const toml::node& n) {
  if (const auto* s = n.as_string()) return s->get();
  w.fail(node_text(n), "must be a string");
}

// A list of strings; a single string is accepted as a list of one.
std::vector<std::string> toml_strings(const Where& w, const toml::node& n) {
  std::vector<std::string> out;
  if (const auto* s = n.as_string()) {
    out.push_back(s->get());
    return out;
  }
  const auto* arr = n.as_array();
  if (arr == nullptr) w.fail(node_text(n), "must be an array of strings");
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const Where item{w.file, w.key + "[" + std::to_string(i) + "]"};
    out.push_back(toml_string(item, *arr->get(i)));
  }
  return out;
}

void set_from_toml(ReflectorConfig& c, const Where& w, const toml::node& n) {
  const std::string& k = w.key;
  if (k == "allow") {
    c.allow.clear();
    const auto items = toml_strings(w, n);
    for (std::size_t i = 0; i < items.size(); ++i) {
      c.allow.push_back(checked_prefix({w.file, k + "[" + std::to_string(i) + "]"}, items[i]));
    }
  } else if (k == "bind") {
    c.bind.clear();
    const auto items = toml_strings(w, n);
    for (std::size_t i = 0; i < items.size(); ++i) {
      c.bind.push_back(checked_address({w.file, k + "[" + std::to_string(i) + "]"}, items[i]));
    }
  } else if (k == "port") {
    c.port = static_cast<std::uint16_t>(checked_uint(w, toml_int(w, n), 0, 65535));
  } else if (k == "rate_limit_pps") {
    c.rate_limit.pps = checked_uint(w, toml_int(w, n), 1, RateLimit::kMaxPps);
  } else if (k == "burst") {
    c.rate_limit.burst = checked_uint(w, toml_int(w, n), 1, RateLimit::kMaxBurst);
  } else if (k == "max_sources") {
    c.max_sources = checked_uint(w, toml_int(w, n), 1, kMaxTableEntries);
  } else if (k == "max_sessions") {
    c.max_sessions = checked_uint(w, toml_int(w, n), 1, kMaxTableEntries);
  } else if (k == "session_timeout_s") {
    c.session_timeout_ns = checked_seconds(w, toml_number(w, n), 0.001);
  } else if (k == "stats_interval_s") {
    c.stats_interval_ns = checked_seconds(w, toml_number(w, n), 0.1);
  } else if (k == "reply_tos") {
    if (n.is_integer()) {
      c.reply_tos = static_cast<std::uint8_t>(checked_uint(w, toml_int(w, n), 0, 255));
    } else if (n.is_string() && toml_string(w, n) == "copy") {
      c.reply_tos.reset();
    } else {
      w.fail(node_text(n), "must be \"copy\" or an integer in 0..255");
    }
  } else if (k == "clock_synchronized") {
    const auto* b = n.as_boolean();
    if (b == nullptr) w.fail(node_text(n), "must be true or false");
    c.clock_synchronized = b->get();
  } else if (k == "clock_error_us") {
    const double us = toml_number(w, n);
    c.clock_error_ns = checked_seconds(w, us / 1e6, 1e-9);
  } else if (k == "log_level") {
    c.log_level = checked_level(w, toml_string(w, n));
  } else {
    w.fail("", "unknown key");
  }
}

// ---- flags ----

struct FlagSpec {
  std::string_view name;
  bool takes_value;
};
constexpr FlagSpec kFlags[] = {
    {"--allow", true},
    {"--bind", true},
    {"--port", true},
    {"--rate-limit", true},
    {"--burst", true},
    {"--max-sources", true},
    {"--max-sessions", true},
    {"--session-timeout", true},
    {"--stats-interval", true},
    {"--tos", true},
    {"--clock-synchronized", false},
    {"--clock-error-us", true},
    {"--log-level", true},
    {"--config", true},
    {"--check-config", false},
    {"--help", false},
    {"--version", false},
};

std::int64_t flag_int(const Where& w, std::string_view text) {
  const auto v = parse_number<std::int64_t>(text);
  if (!v) w.fail(std::string(text), "must be an integer");
  return *v;
}

double flag_number(const Where& w, std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) w.fail(s, "must be a number");
  return v;
}

bool flag_bool(const Where& w, std::string_view text) {
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no") return false;
  w.fail(std::string(text), "must be true or false");
}

void apply_flag(ReflectorConfig& c, const std::string& flag, const std::string& v,
                bool& allow_from_flags, bool& bind_from_flags) {
  static const std::string kNoFile;
  const Where w{kNoFile, flag};
  if (flag == "--allow") {
    if (!allow_from_flags) c.allow.clear();
    allow_from_flags = true;
    c.allow.push_back(checked_prefix(w, v));
  } else if (flag == "--bind") {
    if (!bind_from_flags) c.bind.clear();
    bind_from_flags = true;
    c.bind.push_back(checked_address(w, v));
  } else if (flag == "--port") {
    c.port = static_cast<std::uint16_t>(checked_uint(w, flag_int(w, v), 0, 65535));
  } else if (flag == "--rate-limit") {
    c.rate_limit.pps = checked_uint(w, flag_int(w, v), 1, RateLimit::kMaxPps);
  } else if (flag == "--burst") {
    c.rate_limit.burst = checked_uint(w, flag_int(w, v), 1, RateLimit::kMaxBurst);
  } else if (flag == "--max-sources") {
    c.max_sources = checked_uint(w, flag_int(w, v), 1, kMaxTableEntries);
  } else if (flag == "--max-sessions") {
    c.max_sessions = checked_uint(w, flag_int(w, v), 1, kMaxTableEntries);
  } else if (flag == "--session-timeout") {
    c.session_timeout_ns = checked_seconds(w, flag_number(w, v), 0.001);
  } else if (flag == "--stats-interval") {
    c.stats_interval_ns = checked_seconds(w, flag_number(w, v), 0.1);
  } else if (flag == "--tos") {
    c.reply_tos = checked_tos(w, v);
  } else if (flag == "--clock-synchronized") {
    c.clock_synchronized = flag_bool(w, v);
  } else if (flag == "--clock-error-us") {
    c.clock_error_ns = checked_seconds(w, flag_number(w, v) / 1e6, 1e-9);
  } else if (flag == "--log-level") {
    c.log_level = checked_level(w, v);
  }
}

}  // namespace

ReflectorConfig parse_reflector_config(std::string_view toml_text, const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(toml_text, file);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw ConfigError(file + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                      ": TOML syntax error: " + std::string(e.description()));
  }
  ReflectorConfig c;
  for (const auto& [key, node] : root) {
    set_from_toml(c, Where{file, std::string(key.str())}, node);
  }
  return c;
}

ReflectorConfig load_reflector_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, "", "", "cannot read the config file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path, "", "", "error while reading the config file");
  return parse_reflector_config(text.str(), path);
}

void validate_reflector_config(const ReflectorConfig& c, const std::string& file) {
  if (c.allow.empty()) {
    throw ConfigError(file, "allow", "",
                      "the allowlist is empty, so the reflector would answer nobody; give "
                      "--allow CIDR (repeatable) or allow = [\"CIDR\", ...] in the config");
  }
  const bool any_bind = c.bind.empty();
  for (const auto& p : c.allow) {
    bool reachable = any_bind;
    for (const auto& b : c.bind) reachable = reachable || b.family == p.base.family;
    if (!reachable) {
      throw ConfigError(file, "allow", p.to_string(),
                        "no bind address of this prefix's family, so it can never be answered");
    }
  }
}

ReflectorCommandLine parse_reflector_args(std::span<const std::string_view> args) {
  static const std::string kNoFile;
  ReflectorCommandLine cli;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::optional<std::string> inline_value;
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      inline_value = std::string(arg.substr(eq + 1));
      arg = arg.substr(0, eq);
    }
    const FlagSpec* spec = nullptr;
    for (const auto& f : kFlags) {
      if (f.name == arg) spec = &f;
    }
    if (spec == nullptr) {
      throw ConfigError(kNoFile, std::string(arg), "",
                        "unknown argument (see pathsentry-reflector --help)");
    }
    std::string value;
    if (spec->takes_value) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < args.size()) {
        value = std::string(args[++i]);
      } else {
        throw ConfigError(kNoFile, std::string(arg), "", "needs a value");
      }
    } else {
      value = inline_value.value_or("true");
    }
    if (arg == "--config") {
      cli.config_path = value;
    } else if (arg == "--check-config") {
      cli.check_config = flag_bool(Where{kNoFile, std::string(arg)}, value);
    } else if (arg == "--help") {
      cli.help = true;
    } else if (arg == "--version") {
      cli.version = true;
    } else {
      cli.overrides.emplace_back(std::string(arg), value);
    }
  }
  return cli;
}

ReflectorConfig resolve_reflector_config(const ReflectorCommandLine& cli) {
  ReflectorConfig c;
  std::string file;
  if (cli.config_path) {
    file = *cli.config_path;
    c = load_reflector_config(file);
  }
  bool allow_from_flags = false;
  bool bind_from_flags = false;
  for (const auto& [flag, value] : cli.overrides) {
    apply_flag(c, flag, value, allow_from_flags, bind_from_flags);
  }
  validate_reflector_config(c, allow_from_flags ? std::string() : file);
  return c;
}

std::string reflector_usage() {
  return R"(usage: pathsentry-reflector --allow CIDR [--allow CIDR]... [options]

STAMP (RFC 8762/8972) stateful Session-Reflector, unauthenticated mode.

  --allow CIDR            answer only sources in this prefix (repeatable; required here or
                          as allow = [...] in the config; flags replace the file's list)
  --bind ADDR             listen on this local address (repeatable; default 0.0.0.0 and ::)
  --port N                UDP port (default 862; 0 = any free port)
  --rate-limit PPS        per-source rate limit, packets/s (default 10000)
  --burst N               per-source burst, packets (default 1000)
  --max-sources N         sources tracked by the rate limiter (default 65536)
  --max-sessions N        sessions tracked (default 65536)
  --session-timeout S     an idle session restarts at sequence 0 after S seconds (default 300)
  --tos copy|N            reply TOS/Traffic Class: copy the request's DSCP (default) or N
  --clock-synchronized    set the S bit of the error estimate (clock is NTP/PTP synced)
  --clock-error-us US     advertised clock error estimate, microseconds (default 1000)
  --stats-interval S      log the counters every S seconds (default 10)
  --log-level LEVEL       trace, debug, info, warn, error, critical, off (default info)
  --config FILE           TOML config file (flags override it)
  --check-config          validate the configuration and exit
  --help, --version

Once the sockets are bound it prints "reflector listening on ADDR:PORT [ADDR:PORT]" on
stdout, and the final counters on exit (SIGINT/SIGTERM).
)";
}

std::string describe(const ReflectorConfig& c) {
  std::string s = "allow=[";
  for (std::size_t i = 0; i < c.allow.size(); ++i) {
    if (i) s += ',';
    s += c.allow[i].to_string();
  }
  s += "] bind=[";
  if (c.bind.empty()) s += "0.0.0.0,::";
  for (std::size_t i = 0; i < c.bind.size(); ++i) {
    if (i) s += ',';
    s += c.bind[i].to_string();
  }
  s += "] port=" + std::to_string(c.port) + " rate_limit_pps=" + std::to_string(c.rate_limit.pps) +
       " burst=" + std::to_string(c.rate_limit.burst) +
       " max_sources=" + std::to_string(c.max_sources) +
       " max_sessions=" + std::to_string(c.max_sessions) +
       " session_timeout_s=" + seconds_text(static_cast<double>(c.session_timeout_ns) / kNs) +
       " reply_tos=" + (c.reply_tos ? std::to_string(*c.reply_tos) : std::string("copy")) +
       " clock_synchronized=" + (c.clock_synchronized ? "true" : "false") +
       " clock_error_us=" + seconds_text(static_cast<double>(c.clock_error_ns) / 1e3) +
       " stats_interval_s=" + seconds_text(static_cast<double>(c.stats_interval_ns) / kNs);
  return s;
}

}  // namespace pathsentry::probe
