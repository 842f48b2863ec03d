#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "pathsentry/common/record.h"
#include "pathsentry/common/rollup.h"

namespace pathsentry::db {

/// Why the store could not do something. The collector answers Busy/Full/ReadOnly/Corrupt/Io
/// with 503 and the message (agents keep their spool and resend); TooNew and Corrupt at open
/// stop the collector with the message (docs/collector.md "Errors").
enum class ErrorKind : std::uint8_t {
  Busy,      ///< locked by another process beyond the busy timeout (SQLITE_BUSY/LOCKED)
  Full,      ///< disk or quota full (SQLITE_FULL)
  ReadOnly,  ///< the file or its directory is read-only (SQLITE_READONLY, EROFS)
  Corrupt,   ///< not a database, or damaged (SQLITE_CORRUPT/NOTADB)
  TooNew,    ///< its schema version is newer than this binary knows
  Io,        ///< any other I/O or SQLite failure
  Closed,    ///< the store is shutting down
};
[[nodiscard]] const char* to_string(ErrorKind k);

struct StoreError {
  ErrorKind kind = ErrorKind::Io;
  std::string message;  ///< one line naming the database file and what failed
};

/// Thrown by open_sqlite_store() (cannot open, corrupt, newer schema, migration failed).
class StoreOpenError : public std::runtime_error {
 public:
  StoreOpenError(ErrorKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  [[nodiscard]] ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

struct StoreConfig {
  std::string path;  ///< the SQLite file (its directory must exist)
  /// Raw probe records older than this are deleted, except those within event_window_ns of an
  /// event that is kept (default 1 h).
  std::int64_t raw_keep_ns = 3'600'000'000'000;
  std::int64_t event_window_ns = 60'000'000'000;  ///< ± around every event (default 60 s)
  std::int64_t rollup_keep_ns = 400LL * 86'400'000'000'000;  ///< default 400 days; 0 = forever
  std::int64_t event_keep_ns = 0;                            ///< 0 = forever (the default)
  int busy_timeout_ms = 5000;
  /// PRAGMA quick_check at open, so a damaged file is refused before anything is written to
  /// it. It reads the whole file: ~1 s per 100 MB cached, several cold (docs/store.md).
  bool check_at_open = true;
  int read_connections = 4;  ///< pool of read-only connections for the query methods
};

/// One ingest body, parsed (record_json.h line types): who sent it and what it holds.
struct IngestBatch {
  BatchHeader header;
  std::vector<ProbeRecord> probes;
  std::vector<Rollup> rollups;
  std::vector<PathEvent> events;  ///< each with event_id != 0
};

/// What an ingest did: rows stored and rows that were already there (a resend). A late reply
/// whose probe was stored as lost replaces that row and counts as stored.
struct IngestCounts {
  std::uint64_t probes = 0, rollups = 0, events = 0;
  std::uint64_t duplicate_probes = 0, duplicate_rollups = 0, duplicate_events = 0;
};

struct AgentRow {
  std::string name;
  std::string version;   ///< of its last batch
  std::string last_run;  ///< run id of its last batch
  std::int64_t first_seen_ns = 0;
  std::int64_t last_seen_ns = 0;  ///< when the collector last ingested a batch from it
  std::uint64_t batches = 0;
};

/// One probe stream as the store knows it: (agent, target, proto), over all runs.
struct TargetRow {
  std::string agent;
  std::string target;
  Proto proto = Proto::Icmp;
  std::uint32_t session_id = 0;  ///< of the latest run
  std::string run;               ///< latest run
  std::int64_t first_ns = 0;     ///< first second with a rollup or probe
  std::int64_t last_ns = 0;      ///< last second with a rollup or probe
};

struct EventQuery {
  std::optional<std::int64_t> since_ns;  ///< ts_ns >= since
  std::optional<std::int64_t> until_ns;  ///< ts_ns < until
  std::optional<std::string> target;
  std::optional<std::string> kind;  ///< to_string(EventType), e.g. "switchover"
  std::optional<std::string> agent;
  std::size_t limit = 1000;  ///< newest first
};

struct EventRow {
  std::int64_t id = 0;  ///< the store's row id (increasing in ingest order)
  std::string agent;
  std::string run;
  PathEvent event;
};

struct SeriesQuery {
  std::string target;
  std::optional<Proto> proto;
  std::optional<std::string> agent;
  std::int64_t from_ns = 0;
  std::int64_t to_ns = 0;
  std::int64_t step_ns = 1'000'000'000;  ///< a multiple of 1 s
};

/// Rollups merged into one step: counts summed, rtt min/max exact, mean weighted by received,
/// p50/p99/jitter the received-weighted mean of the seconds' values (an approximation, said so
/// in the API docs).
struct SeriesPoint {
  std::string agent;
  Proto proto = Proto::Icmp;
  Direction direction = Direction::Forward;
  std::string path;
  std::int64_t t_ns = 0;  ///< start of the step
  std::uint64_t sent = 0, received = 0, lost_forward = 0, lost_reverse = 0, lost_undetermined = 0;
  std::int64_t rtt_min_ns = 0, rtt_mean_ns = 0, rtt_p50_ns = 0, rtt_p99_ns = 0, rtt_max_ns = 0,
               jitter_ns = 0;
};

struct ProbeQuery {
  std::string target;
  std::optional<Proto> proto;
  std::optional<std::string> agent;
  std::int64_t from_ns = 0;     ///< tx_ns >= from
  std::int64_t to_ns = 0;       ///< tx_ns < to
  std::size_t limit = 200'000;  ///< oldest first
};

struct ProbeRow {
  std::string agent;
  std::string run;
  ProbeRecord record;
};

struct RetentionReport {
  std::uint64_t probes_deleted = 0, rollups_deleted = 0, events_deleted = 0;
};

struct StoreStats {
  std::int64_t file_bytes = 0;  ///< database + WAL
  int schema_version = 0;
  std::uint64_t queued_batches = 0;  ///< waiting for the writer
  std::uint64_t committed_batches = 0;
  std::uint64_t failed_batches = 0;
};

/// The collector's store (docs/collector.md "Store"). Writes go through one writer thread in
/// batched transactions; reads use their own connections and may run on any thread. All
/// methods are thread-safe.
class Store {
 public:
  virtual ~Store() = default;

  /// Queues a batch for the writer. The future is set after the transaction that holds it has
  /// committed (an acknowledgement means the rows are on disk) or failed (nothing of it
  /// written). Idempotent: probes on (agent, run, session_id, seq), rollups on (agent, run,
  /// session_id, second_ns, direction, path), events on (agent, run, event_id).
  virtual std::future<tl::expected<IngestCounts, StoreError>> ingest(IngestBatch batch) = 0;

  virtual tl::expected<std::vector<AgentRow>, StoreError> agents() = 0;
  virtual tl::expected<std::vector<TargetRow>, StoreError> targets() = 0;
  virtual tl::expected<std::vector<EventRow>, StoreError> events(const EventQuery& q) = 0;
  /// Events with id > after_id, oldest first (the live stream's catch-up).
  virtual tl::expected<std::vector<EventRow>, StoreError> events_after(std::int64_t after_id,
                                                                       std::size_t limit) = 0;
  virtual tl::expected<std::vector<SeriesPoint>, StoreError> series(const SeriesQuery& q) = 0;
  virtual tl::expected<std::vector<ProbeRow>, StoreError> probes(const ProbeQuery& q) = 0;

  /// Applies retention as of `now_ns` (runs on the writer thread; waits for it).
  virtual tl::expected<RetentionReport, StoreError> apply_retention(std::int64_t now_ns) = 0;
  virtual StoreStats stats() = 0;
};

/// The schema version this binary writes (migrations 1..N).
[[nodiscard]] int schema_version();

/// Opens (creating if missing) the SQLite store: WAL mode, migrations applied in one
/// transaction each, the writer thread started. Throws StoreOpenError with a message that
/// names the file and, for a corrupt one, the command that recovers what can be recovered.
[[nodiscard]] std::unique_ptr<Store> open_sqlite_store(const StoreConfig& config);

}  // namespace pathsentry::db
