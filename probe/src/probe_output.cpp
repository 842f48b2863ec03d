#include "pathsentry/probe/probe_output.h"

#include <cinttypes>
#include <ctime>
#include <nlohmann/json.hpp>

namespace pathsentry::probe {
namespace {

// Appends printf-formatted text at `pos`; returns the new position, or out.size() + 1 when
// it did not fit (so the caller can tell).
template <class... A>
std::size_t put(std::span<char> out, std::size_t pos, const char* fmt, A... a) {
  if (pos >= out.size()) return out.size() + 1;
  const int n = std::snprintf(out.data() + pos, out.size() - pos, fmt, a...);
  if (n < 0 || static_cast<std::size_t>(n) >= out.size() - pos) return out.size() + 1;
  return pos + static_cast<std::size_t>(n);
}

// JSON string with the escapes our values can need (addresses and path labels are plain,
// but labels come from configuration).
std::size_t put_string(std::span<char> out, std::size_t pos, const std::string& s) {
  pos = put(out, pos, "\"");
  for (char c : s) {
    if (c == '"' || c == '\\') {
      pos = put(out, pos, "\\%c", c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      pos = put(out, pos, "\\u%04x", static_cast<unsigned>(c));
    } else {
      pos = put(out, pos, "%c", c);
    }
  }
  return put(out, pos, "\"");
}

std::string ms(std::int64_t ns) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", static_cast<double>(ns) / 1e6);
  return b;
}

std::string counters_text(const SessionCounters& c, const RttStats& rtt) {
  std::string s = "sent " + std::to_string(c.sent) + " recv " + std::to_string(c.received) +
                  " lost " + std::to_string(c.lost);
  if (rtt.count) {
    s += " rtt ms min/p50/p99/max " + ms(rtt.min) + "/" + ms(rtt.p50) + "/" + ms(rtt.p99) + "/" +
         ms(rtt.max);
  } else {
    s += " rtt ms -";
  }
  auto extra = [&s](const char* name, std::uint64_t v) {
    if (v) s += std::string(" ") + name + " " + std::to_string(v);
  };
  extra("late", c.late);
  extra("dup", c.duplicates);
  extra("reord", c.reordered);
  extra("missed", c.missed_slots);
  extra("senderr", c.send_errors);
  return s;
}

std::string session_label(const SessionConfig& s) {
  std::string l = s.target.to_string() + " " + proto_name(s.proto);
  if (l.size() < 22) l.resize(22, ' ');
  return l;
}

}  // namespace

const char* proto_name(Proto p) {
  return p == Proto::Icmp ? "icmp" : "stamp";
}

std::size_t format_record_json(const ProbeRecord& r, std::span<char> out) {
  std::size_t p = put(out, 0, "{\"target\":");
  p = put_string(out, p, r.target);
  p = put(out, p,
          ",\"proto\":\"%s\",\"session\":%" PRIu32 ",\"seq\":%" PRIu64 ",\"tx_ns\":%" PRId64
          ",\"rx_ns\":",
          proto_name(r.proto), r.session_id, r.seq, r.tx_ns);
  p = r.rx_ns ? put(out, p, "%" PRId64, *r.rx_ns) : put(out, p, "null");
  p = put(out, p,
          ",\"rtt_ns\":%" PRId64 ",\"late\":%s,\"tx_kernel_ts\":%s,\"reflector_seq\":", r.rtt_ns,
          r.late ? "true" : "false", r.tx_kernel_ts ? "true" : "false");
  p = r.reflector_seq ? put(out, p, "%" PRIu32, *r.reflector_seq) : put(out, p, "null");
  p = put(out, p, ",\"reflector_rx_ns\":");
  p = r.reflector_rx_ns ? put(out, p, "%" PRId64, *r.reflector_rx_ns) : put(out, p, "null");
  p = put(out, p, ",\"reflector_tx_ns\":");
  p = r.reflector_tx_ns ? put(out, p, "%" PRId64, *r.reflector_tx_ns) : put(out, p, "null");
  p = put(out, p, ",\"reflector_clock_synced\":%s,\"fwd_path\":",
          r.reflector_clock_synced ? "true" : "false");
  p = put_string(out, p, r.fwd_path);
  p = put(out, p, ",\"rev_path\":");
  p = put_string(out, p, r.rev_path);
  p = put(out, p, "}");
  return p > out.size() ? 0 : p;
}

void JsonLinesWriter::on_record(const ProbeRecord& r) {
  char buf[1024];
  const std::size_t n = format_record_json(r, buf);
  if (n == 0) return;
  buf[n] = '\n';
  if (std::fwrite(buf, 1, n + 1, out_) != n + 1) failed_ = true;
}

std::string format_interval_line(std::int64_t second_end_ns, const SessionConfig& s,
                                 const IntervalReport& r) {
  const std::time_t t = static_cast<std::time_t>((second_end_ns - 1) / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[16];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  return std::string(ts) + " " + session_label(s) + " " + counters_text(r.counters, r.rtt);
}

std::string format_total_line(const SessionConfig& s, const SessionSummary& r) {
  std::string line = "total    " + session_label(s) + " " + counters_text(r.counters, r.rtt);
  if (r.lost_forward) {
    line += " (fwd " + std::to_string(*r.lost_forward) + " rev " + std::to_string(*r.lost_reverse) +
            ")";
  }
  return line;
}

std::string summary_json(double duration_s, std::span<const SessionConfig* const> configs,
                         std::span<const SessionSummary> summaries) {
  using nlohmann::json;
  json doc;
  doc["duration_s"] = duration_s;
  json sessions = json::array();
  for (std::size_t i = 0; i < summaries.size() && i < configs.size(); ++i) {
    const SessionConfig& c = *configs[i];
    const SessionSummary& s = summaries[i];
    json j;
    j["target"] = c.target.to_string();
    j["proto"] = proto_name(c.proto);
    j["session"] = c.session_id;
    j["rate"] = c.rate_pps;
    j["sent"] = s.counters.sent;
    j["received"] = s.counters.received;
    j["lost"] = s.counters.lost;
    j["lost_forward"] = s.lost_forward ? json(*s.lost_forward) : json(nullptr);
    j["lost_reverse"] = s.lost_reverse ? json(*s.lost_reverse) : json(nullptr);
    j["duplicates"] = s.counters.duplicates;
    j["reordered"] = s.counters.reordered;
    j["late"] = s.counters.late;
    j["missed_slots"] = s.counters.missed_slots;
    j["send_errors"] = s.counters.send_errors;
    j["unmatched"] = s.counters.unmatched;
    j["no_tx_timestamp"] = s.counters.no_tx_timestamp;
    j["rtt_ns"] = {{"min", s.rtt.min},
                   {"p50", s.rtt.p50},
                   {"p99", s.rtt.p99},
                   {"max", s.rtt.max},
                   {"mean", s.rtt.mean}};
    j["jitter_ns"] = s.jitter_ns;
    sessions.push_back(std::move(j));
  }
  doc["sessions"] = std::move(sessions);
  return doc.dump();
}

}  // namespace pathsentry::probe
