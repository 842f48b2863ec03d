#include "pathsentry/probe/agent/probe_output.h"

#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "pathsentry/common/record_json.h"

namespace pathsentry::probe {
namespace {

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
  extra("rejected", c.rejected_send_time + c.rejected_ssid + c.rejected_implausible_time);
  return s;
}

std::string session_label(const SessionConfig& s) {
  std::string l = s.target.to_string() + " " + proto_name(s.proto);
  if (l.size() < 22) l.resize(22, ' ');
  return l;
}

}  // namespace

const char* proto_name(Proto p) {
  return to_string(p);  // one spelling for the log, the summary and the JSON lines
}

std::string format_interval_line(std::int64_t second_end_ns, const SessionConfig& s,
                                 const IntervalReport& r) {
  const std::time_t t = static_cast<std::time_t>((second_end_ns - 1) / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[16];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  std::string line =
      std::string(ts) + " " + session_label(s) + " " + counters_text(r.counters, r.rtt);
  if (r.forward_cap_pps) {
    char b[160];
    std::snprintf(b, sizeof b,
                  " | forward loss capped at %.0f/s: a rate limit (the reflector's per-source "
                  "rate_limit_pps?)",
                  *r.forward_cap_pps);
    line += b;
  }
  return line;
}

std::string format_paths(const PathState& state) {
  auto one = [](bool outage, const std::optional<std::string>& p) {
    return outage ? std::string(kPathNone) : p.value_or("-");
  };
  std::string out = "fwd=" + one(state.fwd_outage, state.fwd);
  if (state.has_reverse) out += " rev=" + one(state.rev_outage, state.rev);
  return out;
}

std::string format_degraded(std::span<const TapDown> down) {
  std::string out;
  for (const TapDown& t : down) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3f", static_cast<double>(t.down_ns) / 1e9);
    out += (out.empty() ? "degraded: " : ", ") + t.interface + " (" + t.path + ") down " + b + " s";
  }
  return out;
}

std::string format_ttl_interval_line(std::int64_t second_end_ns, const TtlSessionConfig& c,
                                     const TtlStats& now, const TtlStats& before,
                                     const PathState& paths) {
  const auto t = static_cast<std::time_t>((second_end_ns - 1) / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[16];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  auto sum = [](const std::map<std::string, std::uint64_t>& m) {
    std::uint64_t n = 0;
    for (const auto& [k, v] : m) n += v;
    return n;
  };
  std::string l = std::string(ts) + " " + c.target.to_string() + " ttl=" + std::to_string(c.ttl) +
                  " sent " + std::to_string(now.sent - before.sent) + " hop";
  for (const auto& [p, n] : now.per_path) {
    const auto it = before.per_path.find(p);
    l += " " + p + ":" + std::to_string(n - (it == before.per_path.end() ? 0 : it->second));
  }
  l += " unmapped " + std::to_string(sum(now.unmapped) - sum(before.unmapped)) + " target " +
       std::to_string(now.target_answers - before.target_answers) + " other " +
       std::to_string(sum(now.other) - sum(before.other)) + " none " +
       std::to_string(now.no_answer - before.no_answer) + " " + format_paths(paths);
  return l;
}

std::string format_total_line(const SessionConfig& s, const SessionSummary& r) {
  std::string line = "total    " + session_label(s) + " " + counters_text(r.counters, r.rtt);
  if (r.lost_forward) {
    line += " (fwd " + std::to_string(*r.lost_forward) + " rev " + std::to_string(*r.lost_reverse);
    if (r.lost_undetermined) line += " undetermined " + std::to_string(*r.lost_undetermined);
    line += ")";
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
    // STAMP: the session's random SSID, the key a capture of its packets carries.
    if (c.proto == Proto::Stamp) j["ssid"] = c.stamp_ssid;
    j["rate"] = c.rate_pps;
    j["sent"] = s.counters.sent;
    j["received"] = s.counters.received;
    j["lost"] = s.counters.lost;
    j["lost_forward"] = s.lost_forward ? json(*s.lost_forward) : json(nullptr);
    j["lost_reverse"] = s.lost_reverse ? json(*s.lost_reverse) : json(nullptr);
    j["lost_undetermined"] = s.lost_undetermined ? json(*s.lost_undetermined) : json(nullptr);
    j["duplicates"] = s.counters.duplicates;
    j["reordered"] = s.counters.reordered;
    j["late"] = s.counters.late;
    j["missed_slots"] = s.counters.missed_slots;
    j["send_errors"] = s.counters.send_errors;
    // Every slot that went unsent, by cause: missed_slots = late_wakeup + ring_full, and
    // send_error = send_errors (a slot whose probe the kernel refused).
    j["missed"] = {{"late_wakeup", s.counters.missed_late_wakeup},
                   {"ring_full", s.counters.missed_ring_full},
                   {"send_error", s.counters.send_errors}};
    j["max_send_lag_ns"] = s.max_send_lag_ns;
    j["unmatched"] = s.counters.unmatched;
    j["no_tx_timestamp"] = s.counters.no_tx_timestamp;
    j["forward_cap_pps"] = s.forward_cap_pps ? json(*s.forward_cap_pps) : json(nullptr);
    j["rejected"] = {{"send_time", s.counters.rejected_send_time},
                     {"ssid", s.counters.rejected_ssid},
                     {"implausible_time", s.counters.rejected_implausible_time}};
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
