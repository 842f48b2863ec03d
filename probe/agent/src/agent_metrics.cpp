#include "pathsentry/probe/agent/agent_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pathsentry/common/record_json.h"
#include "pathsentry/metrics/metrics.h"
#include "pathsentry/probe/agent/probe_output.h"

namespace pathsentry::probe {

namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Label values of paths that are not a tap's label (docs/metrics.md).
constexpr const char* kNotObserved = "n/a";  // the agent does not attribute (no taps)
constexpr const char* kDown = "down";
constexpr const char* kUndetermined = "undetermined";

constexpr std::array<const char*, 3> kLossDirections = {"forward", "reverse", "undetermined"};
constexpr std::array<const char*, 2> kDirections = {"forward", "reverse"};
constexpr std::array<const char*, 3> kRejectReasons = {"send_time", "ssid", "implausible_time"};
// Why a pacing slot went unsent (SessionCounters): the sender woke too late, no TX ring slot was
// free, the kernel refused the send.
constexpr std::array<const char*, 3> kMissCauses = {"late_wakeup", "ring_full", "send_error"};

std::string path_label(const std::string& p) {
  return p.empty() ? std::string(kNotObserved) : p;
}

// RTT observations of one (fwd_path, rev_path) pair not yet published.
struct RttBatch {
  Histogram* histogram = nullptr;
  std::vector<double> buckets;  // increments, one per bound + the +Inf bucket
  double sum_s = 0;
  std::uint64_t n = 0;
};

}  // namespace

struct AgentMetrics::Impl {
  Impl(prometheus::Registry& r, bool losses_from_records);

  struct Session {
    std::string target;
    std::string proto;
    Counter* sent = nullptr;
    Counter* received = nullptr;
    std::array<Counter*, 3> rejected{};  // send_time, ssid, implausible_time
    std::array<Counter*, 3> missed{};    // kMissCauses
    Gauge* forward_cap = nullptr;        // STAMP: the rate forward loss is capped at (0 none)
    std::array<Counter*, 3> lost{};
    std::array<Counter*, 2> unattributed{};
    // receiver thread: the totals already published
    std::uint64_t last_sent = 0, last_received = 0;
    std::array<std::uint64_t, 3> last_rejected{};
    std::array<std::uint64_t, 3> last_missed{};
    std::array<std::uint64_t, 3> last_lost{};
    std::array<std::string, 2> active;  // the path whose gauge is 1 ("" before the first)
    // the record thread: what is gathered until flush()
    std::map<std::pair<std::string, std::string>, RttBatch> rtt;
    RttBatch* last_rtt = nullptr;
    std::pair<std::string, std::string> last_key;
    std::array<std::uint64_t, 3> lost_pending{};
    std::array<std::uint64_t, 2> unattributed_pending{};
  };
  struct TapMirror {
    Counter* frames = nullptr;
    Counter* pcap_drops = nullptr;
    Counter* if_drops = nullptr;
    std::uint64_t last_frames = 0, last_pcap = 0, last_if = 0;
  };
  struct TtlMirror {
    std::uint64_t sent = 0, no_answer = 0;
    std::map<std::string, std::uint64_t> per_path;
    std::map<std::string, std::uint64_t> unused;  // by kind
  };

  // One line's health-check series (labels tap, path, target).
  struct HealthLine {
    prometheus::Labels labels;
    Counter* probes = nullptr;
    Counter* answered = nullptr;
    Counter* unanswered = nullptr;
    Gauge* in_row = nullptr;
    Gauge* fall = nullptr;
    Gauge* interval = nullptr;
    Gauge* eta = nullptr;  // only while a countdown runs
    std::array<Gauge*, kHealthCheckStateCount> state{};
    std::uint64_t last_probes = 0, last_answered = 0, last_unanswered = 0;
  };

  RttBatch& rtt_batch(Session& s, const ProbeRecord& r);
  void health_series(HealthLine& h, const HealthCheckStatus& st);
  void drop_health_series(HealthLine& h);

