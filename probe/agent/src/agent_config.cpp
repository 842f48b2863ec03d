#include "pathsentry/probe/agent/agent_config.h"

#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <random>

#include "config_values.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/common/options.h"
#include "pathsentry/common/toml_file.h"
#include "pathsentry/metrics/metrics.h"
#include "pathsentry/probe/ship/http_client.h"

namespace pathsentry::probe {
namespace {

using options::Arg;
using options::Value;

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

template <class T>
Setting<T> setting(const Value& v, T x) {
  return Setting<T>{std::move(x), v.file, v.where, v.text};
}

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
constexpr std::int64_t kMaxDurationS = 10LL * 365 * 86400;
constexpr std::int64_t kMaxDetectorCount = 1'000'000;

struct TargetSpec {
  IpAddress address;
  bool has_address = false;
  std::string key;  // "targets[0]" or "--target"
  std::string file;
  Layer layer;
  Layer icmp;
  Layer stamp;
};

// One [[tap]] table while its keys arrive; the checks across keys run once the file is read.
struct TapBuild {
  TapSpec spec;
  bool has_interface = false;
  bool has_path = false;
  bool has_local = false;
  bool has_remote = false;
  std::optional<Value> esp_only;  // the first key that only an ESP tap takes
};

// The configuration being built: the file's entries, then the flags in order, are applied to
// it through the option table; finish() layers the per-target settings into sessions.
struct Building {
  AgentConfig cfg;  // the settings that do not layer are written here directly
  Layer defaults;
  Layer flags;
  std::vector<TargetSpec> file_targets;
  std::vector<TargetSpec> flag_targets;  // --target: replaces the file's targets
  std::vector<TapBuild> file_taps;
  std::vector<TapSpec> flag_taps;  // --tap: replaces the file's [[tap]] tables
  Setting<std::int64_t> size_cycle;
  Setting<std::int64_t> size_step;
  // [collector]: the token's two sources are resolved in finish().
  Setting<std::string> url;            // collector.url / --collector-url
  Setting<std::string> token;          // collector.token
  Setting<std::string> token_file;     // collector.token_file / --collector-token-file
  Setting<std::string> ca_file;        // collector.ca_file / --collector-ca-file
  std::optional<Value> collector_key;  // the first [collector] key or flag given
  Setting<IpAddress> hc_gateway;       // healthcheck.gateway: checked against the prefix
};

// The index of an array-of-tables key path: `targets[3].rate` → 3.
std::size_t index_of(const Value& v) {
  const auto open = v.where.find('[');
  std::size_t i = 0;
  for (std::size_t p = open + 1; p < v.where.size() && v.where[p] != ']'; ++p) {
    i = i * 10 + static_cast<std::size_t>(v.where[p] - '0');
  }
  return i;
}

TargetSpec& target_of(Building& b, const Value& v) {
  const std::size_t i = index_of(v);
  if (b.file_targets.size() <= i) b.file_targets.resize(i + 1);
  TargetSpec& t = b.file_targets[i];
  t.key = "targets[" + std::to_string(i) + "]";
  t.file = v.file;
  return t;
}

// The layer a per-target setting belongs to, from where it was given.
Layer& layer_of(Building& b, const Value& v) {
  if (v.file.empty()) return b.flags;
  if (v.where.starts_with("defaults.")) return b.defaults;
  TargetSpec& t = target_of(b, v);
  const std::string_view rest = std::string_view(v.where).substr(v.where.find(']') + 1);
  if (rest.starts_with(".icmp.")) return t.icmp;
  if (rest.starts_with(".stamp.")) return t.stamp;
  return t.layer;
}

TapBuild& tap_of(Building& b, const Value& v) {
  const std::size_t i = index_of(v);
  if (b.file_taps.size() <= i) b.file_taps.resize(i + 1);
  return b.file_taps[i];
}

// A tap key only an ESP tap takes: remembered so a clear tap can refuse it.
TapBuild& esp_tap_of(Building& b, const Value& v) {
  TapBuild& t = tap_of(b, v);
  if (!t.esp_only) t.esp_only = v;
  return t;
}

TtlSettings& ttl_of(Building& b, const Value& v) {
  if (!v.file.empty()) b.cfg.tap.ttl.file = v.file;
  return b.cfg.tap.ttl;
}

double rate_of(const Value& v) {
  const double r =
      v.number(std::numeric_limits<double>::lowest(), std::numeric_limits<double>::max());
  if (!(r >= 1e-6) || r > kMaxRate)
    v.fail("must be a rate in probes per second, > 0 and <= 1000000");
  return r;
}

std::uint32_t count_of(const Value& v) {
  return static_cast<std::uint32_t>(v.integer(1, kMaxDetectorCount));
}

// --records and --summary-json: a path or "-"; in the file "" means none.
std::string output_of(const Value& v) {
  const std::string& s = v.string();
  if (s.empty() && v.file.empty()) v.fail("must be a file path or - for stdout");
  return s;
}

// --- shipping (docs/probe.md "Shipping") ---------------------------------------------------------

void collector_given(Building& b, const Value& v) {
  if (!b.collector_key) b.collector_key = v;
}

// The token's text as a header may carry it; the error names the setting.
std::string token_of(const Value& v, const std::string& token) {
  if (auto ok = check_token(token); !ok) v.fail("the token " + ok.error());
  return token;
}

// The first line of a token file, without its line end and surrounding blanks.
std::string read_token_file(const Value& v) {
  const std::string& path = v.string();
  if (path.empty()) v.fail("must name a file");
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) v.fail(std::string("cannot read: ") + std::strerror(errno));
  std::string text;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && text.size() < 65536) text.append(buf, n);
  std::fclose(f);
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) v.fail("the file holds no token");
  auto end = text.find_first_of("\r\n", first);
  if (end == std::string::npos) end = text.size();
  std::string token = text.substr(first, end - first);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.pop_back();
  if (text.find_first_not_of(" \t\r\n", end) != std::string::npos) {
    v.fail("the file must hold one token on one line");
  }
  return token_of(v, token);
}

