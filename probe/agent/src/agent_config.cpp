#include "pathsentry/probe/agent/agent_config.h"

#include <net/if.h>
#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/parse.h"

namespace pathsentry::probe {
namespace {

// A value with where it came from, so a later cross-check can still name file and key.
template <class T>
struct Setting {
  std::optional<T> value;
  std::string file;  // "" = command line
  std::string key;
  std::string text;
  explicit operator bool() const { return value.has_value(); }
  const T& operator*() const { return *value; }
};

// The settings that layer (built-in < [defaults] < [[targets]] < [targets.icmp|stamp] < flags).
struct Layer {
  Setting<std::string> proto;  // icmp | stamp | both
  Setting<double> rate;
  Setting<std::int64_t> timeout_ms;
  Setting<std::int64_t> dscp;
  Setting<std::int64_t> size;
  Setting<std::int64_t> stamp_port;
  Setting<IpAddress> source;
  Setting<std::string> interface;
  Setting<bool> stamp_stateful;
  Setting<std::int64_t> max_lag_us;
};

template <class T>
void over(Setting<T>& base, const Setting<T>& top) {
  if (top) base = top;
}
void over(Layer& base, const Layer& top) {
  over(base.proto, top.proto);
  over(base.rate, top.rate);
  over(base.timeout_ms, top.timeout_ms);
  over(base.dscp, top.dscp);
  over(base.size, top.size);
  over(base.stamp_port, top.stamp_port);
  over(base.source, top.source);
  over(base.interface, top.interface);
  over(base.stamp_stateful, top.stamp_stateful);
  over(base.max_lag_us, top.max_lag_us);
}

constexpr double kMaxRate = 1'000'000;
constexpr double kMaxProbesPerTimeout = 1'000'000;  // rate x timeout: ring of <= 2M slots (~180 MB)

std::string node_text(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  std::ostringstream os;
  n.visit([&os](auto&& v) { os << v; });
  return os.str();
}

// --- checks shared by the file and the command line: each throws ConfigError ------------------

std::int64_t check_int(const std::string& file, const std::string& key, const std::string& text,
                       std::int64_t v, std::int64_t lo, std::int64_t hi) {
  if (v < lo || v > hi) {
    throw ConfigError(file, key, text,
                      "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }
  return v;
}

double check_rate(const std::string& file, const std::string& key, const std::string& text,
                  double v) {
  if (!(v > 0) || !std::isfinite(v) || v > kMaxRate || v < 1e-6) {
    throw ConfigError(file, key, text, "must be a rate in probes per second, > 0 and <= 1000000");
  }
  return v;
}

IpAddress check_address(const std::string& file, const std::string& key, const std::string& text) {
  auto a = IpAddress::parse(text);
  if (!a) throw ConfigError(file, key, text, "is not an IPv4 or IPv6 address");
  return *a;
}

std::string check_proto(const std::string& file, const std::string& key, const std::string& text) {
  if (text != "icmp" && text != "stamp" && text != "both") {
    throw ConfigError(file, key, text, "must be one of icmp, stamp, both");
  }
  return text;
}

std::string check_interface(const std::string& file, const std::string& key,
                            const std::string& text) {
  if (text.size() >= IFNAMSIZ) {
    throw ConfigError(file, key, text, "is longer than an interface name can be");
  }
  return text;
}

io::IcmpSocketMode check_icmp_socket(const std::string& file, const std::string& key,
                                     const std::string& text) {
  if (text == "auto") return io::IcmpSocketMode::Auto;
  if (text == "raw") return io::IcmpSocketMode::Raw;
  if (text == "dgram") return io::IcmpSocketMode::Dgram;
  throw ConfigError(file, key, text, "must be one of auto, raw, dgram");
}

std::string check_output(const std::string& file, const std::string& key, const std::string& text) {
  if (text.empty()) throw ConfigError(file, key, text, "must be a file path or - for stdout");
  return text;
}

// --- the TOML file ------------------------------------------------------------------------------

class TableReader {
 public:
  TableReader(const toml::table& t, std::string file, std::string prefix)
      : t_(t), file_(std::move(file)), prefix_(std::move(prefix)) {}

  [[nodiscard]] std::string key(std::string_view k) const {
    return prefix_.empty() ? std::string(k) : prefix_ + "." + std::string(k);
  }
  const std::string& file() const { return file_; }

  void only(std::initializer_list<std::string_view> known) const {
    for (const auto& [k, v] : t_) {
      bool ok = false;
      for (auto n : known) ok = ok || k.str() == n;
      if (!ok) throw ConfigError(file_, key(k.str()), node_text(v), "is not a known key");
    }
  }

  template <class T>
  Setting<T> make(std::string_view k, T v, const toml::node& n) const {
    return Setting<T>{v, file_, key(k), node_text(n)};
  }

  std::optional<std::int64_t> integer(std::string_view k, std::int64_t lo, std::int64_t hi) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    auto v = n->value_exact<std::int64_t>();
    if (!v) throw ConfigError(file_, key(k), node_text(*n), "must be an integer");
    return check_int(file_, key(k), node_text(*n), *v, lo, hi);
  }
  Setting<std::int64_t> int_setting(std::string_view k, std::int64_t lo, std::int64_t hi) const {
    auto v = integer(k, lo, hi);
    if (!v) return {};
    return make(k, *v, *t_.get(k));
  }
  std::optional<std::string> string(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    auto v = n->value_exact<std::string>();
    if (!v) throw ConfigError(file_, key(k), node_text(*n), "must be a string");
    return *v;
  }
  std::optional<bool> boolean(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    auto v = n->value_exact<bool>();
    if (!v) throw ConfigError(file_, key(k), node_text(*n), "must be true or false");
    return *v;
  }
  Setting<double> rate(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return {};
    auto v = n->value<double>();  // integers are fine too
    if (!v || !(n->is_integer() || n->is_floating_point())) {
      throw ConfigError(file_, key(k), node_text(*n), "must be a number");
    }
    return make(k, check_rate(file_, key(k), node_text(*n), *v), *n);
  }
  const toml::table* table(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return nullptr;
    if (!n->is_table()) throw ConfigError(file_, key(k), node_text(*n), "must be a table");
    return n->as_table();
  }

  // The layered per-target keys that may appear at this level.
  void read_layer(Layer& l, bool with_proto, bool with_addressing) const {
    if (with_proto) {
      if (auto v = string("proto"))
        l.proto = make("proto", check_proto(file_, key("proto"), *v), *t_.get("proto"));
    }
    over(l.rate, rate("rate"));
    over(l.timeout_ms, int_setting("timeout_ms", 1, 3'600'000));
    over(l.dscp, int_setting("dscp", 0, 63));
    over(l.size, int_setting("size", 0, 65'000));
    over(l.max_lag_us, int_setting("max_lag_us", 1, 1'000'000));
    if (with_addressing) {
      if (auto v = string("source")) {
        if (!v->empty())
          l.source = make("source", check_address(file_, key("source"), *v), *t_.get("source"));
      }
      if (auto v = string("interface")) {
        l.interface =
            make("interface", check_interface(file_, key("interface"), *v), *t_.get("interface"));
      }
    }
  }

 private:
  const toml::table& t_;
  std::string file_;
  std::string prefix_;
};

struct TargetSpec {
  IpAddress address;
  std::string key;  // "targets[0]" or "--target"
  std::string file;
  Layer layer;
  Layer icmp;
  Layer stamp;
};

struct FileConfig {
  Layer defaults;
  std::vector<TargetSpec> targets;
  // Size cycling ([agent] size_cycle, size_step).
  Setting<std::int64_t> size_cycle;
  Setting<std::int64_t> size_step;
};

// --- size cycling (docs/attribution.md §2) -------------------------------------------------------

constexpr std::int64_t kMaxSizeCycle = 1024;
constexpr std::int64_t kMaxSizeStep = 4096;
constexpr std::int64_t kMaxIpTotal = 65'535;
// Default when an ESP tap is configured: enough sizes that two probes of one size are two
// window widths apart at the agent's total rate, at least 16 and at most 64 (1 KiB of padding
// at the default step).
constexpr double kDefaultCycleMin = 16;
constexpr double kDefaultCycleMax = 64;

std::uint32_t default_size_cycle(const AgentConfig& cfg) {
  std::int64_t widest_ns = 0;
  for (const TapSpec& t : cfg.tap.taps) {
    if (t.encap != Encap::Esp) continue;
    for (Direction d : {Direction::Forward, Direction::Reverse}) {
      widest_ns = std::max(widest_ns, t.hi_ns(d) - t.lo_ns(d));
    }
  }
  if (widest_ns == 0) return 1;  // no ESP tap: sizes do not matter to attribution
  double total_pps = 0;
  for (const SessionConfig& s : cfg.sessions) total_pps += s.rate_pps;
  const double want = std::ceil(2 * total_pps * static_cast<double>(widest_ns) / 1e9);
  return static_cast<std::uint32_t>(std::clamp(want, kDefaultCycleMin, kDefaultCycleMax));
}

// Resolves the cycle, checks it against the taps' ESP blocks and the largest packet, and gives
// every session the common base size and the cycle.
void apply_size_cycle(AgentConfig& cfg, const Setting<std::int64_t>& cycle,
                      const Setting<std::int64_t>& step) {
  cfg.size_cycle = cycle ? static_cast<std::uint32_t>(*cycle) : default_size_cycle(cfg);
  if (cfg.size_cycle < 1) cfg.size_cycle = 1;
  cfg.size_step = step ? static_cast<std::uint32_t>(*step) : 16;
  if (cfg.size_cycle > 1) {
    for (std::size_t i = 0; i < cfg.tap.taps.size(); ++i) {
      const TapSpec& t = cfg.tap.taps[i];
      if (t.encap != Encap::Esp || !t.transform) continue;
      const std::uint32_t block = t.transform->block_bytes;
      if (block > 1 && cfg.size_step % block != 0) {
        throw ConfigError(step.file, step ? step.key : "--size-step / agent.size_step",
                          step ? step.text : std::to_string(cfg.size_step),
                          "must be a multiple of the ESP padding block (" + std::to_string(block) +
                              " bytes) of tap " + t.interface +
                              ", or sizes of the cycle share an ESP length");
      }
    }
  }
  // One base IP total length for all sessions: the largest request any of them asks for.
  std::size_t base = 0;
  for (const SessionConfig& s : cfg.sessions) {
    const std::size_t header = s.target.family == AF_INET ? 20 : 40;
    base = std::max(base, header + std::max(s.size, min_ip_payload(s.proto)));
  }
  const std::int64_t largest =
      static_cast<std::int64_t>(base) +
      static_cast<std::int64_t>(cfg.size_cycle - 1) * static_cast<std::int64_t>(cfg.size_step);
  if (largest > kMaxIpTotal) {
    const auto& k = cycle ? cycle : step;
    throw ConfigError(k.file, k ? k.key : "--size-cycle / agent.size_cycle",
                      k ? k.text : std::to_string(cfg.size_cycle),
                      "makes the largest probe " + std::to_string(largest) +
                          " bytes, more than an IP packet can hold (65535)");
  }
  for (SessionConfig& s : cfg.sessions) {
    s.size_cycle = cfg.size_cycle;
    s.size_step = cfg.size_step;
    if (cfg.size_cycle > 1) s.size = base - (s.target.family == AF_INET ? 20 : 40);
  }
}

void read_file(const std::string& path, AgentConfig& cfg, FileConfig& fc) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    std::string loc =
        "line " + std::to_string(where.line) + ", column " + std::to_string(where.column);
    throw ConfigError(path, loc, "", std::string(e.description()));
  } catch (const std::exception& e) {
    throw ConfigError(path, "(file)", "", e.what());
  }
  TableReader top(root, path, "");
  top.only({"agent", "defaults", "targets", "tap", "detector", "ttl"});
  read_tap_tables(root, path, cfg.tap);
  if (const toml::table* a = top.table("agent")) {
    TableReader r(*a, path, "agent");
    r.only({"id", "records", "summary_json", "quiet", "duration_s", "icmp_socket", "rt_priority",
            "size_cycle", "size_step"});
    fc.size_cycle = r.int_setting("size_cycle", 0, kMaxSizeCycle);
    fc.size_step = r.int_setting("size_step", 1, kMaxSizeStep);
    if (auto v = r.integer("rt_priority", 0, 99)) cfg.rt_priority = static_cast<int>(*v);
    if (auto v = r.integer("id", 0, std::numeric_limits<std::uint32_t>::max())) {
      cfg.agent_id = static_cast<std::uint32_t>(*v);
    }
    if (auto v = r.string("records")) cfg.records = *v;
    if (auto v = r.string("summary_json")) cfg.summary_json = *v;
    if (auto v = r.boolean("quiet")) cfg.quiet = *v;
    if (auto v = r.integer("duration_s", 0, 10LL * 365 * 86400)) cfg.duration_ns = *v * kNsPerSec;
    if (auto v = r.string("icmp_socket")) {
      cfg.icmp_socket = check_icmp_socket(path, r.key("icmp_socket"), *v);
    }
  }
  if (const toml::table* d = top.table("defaults")) {
    TableReader r(*d, path, "defaults");
    r.only({"proto", "rate", "timeout_ms", "dscp", "size", "stamp_port", "source", "interface",
            "stamp_stateful", "max_lag_us"});
    r.read_layer(fc.defaults, true, true);
    fc.defaults.stamp_port = r.int_setting("stamp_port", 1, 65535);
    if (auto v = r.boolean("stamp_stateful"))
      fc.defaults.stamp_stateful = r.make("stamp_stateful", *v, *d->get("stamp_stateful"));
  }
  if (const toml::node* tn = root.get("targets")) {
    const toml::array* arr = tn->as_array();
    if (arr == nullptr || !arr->is_array_of_tables()) {
      throw ConfigError(path, "targets", node_text(*tn),
                        "must be an array of tables ([[targets]])");
    }
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const toml::table& t = *arr->get(i)->as_table();
      const std::string prefix = "targets[" + std::to_string(i) + "]";
      TableReader r(t, path, prefix);
      r.only({"address", "proto", "rate", "timeout_ms", "dscp", "size", "source", "interface",
              "max_lag_us", "icmp", "stamp"});
      TargetSpec spec;
      spec.key = prefix;
      spec.file = path;
      auto addr = r.string("address");
      if (!addr) throw ConfigError(path, r.key("address"), "", "is required");
      spec.address = check_address(path, r.key("address"), *addr);
      r.read_layer(spec.layer, true, true);
      if (const toml::table* ic = r.table("icmp")) {
        TableReader s(*ic, path, r.key("icmp"));
        s.only({"rate", "timeout_ms", "dscp", "size", "max_lag_us"});
        s.read_layer(spec.icmp, false, false);
      }
      if (const toml::table* st = r.table("stamp")) {
        TableReader s(*st, path, r.key("stamp"));
        s.only({"rate", "timeout_ms", "dscp", "size", "max_lag_us", "port", "stateful"});
        s.read_layer(spec.stamp, false, false);
        spec.stamp.stamp_port = s.int_setting("port", 1, 65535);
        if (auto v = s.boolean("stateful"))
          spec.stamp.stamp_stateful = s.make("stateful", *v, *st->get("stateful"));
      }
      fc.targets.push_back(std::move(spec));
    }
  }
}

// --- the command line ---------------------------------------------------------------------------

std::int64_t parse_int(const std::string& flag, const std::string& text, std::int64_t lo,
                       std::int64_t hi) {
  const auto v = parse_number<std::int64_t>(text);
  if (!v) throw ConfigError("", flag, text, "must be an integer");
  return check_int("", flag, text, *v, lo, hi);
}

double parse_double(const std::string& flag, const std::string& text) {
  const auto v = parse_number<double>(text);
  if (!v) throw ConfigError("", flag, text, "must be a number");
  return *v;
}

template <class T>
Setting<T> flag_setting(const std::string& flag, T v, const std::string& text) {
  return Setting<T>{v, "", flag, text};
}

}  // namespace

std::string agent_usage() {
  return R"(usage: pathsentry-probe [--config FILE] [options]
Probes each target with ICMP echo and/or STAMP (RFC 8762) and prints a live per-second summary.
There is no built-in target: name one with --target or in the config file.

  --config FILE          TOML configuration (see deploy/config/probe.example.toml)
  --check-config         validate the configuration and exit
  --target ADDR          target address, IPv4 or IPv6 (repeatable; replaces the file's targets)
  --proto icmp|stamp|both  protocols per target (default both)
  --rate PPS             probes per second per session (default 1000)
  --duration SECONDS     stop after this long; 0 = until SIGINT/SIGTERM (default 0)
  --source ADDR          source address to send from (bind)
  --interface IF         send through this interface (SO_BINDTODEVICE)
  --dscp N               DSCP 0..63 (IP_TOS / IPV6_TCLASS)
  --size BYTES           IP payload bytes per probe, padded (0 = smallest: 40 ICMP, 52 STAMP)
  --size-cycle N         give consecutive probes (all sessions) N sizes, --size-step apart, for
                         ESP attribution; 0/1 = fixed (default: with an ESP tap 16..64 from
                         the rate and windows, else fixed)
  --size-step BYTES      bytes between cycled sizes (default 16, AES-CBC's block; GCM: 4)
  --timeout-ms N         a probe unanswered this long is lost (default 1000)
  --stamp-port N         reflector UDP port (default 862)
  --agent-id N           agent id carried in every probe (default 1)
  --icmp-socket auto|raw|dgram  ICMP socket kind (default auto: raw, else ping socket)
  --max-lag-us N         pacing: a slot later than this is missed, not sent (default 200)
  --rt-priority N        SCHED_FIFO priority of the sender/receiver threads, 0 = off (default 10)
  --records FILE|-       one JSON object per finished probe
  --summary-json FILE|-  one JSON object with the run's totals, at exit
  --quiet                no live summary on stdout
  --help                 this text
)" + tap_usage();
}

AgentConfig parse_agent_config(std::span<const std::string_view> args, std::uint16_t run_nonce) {
  AgentConfig cfg;
  Layer flags;
  std::vector<std::pair<IpAddress, std::string>> flag_targets;
  std::vector<TapSpec> flag_taps;         // --tap: replaces the file's [[tap]] tables
  Setting<std::int64_t> flag_size_cycle;  // --size-cycle, --size-step
  Setting<std::int64_t> flag_size_step;
  // Output/agent flags are applied after the file, whatever their position.
  std::vector<std::function<void()>> late;

  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag(args[i]);
    std::optional<std::string> inline_value;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) throw ConfigError("", flag, "", "needs a value");
      return std::string(args[++i]);
    };
    auto no_value = [&] {
      if (inline_value) throw ConfigError("", flag, *inline_value, "takes no value");
    };
    if (flag == "--help" || flag == "-h") {
      cfg.help = true;
    } else if (flag == "--config") {
      cfg.config_file = value();
      if (cfg.config_file.empty()) throw ConfigError("", flag, "", "must name a file");
    } else if (flag == "--check-config") {
      no_value();
      cfg.check_only = true;
    } else if (flag == "--quiet") {
      no_value();
      late.push_back([&cfg] { cfg.quiet = true; });
    } else if (flag == "--target") {
      const std::string v = value();
      flag_targets.emplace_back(check_address("", flag, v), v);
    } else if (flag == "--proto") {
      const std::string v = value();
      flags.proto = flag_setting(flag, check_proto("", flag, v), v);
    } else if (flag == "--rate") {
      const std::string v = value();
      flags.rate = flag_setting(flag, check_rate("", flag, v, parse_double(flag, v)), v);
    } else if (flag == "--duration") {
      const std::string v = value();
      const auto s = parse_int(flag, v, 0, 10LL * 365 * 86400);
      late.push_back([&cfg, s] { cfg.duration_ns = s * kNsPerSec; });
    } else if (flag == "--source") {
      const std::string v = value();
      flags.source = flag_setting(flag, check_address("", flag, v), v);
    } else if (flag == "--interface") {
      const std::string v = value();
      flags.interface = flag_setting(flag, check_interface("", flag, v), v);
    } else if (flag == "--dscp") {
      const std::string v = value();
      flags.dscp = flag_setting(flag, parse_int(flag, v, 0, 63), v);
    } else if (flag == "--size") {
      const std::string v = value();
      flags.size = flag_setting(flag, parse_int(flag, v, 0, 65'000), v);
    } else if (flag == "--size-cycle") {
      const std::string v = value();
      flag_size_cycle = flag_setting(flag, parse_int(flag, v, 0, kMaxSizeCycle), v);
    } else if (flag == "--size-step") {
      const std::string v = value();
      flag_size_step = flag_setting(flag, parse_int(flag, v, 1, kMaxSizeStep), v);
    } else if (flag == "--timeout-ms") {
      const std::string v = value();
      flags.timeout_ms = flag_setting(flag, parse_int(flag, v, 1, 3'600'000), v);
    } else if (flag == "--stamp-port") {
      const std::string v = value();
      flags.stamp_port = flag_setting(flag, parse_int(flag, v, 1, 65535), v);
    } else if (flag == "--max-lag-us") {
      const std::string v = value();
      flags.max_lag_us = flag_setting(flag, parse_int(flag, v, 1, 1'000'000), v);
    } else if (flag == "--agent-id") {
      const std::string v = value();
      const auto id = parse_int(flag, v, 0, std::numeric_limits<std::uint32_t>::max());
      late.push_back([&cfg, id] { cfg.agent_id = static_cast<std::uint32_t>(id); });
    } else if (flag == "--rt-priority") {
      const std::string v = value();
      const auto prio = static_cast<int>(parse_int(flag, v, 0, 99));
      late.push_back([&cfg, prio] { cfg.rt_priority = prio; });
    } else if (flag == "--icmp-socket") {
      const std::string v = value();
      const auto mode = check_icmp_socket("", flag, v);
      late.push_back([&cfg, mode] { cfg.icmp_socket = mode; });
    } else if (flag == "--records") {
      const std::string v = check_output("", flag, value());
      late.push_back([&cfg, v] { cfg.records = v; });
    } else if (flag == "--summary-json") {
      const std::string v = check_output("", flag, value());
      late.push_back([&cfg, v] { cfg.summary_json = v; });
    } else if (is_ttl_flag(flag)) {  // --ttl-* (ttl_config.h), applied over the file's [ttl]
      const TtlFlag f = parse_ttl_flag(flag, value());
      late.push_back([&cfg, f] { apply_ttl_flag(cfg.tap.ttl, f); });
    } else if (flag == "--tap") {
      flag_taps.push_back(parse_tap_flag(flag, value()));
    } else if (flag == "--confirm-probes" || flag == "--outage-losses") {
      const auto n = static_cast<std::uint32_t>(parse_int(flag, value(), 1, 1'000'000));
      late.push_back([&cfg, n, flag] {
        (flag == "--confirm-probes" ? cfg.tap.detector.confirm_probes
                                    : cfg.tap.detector.outage_losses) = n;
      });
    } else {
      throw ConfigError("", std::string(args[i]), "", "is not a known option (see --help)");
    }
  }
  if (cfg.help) return cfg;

  FileConfig fc;
  if (!cfg.config_file.empty()) read_file(cfg.config_file, cfg, fc);
  for (auto& f : late) f();
  if (!flag_taps.empty()) {
    cfg.tap.taps = std::move(flag_taps);
    cfg.tap.tap_keys.assign(cfg.tap.taps.size(), "--tap");
    check_taps("", cfg.tap);
  }
  {  // the TTL method's settings as a whole (hop paths must be tap paths when taps exist)
    std::vector<std::string> tap_paths;
    for (const TapSpec& t : cfg.tap.taps) tap_paths.push_back(t.path);
    check_ttl(cfg.tap.ttl, tap_paths);
  }

  std::vector<TargetSpec> targets;
  if (!flag_targets.empty()) {
    for (auto& [addr, text] : flag_targets) {
      TargetSpec t;
      t.address = addr;
      t.key = "--target";
      targets.push_back(t);
    }
  } else {
    targets = fc.targets;
  }
  if (targets.empty()) {
    throw ConfigError(cfg.config_file, "targets", "",
                      "no target configured: give --target ADDR or a [[targets]] table (there is "
                      "no built-in target)");
  }

  for (const TargetSpec& t : targets) {
    Layer base = fc.defaults;
    over(base, t.layer);
    const std::string proto = base.proto ? *base.proto : "both";
    const std::string proto_final = flags.proto ? *flags.proto : proto;
    for (Proto p : {Proto::Icmp, Proto::Stamp}) {
      if (p == Proto::Icmp && proto_final == "stamp") continue;
      if (p == Proto::Stamp && proto_final == "icmp") continue;
      Layer l = base;
      over(l, p == Proto::Icmp ? t.icmp : t.stamp);
      over(l, flags);
      SessionConfig s;
      s.target = t.address;
      s.proto = p;
      s.rate_pps = l.rate ? *l.rate : 1000.0;
      s.timeout_ns = (l.timeout_ms ? *l.timeout_ms : 1000) * 1'000'000;
      s.max_lag_ns = (l.max_lag_us ? *l.max_lag_us : 200) * 1000;
      s.dscp = static_cast<std::uint8_t>(l.dscp ? *l.dscp : 0);
      s.size = static_cast<std::size_t>(l.size ? *l.size : 0);
      s.stamp_port = static_cast<std::uint16_t>(l.stamp_port ? *l.stamp_port : 862);
      s.stamp_stateful = l.stamp_stateful ? *l.stamp_stateful : true;
      if (l.interface) s.interface = *l.interface;
      if (l.source) {
        if ((*l.source).family != t.address.family) {
          throw ConfigError(l.source.file, l.source.key, l.source.text,
                            "is not of the same IP family as target " + t.address.to_string() +
                                " (" + t.key + ")");
        }
        s.source = *l.source;
      }
      if (s.size != 0 && s.size < min_ip_payload(p)) {
        const auto& k = l.size;
        throw ConfigError(k.file, k.key, k.text,
                          std::string("is smaller than the smallest ") +
                              (p == Proto::Icmp ? "ICMP" : "STAMP") + " probe (" +
                              std::to_string(min_ip_payload(p)) + " bytes; 0 = smallest)");
      }
      const double per_timeout = s.rate_pps * static_cast<double>(s.timeout_ns) / 1e9;
      if (per_timeout > kMaxProbesPerTimeout) {
        const auto& k = l.rate ? static_cast<const Setting<double>&>(l.rate) : l.rate;
        throw ConfigError(k.file, k.key.empty() ? t.key + ".rate" : k.key, k.text,
                          "rate x timeout exceeds 1000000 probes in flight per session; lower "
                          "the rate or the timeout");
      }
      s.agent_id = cfg.agent_id;
      s.session_id = (static_cast<std::uint32_t>(run_nonce) << 16) |
                     static_cast<std::uint32_t>(cfg.sessions.size() + 1);
      if (cfg.sessions.size() + 1 > 0xFFFF) {
        throw ConfigError(t.file, t.key, t.address.to_string(), "too many sessions (max 65535)");
      }
      cfg.sessions.push_back(s);
      cfg.session_keys.push_back(t.key);
    }
  }
  apply_size_cycle(cfg, flag_size_cycle ? flag_size_cycle : fc.size_cycle,
                   flag_size_step ? flag_size_step : fc.size_step);
  return cfg;
}

}  // namespace pathsentry::probe
