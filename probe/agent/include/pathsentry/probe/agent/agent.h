#pragma once

#include <memory>
#include <optional>

#include "pathsentry/common/clock.h"
#include "pathsentry/probe/agent/agent_config.h"
#include "pathsentry/probe/ship/shipper.h"

namespace pathsentry::probe {

/// The agent (pathsentry-probe, docs/probe.md): owns the outputs (JSON lines, summary, the
/// human lines), the probe sessions and their engine, the attribution pipeline (with taps or
/// TTL probes) and the TTL probers, and runs them for the configured duration.
///
/// Construction opens everything that needs a privilege (output files, probe and TTL sockets,
/// live taps), drops the privileges and then opens the /metrics endpoint (docs/metrics.md; its
/// server's threads are the only ones it starts). It throws ConfigError naming the file, key and
/// value at fault: ConfigError for an output that cannot be opened, EnvironmentError (a
/// ConfigError) for a socket or capture that cannot be opened for a session or tap, or a
/// configured metrics address that cannot be bound.
class Agent {
 public:
  Agent(const AgentConfig& config, const Clock& clock);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  /// Probes until the duration has passed or request_stop() was called, waits for the last
  /// replies, then logs the end-of-run counters, prints each session's totals and writes the
  /// summary. Returns the process status: 0, or 1 when the summary could not be written.
  /// Blocks; call once. A thread that fails ends the process (thread_runner.h).
  int run();

  /// Asks run() to stop sending now (any thread; not async-signal-safe).
  void request_stop();

  /// Asks the writer thread to reopen the records file (SIGHUP, log rotation): the renamed
  /// file gets what was written before, the new one what follows. Any thread.
  void request_reopen();

  /// Asks run() to stop now without waiting for outstanding replies (they are declared lost);
  /// the records and the summary are still flushed. Any thread.
  void request_abort();

  /// The shipper's counters (spool files and bytes, batches written/sent, failures, rejected,
  /// raw records dropped; shipper.h), or nullopt when nothing is shipped. Any thread: for the
  /// metrics.
  [[nodiscard]] std::optional<ShipperStats> shipping_stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// pathsentry-probe's main: parses the flags and the config file, answers --help and
/// --check-config, else runs an Agent until its duration ends or SIGINT/SIGTERM. Exit status:
/// 0 done, 1 failure while running, 2 bad configuration, 3 the environment is not ready (a
/// socket, tap or listening address that cannot be opened: config_error.h EnvironmentError).
int agent_main(int argc, char** argv);

}  // namespace pathsentry::probe
