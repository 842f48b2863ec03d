#include "pathsentry/common/record_json.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

#include "pathsentry/common/config_error.h"

namespace pathsentry::probe {
namespace {

constexpr std::size_t kFlushAt = 64 * 1024;

void put_raw(std::string& out, std::string_view s) {
  out.append(s.data(), s.size());
}

void put_int(std::string& out, std::int64_t v) {
  char b[24];
  const auto r = std::to_chars(b, b + sizeof b, v);
  out.append(b, static_cast<std::size_t>(r.ptr - b));
}
void put_uint(std::string& out, std::uint64_t v) {
  char b[24];
  const auto r = std::to_chars(b, b + sizeof b, v);
  out.append(b, static_cast<std::size_t>(r.ptr - b));
}

void put_str(std::string& out, std::string_view s) {
  append_json_string(out, s);
}

/// Writes `,"key":` (or `{"key":` for the first key).
void key(std::string& out, std::string_view k) {
  if (out.back() != '{') out.push_back(',');
  out.push_back('"');
  put_raw(out, k);
  out.append("\":");
}

void kv(std::string& out, std::string_view k, std::string_view v) {
  key(out, k);
  put_str(out, v);
}
void kv_int(std::string& out, std::string_view k, std::int64_t v) {
  key(out, k);
  put_int(out, v);
}
void kv_uint(std::string& out, std::string_view k, std::uint64_t v) {
  key(out, k);
  put_uint(out, v);
}
void kv_bool(std::string& out, std::string_view k, bool v) {
  key(out, k);
  put_raw(out, v ? "true" : "false");
}

void head(std::string& out, std::string_view type, std::string_view agent) {
  out.push_back('{');
  kv(out, "type", type);
  if (!agent.empty()) kv(out, "agent", agent);
}

std::string iso_time(std::int64_t ns) {
  const std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  const long frac = static_cast<long>(ns % 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char b[64];
  const std::size_t n = std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  char f[16];
  std::snprintf(f, sizeof f, ".%09ldZ", frac);
  return std::string(b, n) + f;
}

std::string ms(std::int64_t ns) {
  char b[48];
  std::snprintf(b, sizeof b, "%.3f ms", static_cast<double>(ns) / 1e6);
  return b;
}

template <class E>
std::optional<E> parse_enum(std::string_view s, std::initializer_list<E> all) {
  for (E e : all) {
    if (s == to_string(e)) return e;
  }
  return std::nullopt;
}

using nlohmann::json;

/// Field readers that report the key in their error.
struct Reader {
  const json& j;
  std::string error;

  const json* field(const char* k) {
    const auto it = j.find(k);
    if (it == j.end()) {
      if (error.empty()) error = std::string("missing field '") + k + "'";
      return nullptr;
    }
    return &*it;
  }
  void bad(const char* k, const char* want) {
    if (error.empty()) error = std::string("field '") + k + "' is not " + want;
  }
  std::string str(const char* k) {
    const json* f = field(k);
    if (f == nullptr) return {};
    if (!f->is_string()) {
      bad(k, "a string");
      return {};
    }
    return f->get<std::string>();
  }
  std::int64_t i64(const char* k) {
    const json* f = field(k);
    if (f == nullptr) return 0;
    if (!f->is_number_integer()) {
      bad(k, "an integer");
      return 0;
    }
    return f->get<std::int64_t>();
  }
  std::uint64_t u64(const char* k) {
    const json* f = field(k);
    if (f == nullptr) return 0;
    if (!f->is_number_unsigned() && !(f->is_number_integer() && f->get<std::int64_t>() >= 0)) {
      bad(k, "an unsigned integer");
      return 0;
    }
    return f->get<std::uint64_t>();
  }
  std::optional<std::int64_t> opt_i64(const char* k) {
    const json* f = field(k);
    if (f == nullptr || f->is_null()) return std::nullopt;
    if (!f->is_number_integer()) {
      bad(k, "an integer or null");
      return std::nullopt;
    }
    return f->get<std::int64_t>();
  }
  bool boolean(const char* k) {
    const json* f = field(k);
    if (f == nullptr) return false;
    if (!f->is_boolean()) {
      bad(k, "a boolean");
      return false;
    }
    return f->get<bool>();
  }
};

tl::expected<JsonLine, std::string> parse_probe(const json& j) {
  Reader rd{j, {}};
  ProbeRecord r;
  r.target = rd.str("target");
  const auto proto = parse_enum(rd.str("proto"), {Proto::Icmp, Proto::Stamp, Proto::Ttl});
  const auto sid = rd.u64("session_id");
  r.seq = rd.u64("seq");
  r.tx_ns = rd.i64("tx_ns");
  r.rx_ns = rd.opt_i64("rx_ns");
  r.rtt_ns = rd.opt_i64("rtt_ns").value_or(0);
  r.tx_kernel_ts = rd.boolean("tx_kernel_ts");
  r.fwd_path = rd.str("fwd_path");
  r.rev_path = rd.str("rev_path");
  r.late = rd.boolean("late");
  // "loss" is absent from lines written before it existed: a lost probe then says nothing
  // about its direction.
  if (const auto it = j.find("loss"); it != j.end() && !it->is_null()) {
    const auto loss = it->is_string() ? parse_enum(it->get_ref<const std::string&>(),
                                                   {LossDirection::Forward, LossDirection::Reverse,
                                                    LossDirection::Undetermined})
                                      : std::nullopt;
    if (!loss) return tl::unexpected(std::string("field 'loss' is not null or a loss direction"));
    r.loss = *loss;
  } else if (it == j.end() && !r.rx_ns) {
    r.loss = LossDirection::Undetermined;
  }
  if (const auto it = j.find("taps_down"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return tl::unexpected(std::string("field 'taps_down' is not an array"));
    for (const json& t : *it) {
      if (!t.is_string()) {
        return tl::unexpected(std::string("field 'taps_down' holds a non-string"));
      }
      r.taps_down.push_back(t.get<std::string>());
    }
  }
  if (const json* refl = rd.field("reflector"); refl != nullptr && !refl->is_null()) {
    if (!refl->is_object())
      return tl::unexpected(std::string("field 'reflector' is not an object"));
    Reader rr{*refl, {}};
    const auto seq = rr.u64("seq");
    r.reflector_rx_ns = rr.i64("rx_ns");
    r.reflector_tx_ns = rr.i64("tx_ns");
    r.reflector_clock_synced = rr.boolean("clock_synced");
    if (!rr.error.empty()) return tl::unexpected("reflector: " + rr.error);
    if (seq > 0xFFFFFFFFu) return tl::unexpected(std::string("reflector seq out of range"));
    r.reflector_seq = static_cast<std::uint32_t>(seq);
  }
  if (!rd.error.empty()) return tl::unexpected(rd.error);
  if (!proto) return tl::unexpected(std::string("unknown proto"));
  if (sid > 0xFFFFFFFFu) return tl::unexpected(std::string("session_id out of range"));
  r.proto = *proto;
  r.session_id = static_cast<std::uint32_t>(sid);
  return r;
}

// "event_id" is optional (0 = not numbered): lines of the agent's own output carry none.
std::optional<std::string> parse_event_id(const json& j, PathEvent& e) {
  const auto it = j.find("event_id");
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<std::int64_t>() >= 0))
    return std::string("field 'event_id' is not an unsigned integer");
  e.event_id = it->get<std::uint64_t>();
  return std::nullopt;
}

tl::expected<JsonLine, std::string> parse_event(const json& j) {
  Reader rd{j, {}};
  PathEvent e;
  if (auto bad = parse_event_id(j, e)) return tl::unexpected(*bad);
  const auto type = parse_enum(
      rd.str("event"), {EventType::Switchover, EventType::OutageBegin, EventType::OutageEnd,
                        EventType::AsymmetricBegin, EventType::AsymmetricEnd, EventType::TapDown,
                        EventType::TapUp, EventType::HealthcheckDegraded,
                        EventType::HealthcheckFailed, EventType::HealthcheckRecovered,
                        EventType::HealthcheckAbsent, EventType::HealthcheckBlocked});
  if (!rd.error.empty()) return tl::unexpected(rd.error);
  if (!type) return tl::unexpected(std::string("unknown event"));
  e.type = *type;
  if (is_tap_event(e.type)) {
    e.tap = rd.str("tap");
    e.path = rd.str("path");
    e.reason = rd.str("reason");
    e.ts_ns = rd.i64("ts_ns");
    e.detected_ns = rd.i64("detected_ns");
    if (e.type == EventType::TapUp) e.duration_ns = rd.i64("duration_ns");
    if (!rd.error.empty()) return tl::unexpected(rd.error);
    return e;
  }
  if (is_healthcheck_event(e.type)) {
    e.tap = rd.str("tap");
    e.path = rd.str("path");
    e.target = rd.str("target");
    e.prober = rd.str("prober");
    e.ts_ns = rd.i64("ts_ns");
    e.detected_ns = rd.i64("detected_ns");
    const auto k = rd.u64("unanswered");
    const auto n = rd.u64("fall");
    e.interval_ns = rd.i64("interval_ns");
    e.duration_ns = rd.i64("duration_ns");
    if (e.type == EventType::HealthcheckDegraded || e.type == EventType::HealthcheckBlocked) {
      e.eta_ns = rd.i64("eta_ns");
    }
    if (e.type == EventType::HealthcheckRecovered || e.type == EventType::HealthcheckBlocked) {
      e.reason = rd.str("reason");
    }
    if (!rd.error.empty()) return tl::unexpected(rd.error);
    if (k > 0xFFFFFFFFu || n > 0xFFFFFFFFu) {
      return tl::unexpected(std::string("unanswered/fall out of range"));
    }
    e.unanswered = static_cast<std::uint32_t>(k);
    e.fall = static_cast<std::uint32_t>(n);
    return e;
  }
  e.target = rd.str("target");
  const auto proto = parse_enum(rd.str("proto"), {Proto::Icmp, Proto::Stamp, Proto::Ttl});
  const auto sid = rd.u64("session_id");
  e.ts_ns = rd.i64("ts_ns");
  e.seq = rd.u64("seq");
  e.detected_ns = rd.i64("detected_ns");
  const bool asym = e.type == EventType::AsymmetricBegin || e.type == EventType::AsymmetricEnd;
  if (asym) {
    e.fwd_path = rd.str("fwd_path");
    e.rev_path = rd.str("rev_path");
    if (e.type == EventType::AsymmetricEnd) e.duration_ns = rd.i64("duration_ns");
  } else {
    const auto dir = parse_enum(rd.str("direction"), {Direction::Forward, Direction::Reverse});
    if (rd.error.empty() && !dir) return tl::unexpected(std::string("unknown direction"));
    e.direction = dir.value_or(Direction::Forward);
    e.from = rd.str("from");
    e.to = rd.str("to");
    e.last_ok_on_old_ns = rd.i64("last_ok_on_old_ns");
    e.probes_lost = rd.u64("probes_lost");
    e.probes_lost_undetermined = rd.u64("probes_lost_undetermined");
    const auto kind = parse_enum(
        rd.str("outage_kind"), {OutageKind::Bound, OutageKind::Measured, OutageKind::Undetermined});
    if (rd.error.empty() && !kind) return tl::unexpected(std::string("unknown outage_kind"));
    e.outage_kind = kind.value_or(OutageKind::Bound);
    e.resolution_ns = rd.i64("resolution_ns");
    if (e.type != EventType::OutageBegin) {
      e.first_ok_on_new_ns = rd.i64("first_ok_on_new_ns");
      e.outage_ns = rd.i64("outage_ns");
    }
    if (e.type == EventType::Switchover) e.failback = rd.boolean("failback");
  }
  if (!rd.error.empty()) return tl::unexpected(rd.error);
  if (!proto) return tl::unexpected(std::string("unknown proto"));
  if (sid > 0xFFFFFFFFu) return tl::unexpected(std::string("session_id out of range"));
  e.proto = *proto;
  e.session_id = static_cast<std::uint32_t>(sid);
  return e;
}

tl::expected<JsonLine, std::string> parse_rollup(const json& j) {
  Reader rd{j, {}};
  Rollup r;
  r.target = rd.str("target");
  const auto proto = parse_enum(rd.str("proto"), {Proto::Icmp, Proto::Stamp, Proto::Ttl});
  const auto sid = rd.u64("session_id");
  r.second_ns = rd.i64("second_ns");
  const auto dir = parse_enum(rd.str("direction"), {Direction::Forward, Direction::Reverse});
  r.path = rd.str("path");
  r.sent = rd.u64("sent");
  r.received = rd.u64("received");
  r.lost_forward = rd.u64("lost_forward");
  r.lost_reverse = rd.u64("lost_reverse");
  r.lost_undetermined = rd.u64("lost_undetermined");
  r.rtt_min_ns = rd.i64("rtt_min_ns");
  r.rtt_mean_ns = rd.i64("rtt_mean_ns");
  r.rtt_p50_ns = rd.i64("rtt_p50_ns");
  r.rtt_p99_ns = rd.i64("rtt_p99_ns");
  r.rtt_max_ns = rd.i64("rtt_max_ns");
  r.jitter_ns = rd.i64("jitter_ns");
  if (!rd.error.empty()) return tl::unexpected(rd.error);
  if (!proto) return tl::unexpected(std::string("unknown proto"));
  if (!dir) return tl::unexpected(std::string("unknown direction"));
  if (sid > 0xFFFFFFFFu) return tl::unexpected(std::string("session_id out of range"));
  if (r.second_ns % 1'000'000'000 != 0)
    return tl::unexpected(std::string("field 'second_ns' is not a whole second"));
  if (r.received + r.lost_forward + r.lost_reverse + r.lost_undetermined > r.sent)
    return tl::unexpected(std::string("received and lost add up to more than sent"));
  r.proto = *proto;
  r.direction = *dir;
  r.session_id = static_cast<std::uint32_t>(sid);
  return r;
}

tl::expected<JsonLine, std::string> parse_batch(const json& j) {
  Reader rd{j, {}};
  BatchHeader h;
  h.agent = rd.str("agent");
  h.run = rd.str("run");
  h.batch = rd.u64("batch");
  h.created_ns = rd.i64("created_ns");
  h.version = rd.str("version");
  if (!rd.error.empty()) return tl::unexpected(rd.error);
  if (h.agent.empty()) return tl::unexpected(std::string("field 'agent' is empty"));
  if (h.run.empty()) return tl::unexpected(std::string("field 'run' is empty"));
  return h;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20) {
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}

const char* to_string(Proto p) {
  switch (p) {
    case Proto::Icmp:
      return "icmp";
    case Proto::Stamp:
      return "stamp";
    case Proto::Ttl:
      return "ttl";
  }
  return "?";
}

const char* to_string(Direction d) {
  return d == Direction::Forward ? "forward" : "reverse";
}

const char* to_string(LossDirection l) {
  switch (l) {
    case LossDirection::None:
      return "none";
    case LossDirection::Forward:
      return "forward";
    case LossDirection::Reverse:
      return "reverse";
    case LossDirection::Undetermined:
      return "undetermined";
  }
  return "?";
}

const char* to_string(OutageKind k) {
  switch (k) {
    case OutageKind::Bound:
      return "bound";
    case OutageKind::Measured:
      return "measured";
    case OutageKind::Undetermined:
      return "undetermined";
  }
  return "?";
}

const char* to_string(EventType t) {
  switch (t) {
    case EventType::Switchover:
      return "switchover";
    case EventType::OutageBegin:
      return "outage_begin";
    case EventType::OutageEnd:
      return "outage_end";
    case EventType::AsymmetricBegin:
      return "asymmetric_begin";
    case EventType::AsymmetricEnd:
      return "asymmetric_end";
    case EventType::TapDown:
      return "tap_down";
    case EventType::TapUp:
      return "tap_up";
    case EventType::HealthcheckDegraded:
      return "healthcheck_degraded";
    case EventType::HealthcheckFailed:
      return "healthcheck_failed";
    case EventType::HealthcheckRecovered:
      return "healthcheck_recovered";
    case EventType::HealthcheckAbsent:
      return "healthcheck_absent";
    case EventType::HealthcheckBlocked:
      return "healthcheck_blocked";
  }
  return "unknown";
}

namespace {

/// A writer into a buffer sized beforehand: no capacity check per byte.
struct FastWriter {
  char* p;
  template <std::size_t N>
  void lit(const char (&s)[N]) {
    std::memcpy(p, s, N - 1);
    p += N - 1;
  }
  void i64(std::int64_t v) {
    if (v < 0) {
      *p++ = '-';
      u64(std::uint64_t{0} - static_cast<std::uint64_t>(v));  // INT64_MIN included
    } else {
      u64(static_cast<std::uint64_t>(v));
    }
  }
  /// std::to_chars's digits, 8 at a time with 32-bit arithmetic: a record's nanosecond
  /// timestamps have 19 digits, and to_chars takes them two at a time in 64 bits.
  void u64(std::uint64_t v) {
    if (v < 100'000'000) {
      p = std::to_chars(p, p + 8, static_cast<std::uint32_t>(v)).ptr;
      return;
    }
    const std::uint64_t hi = v / 100'000'000;
    u64(hi);  // at most 12 digits: recurses once more at most
    eight(static_cast<std::uint32_t>(v - hi * 100'000'000));
  }
  /// Exactly 8 digits of `v` (< 10^8), zero-padded.
  void eight(std::uint32_t v) {
    static constexpr char kPairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    const std::uint32_t a = v / 10'000;
    const std::uint32_t b = v - a * 10'000;
    std::memcpy(p, kPairs + 2 * (a / 100), 2);
    std::memcpy(p + 2, kPairs + 2 * (a % 100), 2);
    std::memcpy(p + 4, kPairs + 2 * (b / 100), 2);
    std::memcpy(p + 6, kPairs + 2 * (b % 100), 2);
    p += 8;
  }
  void boolean(bool v) {
    if (v) {
      lit("true");
    } else {
      lit("false");
    }
  }
  /// append_json_string's output: quoted, `"` and `\\` escaped, control characters as \u00XX.
  void str(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    *p++ = '"';
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        *p++ = '\\';
        *p++ = ch;
      } else if (c < 0x20) {
        std::memcpy(p, "\\u00", 4);
        p[4] = kHex[c >> 4];
        p[5] = kHex[c & 0xF];
        p += 6;
      } else {
        *p++ = ch;
      }
    }
    *p++ = '"';
  }
};

/// The most bytes str() writes for `s` (every byte escaped as \u00XX, the quotes).
std::size_t str_bound(std::string_view s) {
  return 6 * s.size() + 2;
}

}  // namespace

void append_json(const ProbeRecord& r, std::string& out, std::string_view agent) {
  // Fixed keys and punctuation (416 bytes at most with 20-character numbers), the strings
  // escaped. One resize: no capacity check per byte (this runs for every probe).
  std::size_t bound =
      512 + str_bound(agent) + str_bound(r.target) + str_bound(r.fwd_path) + str_bound(r.rev_path);
  for (const auto& t : r.taps_down) bound += str_bound(t) + 1;
  const std::size_t at = out.size();
  out.resize(at + bound);
  FastWriter w{out.data() + at};
  w.lit(R"({"type":"probe")");
  if (!agent.empty()) {
    w.lit(R"(,"agent":)");
    w.str(agent);
  }
  w.lit(R"(,"target":)");
  w.str(r.target);
  w.lit(R"(,"proto":)");
  w.str(to_string(r.proto));
  w.lit(R"(,"session_id":)");
  w.u64(r.session_id);
  w.lit(R"(,"seq":)");
  w.u64(r.seq);
  w.lit(R"(,"tx_ns":)");
  w.i64(r.tx_ns);
  if (r.rx_ns) {
    w.lit(R"(,"rx_ns":)");
    w.i64(*r.rx_ns);
    w.lit(R"(,"rtt_ns":)");
    w.i64(r.rtt_ns);
  } else {
    w.lit(R"(,"rx_ns":null,"rtt_ns":null)");
  }
  w.lit(R"(,"tx_kernel_ts":)");
  w.boolean(r.tx_kernel_ts);
  w.lit(R"(,"fwd_path":)");
  w.str(r.fwd_path);
  w.lit(R"(,"rev_path":)");
  w.str(r.rev_path);
  if (r.loss == LossDirection::None) {
    w.lit(R"(,"loss":null)");
  } else {
    w.lit(R"(,"loss":)");
    w.str(to_string(r.loss));
  }
  w.lit(R"(,"late":)");
  w.boolean(r.late);
  if (!r.taps_down.empty()) {
    w.lit(R"(,"taps_down":[)");
    for (std::size_t i = 0; i < r.taps_down.size(); ++i) {
      if (i != 0) *w.p++ = ',';
      w.str(r.taps_down[i]);
    }
    *w.p++ = ']';
  }
  if (r.reflector_seq) {
    w.lit(R"(,"reflector":{"seq":)");
    w.u64(*r.reflector_seq);
    w.lit(R"(,"rx_ns":)");
    w.i64(r.reflector_rx_ns.value_or(0));
    w.lit(R"(,"tx_ns":)");
    w.i64(r.reflector_tx_ns.value_or(0));
    w.lit(R"(,"clock_synced":)");
    w.boolean(r.reflector_clock_synced);
    w.lit("}}\n");
  } else {
    w.lit(",\"reflector\":null}\n");
  }
  out.resize(static_cast<std::size_t>(w.p - out.data()));
}

void append_json(const PathEvent& e, std::string& out, std::string_view agent) {
  head(out, "event", agent);
  kv(out, "event", to_string(e.type));
  if (e.event_id != 0) kv_uint(out, "event_id", e.event_id);
  if (is_tap_event(e.type)) {
    kv(out, "tap", e.tap);
    kv(out, "path", e.path);
    kv(out, "reason", e.reason);
    kv_int(out, "ts_ns", e.ts_ns);
    kv_int(out, "detected_ns", e.detected_ns);
    if (e.type == EventType::TapUp) kv_int(out, "duration_ns", e.duration_ns);
    out.append("}\n");
    return;
  }
  if (is_healthcheck_event(e.type)) {
    kv(out, "tap", e.tap);
    kv(out, "path", e.path);
    kv(out, "target", e.target);
    kv(out, "prober", e.prober);
    kv_int(out, "ts_ns", e.ts_ns);
    kv_int(out, "detected_ns", e.detected_ns);
    kv_uint(out, "unanswered", e.unanswered);
    kv_uint(out, "fall", e.fall);
    kv_int(out, "interval_ns", e.interval_ns);
    kv_int(out, "duration_ns", e.duration_ns);
    if (e.type == EventType::HealthcheckDegraded || e.type == EventType::HealthcheckBlocked) {
      kv_int(out, "eta_ns", e.eta_ns);
    }
    if (e.type == EventType::HealthcheckRecovered || e.type == EventType::HealthcheckBlocked) {
      kv(out, "reason", e.reason);
    }
    out.append("}\n");
    return;
  }
  kv(out, "target", e.target);
  kv(out, "proto", to_string(e.proto));
  kv_uint(out, "session_id", e.session_id);
  const bool asym = e.type == EventType::AsymmetricBegin || e.type == EventType::AsymmetricEnd;
  if (!asym) kv(out, "direction", to_string(e.direction));
  kv_int(out, "ts_ns", e.ts_ns);
  kv_uint(out, "seq", e.seq);
  kv_int(out, "detected_ns", e.detected_ns);
  if (asym) {
    kv(out, "fwd_path", e.fwd_path);
    kv(out, "rev_path", e.rev_path);
    if (e.type == EventType::AsymmetricEnd) kv_int(out, "duration_ns", e.duration_ns);
  } else {
    kv(out, "from", e.from);
    kv(out, "to", e.to);
    kv_int(out, "last_ok_on_old_ns", e.last_ok_on_old_ns);
    if (e.type != EventType::OutageBegin) {
      kv_int(out, "first_ok_on_new_ns", e.first_ok_on_new_ns);
      kv_int(out, "outage_ns", e.outage_ns);
    }
    kv_uint(out, "probes_lost", e.probes_lost);
    kv_uint(out, "probes_lost_undetermined", e.probes_lost_undetermined);
    kv(out, "outage_kind", to_string(e.outage_kind));
    kv_int(out, "resolution_ns", e.resolution_ns);
    if (e.type == EventType::Switchover) kv_bool(out, "failback", e.failback);
  }
  out.append("}\n");
}

void append_json(const Rollup& r, std::string& out) {
  head(out, "rollup", {});
  kv(out, "target", r.target);
  kv(out, "proto", to_string(r.proto));
  kv_uint(out, "session_id", r.session_id);
  kv_int(out, "second_ns", r.second_ns);
  kv(out, "direction", to_string(r.direction));
  kv(out, "path", r.path);
  kv_uint(out, "sent", r.sent);
  kv_uint(out, "received", r.received);
  kv_uint(out, "lost_forward", r.lost_forward);
  kv_uint(out, "lost_reverse", r.lost_reverse);
  kv_uint(out, "lost_undetermined", r.lost_undetermined);
  kv_int(out, "rtt_min_ns", r.rtt_min_ns);
  kv_int(out, "rtt_mean_ns", r.rtt_mean_ns);
  kv_int(out, "rtt_p50_ns", r.rtt_p50_ns);
  kv_int(out, "rtt_p99_ns", r.rtt_p99_ns);
  kv_int(out, "rtt_max_ns", r.rtt_max_ns);
  kv_int(out, "jitter_ns", r.jitter_ns);
  out.append("}\n");
}

void append_json(const BatchHeader& h, std::string& out) {
  head(out, "batch", h.agent);
  kv(out, "run", h.run);
  kv_uint(out, "batch", h.batch);
  kv_int(out, "created_ns", h.created_ns);
  kv(out, "version", h.version);
  out.append("}\n");
}

tl::expected<JsonLine, std::string> parse_json_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return tl::unexpected(std::string("not valid JSON"));
  if (!j.is_object()) return tl::unexpected(std::string("not a JSON object"));
  const auto it = j.find("type");
  if (it == j.end() || !it->is_string()) return tl::unexpected(std::string("missing field 'type'"));
  const auto& type = it->get_ref<const std::string&>();
  if (type == "probe") return parse_probe(j);
  if (type == "event") return parse_event(j);
  if (type == "rollup") return parse_rollup(j);
  if (type == "batch") return parse_batch(j);
  return tl::unexpected("unknown type '" + type + "'");
}

