// The SQLite store (docs/store.md): one writer thread with group commit, a pool of read-only
// connections, versioned migrations at open, retention in bounded chunks on the writer.

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>

#include "pathsentry/common/record_json.h"
#include "pathsentry/db/store.h"
#include "probe_columns.h"
#include "sqlite_util.h"

namespace pathsentry::db {

const char* to_string(ErrorKind k) {
  switch (k) {
    case ErrorKind::Busy:
      return "busy";
    case ErrorKind::Full:
      return "full";
    case ErrorKind::ReadOnly:
      return "read-only";
    case ErrorKind::Corrupt:
      return "corrupt";
    case ErrorKind::TooNew:
      return "too new";
    case ErrorKind::Io:
      return "io";
    case ErrorKind::Closed:
      return "closed";
  }
  return "io";
}

namespace {

using detail::DbPtr;
using detail::SqlFailure;
using detail::Stmt;

struct Migration {
  const char* name;
  const char* sql;
};
constexpr Migration kMigrations[] = {
#include "migrations.inc"
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
// Group commit bounds: one transaction holds at most this many batches / rows (always at
// least one batch).
constexpr std::size_t kMaxGroupBatches = 256;
constexpr std::size_t kMaxGroupRows = 100'000;
// Retention deletes at most this many rows per transaction, then lets ingest run.
constexpr std::int64_t kRetentionChunk = 5000;

std::int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t sat_add(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kMax : kMin;
  return r;
}
std::int64_t sat_sub(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) return b > 0 ? kMin : kMax;
  return r;
}

// The command that salvages what can be read. Not ".recover": Debian 12's sqlite3 3.40 lacks the
// sqlite_dbpage table it needs ("no such table: sqlite_dbpage"). ".dump" reads every row it can
// (past a damaged page it reads the table backwards) but ends with a ROLLBACK when it met
// damage, turned into a COMMIT here; it does not carry the schema version, added from the
// damaged file's header so the collector does not migrate the recovered file again.
std::string recovery_command(const std::string& path) {
  return "(sqlite3 '" + path +
         "' .dump | sed 's/^ROLLBACK; -- due to errors$/COMMIT;/'; echo \"PRAGMA user_version = "
         "$(sqlite3 '" +
         path + "' 'PRAGMA user_version');\") | sqlite3 '" + path + ".recovered'";
}

std::string recovery_hint(const std::string& path) {
  return "; recover what can be recovered with: " + recovery_command(path) +
         " (then move the damaged file away and the recovered one in its place)";
}

std::int64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::int64_t>(st.st_size) : 0;
}

[[noreturn]] void throw_open(const StoreError& e, const std::string& path) {
  std::string msg = e.message;
  if (e.kind == ErrorKind::Corrupt) msg += recovery_hint(path);
  throw StoreOpenError(e.kind, msg);
}

// ---------------------------------------------------------------------------------------------
// Read connections.

struct ReadConn {
  DbPtr db;
  std::unordered_map<std::string, Stmt> stmts;
  const std::string* path = nullptr;

  Stmt& stmt(const std::string& sql) {
    auto it = stmts.find(sql);
    if (it == stmts.end()) it = stmts.emplace(sql, Stmt(db.get(), sql, *path)).first;
    return it->second;
  }
};

// Resets a statement when a read leaves it (ends its read transaction), even on a throw.
struct ResetGuard {
  Stmt& s;
  ~ResetGuard() { s.reset(); }
};

class ReadPool {
 public:
  void add(std::unique_ptr<ReadConn> c) { free_.push_back(std::move(c)); }

  std::unique_ptr<ReadConn> acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty(); });
    auto c = std::move(free_.back());
    free_.pop_back();
    return c;
  }
  void release(std::unique_ptr<ReadConn> c) {
    {
      std::lock_guard lock(mu_);
      free_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<ReadConn>> free_;
};

DbPtr open_connection(const std::string& path, int flags, int busy_timeout_ms) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) throw_open(detail::error_of(db.get(), rc, path, "cannot open"), path);
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), busy_timeout_ms);
  return db;
}

// ---------------------------------------------------------------------------------------------
// The writer's jobs.

using IngestResult = tl::expected<IngestCounts, StoreError>;
using RetentionResult = tl::expected<RetentionReport, StoreError>;

struct IngestJob {
  IngestBatch batch;
  std::promise<IngestResult> done;
  std::size_t rows() const {
    return batch.probes.size() + batch.rollups.size() + batch.events.size();
  }
};

struct RetentionSession {
  std::int64_t sid = 0, agent_id = 0;
  std::string target;
};

struct RetentionJob {
  std::int64_t now_ns = 0;
  std::promise<RetentionResult> done;
  int phase = 0;  // 0 events, 1 rollups, 2 probes, 3 finished
  bool listed = false;
  std::vector<RetentionSession> sessions;
  std::size_t idx = 0;
  RetentionReport report;
};

// ---------------------------------------------------------------------------------------------

class SqliteStore final : public Store {
 public:
  SqliteStore(StoreConfig cfg, DbPtr writer) : cfg_(std::move(cfg)), w_(std::move(writer)) {
    prepare_writer();
    const int n = std::max(1, cfg_.read_connections);
    for (int i = 0; i < n; ++i) {
      auto c = std::make_unique<ReadConn>();
      c->db = open_connection(cfg_.path, SQLITE_OPEN_READONLY, cfg_.busy_timeout_ms);
      c->path = &cfg_.path;
      pool_.add(std::move(c));
    }
    thread_ = std::thread([this] { writer_loop(); });
  }

