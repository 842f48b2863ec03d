#include "pathsentry/reflector/reflector_config.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/options.h"
#include "pathsentry/common/parse.h"
#include "pathsentry/common/toml_file.h"
#include "pathsentry/metrics/metrics.h"

namespace pathsentry::probe {
namespace {

using options::Arg;
using options::Value;

constexpr std::int64_t kNs = 1'000'000'000;
constexpr std::int64_t kMaxTableEntries = 16'777'216;
constexpr double kMaxSeconds = 86'400.0 * 365;

std::string seconds_text(double s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

std::int64_t seconds_ns(const Value& v, double lo) {
  return static_cast<std::int64_t>(std::llround(v.number(lo, kMaxSeconds) * kNs));
}

// The configuration being built, with what a list flag needs to know: the first --allow or
// --bind replaces the file's list, the next ones add to it.
struct Building {
  ReflectorConfig c;
  bool allow_from_flags = false;
  bool bind_from_flags = false;
  ReflectorCommandLine* cli = nullptr;  // set while parsing the command line
};

// A list setting: the file's array replaces the default; the first flag replaces the file's.
template <class T, class Parse>
void set_list(std::vector<T>& list, bool& from_flags, const Value& v, Parse parse) {
  if (v.file.empty()) {
    if (!from_flags) list.clear();
    from_flags = true;
    list.push_back(parse(v));
    return;
  }
  list.clear();
  for (const Value& item : v.list()) list.push_back(parse(item));
}

IpPrefix prefix_of(const Value& v) {
  const auto p = IpPrefix::parse(v.string());
  if (!p) v.fail("not a CIDR prefix (like 172.16.0.0/16 or fd00::/8)");
  return *p;
}

IpAddress address_of(const Value& v) {
  const auto a = IpAddress::parse(v.string());
  if (!a) v.fail("not an IPv4 or IPv6 address");
  return *a;
}

// Every setting of pathsentry-reflector: its flag, its key in the TOML file, its help line.
const options::OptionTable<Building>& table() {
  static const options::OptionTable<Building> t({
      {"--allow",
       {"allow"},
       "CIDR",
       "answer only sources in this prefix (repeatable; required here or\nas allow = [...] in "
       "the config; flags replace the file's list)",
       Arg::Repeated,
       [](Building& b, const Value& v) { set_list(b.c.allow, b.allow_from_flags, v, prefix_of); }},
      {"--bind",
       {"bind"},
       "ADDR",
       "listen on this local address (repeatable; default 0.0.0.0 and ::)",
       Arg::Repeated,
       [](Building& b, const Value& v) { set_list(b.c.bind, b.bind_from_flags, v, address_of); }},
      {"--port",
       {"port"},
       "N",
       "UDP port (default 862; 0 = any free port)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.port = static_cast<std::uint16_t>(v.integer(0, 65535));
       }},
      {"--rate-limit",
       {"rate_limit_pps"},
       "PPS",
       "per-source rate limit, packets/s (default 100000)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.rate_limit.pps = static_cast<std::uint64_t>(
             v.integer(1, static_cast<std::int64_t>(RateLimit::kMaxPps)));
       }},
      {"--burst",
       {"burst"},
       "N",
       "per-source burst, packets (default 10000)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.rate_limit.burst = static_cast<std::uint64_t>(
             v.integer(1, static_cast<std::int64_t>(RateLimit::kMaxBurst)));
       }},
      {"--global-rate-limit",
       {"global_rate_limit_pps"},
       "PPS",
       "replies/s over all sources together (default 200000)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.global_rate_limit.pps = static_cast<std::uint64_t>(
             v.integer(1, static_cast<std::int64_t>(RateLimit::kMaxPps)));
       }},
      {"--global-burst",
       {"global_burst"},
       "N",
       "burst of the global reply limit, packets (default 20000)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.global_rate_limit.burst = static_cast<std::uint64_t>(
             v.integer(1, static_cast<std::int64_t>(RateLimit::kMaxBurst)));
       }},
      {"--max-sessions-per-source",
       {"max_sessions_per_source"},
       "N",
       "live sessions one source address may hold; more are refused (default 1024)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.max_sessions_per_source = static_cast<std::size_t>(v.integer(1, kMaxTableEntries));
       }},
      {"--allow-broad",
       {"allow_broad"},
       "",
       "accept allow prefixes shorter than /8 (either family), /0 included",
       Arg::None,
       [](Building& b, const Value& v) { b.c.allow_broad = v.boolean(); }},
      {"--max-sources",
       {"max_sources"},
       "N",
       "sources tracked by the rate limiter (default 65536)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.max_sources = static_cast<std::size_t>(v.integer(1, kMaxTableEntries));
       }},
      {"--max-sessions",
       {"max_sessions"},
       "N",
       "sessions tracked (default 65536)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.max_sessions = static_cast<std::size_t>(v.integer(1, kMaxTableEntries));
       }},
      {"--session-timeout",
       {"session_timeout_s"},
       "S",
       "an idle session restarts at sequence 0 after S seconds (default 300)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.session_timeout_ns = seconds_ns(v, 0.001); }},
      {"--tos",
       {"reply_tos"},
       "copy|N",
       "reply TOS/Traffic Class: copy the request's DSCP (default) or N",
       Arg::One,
       [](Building& b, const Value& v) {
         if ((v.type == Value::Type::String || v.type == Value::Type::Text) && v.text == "copy") {
           b.c.reply_tos.reset();
         } else if (v.type == Value::Type::Text || v.type == Value::Type::Integer) {
           const auto n = parse_number<int>(v.text);
           if (!n || *n < 0 || *n > 255) v.fail("must be \"copy\" or an integer in 0..255");
           b.c.reply_tos = static_cast<std::uint8_t>(*n);
         } else {
           v.fail("must be \"copy\" or an integer in 0..255");
         }
       }},
      {"--clock-synchronized",
       {"clock_synchronized"},
       "",
       "set the S bit of the error estimate (clock is NTP/PTP synced)",
       Arg::None,
       [](Building& b, const Value& v) { b.c.clock_synchronized = v.boolean(); }},
      {"--clock-error-us",
       {"clock_error_us"},
       "US",
       "advertised clock error estimate, microseconds (default 1000)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.clock_error_ns =
             static_cast<std::int64_t>(std::llround(v.number(1e-3, kMaxSeconds * 1e6) * 1e3));
       }},
      {"--rt-priority",
       {"rt_priority"},
       "N",
       "SCHED_FIFO priority of the answering thread, 1..99; 0 = default policy (default 0)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.rt_priority = static_cast<int>(v.integer(0, 99)); }},
      {"--stats-interval",
       {"stats_interval_s"},
       "S",
       "log the counters every S seconds (default 10)",
       Arg::One,
       [](Building& b, const Value& v) { b.c.stats_interval_ns = seconds_ns(v, 0.1); }},
      {"--metrics-listen",
       {"metrics_listen"},
       "ADDR:PORT|off",
       "Prometheus /metrics endpoint (default 127.0.0.1:9782); off = none",
       Arg::One,
       [](Building& b, const Value& v) {
         const std::string& text = v.string();
         if (auto ok = metrics::parse_listen(text); !ok) v.fail(ok.error());
         b.c.metrics_listen = text;
         b.c.metrics_listen_configured = true;
       }},
      {"--log-level",
       {"log_level"},
       "LEVEL",
       "trace, debug, info, warn, error, critical, off (default info)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.c.log_level = v.one_of({"trace", "debug", "info", "warn", "error", "critical", "off"});
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

void apply_file(Building& b, const std::vector<Value>& entries) {
  table().apply_file(b, entries);
}

}  // namespace

ReflectorConfig parse_reflector_config(std::string_view toml_text, const std::string& file) {
  Building b;
  apply_file(b, options::parse_toml(toml_text, file));
  return b.c;
}

ReflectorConfig load_reflector_config(const std::string& path) {
  Building b;
  apply_file(b, options::read_toml_file(path));
  return b.c;
}

bool broad_prefix(const IpPrefix& p) {
  return p.length < (p.base.family == AF_INET ? kMinIpv4Prefix : kMinIpv6Prefix);
}

void validate_reflector_config(const ReflectorConfig& c, const std::string& file) {
  if (c.allow.empty()) {
    throw ConfigError(file, "allow", "",
                      "the allowlist is empty, so the reflector would answer nobody; give "
                      "--allow CIDR (repeatable) or allow = [\"CIDR\", ...] in the config");
  }
  if (!c.allow_broad) {
    for (const auto& p : c.allow) {
      if (broad_prefix(p)) {
        throw ConfigError(file, "allow", p.to_string(),
                          "is broader than /8: a reflector answering that "
                          "much of the Internet can be aimed at others with spoofed requests; "
                          "list the agents' prefixes, or set allow_broad = true "
                          "(--allow-broad) if this is really meant");
      }
    }
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
  ReflectorCommandLine cli;
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

ReflectorConfig resolve_reflector_config(const ReflectorCommandLine& cli) {
  Building b;
  std::string file;
  if (cli.config_path) {
    file = *cli.config_path;
    apply_file(b, options::read_toml_file(file));
  }
  for (const auto& [flag, text] : cli.overrides) {
    const auto* o = table().find_flag(flag);
    if (o == nullptr) throw ConfigError("", flag, text, "is not a known option (see --help)");
    Value v;
    v.text = text;
    v.where = flag;
    o->apply(b, v);
  }
  validate_reflector_config(b.c, b.allow_from_flags ? std::string() : file);
  return b.c;
}

std::string reflector_usage() {
  return table().usage(
             "usage: pathsentry-reflector --allow CIDR [--allow CIDR]... [options]\n\n"
             "STAMP (RFC 8762/8972) stateful Session-Reflector, unauthenticated mode.") +
         "\nEvery option but the last four is also a key of the config file (docs/reflector.md).\n"
         "Once the sockets are bound it prints \"reflector listening on ADDR:PORT [ADDR:PORT]\"\n"
         "on stdout, and the final counters on exit (SIGINT/SIGTERM).\n";
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
  s += "] port=" + std::to_string(c.port) + " metrics_listen=" + c.metrics_listen +
       " rate_limit_pps=" + std::to_string(c.rate_limit.pps) +
       " burst=" + std::to_string(c.rate_limit.burst) +
       " global_rate_limit_pps=" + std::to_string(c.global_rate_limit.pps) +
       " global_burst=" + std::to_string(c.global_rate_limit.burst) +
       " max_sessions_per_source=" + std::to_string(c.max_sessions_per_source) +
       " allow_broad=" + (c.allow_broad ? "true" : "false") +
       " max_sources=" + std::to_string(c.max_sources) +
       " max_sessions=" + std::to_string(c.max_sessions) +
       " session_timeout_s=" + seconds_text(static_cast<double>(c.session_timeout_ns) / kNs) +
       " reply_tos=" + (c.reply_tos ? std::to_string(*c.reply_tos) : std::string("copy")) +
       " clock_synchronized=" + (c.clock_synchronized ? "true" : "false") +
       " clock_error_us=" + seconds_text(static_cast<double>(c.clock_error_ns) / 1e3) +
       " stats_interval_s=" + seconds_text(static_cast<double>(c.stats_interval_ns) / kNs) +
       " rt_priority=" + std::to_string(c.rt_priority);
  return s;
}

}  // namespace pathsentry::probe
