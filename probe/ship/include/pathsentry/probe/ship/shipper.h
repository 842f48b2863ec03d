#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/record.h"
#include "pathsentry/common/rollup.h"
#include "pathsentry/probe/ship/http_client.h"
#include "pathsentry/probe/ship/rollup_builder.h"
#include "pathsentry/probe/ship/spool.h"

namespace pathsentry::probe {

/// How the shipper runs (docs/probe.md "Shipping"; the agent fills it from [collector]).
struct ShipperOptions {
  std::string agent;    ///< agent.name
  std::string run;      ///< 16 hex digits (new_run_id())
  std::string version;  ///< the agent's version
  CollectorUrl url;
  std::string token;
  SpoolOptions spool;
  /// A batch is closed this long after the previous one (collector.batch_ms) ...
  std::int64_t batch_ns = 1'000'000'000;
  /// ... or after at most this when an event waits (events leave within 100 ms).
  std::int64_t event_delay_ns = 50'000'000;
  /// RollupBuilder's grace: how late a second's last records may come.
  std::int64_t rollup_grace_ns = 3'000'000'000;
  /// One POST (connect, send, answer) gives up after this.
  std::int64_t http_timeout_ns = 30'000'000'000;
  /// After a failed POST (5xx, 408, 429, no connection, timeout) the next try waits
  /// backoff_initial_ns, doubling after each further failure up to backoff_max_ns.
  std::int64_t backoff_initial_ns = 500'000'000;
  std::int64_t backoff_max_ns = 30'000'000'000;
  /// At stop(): how long the last batches may still be sent before the thread ends.
  std::int64_t stop_send_ns = 2'000'000'000;
  /// The hand-off queue: raw records beyond this many waiting are dropped (counted); the
  /// rollups' per-probe figures (a few dozen bytes each) and events are kept up to
  /// queue_stats_max (far beyond anything a healthy shipper thread lets wait).
  std::size_t queue_raw_max = 65'536;
  std::size_t queue_stats_max = std::size_t{1} << 22;
  /// Raw records per batch file at most (bodies stay well under the collector's 16 MiB).
  std::size_t batch_max_records = 20'000;
  /// Log lines (failures, recoveries, rejections, drops).
  std::function<void(const std::string&)> log;
};

/// The shipper's counters (Shipper::stats(), for the metrics and the agent's summary).
struct ShipperStats {
  std::uint64_t records_offered = 0;
  std::uint64_t events_offered = 0;
  std::uint64_t queue_dropped_raw = 0;    ///< raw records dropped: hand-off queue full
  std::uint64_t queue_dropped_stats = 0;  ///< per-probe rollup figures dropped (never expected)
  std::uint64_t pending_dropped_raw =
      0;                      ///< raw records dropped while the spool could not be written
  std::uint64_t rollups = 0;  ///< rollup rows made
  std::uint64_t rollup_after_close = 0;  ///< records too late for their second's rollup
  std::uint64_t batches_written = 0;     ///< batch files written to the spool
  std::uint64_t batches_sent = 0;        ///< acknowledged (2xx) and deleted
  std::uint64_t send_failures = 0;       ///< POSTs that failed and will be retried
  std::uint64_t rejected_batches = 0;    ///< refused for good (4xx) or unreadable: rejected/
  std::uint64_t spool_write_errors = 0;
  std::uint64_t spool_files = 0;
  std::uint64_t spool_bytes = 0;
  std::uint64_t spool_dropped_raw = 0;  ///< probe lines removed at the spool's bound
  bool collector_ok = false;            ///< the last POST was acknowledged
  /// All raw records dropped, wherever.
  [[nodiscard]] std::uint64_t dropped_raw() const {
    return queue_dropped_raw + pending_dropped_raw + spool_dropped_raw;
  }
};

/// The wait after `failures` consecutive failed POSTs (1 = the first): initial_ns doubling, at
/// most max_ns.
[[nodiscard]] std::int64_t ship_backoff_ns(std::uint32_t failures, std::int64_t initial_ns,
                                           std::int64_t max_ns);

/// Ships the agent's records, per-second rollups and events to the collector (issue 10 item 3).
///
/// offer() (any thread: the engine's receiver thread, the pipeline's worker) only appends to a
/// bounded hand-off queue under a short lock and never waits: when raw records fill it they are
/// dropped and counted, while what the rollups need of each record (a few dozen bytes) and the
/// events are kept. The shipper's own thread ("shipper") takes the queue every few ms, builds
/// the rollups (RollupBuilder), numbers events (event_id 1, 2, … per run, unless already set),
/// closes a batch every batch_ns (sooner when an event waits), writes it to the spool, and
/// POSTs the spooled files oldest first (HttpClient): 2xx deletes the file; 5xx, 408, 429, no
/// connection or a timeout keep it and retry after a backoff, in order; another 4xx moves it to
/// rejected/ (counted, logged). stop() closes every open second, writes the last batch and
/// sends for at most stop_send_ns; what was not acknowledged stays spooled for the next start.
class Shipper {
 public:
  /// Opens the spool (std::runtime_error when its directory cannot be used).
  Shipper(const Clock& clock, ShipperOptions options);
  ~Shipper();
  Shipper(const Shipper&) = delete;
  Shipper& operator=(const Shipper&) = delete;