  ~SqliteStore() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  std::future<IngestResult> ingest(IngestBatch batch) override {
    IngestJob job{std::move(batch), {}};
    auto fut = job.done.get_future();
    for (const auto& e : job.batch.events) {
      if (e.event_id == 0) {
        job.done.set_value(tl::unexpected(
            StoreError{ErrorKind::Io, cfg_.path + ": an event without event_id cannot be stored (" +
                                          std::string(probe::to_string(e.type)) + ", ts_ns " +
                                          std::to_string(e.ts_ns) + ")"}));
        return fut;
      }
    }
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        job.done.set_value(
            tl::unexpected(StoreError{ErrorKind::Closed, cfg_.path + ": the store is closing"}));
        return fut;
      }
      queue_.push_back(std::move(job));
    }
    cv_.notify_one();
    return fut;
  }

  tl::expected<std::vector<AgentRow>, StoreError> agents() override {
    return read([](ReadConn& c) {
      auto& s = c.stmt(
          "SELECT name, version, last_run, first_seen_ns, last_seen_ns, batches FROM agents "
          "ORDER BY name");
      ResetGuard g{s};
      std::vector<AgentRow> out;
      while (s.step()) {
        AgentRow r;
        r.name = s.text(0);
        r.version = s.text(1);
        r.last_run = s.text(2);
        r.first_seen_ns = s.i64(3);
        r.last_seen_ns = s.i64(4);
        r.batches = static_cast<std::uint64_t>(s.i64(5));
        out.push_back(std::move(r));
      }
      return out;
    });
  }

  tl::expected<std::vector<TargetRow>, StoreError> targets() override {
    return read([](ReadConn& c) {
      auto& s = c.stmt(
          "SELECT a.name, t.target, t.proto, s.session_id, s.run, t.first_ns, t.last_ns "
          "FROM targets t JOIN agents a ON a.id = t.agent_id "
          "LEFT JOIN sessions s ON s.id = t.last_session ORDER BY a.name, t.target, t.proto");
      ResetGuard g{s};
      std::vector<TargetRow> out;
      while (s.step()) {
        TargetRow r;
        r.agent = s.text(0);
        r.target = s.text(1);
        r.proto = static_cast<Proto>(s.i64(2));
        r.session_id = static_cast<std::uint32_t>(s.i64(3));
        r.run = s.text(4);
        r.first_ns = s.i64(5);
        r.last_ns = s.i64(6);
        out.push_back(std::move(r));
      }
      return out;
    });
  }

  tl::expected<std::vector<EventRow>, StoreError> events(const EventQuery& q) override {
    std::string sql =
        "SELECT e.id, a.name, e.run, e.json FROM events e JOIN agents a ON a.id = e.agent_id "
        "WHERE 1";
    if (q.since_ns) sql += " AND e.ts_ns >= ?1";
    if (q.until_ns) sql += " AND e.ts_ns < ?2";
    if (q.target) sql += " AND e.target = ?3";
    if (q.kind) sql += " AND e.kind = ?4";
    if (q.agent) sql += " AND a.name = ?5";
    sql += " ORDER BY e.ts_ns DESC, e.id DESC LIMIT ?6";
    return read([&](ReadConn& c) {
      auto& s = c.stmt(sql);
      ResetGuard g{s};
      if (q.since_ns) s.bind(1, *q.since_ns);
      if (q.until_ns) s.bind(2, *q.until_ns);
      if (q.target) s.bind(3, *q.target);
      if (q.kind) s.bind(4, *q.kind);
      if (q.agent) s.bind(5, *q.agent);
      s.bind(6, clamp_limit(q.limit));
      return event_rows(s);
    });
  }

  tl::expected<std::vector<EventRow>, StoreError> events_after(std::int64_t after_id,
                                                               std::size_t limit) override {
    return read([&](ReadConn& c) {
      auto& s = c.stmt(
          "SELECT e.id, a.name, e.run, e.json FROM events e JOIN agents a ON a.id = e.agent_id "
          "WHERE e.id > ?1 ORDER BY e.id LIMIT ?2");
      ResetGuard g{s};
      s.bind(1, after_id).bind(2, clamp_limit(limit));
      return event_rows(s);
    });
  }

  tl::expected<std::vector<SeriesPoint>, StoreError> series(const SeriesQuery& q) override {
    if (q.step_ns < 1'000'000'000 || q.step_ns % 1'000'000'000 != 0) {
      return tl::unexpected(StoreError{
          ErrorKind::Io,
          "series: step_ns " + std::to_string(q.step_ns) + " is not a positive multiple of 1 s"});
    }
    std::string sql =
        "SELECT a.name, t.proto, r.direction, p.name, (r.second_ns / ?1) * ?1 AS bucket, "
        "SUM(r.sent), SUM(r.received), SUM(r.lost_forward), SUM(r.lost_reverse), "
        "SUM(r.lost_undetermined), "
        "MIN(CASE WHEN r.received > 0 THEN r.rtt_min_ns END), "
        "TOTAL(r.rtt_mean_ns * CAST(r.received AS REAL)), "
        "TOTAL(r.rtt_p50_ns * CAST(r.received AS REAL)), "
        "TOTAL(r.rtt_p99_ns * CAST(r.received AS REAL)), "
        "MAX(CASE WHEN r.received > 0 THEN r.rtt_max_ns END), "
        "TOTAL(r.jitter_ns * CAST(r.received AS REAL)) "
        "FROM targets t JOIN agents a ON a.id = t.agent_id "
        "JOIN sessions s ON s.target_id = t.id "
        "JOIN rollup_1s r ON r.session = s.id AND r.second_ns >= ?2 AND r.second_ns < ?3 "
        "JOIN paths p ON p.id = r.path WHERE t.target = ?4";
    if (q.proto) sql += " AND t.proto = ?5";
    if (q.agent) sql += " AND a.name = ?6";
    sql +=
        " GROUP BY a.name, t.proto, r.direction, p.name, bucket "
        "ORDER BY a.name, t.proto, r.direction, p.name, bucket";
    return read([&](ReadConn& c) {
      auto& s = c.stmt(sql);
      ResetGuard g{s};
      s.bind(1, q.step_ns).bind(2, q.from_ns).bind(3, q.to_ns).bind(4, q.target);
      if (q.proto) s.bind(5, static_cast<std::int64_t>(*q.proto));
      if (q.agent) s.bind(6, *q.agent);
      std::vector<SeriesPoint> out;
      while (s.step()) {
        SeriesPoint p;
        p.agent = s.text(0);
        p.proto = static_cast<Proto>(s.i64(1));
        p.direction = static_cast<Direction>(s.i64(2));
        p.path = s.text(3);
        p.t_ns = s.i64(4);
        p.sent = static_cast<std::uint64_t>(s.i64(5));
        p.received = static_cast<std::uint64_t>(s.i64(6));
        p.lost_forward = static_cast<std::uint64_t>(s.i64(7));
        p.lost_reverse = static_cast<std::uint64_t>(s.i64(8));
        p.lost_undetermined = static_cast<std::uint64_t>(s.i64(9));
        if (p.received > 0) {
          const double w = static_cast<double>(p.received);
          const auto mean = [&](int col) {
            return static_cast<std::int64_t>(std::llround(s.f64(col) / w));
          };
          p.rtt_min_ns = s.i64(10);
          p.rtt_mean_ns = mean(11);
          p.rtt_p50_ns = mean(12);
          p.rtt_p99_ns = mean(13);
          p.rtt_max_ns = s.i64(14);
          p.jitter_ns = mean(15);
        }
        out.push_back(std::move(p));
      }
      return out;
    });
  }

  tl::expected<std::vector<ProbeRow>, StoreError> probes(const ProbeQuery& q) override {
    std::string sql =
        "SELECT a.name, s.run, t.target, t.proto, s.session_id, p.seq, p.tx_ns, p.rx_off, "
        "p.rtt_x, p.flags, fp.name, rp.name, p.refl_seq, p.refl_rx_off, p.refl_tx_off, "
        "p.taps_down FROM targets t JOIN agents a ON a.id = t.agent_id "
        "JOIN sessions s ON s.target_id = t.id "
        "JOIN probes p ON p.session = s.id AND p.tx_ns >= ?1 AND p.tx_ns < ?2 "
        "JOIN paths fp ON fp.id = p.fwd_path JOIN paths rp ON rp.id = p.rev_path "
        "WHERE t.target = ?3";
    if (q.proto) sql += " AND t.proto = ?4";
    if (q.agent) sql += " AND a.name = ?5";
    sql += " ORDER BY p.tx_ns, a.name, t.proto, s.run, s.session_id, p.seq LIMIT ?6";
    return read([&](ReadConn& c) {
      auto& s = c.stmt(sql);
      ResetGuard g{s};
      s.bind(1, q.from_ns).bind(2, q.to_ns).bind(3, q.target);
      if (q.proto) s.bind(4, static_cast<std::int64_t>(*q.proto));
      if (q.agent) s.bind(5, *q.agent);
      s.bind(6, clamp_limit(q.limit));
      std::vector<ProbeRow> out;
      while (s.step()) {
        ProbeRow row;
        row.agent = s.text(0);
        row.run = s.text(1);
        auto& r = row.record;
        r.target = s.text(2);
        r.proto = static_cast<Proto>(s.i64(3));
        r.session_id = static_cast<std::uint32_t>(s.i64(4));
        detail::ProbeColumns cols;
        cols.seq = s.i64(5);
        cols.tx_ns = s.i64(6);
        cols.rx_off = s.opt_i64(7);
        cols.rtt_x = s.opt_i64(8);
        cols.flags = s.i64(9);
        r.fwd_path = s.text(10);
        r.rev_path = s.text(11);
        cols.refl_seq = s.opt_i64(12);
        cols.refl_rx_off = s.opt_i64(13);
        cols.refl_tx_off = s.opt_i64(14);
        if (!s.is_null(15)) cols.taps_down = s.text(15);
        if (!detail::from_columns(cols, r)) {
          throw SqlFailure{StoreError{ErrorKind::Corrupt, cfg_.path + ": probe row (seq " +
                                                              std::to_string(cols.seq) +
                                                              ") has values the store never "
                                                              "writes"}};
        }
        out.push_back(std::move(row));
      }
      return out;
    });
  }

  tl::expected<RetentionReport, StoreError> apply_retention(std::int64_t now_ns) override {
    RetentionJob job;
    job.now_ns = now_ns;
    auto fut = job.done.get_future();
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        return tl::unexpected(StoreError{ErrorKind::Closed, cfg_.path + ": the store is closing"});
      }
      retention_.push_back(std::move(job));
    }
    cv_.notify_one();
    return fut.get();
  }

  StoreStats stats() override {
    StoreStats s;
    s.file_bytes = file_size(cfg_.path) + file_size(cfg_.path + "-wal");
    s.schema_version = kSchemaVersion;
    {
      std::lock_guard lock(mu_);
      s.queued_batches = queue_.size();
    }
    s.committed_batches = committed_.load();
    s.failed_batches = failed_.load();
    return s;
  }

 private:
  static std::int64_t clamp_limit(std::size_t limit) {
    return static_cast<std::int64_t>(std::min<std::size_t>(limit, static_cast<std::size_t>(kMax)));
  }

  std::vector<EventRow> event_rows(Stmt& s) {
    std::vector<EventRow> out;
    while (s.step()) {
      EventRow row;
      row.id = s.i64(0);
      row.agent = s.text(1);
      row.run = s.text(2);
      const std::string json = s.text(3);
      auto parsed = probe::parse_json_line(json);
      if (!parsed || !std::holds_alternative<PathEvent>(*parsed)) {
        throw SqlFailure{StoreError{
            ErrorKind::Corrupt,
            cfg_.path + ": event row " + std::to_string(row.id) +
                " does not parse: " + (parsed ? std::string("not an event") : parsed.error())}};
      }
      row.event = std::get<PathEvent>(std::move(*parsed));
      out.push_back(std::move(row));
    }
    return out;
  }

  template <typename F>
  auto read(F&& fn) -> tl::expected<decltype(fn(std::declval<ReadConn&>())), StoreError> {
    auto conn = pool_.acquire();
    try {
      auto out = fn(*conn);
      pool_.release(std::move(conn));
      return out;
    } catch (const SqlFailure& f) {
      pool_.release(std::move(conn));
      StoreError e = f.error;
      if (e.kind == ErrorKind::Corrupt) e.message += recovery_hint(cfg_.path);
      return tl::unexpected(std::move(e));
    } catch (const std::exception& e) {
      pool_.release(std::move(conn));
      return tl::unexpected(StoreError{ErrorKind::Io, cfg_.path + ": read: " + e.what()});
    }
  }

  // ---- writer ------------------------------------------------------------------------------

  void prepare_writer() {
    sqlite3* db = w_.get();
    const std::string& p = cfg_.path;
    upsert_agent_ = Stmt(db,
                         "INSERT INTO agents (name, version, last_run, first_seen_ns, "
                         "last_seen_ns, batches) VALUES (?1, ?2, ?3, ?4, ?4, 1) "
                         "ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
                         "last_run = excluded.last_run, last_seen_ns = excluded.last_seen_ns, "
                         "batches = batches + 1 RETURNING id",
                         p);
    ins_path_ = Stmt(db, "INSERT INTO paths (name) VALUES (?1) ON CONFLICT DO NOTHING", p);
    sel_path_ = Stmt(db, "SELECT id FROM paths WHERE name = ?1", p);
    ins_target_ = Stmt(db,
                       "INSERT INTO targets (agent_id, target, proto, first_ns, last_ns) "
                       "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                       p);
    sel_target_ =
        Stmt(db, "SELECT id FROM targets WHERE agent_id = ?1 AND target = ?2 AND proto = ?3", p);
    ins_session_ = Stmt(db,
                        "INSERT INTO sessions (target_id, run, session_id) VALUES (?1, ?2, ?3) "
                        "ON CONFLICT DO NOTHING",
                        p);
    sel_session_ = Stmt(
        db, "SELECT id FROM sessions WHERE target_id = ?1 AND run = ?2 AND session_id = ?3", p);
    upd_target_ = Stmt(db,
                       "UPDATE targets SET first_ns = min(first_ns, ?2), "
                       "last_ns = max(last_ns, ?3), last_session = CASE WHEN ?3 >= last_ns "
                       "THEN ?4 ELSE last_session END WHERE id = ?1",
                       p);
    ins_probe_ =
        Stmt(db,
             "INSERT INTO probes (session, seq, tx_ns, rx_off, rtt_x, flags, "
             "fwd_path, rev_path, refl_seq, refl_rx_off, refl_tx_off, taps_down) "
             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT DO NOTHING",
             p);
    // A late reply's record replaces the row its probe got when the timeout declared it lost
    // (the agent sends both, in that order): the answer wins over the guess; a resend of the
    // lost record, or of the late one, changes nothing.
    upd_late_probe_ =
        Stmt(db,
             "UPDATE probes SET tx_ns = ?3, rx_off = ?4, rtt_x = ?5, flags = ?6, fwd_path = ?7, "
             "rev_path = ?8, refl_seq = ?9, refl_rx_off = ?10, refl_tx_off = ?11, taps_down = ?12 "
             "WHERE session = ?1 AND seq = ?2 AND rx_off IS NULL",
             p);
    ins_rollup_ = Stmt(db,
                       "INSERT INTO rollup_1s (session, second_ns, direction, path, "
                       "sent, received, lost_forward, lost_reverse, lost_undetermined, "
                       "rtt_min_ns, rtt_mean_ns, rtt_p50_ns, rtt_p99_ns, rtt_max_ns, jitter_ns) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) "
                       "ON CONFLICT DO NOTHING",
                       p);
    ins_event_ = Stmt(db,
                      "INSERT INTO events (agent_id, run, event_id, kind, target, "
                      "ts_ns, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                      p);
  }

  void writer_loop() {
    for (;;) {
      std::vector<IngestJob> group;
      RetentionJob* retention = nullptr;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !retention_.empty(); });
        if (queue_.empty() && stopping_) break;
        std::size_t rows = 0;
        while (!queue_.empty() && group.size() < kMaxGroupBatches &&
               (group.empty() || rows + queue_.front().rows() <= kMaxGroupRows)) {
          rows += queue_.front().rows();
          group.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        if (!retention_.empty()) retention = &retention_.front();  // only the writer pops it
      }
      if (!group.empty()) write_group(group);
      if (retention != nullptr && retention_step(*retention)) {
        std::lock_guard lock(mu_);
        retention_.pop_front();
      }
    }
    std::lock_guard lock(mu_);
    for (auto& r : retention_) {
      r.done.set_value(
          tl::unexpected(StoreError{ErrorKind::Closed, cfg_.path + ": the store is closing"}));
    }
    retention_.clear();
  }

  void rollback_after_failure() {
    if (sqlite3_get_autocommit(w_.get()) == 0) {
      sqlite3_exec(w_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    // Ids handed out inside the rolled-back transaction no longer exist.
    path_ids_.clear();
    target_ids_.clear();
    session_ids_.clear();
    recent_ = {};
  }

  void write_group(std::vector<IngestJob>& group) {
    const std::int64_t now = realtime_ns();
    std::vector<IngestCounts> counts(group.size());
    StoreError error;
    try {
      detail::exec(w_.get(), "BEGIN IMMEDIATE", cfg_.path);
      for (std::size_t i = 0; i < group.size(); ++i) counts[i] = write_batch(group[i].batch, now);
      detail::exec(w_.get(), "COMMIT", cfg_.path);
      committed_ += group.size();  // before the promises: a caller may read stats() at once
      for (std::size_t i = 0; i < group.size(); ++i) group[i].done.set_value(counts[i]);
      return;
    } catch (const SqlFailure& f) {
      error = f.error;
    } catch (const std::exception& e) {
      error = StoreError{ErrorKind::Io, cfg_.path + ": ingest: " + e.what()};
    }
    rollback_after_failure();
    if (error.kind == ErrorKind::Corrupt) error.message += recovery_hint(cfg_.path);
    failed_ += group.size();
    for (auto& job : group) job.done.set_value(tl::unexpected(error));
  }

  std::int64_t path_id(const std::string& name) {
    if (auto it = path_ids_.find(name); it != path_ids_.end()) return it->second;
    ins_path_.bind(1, name).run();
    sel_path_.bind(1, name);
    ResetGuard g{sel_path_};
    if (!sel_path_.step()) throw SqlFailure{{ErrorKind::Io, cfg_.path + ": path id missing"}};
    const std::int64_t id = sel_path_.i64(0);
    path_ids_.emplace(name, id);
    return id;
  }

  struct SessionIds {
    std::int64_t sid = 0, target_id = 0;
  };

  // The session row of (agent, run, session_id, target, proto), created when new.
  SessionIds session_ids(std::int64_t agent_id, const std::string& run, const std::string& target,
                         Proto proto, std::uint32_t session_id) {
    // Batches interleave a few sessions (ICMP and STAMP per target): a handful of recent ones
    // are compared in place before a key is built for the maps.
    for (const auto& l : recent_) {
      if (l.valid && l.agent_id == agent_id && l.session_id == session_id && l.proto == proto &&
          l.target == target && l.run == run) {
        return l.ids;
      }
    }
    std::string key = std::to_string(agent_id);
    key += '\0';
    key += target;
    key += '\0';
    key += std::to_string(static_cast<int>(proto));
    SessionIds ids;
    if (auto it = target_ids_.find(key); it != target_ids_.end()) {
      ids.target_id = it->second;
    } else {
      ins_target_.bind(1, agent_id)
          .bind(2, target)
          .bind(3, static_cast<std::int64_t>(proto))
          .bind(4, kMax)
          .bind(5, kMin)
          .run();
      sel_target_.bind(1, agent_id).bind(2, target).bind(3, static_cast<std::int64_t>(proto));
      ResetGuard g{sel_target_};
      if (!sel_target_.step()) throw SqlFailure{{ErrorKind::Io, cfg_.path + ": target missing"}};
      ids.target_id = sel_target_.i64(0);
      target_ids_.emplace(key, ids.target_id);
    }
    key += '\0';
    key += run;
    key += '\0';
    key += std::to_string(session_id);
    if (auto it = session_ids_.find(key); it != session_ids_.end()) {
      ids.sid = it->second;
    } else {
      ins_session_.bind(1, ids.target_id).bind(2, run).bind(3, session_id).run();
      sel_session_.bind(1, ids.target_id).bind(2, run).bind(3, session_id);
      ResetGuard g{sel_session_};
      if (!sel_session_.step()) throw SqlFailure{{ErrorKind::Io, cfg_.path + ": session missing"}};
      ids.sid = sel_session_.i64(0);
      session_ids_.emplace(key, ids.sid);
    }
    recent_[recent_next_] = {true, agent_id, run, target, proto, session_id, ids};
    recent_next_ = (recent_next_ + 1) % recent_.size();
    return ids;
  }

  struct TargetSpan {
    std::int64_t target_id = 0, first = kMax, last = kMin, last_sid = 0;
  };

  static void note_time(std::vector<TargetSpan>& spans, const SessionIds& ids,
                        std::int64_t second) {
    auto it = std::find_if(spans.begin(), spans.end(),
                           [&](const TargetSpan& s) { return s.target_id == ids.target_id; });
    if (it == spans.end()) {
      spans.push_back({ids.target_id, kMax, kMin, 0});
      it = spans.end() - 1;
    }
    it->first = std::min(it->first, second);
    if (second >= it->last) {
      it->last = second;
      it->last_sid = ids.sid;
    }
  }

  static std::int64_t floor_second(std::int64_t ns) {
    std::int64_t s = ns / 1'000'000'000;
    if (ns % 1'000'000'000 < 0) --s;
    return s * 1'000'000'000;
  }

  IngestCounts write_batch(const IngestBatch& b, std::int64_t now) {
    IngestCounts c;
    upsert_agent_.bind(1, b.header.agent).bind(2, b.header.version).bind(3, b.header.run);
    upsert_agent_.bind(4, now);
    std::int64_t agent_id = 0;
    {
      ResetGuard g{upsert_agent_};
      if (!upsert_agent_.step()) throw SqlFailure{{ErrorKind::Io, cfg_.path + ": agent id"}};
      agent_id = upsert_agent_.i64(0);
    }
    sqlite3* db = w_.get();
    std::vector<TargetSpan> spans;
    for (const auto& r : b.probes) {
      const SessionIds ids = session_ids(agent_id, b.header.run, r.target, r.proto, r.session_id);
      const auto col = detail::to_columns(r);
      const auto write = [&](Stmt& st) {
        st.bind(1, ids.sid)
            .bind(2, col.seq)
            .bind(3, col.tx_ns)
            .bind(4, col.rx_off)
            .bind(5, col.rtt_x)
            .bind(6, col.flags)
            .bind(7, path_id(r.fwd_path))
            .bind(8, path_id(r.rev_path))
            .bind(9, col.refl_seq)
            .bind(10, col.refl_rx_off)
            .bind(11, col.refl_tx_off);
        if (col.taps_down) {
          st.bind_blob(12, *col.taps_down);
        } else {
          st.bind_null(12);
        }
        st.run();
        return sqlite3_changes(db) > 0;
      };
      if (write(ins_probe_) || (r.late && col.rx_off && write(upd_late_probe_))) {
        ++c.probes;
      } else {
        ++c.duplicate_probes;
      }
      note_time(spans, ids, floor_second(r.tx_ns));
    }
    for (const auto& r : b.rollups) {
      const SessionIds ids = session_ids(agent_id, b.header.run, r.target, r.proto, r.session_id);
      ins_rollup_.bind(1, ids.sid)
          .bind(2, r.second_ns)
          .bind(3, static_cast<std::int64_t>(r.direction))
          .bind(4, path_id(r.path))
          .bind(5, static_cast<std::int64_t>(r.sent))
          .bind(6, static_cast<std::int64_t>(r.received))
          .bind(7, static_cast<std::int64_t>(r.lost_forward))
          .bind(8, static_cast<std::int64_t>(r.lost_reverse))
          .bind(9, static_cast<std::int64_t>(r.lost_undetermined))
          .bind(10, r.rtt_min_ns)
          .bind(11, r.rtt_mean_ns)
          .bind(12, r.rtt_p50_ns)
          .bind(13, r.rtt_p99_ns)
          .bind(14, r.rtt_max_ns)
          .bind(15, r.jitter_ns)
          .run();
      if (sqlite3_changes(db) > 0) {
        ++c.rollups;
      } else {
        ++c.duplicate_rollups;
      }
      note_time(spans, ids, floor_second(r.second_ns));
    }
    std::string json;
    for (const auto& e : b.events) {
      json.clear();
      probe::append_json(e, json);
      if (!json.empty() && json.back() == '\n') json.pop_back();
      ins_event_.bind(1, agent_id)
          .bind(2, b.header.run)
          .bind(3, static_cast<std::int64_t>(e.event_id))
          .bind(4, std::string_view(probe::to_string(e.type)))
          .bind(5, is_tap_event(e.type) ? std::string_view() : std::string_view(e.target))
          .bind(6, e.ts_ns)
          .bind(7, json)
          .run();
      if (sqlite3_changes(db) > 0) {
        ++c.events;
      } else {
        ++c.duplicate_events;
      }
    }
    for (const auto& s : spans) {
      upd_target_.bind(1, s.target_id).bind(2, s.first).bind(3, s.last).bind(4, s.last_sid).run();
    }
    return c;
  }

  // One chunk of retention in its own transaction. True when the job is finished (its promise
  // set, with the report or the error).
  bool retention_step(RetentionJob& job) {
    try {
      detail::exec(w_.get(), "BEGIN IMMEDIATE", cfg_.path);
      retention_chunk(job);
      detail::exec(w_.get(), "COMMIT", cfg_.path);
    } catch (const SqlFailure& f) {
      rollback_after_failure();
      job.done.set_value(tl::unexpected(f.error));
      return true;
    } catch (const std::exception& e) {
      rollback_after_failure();
      job.done.set_value(
          tl::unexpected(StoreError{ErrorKind::Io, cfg_.path + ": retention: " + e.what()}));
      return true;
    }
    if (job.phase < 3) return false;
    job.done.set_value(job.report);
    return true;
  }

  std::int64_t run_changes(Stmt& s) {
    s.run();
    return sqlite3_changes(w_.get());
  }

  void retention_chunk(RetentionJob& job) {
    const std::int64_t event_cutoff =
        cfg_.event_keep_ns > 0 ? sat_sub(job.now_ns, cfg_.event_keep_ns) : kMin;
    if (job.phase == 0) {
      if (cfg_.event_keep_ns > 0) {
        Stmt& s = stmt(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts_ns < ?1 "
            "LIMIT ?2)");
        const auto n = run_changes(s.bind(1, event_cutoff).bind(2, kRetentionChunk));
        job.report.events_deleted += static_cast<std::uint64_t>(n);
        if (n >= kRetentionChunk) return;
      }
      job.phase = 1;
      return;
    }
    if (!job.listed) {
      Stmt& s = stmt(
          "SELECT s.id, t.agent_id, t.target FROM sessions s JOIN targets t ON t.id = s.target_id "
          "ORDER BY s.id");
      ResetGuard g{s};
      while (s.step()) job.sessions.push_back({s.i64(0), s.i64(1), s.text(2)});
      job.listed = true;
    }
    if (job.phase == 1) {
      if (cfg_.rollup_keep_ns > 0) {
        const std::int64_t cutoff = sat_sub(job.now_ns, cfg_.rollup_keep_ns);
        std::int64_t budget = kRetentionChunk;
        Stmt& s = stmt(
            "DELETE FROM rollup_1s WHERE (session, second_ns, direction, path) IN (SELECT "
            "session, second_ns, direction, path FROM rollup_1s WHERE session = ?1 AND "
            "second_ns < ?2 LIMIT ?3)");
        while (job.idx < job.sessions.size() && budget > 0) {
          const auto n =
              run_changes(s.bind(1, job.sessions[job.idx].sid).bind(2, cutoff).bind(3, budget));
          job.report.rollups_deleted += static_cast<std::uint64_t>(n);
          budget -= n;
          if (budget > 0) ++job.idx;
        }
        if (job.idx < job.sessions.size()) return;
      }
      job.phase = 2;
      job.idx = 0;
      return;
    }
    if (job.phase == 2) {
      const std::int64_t cutoff = sat_sub(job.now_ns, cfg_.raw_keep_ns);
      const std::int64_t w = std::max<std::int64_t>(0, cfg_.event_window_ns);
      std::int64_t budget = kRetentionChunk;
      Stmt& pins = stmt(
          "SELECT ts_ns FROM events WHERE agent_id = ?1 AND (target = ?2 OR (target = '' AND "
          "kind IN ('tap_down', 'tap_up'))) AND ts_ns >= ?3 AND ts_ns < ?4 ORDER BY ts_ns");
      Stmt& del = stmt(
          "DELETE FROM probes WHERE (session, seq) IN (SELECT session, seq FROM probes WHERE "
          "session = ?1 AND tx_ns >= ?2 AND tx_ns < ?3 LIMIT ?4)");
      Stmt& oldest = stmt("SELECT MIN(tx_ns) FROM probes WHERE session = ?1");
      while (job.idx < job.sessions.size() && budget > 0) {
        const auto& sess = job.sessions[job.idx];
        // A session with nothing older than the cutoff costs one index seek; otherwise only the
        // events whose windows reach its oldest probe are read.
        std::optional<std::int64_t> min_tx;
        {
          oldest.bind(1, sess.sid);
          ResetGuard g{oldest};
          if (oldest.step()) min_tx = oldest.opt_i64(0);
        }
        if (!min_tx || *min_tx >= cutoff) {
          ++job.idx;
          continue;
        }
        // The gaps between the pinned windows [ts - w, ts + w] of the kept events, below the
        // cutoff: [lo, hi) ranges of tx_ns to delete. Re-read per chunk: an event ingested
        // between chunks pins its window too.
        std::vector<std::pair<std::int64_t, std::int64_t>> gaps;
        std::int64_t lo = kMin;
        {
          pins.bind(1, sess.agent_id).bind(2, sess.target);
          pins.bind(3, std::max(event_cutoff, sat_sub(*min_tx, w)));
          pins.bind(4, sat_add(cutoff, w));
          ResetGuard g{pins};
          while (pins.step()) {
            const std::int64_t ts = pins.i64(0);
            const std::int64_t hi = std::min(sat_sub(ts, w), cutoff);
            if (hi > lo) gaps.emplace_back(lo, hi);
            lo = std::max(lo, sat_add(sat_add(ts, w), 1));
          }
        }
        if (cutoff > lo) gaps.emplace_back(lo, cutoff);
        for (const auto& [glo, ghi] : gaps) {
          if (budget <= 0) break;
          const auto n =
              run_changes(del.bind(1, sess.sid).bind(2, glo).bind(3, ghi).bind(4, budget));
          job.report.probes_deleted += static_cast<std::uint64_t>(n);
          budget -= n;
        }
        if (budget > 0) ++job.idx;
      }
      if (job.idx >= job.sessions.size()) job.phase = 3;
    }
  }

  Stmt& stmt(const std::string& sql) {
    auto it = writer_stmts_.find(sql);
    if (it == writer_stmts_.end())
      it = writer_stmts_.emplace(sql, Stmt(w_.get(), sql, cfg_.path)).first;
    return it->second;
  }

  struct LastSession {
    bool valid = false;
    std::int64_t agent_id = 0;
    std::string run, target;
    Proto proto = Proto::Icmp;
    std::uint32_t session_id = 0;
    SessionIds ids;
  };

  StoreConfig cfg_;
  DbPtr w_;
  Stmt upsert_agent_, ins_path_, sel_path_, ins_target_, sel_target_, ins_session_, sel_session_,
      upd_target_, ins_probe_, upd_late_probe_, ins_rollup_, ins_event_;
  std::unordered_map<std::string, Stmt> writer_stmts_;
  // Writer-thread caches of row ids, cleared when a transaction rolls back.
  std::unordered_map<std::string, std::int64_t> path_ids_, target_ids_, session_ids_;
  std::array<LastSession, 16> recent_{};
  std::size_t recent_next_ = 0;

  ReadPool pool_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<IngestJob> queue_;
  std::deque<RetentionJob> retention_;
  std::atomic<std::uint64_t> committed_{0}, failed_{0};
  std::thread thread_;
};

int query_int(sqlite3* db, const char* sql, const std::string& path) {
  Stmt s(db, sql, path);
  ResetGuard g{s};
  return s.step() ? static_cast<int>(s.i64(0)) : 0;
}

}  // namespace

int schema_version() {
  return kSchemaVersion;
}

std::unique_ptr<Store> open_sqlite_store(const StoreConfig& config) {
  const std::string& path = config.path;
  if (path.empty()) throw StoreOpenError(ErrorKind::Io, "the database path is empty");
  DbPtr db =
      open_connection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, config.busy_timeout_ms);
  try {
    if (sqlite3_db_readonly(db.get(), "main") == 1) {
      throw StoreOpenError(ErrorKind::ReadOnly,
                           path +
                               ": cannot be written (the file, its directory or its file "
                               "system is read-only); the collector needs to write it");
    }
    const int version = query_int(db.get(), "PRAGMA user_version", path);
    if (config.check_at_open) {
      Stmt check(db.get(), "PRAGMA quick_check", path);
      ResetGuard g{check};
      std::string problems;
      while (check.step()) {
        const std::string line = check.text(0);
        if (line == "ok") continue;
        if (!problems.empty()) problems += "; ";
        problems += line;
        if (problems.size() > 300) break;
      }
      if (!problems.empty()) {
        throw StoreOpenError(ErrorKind::Corrupt, path + ": damaged (quick_check: " + problems +
                                                     ")" + recovery_hint(path));
      }
    }
    if (version > kSchemaVersion) {
      throw StoreOpenError(ErrorKind::TooNew,
                           path + ": schema version " + std::to_string(version) +
                               " is newer than this binary's " + std::to_string(kSchemaVersion) +
                               "; run a newer pathsentry-collector (it was written by one)");
    }
    {
      Stmt wal(db.get(), "PRAGMA journal_mode = WAL", path);
      ResetGuard g{wal};
      const std::string mode = wal.step() ? wal.text(0) : "";
      if (mode != "wal") {
        throw StoreOpenError(ErrorKind::Io,
                             path + ": cannot switch to WAL mode (journal_mode is " + mode + ")");
      }
    }
    // In WAL mode NORMAL loses no consistency on a crash; a power loss may undo the last
    // transactions (docs/store.md "Durability").
    detail::exec(db.get(), "PRAGMA synchronous = NORMAL", path);
    for (int v = version + 1; v <= kSchemaVersion; ++v) {
      const Migration& m = kMigrations[v - 1];
      detail::exec(db.get(), "BEGIN IMMEDIATE", path);
      char* err = nullptr;
      const int rc = sqlite3_exec(db.get(), m.sql, nullptr, nullptr, &err);
      if (rc != SQLITE_OK) {
        StoreError e = detail::error_of(
            db.get(), rc, path,
            std::string("migration ") + m.name + " (version " + std::to_string(v) + ")");
        sqlite3_free(err);
        sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
        throw_open(e, path);
      }
      detail::exec(db.get(), ("PRAGMA user_version = " + std::to_string(v)).c_str(), path);
      detail::exec(db.get(), "COMMIT", path);
    }
    return std::make_unique<SqliteStore>(config, std::move(db));
  } catch (const SqlFailure& f) {
    if (db && sqlite3_get_autocommit(db.get()) == 0) {
      sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    throw_open(f.error, path);
  }
}

}  // namespace pathsentry::db
