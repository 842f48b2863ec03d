#include "reflector_metrics.h"

#include "pathsentry/metrics/metrics.h"

namespace pathsentry::probe {

namespace {

prometheus::Family<prometheus::Counter>& refused_family(prometheus::Registry& r) {
  return prometheus::BuildCounter()
      .Name("pathsentry_reflector_refused_total")
      .Help(
          "Requests not answered, by reason (not_allowed, low_port, rate_limited, "
          "global_rate_limited, malformed, session_table_full, sessions_per_source)")
      .Register(r);
}

prometheus::Family<prometheus::Counter>& evictions_family(prometheus::Registry& r) {
  return prometheus::BuildCounter()
      .Name("pathsentry_reflector_evictions_total")
      .Help(
          "Active entries pushed out of a full table, by table (sources; sessions are "
          "never evicted: refused_total{reason=\"session_table_full\"})")
      .Register(r);
}

}  // namespace

ReflectorMetrics::ReflectorMetrics(prometheus::Registry& r)
    : requests_(prometheus::BuildCounter()
                    .Name("pathsentry_reflector_requests_total")
                    .Help("Datagrams received on the reflector's sockets")
                    .Register(r)
                    .Add({})),
      replies_(prometheus::BuildCounter()
                   .Name("pathsentry_reflector_replies_total")
                   .Help("Replies handed to the kernel")
                   .Register(r)
                   .Add({})),
      not_allowed_(refused_family(r).Add({{"reason", "not_allowed"}})),
      rate_limited_(refused_family(r).Add({{"reason", "rate_limited"}})),
      global_rate_limited_(refused_family(r).Add({{"reason", "global_rate_limited"}})),
      low_port_(refused_family(r).Add({{"reason", "low_port"}})),
      malformed_(refused_family(r).Add({{"reason", "malformed"}})),
      table_full_(refused_family(r).Add({{"reason", "session_table_full"}})),
      per_source_(refused_family(r).Add({{"reason", "sessions_per_source"}})),
      send_errors_(prometheus::BuildCounter()
                       .Name("pathsentry_reflector_send_errors_total")
                       .Help("Replies the kernel refused to send")
                       .Register(r)
                       .Add({})),
      send_denied_(prometheus::BuildCounter()
                       .Name("pathsentry_reflector_send_denied_total")
                       .Help("Of the send errors: replies refused with EPERM/EACCES (a firewall "
                             "rule or policy), dropped without retry")
                       .Register(r)
                       .Add({})),
      source_evictions_(evictions_family(r).Add({{"table", "sources"}})),
      sessions_(prometheus::BuildGauge()
                    .Name("pathsentry_reflector_sessions")
                    .Help("Sessions active within the session timeout")
                    .Register(r)
                    .Add({})) {}

void ReflectorMetrics::update(const ReflectorCounters& c, std::size_t active_sessions) {
  metrics::advance(requests_, last_.received, c.received);
  metrics::advance(replies_, last_.replied, c.replied);
  metrics::advance(not_allowed_, last_.dropped_not_allowed, c.dropped_not_allowed);
  metrics::advance(rate_limited_, last_.dropped_rate_limited, c.dropped_rate_limited);
  metrics::advance(global_rate_limited_, last_.dropped_global_rate_limited,
                   c.dropped_global_rate_limited);
  metrics::advance(table_full_, last_.refused_session_table_full, c.refused_session_table_full);
  metrics::advance(per_source_, last_.refused_sessions_per_source, c.refused_sessions_per_source);
  metrics::advance(send_denied_, last_.send_denied, c.send_denied);
  metrics::advance(malformed_, last_.malformed, c.malformed);
  metrics::advance(low_port_, last_.dropped_low_port, c.dropped_low_port);
  metrics::advance(send_errors_, last_.send_errors, c.send_errors);
  metrics::advance(source_evictions_, last_.source_evictions, c.source_evictions);
  sessions_.Set(static_cast<double>(active_sessions));
}

}  // namespace pathsentry::probe