namespace {

/// "N probes lost" in words that say what is known of their direction.
std::string losses_text(const PathEvent& e) {
  const std::string und = std::to_string(e.probes_lost_undetermined) +
                          " probes lost beyond the tap, direction undetermined";
  if (e.probes_lost == 0) return e.probes_lost_undetermined > 0 ? und : "no loss seen";
  std::string s = std::to_string(e.probes_lost) + " probes lost";
  if (e.probes_lost_undetermined > 0) {
    s += " (and " + std::to_string(e.probes_lost_undetermined) +
         " more beyond the tap, direction undetermined)";
  }
  return s;
}

/// The outage figure with what it is: measured (with its resolution) or an upper bound.
std::string outage_text(const PathEvent& e) {
  if (e.outage_kind == OutageKind::Measured) {
    return "outage " + ms(e.outage_ns) + " (resolution " + ms(e.resolution_ns) + "), " +
           losses_text(e);
  }
  return losses_text(e) + ", outage at most " + ms(e.outage_ns);
}

/// Seconds with one decimal ("14.0 s").
std::string secs(std::int64_t ns) {
  const std::int64_t tenths = (ns + 50'000'000) / 100'000'000;
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " s";
}

std::string describe_healthcheck(const PathEvent& e) {
  std::string s = std::string(to_string(e.type)) + " " + e.tap + " (" + e.path + "): ";
  const std::string check = "health check " + (e.prober.empty() ? "" : e.prober + " ") + "-> " +
                            (e.target.empty() ? "?" : e.target);
  const std::string kn = std::to_string(e.unanswered) + " of " + std::to_string(e.fall);
  switch (e.type) {
    case EventType::HealthcheckDegraded:
      s += check + ": " + kn +
           " probes unanswered in a row; the cloud moves the return path to IPsec in ≈ " +
           secs(e.eta_ns) + " unless answers resume (interval " + ms(e.interval_ns) + ")";
      break;
    case EventType::HealthcheckFailed:
      s += check + ": " + kn +
           " probes unanswered in a row; the cloud now moves the return path to IPsec (interval " +
           ms(e.interval_ns) + ")";
      break;
    case EventType::HealthcheckRecovered:
      s += check + (e.reason == "probes_resumed"
                        ? ": probes seen again"
                        : ": answered again after " + std::to_string(e.unanswered) +
                              " unanswered (" + ms(e.duration_ns) + ")");
      break;
    case EventType::HealthcheckAbsent:
      s += check + ": no probe for " + ms(e.duration_ns) + " (> 3 x " + ms(e.interval_ns) +
           "); the return path will not fail over by itself if the line fails silently";
      break;
    case EventType::HealthcheckBlocked:
      s += check + ": " + kn +
           " probes unanswered in a row while the line carries the agent's probes (" + e.reason +
           "); a false failover of the return path to IPsec comes in ≈ " + secs(e.eta_ns) +
           " unless answers resume (interval " + ms(e.interval_ns) + ")";
      break;
    default:
      break;
  }
  return s + " at " + iso_time(e.ts_ns);
}

}  // namespace