std::string host_name() {
  char b[256] = {};
  if (::gethostname(b, sizeof b - 1) != 0 || b[0] == '\0') return "localhost";
  return b;
}

std::string agent_name_of(const Value& v) {
  const std::string& n = v.string();
  if (n.empty() || n.size() > 128) v.fail("must be 1 to 128 characters");
  for (char c : n) {
    if (c < ' ' || c == 0x7F || c == '"' || c == '\\') {
      v.fail("must not hold control characters, quotes or backslashes");
    }
  }
  return n;
}

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

// An ESP tap's default window (-200..+10000 us, reverse unset) is kept narrower than the
// spacing of equal-sized probes, N / rate, with the default cycle capped at 64 sizes: from
// ~6300 probes/s the default window would hold the next probe of the same size (every probe
// ambiguous: 0 % attributed at 10 000/s). hi = 0.9 x N / rate + lo, at least 1 ms; a window
// set to anything else is kept.
void fit_default_windows(AgentConfig& cfg) {
  double total_pps = 0;
  for (const SessionConfig& s : cfg.sessions) total_pps += s.rate_pps;
  if (cfg.size_cycle < 2 || total_pps <= 0) return;
  const TapSpec defaults{};
  for (TapSpec& t : cfg.tap.taps) {
    if (t.encap != Encap::Esp || t.window_lo_ns != defaults.window_lo_ns ||
        t.window_hi_ns != defaults.window_hi_ns || t.rev_window_lo_ns || t.rev_window_hi_ns) {
      continue;
    }
    const double spacing_ns = static_cast<double>(cfg.size_cycle) * 1e9 / total_pps;
    const auto fit = static_cast<std::int64_t>(0.9 * spacing_ns) + t.window_lo_ns;
    t.window_hi_ns = std::clamp<std::int64_t>(fit, 1'000'000, t.window_hi_ns);
  }
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

// Every setting of pathsentry-probe: its flag, its keys in the TOML file, its help, its setter.
// Per-target settings list their keys at each level they may appear at ([defaults], [[targets]],
// [targets.icmp], [targets.stamp]); layer_of() sorts a value into its layer.
const options::OptionTable<Building>& table() {
  static const options::OptionTable<Building> kTable({
      {"--config",
       {},
       "FILE",
       "TOML configuration (see deploy/config/probe.example.toml)",
       Arg::One,
       [](Building& b, const Value& v) {
         if (v.text.empty()) v.fail("must name a file");
         b.cfg.config_file = v.text;
       }},
      {"--check-config",
       {},
       "",
       "validate the configuration and exit",
       Arg::None,
       [](Building& b, const Value&) { b.cfg.check_only = true; }},
      {"--target",
       {"targets[].address"},
       "ADDR",
       "target address, IPv4 or IPv6 (repeatable; replaces the file's targets)",
       Arg::Repeated,
       [](Building& b, const Value& v) {
         if (v.file.empty()) {
           TargetSpec t;
           t.address = address_of(v);
           t.key = "--target";
           b.flag_targets.push_back(std::move(t));
           return;
         }
         TargetSpec& t = target_of(b, v);
         t.address = address_of(v);
         t.has_address = true;
       }},
      {"--proto",
       {"defaults.proto", "targets[].proto"},
       "icmp|stamp|both",
       "protocols per target (default both)",
       Arg::One,
       [](Building& b, const Value& v) {
         layer_of(b, v).proto = setting(v, v.one_of({"icmp", "stamp", "both"}));
       }},
      {"--rate",
       {"defaults.rate", "targets[].rate", "targets[].icmp.rate", "targets[].stamp.rate"},
       "PPS",
       "probes per second per session (default 1000)",
       Arg::One,
       [](Building& b, const Value& v) { layer_of(b, v).rate = setting(v, rate_of(v)); }},
      {"--duration",
       {"agent.duration_s"},
       "SECONDS",
       "stop after this long; 0 = until SIGINT/SIGTERM (default 0)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.cfg.duration_ns = v.integer(0, kMaxDurationS) * kNsPerSec;
       }},
      {"--source",
       {"defaults.source", "targets[].source"},
       "ADDR",
       "source address to send from (bind)",
       Arg::One,
       [](Building& b, const Value& v) {
         if (!v.file.empty() && v.string().empty()) return;  // source = "": routing decides
         layer_of(b, v).source = setting(v, address_of(v));
       }},
      {"--interface",
       {"defaults.interface", "targets[].interface"},
       "IF",
       "send through this interface (SO_BINDTODEVICE)",
       Arg::One,
       [](Building& b, const Value& v) {
         if (v.string().size() >= IFNAMSIZ) v.fail("is longer than an interface name can be");
         layer_of(b, v).interface = setting(v, v.string());
       }},
      {"--dscp",
       {"defaults.dscp", "targets[].dscp", "targets[].icmp.dscp", "targets[].stamp.dscp"},
       "N",
       "DSCP 0..63 (IP_TOS / IPV6_TCLASS)",
       Arg::One,
       [](Building& b, const Value& v) { layer_of(b, v).dscp = setting(v, v.integer(0, 63)); }},
      {"--size",
       {"defaults.size", "targets[].size", "targets[].icmp.size", "targets[].stamp.size"},
       "BYTES",
       "IP payload bytes per probe, padded (0 = smallest: 40 ICMP, 52 STAMP)",
       Arg::One,
       [](Building& b, const Value& v) { layer_of(b, v).size = setting(v, v.integer(0, 65'000)); }},
      {"--size-cycle",
       {"agent.size_cycle"},
       "N",
       "give consecutive probes (all sessions) N sizes, --size-step apart, for\n"
       "ESP attribution; 0/1 = fixed (default: with an ESP tap 16..64 from\n"
       "the rate and windows, else fixed)",
       Arg::One,
       [](Building& b, const Value& v) { b.size_cycle = setting(v, v.integer(0, kMaxSizeCycle)); }},
      {"--size-step",
       {"agent.size_step"},
       "BYTES",
       "bytes between cycled sizes (default 16, AES-CBC's block; GCM: 4)",
       Arg::One,
       [](Building& b, const Value& v) { b.size_step = setting(v, v.integer(1, kMaxSizeStep)); }},
      {"--timeout-ms",
       {"defaults.timeout_ms", "targets[].timeout_ms", "targets[].icmp.timeout_ms",
        "targets[].stamp.timeout_ms"},
       "N",
       "a probe unanswered this long is lost (default 1000)",
       Arg::One,
       [](Building& b, const Value& v) {
         layer_of(b, v).timeout_ms = setting(v, v.integer(1, 3'600'000));
       }},
      {"--stamp-port",
       {"defaults.stamp_port", "targets[].stamp.port"},
       "N",
       "reflector UDP port (default 862)",
       Arg::One,
       [](Building& b, const Value& v) {
         layer_of(b, v).stamp_port = setting(v, v.integer(1, 65535));
       }},
      {"",
       {"defaults.stamp_stateful", "targets[].stamp.stateful"},
       "",
       "the reflector is stateful: split loss by direction (default true)",
       Arg::One,
       [](Building& b, const Value& v) {
         layer_of(b, v).stamp_stateful = setting(v, v.boolean());
       }},
      {"--agent-id",
       {"agent.id"},
       "N",
       "agent id carried in every probe (default 1)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.cfg.agent_id =
             static_cast<std::uint32_t>(v.integer(0, std::numeric_limits<std::uint32_t>::max()));
       }},
      {"--icmp-socket",
       {"agent.icmp_socket"},
       "auto|raw|dgram",
       "ICMP socket kind (default auto: raw, else ping socket)",
       Arg::One,
       [](Building& b, const Value& v) {
         const std::string& m = v.one_of({"auto", "raw", "dgram"});
         b.cfg.icmp_socket = m == "raw"     ? io::IcmpSocketMode::Raw
                             : m == "dgram" ? io::IcmpSocketMode::Dgram
                                            : io::IcmpSocketMode::Auto;
       }},
      {"--max-lag-us",
       {"defaults.max_lag_us", "targets[].max_lag_us", "targets[].icmp.max_lag_us",
        "targets[].stamp.max_lag_us"},
       "N",
       "pacing: a slot still unsent this long after its deadline is missed (default 50000)",
       Arg::One,
       [](Building& b, const Value& v) {
         layer_of(b, v).max_lag_us = setting(v, v.integer(1, 1'000'000));
       }},
      {"--rt-priority",
       {"agent.rt_priority"},
       "N",
       "SCHED_FIFO priority of the sender/receiver (and tap capture/pipeline) threads, 0 = off "
       "(default 10)",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.rt_priority = static_cast<int>(v.integer(0, 99)); }},
      {"--send-coalesce-us",
       {"agent.send_coalesce_us"},
       "N",
       "send coalescing: the sender wakes at most once per 8 probes' time and per 200 us, at most "
       "N us apart, sending what fell due meanwhile together; 0 = a wake-up per slot (default "
       "1000: the time resolution)",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.send_coalesce_ns = v.integer(0, 100'000) * 1'000; }},
      {"--launch-ahead-us",
       {"agent.launch_ahead_us"},
       "N",
       "launch-time pacing: hand probes to the kernel up to N us before their slot with the slot "
       "as launch time (SO_TXTIME), honoured by the fq qdisc: fewer wake-ups, same spacing; "
       "off by itself where the qdisc ignores it; 0 = off (the default)",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.launch_ahead_ns = v.integer(0, 100'000) * 1'000; }},
      {"--drain-ms",
       {"agent.drain_ms"},
       "N",
       "on stop, the longest wait for outstanding replies, 0 = the timeout (default 5000)",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.drain_ns = v.integer(0, 3'600'000) * 1'000'000; }},
      {"--records",
       {"agent.records"},
       "FILE|-",
       "one JSON object per finished probe",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.records = output_of(v); }},
      {"--records-buffer-kb",
       {"agent.records_buffer_kb"},
       "N",
       "records held while the output's writes fail, beyond it lines are dropped (default 16384)",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.records_buffer_kb = v.integer(1, 1 << 20); }},
      {"--record-queue-mb",
       {"agent.record_queue_mb"},
       "N",
       "memory the records waiting for the writer thread may hold, beyond it they are dropped "
       "(default 16)",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.record_queue_mb = v.integer(1, 4096); }},
      {"--summary-json",
       {"agent.summary_json"},
       "FILE|-",
       "one JSON object with the run's totals, at exit",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.summary_json = output_of(v); }},
      {"--quiet",
       {"agent.quiet"},
       "",
       "no live summary on stdout",
       Arg::None,
       [](Building& b, const Value& v) { b.cfg.quiet = v.boolean(); }},
      {"--metrics-listen",
       {"metrics.listen"},
       "ADDR:PORT|off",
       "Prometheus /metrics endpoint (default 127.0.0.1:9781; a default port in\n"
       "use only warns, a configured one is an error); off = none",
       Arg::One,
       [](Building& b, const Value& v) {
         const std::string& text = v.string();
         if (auto ok = metrics::parse_listen(text); !ok) v.fail(ok.error());
         b.cfg.metrics_listen = text;
         b.cfg.metrics_listen_key = v.where;
         b.cfg.metrics_listen_file = v.file;
       }},
      {"--agent-name",
       {"agent.name"},
       "NAME",
       "the agent's name at the collector (default: the host name)",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.agent_name = agent_name_of(v); }},
      {"--collector-url",
       {"collector.url"},
       "URL",
       "ship records, per-second rollups and events to the collector at\n"
       "http://HOST:PORT[/PATH], https://HOST:PORT[/PATH] (TLS, certificate\n"
       "verified) or unix:/path/to.sock (default path\n"
       "/api/v1/ingest); without it nothing is shipped",
       Arg::One,
       [](Building& b, const Value& v) {
         collector_given(b, v);
         auto u = parse_collector_url(v.string());
         if (!u) v.fail(u.error());
         b.cfg.collector.url = v.string();
         b.cfg.collector.parsed = *u;
         b.url = setting(v, v.string());
       }},
      {"--collector-ca-file",
       {"collector.ca_file"},
       "FILE",
       "https:// collector: PEM CA certificate(s) its certificate must chain to\n"
       "(default: the system's CAs)",
       Arg::One,
       [](Building& b, const Value& v) {
         collector_given(b, v);
         std::string p = v.string();
         if (p.empty()) v.fail("must name a PEM file");
         if (!v.file.empty() && !p.starts_with('/')) {
           p = (std::filesystem::path(v.file).parent_path() / p).string();
         }
         if (!std::ifstream(p)) v.fail("cannot be read");
         b.ca_file = setting(v, p);
       }},
      {"",
       {"collector.token"},
       "",
       "the collector's bearer token (or token_file)",
       Arg::One,
       [](Building& b, const Value& v) {
         collector_given(b, v);
         b.token = setting(v, token_of(v, v.string()));
       }},
      {"--collector-token-file",
       {"collector.token_file"},
       "FILE",
       "a file holding the collector's bearer token on one line",
       Arg::One,
       [](Building& b, const Value& v) {
         collector_given(b, v);
         b.token_file = setting(v, read_token_file(v));
       }},
      {"--spool-dir",
       {"collector.spool_dir"},
       "DIR",
       "batches not yet acknowledged by the collector wait here, across restarts\n"
       "(default /var/lib/pathsentry/spool)",
       Arg::One,
       [](Building& b, const Value& v) {
         collector_given(b, v);
         if (v.string().empty()) v.fail("must name a directory");
         b.cfg.collector.spool_dir = v.string();
         b.cfg.collector.spool_dir_file = v.file;
         b.cfg.collector.spool_dir_key = v.where;
       }},
      {"",
       {"collector.spool_max_mb"},
       "",
       "the spool's bound in MiB: beyond it the oldest raw records go first,\n"
       "never rollups or events (default 256)",
       Arg::One,
       [](Building& b, const Value& v) {
         collector_given(b, v);
         b.cfg.collector.spool_max_mb = static_cast<std::uint64_t>(v.integer(1, 1'048'576));
       }},
      {"",
       {"collector.batch_ms"},
       "",
       "a batch leaves this often, events within 100 ms (default 1000)",
       Arg::One,
       [](Building& b, const Value& v) {
         collector_given(b, v);
         b.cfg.collector.batch_ms = v.integer(100, 60'000);
       }},
      {"--help",
       {},
       "",
       "this text (also -h)",
       Arg::None,
       [](Building& b, const Value&) { b.cfg.help = true; }},
      // Taps: the file's [[tap]] tables key by key, --tap in one compact value.
      {"--tap",
       {},
       "SPEC",
       "a tap (repeatable; replaces the file's [[tap]] tables). SPEC is\n"
       "IFACE:PATH:clear for a tap seeing PATH's probes in clear, e.g.\n"
       "  tap-ec:express-connect:clear, or\n"
       "IFACE:PATH:esp:LOCAL:REMOTE[:TRANSFORM[:LO_US:HI_US[:REV_LO_US:REV_HI_US]]]\n"
       "  for a tap seeing PATH as ESP (protocol 50 or UDP 4500) between the\n"
       "  tunnel endpoints LOCAL (DC side) and REMOTE ([v6] in brackets);\n"
       "  TRANSFORM one of aes-gcm-8|12|16, aes-cbc-sha1|256|384|512,\n"
       "  null-sha256 or learn (default); LO_US:HI_US the correlation window\n"
       "  (default -200:10000), REV_LO_US:REV_HI_US the reverse one (default:\n"
       "  the same)",
       Arg::Repeated,
       [](Building& b, const Value& v) { b.flag_taps.push_back(parse_tap_flag(v.where, v.text)); }},
      {"",
       {"tap[].interface"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) {
         TapBuild& t = tap_of(b, v);
         t.spec.interface = tap_interface_of(v);
         t.has_interface = true;
       }},
      {"",
       {"tap[].path"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) {
         TapBuild& t = tap_of(b, v);
         t.spec.path = path_label_of(v);
         t.has_path = true;
       }},
      {"",
       {"tap[].encap"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) { tap_of(b, v).spec.encap = encap_of(v); }},
      {"",
       {"tap[].local"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) {
         TapBuild& t = esp_tap_of(b, v);
         t.spec.local_endpoint = address_of(v);
         t.has_local = true;
       }},
      {"",
       {"tap[].remote"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) {
         TapBuild& t = esp_tap_of(b, v);
         t.spec.remote_endpoint = address_of(v);
         t.has_remote = true;
       }},
      {"",
       {"tap[].udp_port"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) {
         (void)esp_tap_of(b, v);
         if (v.integer(0, 65535) != 4500) {
           v.fail(
               "only 4500 (ESP-in-UDP, RFC 3948) is supported; raw ESP (protocol 50) is "
               "always captured");
         }
       }},
      {"",
       {"tap[].transform"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) { esp_tap_of(b, v).spec.transform = transform_of(v); }},
      {"",
       {"tap[].window_lo_us"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) { esp_tap_of(b, v).spec.window_lo_ns = window_ns_of(v); }},
      {"",
       {"tap[].window_hi_us"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) { esp_tap_of(b, v).spec.window_hi_ns = window_ns_of(v); }},
      {"",
       {"tap[].rev_window_lo_us"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) {
         esp_tap_of(b, v).spec.rev_window_lo_ns = window_ns_of(v);
       }},
      {"",
       {"tap[].rev_window_hi_us"},
       "",
       "",
       Arg::One,
       [](Building& b, const Value& v) {
         esp_tap_of(b, v).spec.rev_window_hi_ns = window_ns_of(v);
       }},
      {"--confirm-probes",
       {"detector.confirm_probes"},
       "N",
       "probes on a new path that confirm a switchover (default 3)",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.tap.detector.confirm_probes = count_of(v); }},
      {"--outage-losses",
       {"detector.outage_losses"},
       "K",
       "consecutive losses that make an outage (default 3)",
       Arg::One,
       [](Building& b, const Value& v) { b.cfg.tap.detector.outage_losses = count_of(v); }},
      {"--late-hold-ms",
       {"detector.late_hold_ms"},
       "N",
       "after a late answer, how long a lost probe waits for its own before the\n"
       "detector counts it (for 10 s; 0 = never wait; default 1000)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.cfg.tap.detector.late_hold_ns = v.integer(0, 60'000) * 1'000'000;
       }},
      // The cloud's health check of the line, watched on every clear tap (docs/healthcheck.md).
      {"--healthcheck",
       {"healthcheck.enabled"},
       "on|off",
       "watch the cloud's health check of the line on every clear tap (default\n"
       "on; docs/healthcheck.md)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.cfg.tap.healthcheck.enabled =
             v.file.empty() ? v.one_of({"on", "off"}) == "on" : v.boolean();
       }},
      {"--healthcheck-prefix",
       {"healthcheck.prefix"},
       "CIDR",
       "where the health check's probes come from (default 100.96.0.0/16,\n"
       "Alibaba CEN's)",
       Arg::One,
       [](Building& b, const Value& v) {
         const auto p = IpPrefix::parse(v.string());
         if (!p) v.fail("must be an IPv4 or IPv6 prefix such as 100.96.0.0/16");
         b.cfg.tap.healthcheck.prefix = *p;
       }},
      {"--healthcheck-gateway",
       {"healthcheck.gateway"},
       "ADDR",
       "the gateway's line address the health check probes (default: learned\n"
       "from the first probe seen)",
       Arg::One,
       [](Building& b, const Value& v) { b.hc_gateway = setting(v, address_of(v)); }},
      {"--healthcheck-fall",
       {"healthcheck.fall"},
       "N",
       "probes lost in a row after which the cloud moves the return path\n"
       "(default 8, CEN's; 1..100)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.cfg.tap.healthcheck.fall = static_cast<std::uint32_t>(v.integer(1, 100));
       }},
      {"--healthcheck-interval-ms",
       {"healthcheck.interval_ms"},
       "MS",
       "the health check's probe interval (default 0: learned from the probes)",
       Arg::One,
       [](Building& b, const Value& v) {
         b.cfg.tap.healthcheck.interval_ns = v.integer(0, 60'000) * 1'000'000;
       }},
      // The mirror-free TTL method (docs/ttl.md).
      {"--ttl-probe",
       {"ttl.ttl"},
       "TTL",
       "TTL-limited path probes (docs/ttl.md; no mirror port needed, forward\n"
       "direction only): also probe each target with UDP datagrams of this IP\n"
       "TTL (1..255), set so they expire at the first router past the DC gateway",
       Arg::One,
       [](Building& b, const Value& v) {
         TtlSettings& t = ttl_of(b, v);
         t.ttl = static_cast<std::uint8_t>(v.integer(1, 255));
         t.ttl_key = v.where;
       }},
      {"--ttl-hop",
       {"ttl.hops", "ttl.hops.*"},
       "ADDR=PATH",
       "a router whose time-exceeded source is ADDR lies on PATH (repeatable;\n"
       "replaces the file's ttl.hops)",
       Arg::Repeated,
       [](Building& b, const Value& v) {
         TtlSettings& t = ttl_of(b, v);
         if (v.file.empty()) {
           if (!t.hops_from_flags) t.hops.clear();
           t.hops_from_flags = true;
           t.hops.push_back(ttl_hop_of_flag(v));
         } else if (v.where == "ttl.hops") {
           v.fail(
               "must be a table of ADDRESS = PATH, e.g. hops = { \"10.1.0.1\" = "
               "\"express-connect\" }");
         } else {
           t.hops.push_back(ttl_hop_of_entry(v));
         }
       }},
      {"--ttl-rate",
       {"ttl.rate"},
       "PPS",
       "TTL probes per second per target (default 1: routers rate-limit\n"
       "time-exceeded messages, Linux to 1/s per destination)",
       Arg::One,
       [](Building& b, const Value& v) { ttl_of(b, v).rate_pps = v.number(0.001, 10'000); }},
      {"--ttl-port",
       {"ttl.port"},
       "N",
       "UDP destination port of the TTL probes (default 33434)",
       Arg::One,
       [](Building& b, const Value& v) {
         ttl_of(b, v).port = static_cast<std::uint16_t>(v.integer(1, 65535));
       }},
      {"--ttl-timeout-ms",
       {"ttl.timeout_ms"},
       "N",
       "a TTL probe unanswered this long counts as lost (default 1000)",
       Arg::One,
       [](Building& b, const Value& v) {
         ttl_of(b, v).timeout_ns = v.integer(1, 60'000) * 1'000'000;
       }},
  });
  return kTable;
}

// The checks across one file's keys: a target needs an address; a tap needs an interface and a
// path, an ESP tap both endpoints, a clear tap none of the ESP keys; tap interfaces are distinct.
void finish_file(Building& b, const std::string& file) {
  for (std::size_t i = 0; i < b.file_targets.size(); ++i) {
    if (!b.file_targets[i].has_address) {  // also an empty [[targets]] before a full one
      throw ConfigError(file, "targets[" + std::to_string(i) + "].address", "", "is required");
    }
  }
  for (std::size_t i = 0; i < b.file_taps.size(); ++i) {
    const TapBuild& t = b.file_taps[i];
    const std::string key = "tap[" + std::to_string(i) + "]";
    if (!t.has_interface) throw ConfigError(file, key + ".interface", "", "is required");
    if (!t.has_path) throw ConfigError(file, key + ".path", "", "is required");
    if (t.spec.encap == Encap::Esp) {
      if (!t.has_local) throw ConfigError(file, key + ".local", "", "is required");
      if (!t.has_remote) throw ConfigError(file, key + ".remote", "", "is required");
      check_esp(file, key + ".window_hi_us", t.spec);
    } else if (t.esp_only) {
      t.esp_only->fail("only applies to encap = \"esp\"");
    }
    b.cfg.tap.taps.push_back(t.spec);
    b.cfg.tap.tap_keys.push_back(key);
  }
  check_taps(file, b.cfg.tap);
}

void apply_file(Building& b, const std::string& path) {
  table().apply_file(b, options::read_toml_file(path));
  finish_file(b, path);
}

// [collector] as a whole: a URL turns shipping on and needs exactly one token source (a flag
// overrides the file's).
void finish_collector(Building& b) {
  AgentConfig& cfg = b.cfg;
  if (cfg.agent_name.empty()) cfg.agent_name = host_name();
  CollectorSettings& c = cfg.collector;
  if (!b.collector_key) return;
  if (c.url.empty()) {
    b.collector_key->fail("needs collector.url (or --collector-url): where to ship");
  }
  const bool token_flag = b.token && b.token.file.empty();
  const bool file_flag = b.token_file && b.token_file.file.empty();
  if (b.token && b.token_file && token_flag == file_flag) {
    throw ConfigError(b.token_file.file, b.token_file.key, b.token_file.text,
                      "give collector.token or collector.token_file, not both");
  }
  if (b.token_file && (file_flag || !b.token)) {
    c.token = *b.token_file;
  } else if (b.token) {
    c.token = *b.token;
  } else {
    throw ConfigError(b.url.file, b.url.key, b.url.text,
                      "needs collector.token or collector.token_file (or --collector-token-file): "
                      "the collector refuses batches without its bearer token");
  }
  if (b.ca_file) {
    if (!c.parsed.tls) {
      throw ConfigError(b.ca_file.file, b.ca_file.key, b.ca_file.text,
                        "is for an https:// collector.url (the URL is " + c.url + ")");
    }
    c.parsed.ca_file = *b.ca_file;
  }
  c.enabled = true;
}

// Random, distinct, non-zero STAMP SSIDs (issue 13): the session index would let an off-path
// sender who guesses the port forge replies with the right SSID.
void assign_stamp_ssids(AgentConfig& cfg) {
  std::random_device rd;
  std::mt19937 gen(rd());
  std::uniform_int_distribution<std::uint32_t> draw(1, 0xFFFF);
  std::vector<bool> taken(0x10000, false);
  for (SessionConfig& s : cfg.sessions) {
    if (s.proto != Proto::Stamp) continue;
    std::uint32_t v = 0;
    do {
      v = draw(gen);
    } while (taken[v]);  // at most 65535 sessions: always ends
    taken[v] = true;
    s.stamp_ssid = static_cast<std::uint16_t>(v);
  }
}

// Taps, the TTL method, sessions per target and size cycling, once file and flags are applied.
AgentConfig finish(Building& b, std::uint16_t run_nonce) {
  AgentConfig& cfg = b.cfg;
  if (!b.flag_taps.empty()) {
    cfg.tap.taps = std::move(b.flag_taps);
    cfg.tap.tap_keys.assign(cfg.tap.taps.size(), "--tap");
    check_taps("", cfg.tap);
  }
  {  // the TTL method's settings as a whole (hop paths must be tap paths when taps exist)
    std::vector<std::string> tap_paths;
    for (const TapSpec& t : cfg.tap.taps) tap_paths.push_back(t.path);
    check_ttl(cfg.tap.ttl, tap_paths);
  }
  if (b.hc_gateway) {  // the health check's probes go to the gateway from the prefix
    if ((*b.hc_gateway).family != cfg.tap.healthcheck.prefix.base.family) {
      throw ConfigError(b.hc_gateway.file, b.hc_gateway.key, b.hc_gateway.text,
                        "must be of the same IP family as healthcheck.prefix (" +
                            cfg.tap.healthcheck.prefix.to_string() + ")");
    }
    cfg.tap.healthcheck.gateway = *b.hc_gateway;
  }

  const std::vector<TargetSpec>& targets = b.flag_targets.empty() ? b.file_targets : b.flag_targets;
  if (targets.empty()) {
    throw ConfigError(cfg.config_file, "targets", "",
                      "no target configured: give --target ADDR or a [[targets]] table (there is "
                      "no built-in target)");
  }

  for (const TargetSpec& t : targets) {
    Layer base = b.defaults;
    over(base, t.layer);
    const std::string proto = base.proto ? *base.proto : "both";
    const std::string proto_final = b.flags.proto ? *b.flags.proto : proto;
    for (Proto p : {Proto::Icmp, Proto::Stamp}) {
      if (p == Proto::Icmp && proto_final == "stamp") continue;
      if (p == Proto::Stamp && proto_final == "icmp") continue;
      Layer l = base;
      over(l, p == Proto::Icmp ? t.icmp : t.stamp);
      over(l, b.flags);
      SessionConfig s;
      s.target = t.address;
      s.proto = p;
      s.rate_pps = l.rate ? *l.rate : 1000.0;
      s.timeout_ns = (l.timeout_ms ? *l.timeout_ms : 1000) * 1'000'000;
      s.max_lag_ns = (l.max_lag_us ? *l.max_lag_us : 50000) * 1000;
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
  assign_stamp_ssids(cfg);
  apply_size_cycle(cfg, b.size_cycle, b.size_step);
  fit_default_windows(cfg);
  finish_collector(b);
  return std::move(cfg);
}

}  // namespace

std::string agent_usage() {
  return table().usage(
             "usage: pathsentry-probe [--config FILE] [options]\n"
             "Probes each target with ICMP echo and/or STAMP (RFC 8762) and prints a live "
             "per-second summary.\n"
             "There is no built-in target: name one with --target or in the config file.") +
         "\nEvery option but --config, --check-config and --help has a key in the config file\n"
         "(--tap: the [[tap]] tables); docs/probe.md has the table.\n";
}

AgentConfig parse_agent_config(std::span<const std::string_view> args, std::uint16_t run_nonce) {
  std::vector<std::string_view> argv(args.begin(), args.end());
  for (auto& a : argv) {
    if (a == "-h") a = "--help";
  }
  const auto given = table().parse_args(argv);
  // The flags alone first: every flag's value is checked before the file is read, so a bad flag
  // is reported as such (even beside --help), and --config names the file.
  Building flags_only;
  for (const auto& g : given) g.option->apply(flags_only, g.value);
  if (flags_only.cfg.help) return flags_only.cfg;

  // Then in precedence order: the file, then the flags in the order given.
  Building b;
  if (!flags_only.cfg.config_file.empty()) apply_file(b, flags_only.cfg.config_file);
  for (const auto& g : given) g.option->apply(b, g.value);
  return finish(b, run_nonce);
}

}  // namespace pathsentry::probe