  void start();
  /// Hands a finished record over (any thread, never blocks for long).
  void offer(const ProbeRecord& record);
  /// Hands an event over (any thread); it leaves within event_delay_ns.
  void offer(const PathEvent& event);
  /// Closes the open seconds, writes the last batch, sends for at most stop_send_ns, joins the
  /// thread. Call after the last offer(). Idempotent.
  void stop();

  /// The counters now (any thread).
  [[nodiscard]] ShipperStats stats() const;
  /// The run id every batch header carries.
  [[nodiscard]] const std::string& run() const { return opt_.run; }
  /// A one-line summary of the counters for the agent's log.
  [[nodiscard]] std::string summary_line() const;

 private:
  struct Stat;
  struct Taken;
  void loop();       // the batcher: hand-off queue → rollups → spool files
  void send_loop();  // the sender: spool files → the collector, oldest first
  void write_batches();
  [[nodiscard]] std::string client_url_text() const;
  /// POSTs spooled files, oldest first, while not backing off and before `until` (monotonic).
  void send(std::int64_t until, std::int64_t post_deadline);
  void publish_stats();
  void log(const std::string& m) const;
  std::uint16_t label(std::string_view s);  // under mu_

  const Clock& clock_;
  ShipperOptions opt_;
  // The batcher adds files, the sender reads and removes them: every call under spool_mu_ (a
  // POST runs outside it, so the batcher never waits for the collector).
  mutable std::mutex spool_mu_;
  Spool spool_;
  HttpClient client_;
  RollupBuilder rollups_;

  // The hand-off queue (mu_).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ProbeRecord> q_raw_;
  std::vector<Stat> q_stats_;
  std::vector<PathEvent> q_events_;
  std::map<std::string, std::uint16_t, std::less<>> label_ids_;
  std::vector<std::string> labels_;
  std::uint64_t next_event_id_ = 1;
  std::uint64_t offered_ = 0;
  std::uint64_t offered_events_ = 0;
  std::uint64_t dropped_raw_ = 0;
  std::uint64_t dropped_stats_ = 0;
  bool stop_ = false;
  std::atomic<bool> stopping_{false};       // stop_ for the HTTP client's waits
  std::atomic<std::int64_t> stop_mono_{0};  // when stop() was called

  // Wakes the sender: a new file, or the batcher is done (spool_mu_).
  std::condition_variable send_cv_;
  bool send_wake_ = false;
  bool batcher_done_ = false;

  // The batcher thread's own.
  std::vector<std::string> my_labels_;
  std::vector<ProbeRecord> pending_raw_;
  std::vector<Rollup> pending_rollups_;
  std::vector<PathEvent> pending_events_;
  std::uint64_t batch_no_ = 0;
  std::int64_t last_batch_mono_ = 0;
  std::int64_t first_event_mono_ = 0;
  bool spool_failing_ = false;

  // The sender thread's own.
  std::int64_t next_attempt_mono_ = 0;
  std::uint32_t failures_in_row_ = 0;
  std::string last_failure_;

  mutable std::mutex stats_mu_;
  ShipperStats stats_;
  std::thread thread_;
  std::thread sender_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace pathsentry::probe
