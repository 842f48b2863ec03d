#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pathsentry/common/record.h"
#include "pathsentry/probe/attribution/pipeline.h"
#include "pathsentry/probe/attribution/pipeline_observer.h"
#include "pathsentry/probe/engine/probe_session.h"
#include "pathsentry/probe/engine/record_sink.h"
#include "pathsentry/probe/ttl/ttl_probe.h"

namespace prometheus {
class Registry;
}

namespace pathsentry::probe {

/// The agent's Prometheus metrics (docs/metrics.md "Agent"): families registered in `registry`,
/// fed off the hot path. The sender never touches them; per-probe work (RTT buckets, losses by
/// direction, unattributed probes) is gathered in plain arrays by ONE thread — the pipeline's
/// worker (as its PipelineObserver) or, without a pipeline, the engine's receiver thread
/// (through the sink from wrap()) — and published to prometheus-cpp once per worker poll or
/// per second (flush()). Session totals, path states and TTL counters are copied once per
/// second from the engine's interval callback (receiver thread); each tap's counters come from
/// its capture thread; set_spool() from any thread.
class AgentMetrics final : public PipelineObserver {
 public:
  /// `losses_from_records`: count losses by direction from finished records (with a pipeline:
  /// the attributor's verdicts) instead of from the sessions' totals (without one: the STAMP
  /// reflector's counter splits them, ICMP's are undetermined).
  AgentMetrics(prometheus::Registry& registry, bool losses_from_records);
  ~AgentMetrics() override;
  AgentMetrics(const AgentMetrics&) = delete;
  AgentMetrics& operator=(const AgentMetrics&) = delete;

  // --- before the run (one thread) ---
  /// A probe session (engine or TTL). Its series exist from now on, at 0. `paths`: the path
  /// labels its probes can take (the taps' or TTL hops' labels); empty when the agent does not
  /// attribute paths (no pipeline: no path series). With paths, every switchover between two of
  /// them (or "unknown") exists at 0 too, so increase() sees the first one. `has_reverse`: false
  /// for a TTL session (forward path only).
  void add_session(std::uint32_t session_id, const std::string& target, Proto proto,
                   const std::vector<std::string>& paths, bool has_reverse);
  /// A tap, in PipelineOptions::taps order: its state starts up (1).
  void add_tap(const std::string& interface, const std::string& path);

  /// A RecordSink that counts each record here (on the thread that delivers it) and passes it
  /// on to `next`: the agent's sink when there is no pipeline. Lives as long as this object.
  [[nodiscard]] RecordSink& wrap(RecordSink& next);

  // --- the engine's interval callback (receiver thread), once per second ---
  /// A session's run totals so far (SessionSummary of the engine's session).
  void on_session_totals(std::uint32_t session_id, const SessionSummary& totals);
  /// A session's paths as the detector has them (Pipeline::path_state()).
  void on_path_state(std::uint32_t session_id, const PathState& state);
  /// A TTL session's counters (TtlProber::stats()).
  void on_ttl_stats(const std::string& target, const TtlStats& stats);
  /// Publishes what the wrapped sink gathered (call on the thread that delivers records).
  void flush();

  /// The agent's spool (the Shipper's counters): files and bytes waiting, batches dropped so far
  /// (cumulative). Any thread.
  void set_spool(std::uint64_t files, std::uint64_t bytes, std::uint64_t dropped_records);

  // --- PipelineObserver (the pipeline's worker and capture threads) ---
  void on_record(const ProbeRecord& record) override;
  void on_event(const PathEvent& event) override;
  void on_poll_done() override { flush(); }
  void on_tap_stats(std::size_t tap, const TapStats& stats) override;
  /// The health check's series (pathsentry_healthcheck_*, labels tap, path, target).
  void on_healthcheck(const std::vector<HealthCheckStatus>& lines) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pathsentry::probe