  const bool losses_from_records;
  Family<Counter>& sent;
  Family<Counter>& received;
  Family<Counter>& rejected;
  Family<Counter>& missed;
  Family<Gauge>& forward_cap;
  Family<Counter>& lost;
  Family<Histogram>& rtt;
  Family<Gauge>& active_path;
  Family<Counter>& switchovers;
  Family<Counter>& outages;
  Family<Gauge>& last_outage;
  Family<Gauge>& asymmetric;
  Family<Counter>& unattributed;
  Family<Counter>& events;
  Family<Counter>& tap_frames;
  Family<Counter>& tap_pcap_drops;
  Family<Counter>& tap_if_drops;
  Family<Gauge>& tap_up;
  Family<Counter>& ttl_sent;
  Family<Counter>& ttl_hop_answers;
  Family<Counter>& ttl_no_answer;
  Family<Counter>& ttl_unused;
  Family<Counter>& hc_probes;
  Family<Counter>& hc_answered;
  Family<Counter>& hc_unanswered;
  Family<Gauge>& hc_in_row;
  Family<Gauge>& hc_fall;
  Family<Gauge>& hc_interval;
  Family<Gauge>& hc_eta;
  Family<Gauge>& hc_state;
  Gauge& spool_files;
  Gauge& spool_bytes;
  Counter& spool_dropped;

  std::unordered_map<std::uint32_t, Session> sessions;
  std::vector<TapMirror> taps;
  std::vector<std::pair<std::string, std::string>> tap_names;  // interface, path
  std::map<std::string, TtlMirror> ttl;
  std::map<std::string, HealthLine> health;  // by tap interface

  std::mutex spool_mu;
  std::uint64_t spool_dropped_last = 0;

  class Tee final : public RecordSink {
   public:
    Tee(AgentMetrics& m, RecordSink& next) : m_(m), next_(next) {}
    void on_sent(const SentNotice& s) override { next_.on_sent(s); }
    void on_record(const ProbeRecord& r) override {
      m_.on_record(r);
      next_.on_record(r);
    }

   private:
    AgentMetrics& m_;
    RecordSink& next_;
  };
  std::unique_ptr<Tee> tee;
};

