#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/probe/agent/tap_config.h"
#include "pathsentry/probe/engine/probe_session.h"
#include "pathsentry/probe/io/probe_sockets.h"
#include "pathsentry/probe/ship/http_client.h"

namespace pathsentry::probe {

/// Shipping to the collector ([collector], docs/probe.md "Shipping"). Off unless a URL is given.
struct CollectorSettings {
  bool enabled = false;
  std::string url;  ///< as written
  CollectorUrl parsed;
  std::string token;  ///< from collector.token or the first line of collector.token_file
  std::string spool_dir = "/var/lib/pathsentry/spool";
  std::uint64_t spool_max_mb = 256;
  std::int64_t batch_ms = 1000;
  std::string spool_dir_file;  ///< where spool_dir was set ("" = command line or default)
  std::string spool_dir_key = "collector.spool_dir";
};

/// The agent's whole configuration after the TOML file (--config) and the command-line flags
/// that override it (docs/probe.md has the reference). There is no built-in target.
struct AgentConfig {
  std::string config_file;  ///< "" when none was given
  std::uint32_t agent_id = 1;
  std::string records;           ///< --records: "" = none, "-" = stdout, else a file path
  std::string summary_json;      ///< --summary-json: "" = none, "-" = stdout, else a file path
  bool quiet = false;            ///< no live per-second summary
  bool check_only = false;       ///< --check-config: validate and exit
  bool help = false;             ///< --help
  std::int64_t duration_ns = 0;  ///< 0 = until SIGINT/SIGTERM
  io::IcmpSocketMode icmp_socket = io::IcmpSocketMode::Auto;
  int rt_priority = 10;  ///< SCHED_FIFO priority of the engine's threads; 0 = default policy
  /// The engine's send coalescing (--send-coalesce-us, agent.send_coalesce_us): the longest the
  /// sender waits to send 8 probes' worth of slots together; 0 = a wake-up per slot
  /// (EngineOptions::send_coalesce_ns).
  std::int64_t send_coalesce_ns = 1'000'000;
  /// Launch-time pacing (--launch-ahead-us, agent.launch_ahead_us;
  /// EngineOptions::launch_ahead_ns): 0 = off.
  std::int64_t launch_ahead_ns = 0;
  /// On SIGINT/SIGTERM (or at the end of the duration), the longest wait for outstanding
  /// replies (--drain-ms, agent.drain_ms; 0 = each session's timeout): well under systemd's
  /// stop timeout, so the records are flushed before a SIGKILL.
  std::int64_t drain_ns = 5'000'000'000;
  /// Records output buffer while its writes fail (--records-buffer-kb, agent.records_buffer_kb):
  /// beyond it whole lines are dropped and counted.
  std::int64_t records_buffer_kb = 16384;
  /// Memory of the records and events waiting for the writer thread (--record-queue-mb,
  /// agent.record_queue_mb): beyond it (or beyond two seconds of records) they are dropped and
  /// counted, so a writer that falls behind cannot grow the agent without bound.
  std::int64_t record_queue_mb = 16;
  /// One entry per session (per target: ICMP then STAMP), with session ids assigned.
  std::vector<SessionConfig> sessions;
  /// For each session, the config key its socket options came from ("targets[0]" or
  /// "--target"), so startup errors can name it.
  std::vector<std::string> session_keys;
  /// Taps and detector settings ([[tap]], [detector], --tap…; tap_config.h).
  TapSettings tap;
  /// Size cycling in effect (--size-cycle/--size-step, agent.size_cycle/size_step; also in
  /// every SessionConfig): number of sizes (1 = fixed) and bytes between them. When cycling,
  /// every session's `size` is raised so all requests share one base IP total length.
  std::uint32_t size_cycle = 1;
  std::uint32_t size_step = 16;
  /// Prometheus /metrics endpoint (--metrics-listen / metrics.listen, docs/metrics.md):
  /// "ADDR:PORT" or "off". Taken by default: a default port in use only warns.
  std::string metrics_listen = "127.0.0.1:9781";
  /// Where metrics_listen was set: the flag or key ("" = the default) and the file ("" = the
  /// command line), for the error when it cannot be bound.
  std::string metrics_listen_key;
  std::string metrics_listen_file;
  /// agent.name / --agent-name: names the agent to the collector (default: the host name).
  std::string agent_name;
  CollectorSettings collector;
};

/// Parses the command line (without argv[0]) and the config file it names. Session ids are
/// (`run_nonce` << 16) | (index + 1), so a restarted agent does not take replies meant for its
/// previous run. Throws ConfigError naming the file (or "command line"), the key and the bad
/// value for every mistake, including a configuration without any target.
[[nodiscard]] AgentConfig parse_agent_config(std::span<const std::string_view> args,
                                             std::uint16_t run_nonce);

/// The --help text.
[[nodiscard]] std::string agent_usage();

}  // namespace pathsentry::probe
