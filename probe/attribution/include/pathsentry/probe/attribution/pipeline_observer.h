#pragma once

#include <cstddef>
#include <vector>

#include "pathsentry/common/record.h"
#include "pathsentry/probe/attribution/healthcheck_watch.h"
#include "pathsentry/probe/capture/tap.h"

namespace pathsentry::probe {

/// What the pipeline tells an observer (the agent's metrics, docs/metrics.md) besides its
/// output: every finished record and event on the worker thread, and each tap's counters from
/// its capture thread. Implementations must be quick and must not block: they run on the
/// pipeline's threads.
class PipelineObserver {
 public:
  virtual ~PipelineObserver() = default;
  /// A finished record (attributed, TTL or passed through), worker thread.
  virtual void on_record(const ProbeRecord& record) = 0;
  /// An event (path, outage, asymmetry, tap), worker thread.
  virtual void on_event(const PathEvent& event) = 0;
  /// The end of a worker poll that delivered records or events: publish what was gathered.
  virtual void on_poll_done() = 0;
  /// Tap `tap`'s counters (index in PipelineOptions::taps), from its capture thread, about once
  /// a second while it captures.
  virtual void on_tap_stats(std::size_t tap, const TapStats& stats) = 0;
  /// Each watched line's health check (docs/healthcheck.md), worker thread: about once a second
  /// and at each health-check event. Default: ignored.
  virtual void on_healthcheck(const std::vector<HealthCheckStatus>& /*lines*/) {}
};

}  // namespace pathsentry::probe