AgentMetrics::Impl::Impl(prometheus::Registry& r, bool from_records)
    : losses_from_records(from_records),
      sent(prometheus::BuildCounter()
               .Name("pathsentry_probes_sent_total")
               .Help("Probes handed to the kernel, by target and protocol")
               .Register(r)),
      received(prometheus::BuildCounter()
                   .Name("pathsentry_probes_received_total")
                   .Help("Probes answered within their timeout, by target and protocol")
                   .Register(r)),
      rejected(prometheus::BuildCounter()
                   .Name("pathsentry_replies_rejected_total")
                   .Help("Replies refused as spoofed or corrupt, by target, protocol and reason "
                         "(send_time, ssid, implausible_time)")
                   .Register(r)),
      missed(prometheus::BuildCounter()
                 .Name("pathsentry_missed_slots_total")
                 .Help("Pacing slots that went unsent, by target, protocol and cause "
                       "(late_wakeup: the sender woke past max_lag after the deadline; "
                       "ring_full: no free TX ring slot; send_error: the kernel refused it)")
                 .Register(r)),
      forward_cap(prometheus::BuildGauge()
                      .Name("pathsentry_forward_loss_capped_pps")
                      .Help("STAMP: the steady rate at which requests get through when forward "
                            "loss looks like a rate limit (the reflector's per-source limit, a "
                            "policer); 0 when it does not")
                      .Register(r)),
      lost(prometheus::BuildCounter()
               .Name("pathsentry_probes_lost_total")
               .Help("Probes lost, by target, protocol and the direction they were lost in "
                     "(forward, reverse, undetermined)")
               .Register(r)),
      rtt(prometheus::BuildHistogram()
              .Name("pathsentry_rtt_seconds")
              .Help("Round-trip time of answered probes, by target, protocol and the paths "
                    "the probe (fwd_path) and its reply (rev_path) took")
              .Register(r)),
      active_path(prometheus::BuildGauge()
                      .Name("pathsentry_active_path")
                      .Help("1 for the path a target's probes take now in a direction (a tap's "
                            "label, unknown, down or undetermined), 0 for paths taken before")
                      .Register(r)),
      switchovers(prometheus::BuildCounter()
                      .Name("pathsentry_switchovers_total")
                      .Help("Confirmed path changes, by target, protocol, direction, from, to")
                      .Register(r)),
      outages(prometheus::BuildCounter()
                  .Name("pathsentry_outages_total")
                  .Help("Outages begun (K consecutive probes lost in a direction)")
                  .Register(r)),
      last_outage(prometheus::BuildGauge()
                      .Name("pathsentry_last_outage_seconds")
                      .Help("The last outage's duration (switchover gap or outage end), seconds")
                      .Register(r)),
      asymmetric(prometheus::BuildGauge()
                     .Name("pathsentry_path_asymmetric")
                     .Help("1 while a target's forward and reverse paths differ")
                     .Register(r)),
      unattributed(prometheus::BuildCounter()
                       .Name("pathsentry_unattributed_probes_total")
                       .Help("Probes seen or answered whose path in a direction could not be "
                             "attributed (path unknown)")
                       .Register(r)),
      events(prometheus::BuildCounter()
                 .Name("pathsentry_path_events_total")
                 .Help("Path events raised, by type")
                 .Register(r)),
      tap_frames(prometheus::BuildCounter()
                     .Name("pathsentry_tap_frames_total")
                     .Help("Frames a tap's capture read")
                     .Register(r)),
      tap_pcap_drops(prometheus::BuildCounter()
                         .Name("pathsentry_tap_pcap_drops_total")
                         .Help("Frames the kernel dropped because a tap's capture ring was full")
                         .Register(r)),
      tap_if_drops(prometheus::BuildCounter()
                       .Name("pathsentry_tap_interface_drops_total")
                       .Help("Frames a tap's interface or driver dropped (pcap ps_ifdrop)")
                       .Register(r)),
      tap_up(prometheus::BuildGauge()
                 .Name("pathsentry_tap_up")
                 .Help("1 while a tap captures, 0 while its capture is down")
                 .Register(r)),
      ttl_sent(prometheus::BuildCounter()
                   .Name("pathsentry_ttl_probes_sent_total")
                   .Help("TTL-limited path probes sent, by target")
                   .Register(r)),
      ttl_hop_answers(prometheus::BuildCounter()
                          .Name("pathsentry_ttl_hop_answers_total")
                          .Help("TTL probes answered by a configured hop, by target and path")
                          .Register(r)),
      ttl_no_answer(prometheus::BuildCounter()
                        .Name("pathsentry_ttl_no_answer_total")
                        .Help("TTL probes that timed out, by target")
                        .Register(r)),
      ttl_unused(prometheus::BuildCounter()
                     .Name("pathsentry_ttl_errors_unused_total")
                     .Help("ICMP errors the TTL prober could not use, by target and kind: "
                           "unmapped_hop, other_error, short_quote_refused, unmatched, late")
                     .Register(r)),
      hc_probes(prometheus::BuildCounter()
                    .Name("pathsentry_healthcheck_probes_total")
                    .Help("The cloud's health-check probes seen on a line's tap")
                    .Register(r)),
      hc_answered(prometheus::BuildCounter()
                      .Name("pathsentry_healthcheck_answered_total")
                      .Help("Health-check probes the gateway answered in time")
                      .Register(r)),
      hc_unanswered(prometheus::BuildCounter()
                        .Name("pathsentry_healthcheck_unanswered_total")
                        .Help("Health-check probes declared unanswered")
                        .Register(r)),
      hc_in_row(prometheus::BuildGauge()
                    .Name("pathsentry_healthcheck_unanswered_in_row")
                    .Help("Health-check probes unanswered in a row now (k)")
                    .Register(r)),
      hc_fall(prometheus::BuildGauge()
                  .Name("pathsentry_healthcheck_fall")
                  .Help("Probes lost in a row after which the cloud moves the return path (N)")
                  .Register(r)),
      hc_interval(prometheus::BuildGauge()
                      .Name("pathsentry_healthcheck_interval_seconds")
                      .Help("The health check's probe interval, configured or learned (0: unknown)")
                      .Register(r)),
      hc_eta(prometheus::BuildGauge()
                 .Name("pathsentry_healthcheck_eta_seconds")
                 .Help("Time until the cloud moves the return path, (N - k) x interval while "
                       "0 < k < N, 0 once failed; absent otherwise")
                 .Register(r)),
      hc_state(prometheus::BuildGauge()
                   .Name("pathsentry_healthcheck_state")
                   .Help("1 for a line's health-check state now (ok, degraded, failed, blocked, "
                         "absent), 0 for the others")
                   .Register(r)),
      spool_files(prometheus::BuildGauge()
                      .Name("pathsentry_spool_files")
                      .Help("Batches waiting in the agent's spool for the collector")
                      .Register(r)
                      .Add({})),
      spool_bytes(prometheus::BuildGauge()
                      .Name("pathsentry_spool_bytes")
                      .Help("Bytes waiting in the agent's spool for the collector")
                      .Register(r)
                      .Add({})),
      spool_dropped(
          prometheus::BuildCounter()
              .Name("pathsentry_spool_dropped_records_total")
              .Help("Raw probe records dropped before the collector had them (hand-off queue full, "
                    "spool unwritable, or the oldest at the spool's bound); never "
                    "rollups or events")
              .Register(r)
              .Add({})) {
  for (EventType t : {EventType::Switchover, EventType::OutageBegin, EventType::OutageEnd,
                      EventType::AsymmetricBegin, EventType::AsymmetricEnd, EventType::TapDown,
                      EventType::TapUp, EventType::HealthcheckDegraded,
                      EventType::HealthcheckFailed, EventType::HealthcheckRecovered,
                      EventType::HealthcheckAbsent, EventType::HealthcheckBlocked}) {
    events.Add({{"type", to_string(t)}});
  }
}