std::string describe(const PathEvent& e) {
  if (e.type == EventType::TapDown) {
    return "tap_down " + e.tap + " (" + e.path + "): " + e.reason +
           "; attribution goes on without it, its silence taken as no evidence (capture "
           "complete up to " +
           iso_time(e.ts_ns) + ")";
  }
  if (e.type == EventType::TapUp) {
    return "tap_up " + e.tap + " (" + e.path + "): capturing again after " + ms(e.duration_ns) +
           " down (" + e.reason + ") at " + iso_time(e.ts_ns);
  }
  if (is_healthcheck_event(e.type)) return describe_healthcheck(e);
  std::string s = std::string(to_string(e.type)) + " ";
  const bool asym = e.type == EventType::AsymmetricBegin || e.type == EventType::AsymmetricEnd;
  if (!asym) s += std::string(to_string(e.direction)) + " ";
  s += e.target + " " + to_string(e.proto) + ": ";
  switch (e.type) {
    case EventType::Switchover:
      s += e.from + " -> " + e.to + (e.failback ? " (failback)" : "") + ", " + outage_text(e) +
           " (last ok " + iso_time(e.last_ok_on_old_ns) + ", first ok " +
           iso_time(e.first_ok_on_new_ns) + ")";
      break;
    case EventType::OutageBegin:
      s += "no path after " +
           (e.outage_kind == OutageKind::Undetermined
                ? std::to_string(e.probes_lost_undetermined) +
                      " probes lost beyond the tap, direction undetermined"
                : losses_text(e)) +
           " (was " + e.from + ", last ok " + iso_time(e.last_ok_on_old_ns) + ")";
      break;
    case EventType::OutageEnd:
      s += "through again on " + e.to + ", " + outage_text(e);
      break;
    case EventType::AsymmetricBegin:
      s += "forward on " + e.fwd_path + ", reverse on " + e.rev_path;
      break;
    case EventType::AsymmetricEnd:
      s += "symmetric again (forward " + e.fwd_path + ", reverse " + e.rev_path + ") after " +
           ms(e.duration_ns);
      break;
    case EventType::TapDown:
    case EventType::TapUp:
    case EventType::HealthcheckDegraded:
    case EventType::HealthcheckFailed:
    case EventType::HealthcheckRecovered:
    case EventType::HealthcheckAbsent:
    case EventType::HealthcheckBlocked:
      break;  // described above
  }
  return s + " at " + iso_time(e.ts_ns);
}