AgentMetrics::AgentMetrics(prometheus::Registry& registry, bool losses_from_records)
    : impl_(std::make_unique<Impl>(registry, losses_from_records)) {}

AgentMetrics::~AgentMetrics() = default;

void AgentMetrics::add_session(std::uint32_t session_id, const std::string& target, Proto proto,
                               const std::vector<std::string>& paths, bool has_reverse) {
  Impl& m = *impl_;
  Impl::Session& s = m.sessions[session_id];
  s.target = target;
  s.proto = proto_name(proto);
  const prometheus::Labels base{{"target", s.target}, {"proto", s.proto}};
  if (proto != Proto::Ttl) {
    s.sent = &m.sent.Add(base);
    s.received = &m.received.Add(base);
    if (proto == Proto::Stamp) s.forward_cap = &m.forward_cap.Add(base);
    for (std::size_t k = 0; k < kRejectReasons.size(); ++k) {
      auto l = base;
      l["reason"] = kRejectReasons[k];
      s.rejected[k] = &m.rejected.Add(l);
    }
    for (std::size_t d = 0; d < kLossDirections.size(); ++d) {
      auto l = base;
      l["direction"] = kLossDirections[d];
      s.lost[d] = &m.lost.Add(l);
    }
    for (std::size_t k = 0; k < kMissCauses.size(); ++k) {
      auto l = base;
      l["cause"] = kMissCauses[k];
      s.missed[k] = &m.missed.Add(l);
    }
  }
  for (std::size_t d = 0; d < kDirections.size(); ++d) {
    auto l = base;
    l["direction"] = kDirections[d];
    s.unattributed[d] = &m.unattributed.Add(l);
  }
  if (proto == Proto::Ttl) {
    m.ttl_sent.Add({{"target", target}});
    m.ttl_no_answer.Add({{"target", target}});
    for (const std::string& p : paths) m.ttl_hop_answers.Add({{"target", target}, {"path", p}});
  }
  if (paths.empty()) return;
  std::vector<std::string> all = paths;
  all.emplace_back(kPathUnknown);
  for (std::size_t d = 0; d < (has_reverse ? 2 : 1); ++d) {
    auto l = base;
    l["direction"] = kDirections[d];
    m.outages.Add(l);
    m.last_outage.Add(l);
    for (const std::string& from : all) {
      for (const std::string& to : all) {
        if (from == to) continue;
        auto sw = l;
        sw["from"] = from;
        sw["to"] = to;
        m.switchovers.Add(sw);
      }
    }
  }
  if (has_reverse) m.asymmetric.Add(base);
}

void AgentMetrics::add_tap(const std::string& interface, const std::string& path) {
  Impl& m = *impl_;
  const prometheus::Labels l{{"tap", interface}, {"path", path}};
  Impl::TapMirror t;
  t.frames = &m.tap_frames.Add(l);
  t.pcap_drops = &m.tap_pcap_drops.Add(l);
  t.if_drops = &m.tap_if_drops.Add(l);
  m.tap_up.Add(l).Set(1);
  m.taps.push_back(t);
  m.tap_names.emplace_back(interface, path);
}

RecordSink& AgentMetrics::wrap(RecordSink& next) {
  impl_->tee = std::make_unique<Impl::Tee>(*this, next);
  return *impl_->tee;
}

RttBatch& AgentMetrics::Impl::rtt_batch(Session& s, const ProbeRecord& r) {
  // Consecutive records mostly share their paths: one comparison instead of a map lookup.
  if (s.last_rtt != nullptr && s.last_key.first == r.fwd_path && s.last_key.second == r.rev_path) {
    return *s.last_rtt;
  }
  s.last_key = {r.fwd_path, r.rev_path};
  auto [it, fresh] = s.rtt.try_emplace(s.last_key);
  if (fresh) {
    it->second.histogram = &rtt.Add({{"target", s.target},
                                     {"proto", s.proto},
                                     {"fwd_path", path_label(r.fwd_path)},
                                     {"rev_path", path_label(r.rev_path)}},
                                    metrics::rtt_buckets_seconds());
    it->second.buckets.assign(metrics::rtt_buckets_seconds().size() + 1, 0.0);
  }
  s.last_rtt = &it->second;
  return it->second;
}

void AgentMetrics::on_record(const ProbeRecord& r) {
  Impl& m = *impl_;
  auto it = m.sessions.find(r.session_id);
  if (it == m.sessions.end()) return;
  Impl::Session& s = it->second;
  if (r.fwd_path == kPathUnknown) ++s.unattributed_pending[0];
  if (r.rev_path == kPathUnknown) ++s.unattributed_pending[1];
  if (r.proto == Proto::Ttl) return;  // a hop's answer: no round trip, counted by on_ttl_stats
  if (r.rx_ns) {
    RttBatch& b = m.rtt_batch(s, r);
    const double v = static_cast<double>(r.rtt_ns) / 1e9;
    const auto& bounds = metrics::rtt_buckets_seconds();
    // Prometheus buckets are "le": the first bound >= v.
    const auto i = static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) -
                                            bounds.begin());
    b.buckets[i] += 1;
    b.sum_s += v;
    ++b.n;
  } else if (m.losses_from_records) {
    switch (r.loss) {
      case LossDirection::Forward:
        ++s.lost_pending[0];
        break;
      case LossDirection::Reverse:
        ++s.lost_pending[1];
        break;
      default:
        ++s.lost_pending[2];
        break;
    }
  }
}

void AgentMetrics::flush() {
  for (auto& [id, s] : impl_->sessions) {
    for (auto& [key, b] : s.rtt) {
      if (b.n == 0) continue;
      b.histogram->ObserveMultiple(b.buckets, b.sum_s);
      std::fill(b.buckets.begin(), b.buckets.end(), 0.0);
      b.sum_s = 0;
      b.n = 0;
    }
    for (std::size_t d = 0; d < 3; ++d) {
      if (s.lost_pending[d] != 0 && s.lost[d] != nullptr) {
        s.lost[d]->Increment(static_cast<double>(s.lost_pending[d]));
      }
      s.lost_pending[d] = 0;
    }
    for (std::size_t d = 0; d < 2; ++d) {
      if (s.unattributed_pending[d] != 0) {
        s.unattributed[d]->Increment(static_cast<double>(s.unattributed_pending[d]));
      }
      s.unattributed_pending[d] = 0;
    }
  }
}

void AgentMetrics::on_session_totals(std::uint32_t session_id, const SessionSummary& totals) {
  Impl& m = *impl_;
  auto it = m.sessions.find(session_id);
  if (it == m.sessions.end() || it->second.sent == nullptr) return;
  Impl::Session& s = it->second;
  metrics::advance(*s.sent, s.last_sent, totals.counters.sent);
  metrics::advance(*s.received, s.last_received, totals.counters.received);
  const std::array<std::uint64_t, 3> rejected = {totals.counters.rejected_send_time,
                                                 totals.counters.rejected_ssid,
                                                 totals.counters.rejected_implausible_time};
  for (std::size_t k = 0; k < rejected.size(); ++k) {
    metrics::advance(*s.rejected[k], s.last_rejected[k], rejected[k]);
  }
  const std::array<std::uint64_t, 3> missed = {totals.counters.missed_late_wakeup,
                                               totals.counters.missed_ring_full,
                                               totals.counters.send_errors};
  for (std::size_t k = 0; k < missed.size(); ++k) {
    metrics::advance(*s.missed[k], s.last_missed[k], missed[k]);
  }
  if (s.forward_cap != nullptr) s.forward_cap->Set(totals.forward_cap_now_pps.value_or(0));
  if (m.losses_from_records) return;
  const std::array<std::uint64_t, 3> split = {totals.lost_forward.value_or(0),
                                              totals.lost_reverse.value_or(0),
                                              totals.lost_undetermined.value_or(0)};
  for (std::size_t d = 0; d < 3; ++d) metrics::advance(*s.lost[d], s.last_lost[d], split[d]);
}