JsonLinesWriter::JsonLinesWriter(const std::string& target, std::string agent)
    : agent_(std::move(agent)) {
  if (target == "-") {
    fd_ = STDOUT_FILENO;
    return;
  }
  fd_ = ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw ConfigError("", "output", target, std::string("cannot open: ") + std::strerror(errno));
  }
  owns_ = true;
}

JsonLinesWriter::JsonLinesWriter(int fd, std::string agent) : fd_(fd), agent_(std::move(agent)) {}

JsonLinesWriter::~JsonLinesWriter() {
  (void)flush();
  if (owns_) ::close(fd_);
}

void JsonLinesWriter::commit(std::size_t line_start, bool urgent) {
  if (pending_bytes() > max_buffer_) {
    buf_.resize(line_start);  // the sink is stuck: drop this line rather than grow forever
    ++dropped_;
    return;
  }
  ++lines_;
  if (urgent || pending_bytes() >= kFlushAt) (void)flush();
}

void JsonLinesWriter::write(const ProbeRecord& r) {
  const std::size_t start = buf_.size();
  append_json(r, buf_, agent_);
  commit(start, false);
}

void JsonLinesWriter::write(const PathEvent& e) {
  const std::size_t start = buf_.size();
  append_json(e, buf_, agent_);
  commit(start, true);
}

tl::expected<void, std::error_code> JsonLinesWriter::flush() {
  while (sent_ < buf_.size()) {
    const ssize_t n = ::write(fd_, buf_.data() + sent_, buf_.size() - sent_);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ++write_errors_;
      if (sent_ >= buf_.size() / 2) {  // drop what was written so a slow sink cannot grow us
        buf_.erase(0, sent_);
        sent_ = 0;
      }
      return tl::unexpected(std::error_code(err, std::generic_category()));
    }
    sent_ += static_cast<std::size_t>(n);
  }
  buf_.clear();  // keeps capacity: no allocation in steady state
  sent_ = 0;
  return {};
}

}  // namespace pathsentry::probe