void AgentMetrics::on_path_state(std::uint32_t session_id, const PathState& state) {
  Impl& m = *impl_;
  auto it = m.sessions.find(session_id);
  if (it == m.sessions.end()) return;
  Impl::Session& s = it->second;
  for (std::size_t d = 0; d < 2; ++d) {
    if (d == 1 && !state.has_reverse) break;
    const bool outage = d == 0 ? state.fwd_outage : state.rev_outage;
    const auto& path = d == 0 ? state.fwd : state.rev;
    const std::string now = outage ? kDown : path ? path_label(*path) : kUndetermined;
    if (now == s.active[d]) continue;
    prometheus::Labels l{{"target", s.target}, {"proto", s.proto}, {"direction", kDirections[d]}};
    if (!s.active[d].empty()) {
      l["path"] = s.active[d];
      m.active_path.Add(l).Set(0);
    }
    l["path"] = now;
    m.active_path.Add(l).Set(1);
    s.active[d] = now;
  }
}

void AgentMetrics::on_ttl_stats(const std::string& target, const TtlStats& st) {
  Impl& m = *impl_;
  Impl::TtlMirror& t = m.ttl[target];
  metrics::advance(m.ttl_sent.Add({{"target", target}}), t.sent, st.sent);
  metrics::advance(m.ttl_no_answer.Add({{"target", target}}), t.no_answer, st.no_answer);
  for (const auto& [path, n] : st.per_path) {
    metrics::advance(m.ttl_hop_answers.Add({{"target", target}, {"path", path}}), t.per_path[path],
                     n);
  }
  // Per-address counts stop at kTtlMaxAddresses addresses; the overflow counts the rest, so the
  // totals here are exact whatever the number of addresses (a flood of forged errors).
  auto sum = [](const std::map<std::string, std::uint64_t>& per_addr, std::uint64_t overflow) {
    std::uint64_t n = overflow;
    for (const auto& kv : per_addr) n += kv.second;
    return n;
  };
  const std::pair<const char*, std::uint64_t> unused[] = {
      {"unmapped_hop", sum(st.unmapped, st.unmapped_overflow)},
      {"other_error", sum(st.other, st.other_overflow)},
      {"short_quote_refused", st.short_quote_refused},
      {"unmatched", st.unmatched},
      {"late", st.late},
  };
  for (const auto& [kind, n] : unused) {
    metrics::advance(m.ttl_unused.Add({{"target", target}, {"kind", kind}}), t.unused[kind], n);
  }
}

void AgentMetrics::on_event(const PathEvent& e) {
  Impl& m = *impl_;
  m.events.Add({{"type", to_string(e.type)}}).Increment();
  const std::string proto = proto_name(e.proto);
  const char* dir = kDirections[e.direction == Direction::Forward ? 0 : 1];
  const prometheus::Labels stream{{"target", e.target}, {"proto", proto}, {"direction", dir}};
  switch (e.type) {
    case EventType::Switchover: {
      auto l = stream;
      l["from"] = path_label(e.from);
      l["to"] = path_label(e.to);
      m.switchovers.Add(l).Increment();
      if (e.outage_ns > 0) m.last_outage.Add(stream).Set(static_cast<double>(e.outage_ns) / 1e9);
      break;
    }
    case EventType::OutageBegin:
      m.outages.Add(stream).Increment();
      break;
    case EventType::OutageEnd:
      m.last_outage.Add(stream).Set(static_cast<double>(e.outage_ns) / 1e9);
      break;
    case EventType::AsymmetricBegin:
    case EventType::AsymmetricEnd:
      m.asymmetric.Add({{"target", e.target}, {"proto", proto}})
          .Set(e.type == EventType::AsymmetricBegin ? 1 : 0);
      break;
    case EventType::TapDown:
    case EventType::TapUp:
      m.tap_up.Add({{"tap", e.tap}, {"path", e.path}}).Set(e.type == EventType::TapUp ? 1 : 0);
      break;
    case EventType::HealthcheckDegraded:
    case EventType::HealthcheckFailed:
    case EventType::HealthcheckRecovered:
    case EventType::HealthcheckAbsent:
    case EventType::HealthcheckBlocked:
      break;  // counted in `events` by type only
  }
}

void AgentMetrics::on_tap_stats(std::size_t tap, const TapStats& st) {
  Impl& m = *impl_;
  if (tap >= m.taps.size()) return;
  Impl::TapMirror& t = m.taps[tap];
  metrics::advance(*t.frames, t.last_frames, st.frames);
  metrics::advance(*t.pcap_drops, t.last_pcap, st.source.dropped);
  metrics::advance(*t.if_drops, t.last_if, st.source.if_dropped);
}

void AgentMetrics::Impl::drop_health_series(HealthLine& h) {
  if (h.probes == nullptr) return;
  hc_probes.Remove(h.probes);
  hc_answered.Remove(h.answered);
  hc_unanswered.Remove(h.unanswered);
  hc_in_row.Remove(h.in_row);
  hc_fall.Remove(h.fall);
  hc_interval.Remove(h.interval);
  if (h.eta != nullptr) hc_eta.Remove(h.eta);
  for (Gauge* g : h.state) hc_state.Remove(g);
  h = HealthLine{};
}

void AgentMetrics::Impl::health_series(HealthLine& h, const HealthCheckStatus& st) {
  const prometheus::Labels l{{"tap", st.tap}, {"path", st.path}, {"target", st.target}};
  if (h.probes != nullptr && h.labels == l) return;
  drop_health_series(h);  // the gateway was learned: the series move to its label
  h.labels = l;
  h.probes = &hc_probes.Add(l);
  h.answered = &hc_answered.Add(l);
  h.unanswered = &hc_unanswered.Add(l);
  h.in_row = &hc_in_row.Add(l);
  h.fall = &hc_fall.Add(l);
  h.interval = &hc_interval.Add(l);
  for (std::size_t i = 0; i < kHealthCheckStateCount; ++i) {
    auto sl = l;
    sl["state"] = to_string(static_cast<HealthCheckState>(i));
    h.state[i] = &hc_state.Add(sl);
  }
}

void AgentMetrics::on_healthcheck(const std::vector<HealthCheckStatus>& lines) {
  Impl& m = *impl_;
  for (const HealthCheckStatus& st : lines) {
    Impl::HealthLine& h = m.health[st.tap];
    m.health_series(h, st);
    metrics::advance(*h.probes, h.last_probes, st.stats.probes);
    metrics::advance(*h.answered, h.last_answered, st.stats.answered);
    metrics::advance(*h.unanswered, h.last_unanswered, st.stats.unanswered);
    h.in_row->Set(static_cast<double>(st.stats.run));
    h.fall->Set(static_cast<double>(st.fall));
    h.interval->Set(static_cast<double>(st.stats.interval_ns) / 1e9);
    if (st.eta_ns) {
      if (h.eta == nullptr) h.eta = &m.hc_eta.Add(h.labels);
      h.eta->Set(static_cast<double>(*st.eta_ns) / 1e9);
    } else if (h.eta != nullptr) {
      m.hc_eta.Remove(h.eta);
      h.eta = nullptr;
    }
    for (std::size_t i = 0; i < kHealthCheckStateCount; ++i) {
      h.state[i]->Set(static_cast<std::size_t>(st.state) == i ? 1 : 0);
    }
  }
}

void AgentMetrics::set_spool(std::uint64_t files, std::uint64_t bytes,
                             std::uint64_t dropped_records) {
  Impl& m = *impl_;
  m.spool_files.Set(static_cast<double>(files));
  m.spool_bytes.Set(static_cast<double>(bytes));
  std::lock_guard lock(m.spool_mu);
  metrics::advance(m.spool_dropped, m.spool_dropped_last, dropped_records);
}

}  // namespace pathsentry::probe
