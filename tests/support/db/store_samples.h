#pragma once
// Sample ingest batches and SQLite helpers for the store's tests (tests/{unit,integration}/db).

#include <sched.h>
#include <sqlite3.h>
#include <sys/mount.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "pathsentry/common/record_json.h"
#include "pathsentry/db/store.h"

namespace pathsentry::test::db {

inline constexpr std::int64_t kSec = 1'000'000'000;
inline constexpr std::int64_t kT0 = 1'700'000'000 * kSec;  ///< a whole second

/// The record's JSON line: the tests compare what the store returns with what went in this way
/// (every field of the record is in it).
inline std::string json_of(const ProbeRecord& r) {
  std::string s;
  probe::append_json(r, s);
  return s;
}
inline std::string json_of(const PathEvent& e) {
  std::string s;
  probe::append_json(e, s);
  return s;
}

/// A probe as an agent sends it: answered on express-connect both ways, RTT 1 ms + seq µs,
/// every 10th lost forward, STAMP ones with reflector fields.
inline ProbeRecord sample_probe(const std::string& target, Proto proto, std::uint32_t session,
                                std::uint64_t seq, std::int64_t tx_ns) {
  ProbeRecord r;
  r.target = target;
  r.proto = proto;
  r.session_id = session;
  r.seq = seq;
  r.tx_ns = tx_ns;
  r.tx_kernel_ts = true;
  r.fwd_path = "express-connect";
  if (seq % 10 == 9) {
    r.rev_path = "none";
    r.loss = LossDirection::Forward;
    return r;
  }
  r.rev_path = "express-connect";
  r.rtt_ns = 1'000'000 + static_cast<std::int64_t>(seq % 1000) * 1000;
  r.rx_ns = tx_ns + r.rtt_ns;
  if (proto == Proto::Stamp) {
    r.reflector_seq = static_cast<std::uint32_t>(seq);
    r.reflector_rx_ns = tx_ns + 400'000;
    r.reflector_tx_ns = tx_ns + 410'000;
    r.reflector_clock_synced = seq % 2 == 0;
  }
  return r;
}

inline Rollup rollup(const std::string& target, Proto proto, std::uint32_t session,
                     std::int64_t second_ns, Direction d, const std::string& path,
                     std::uint64_t sent, std::uint64_t received, std::int64_t rtt_base) {
  Rollup r;
  r.target = target;
  r.proto = proto;
  r.session_id = session;
  r.second_ns = second_ns;
  r.direction = d;
  r.path = path;
  r.sent = sent;
  r.received = received;
  r.lost_forward = (sent - received) / 2;
  r.lost_reverse = (sent - received) - r.lost_forward;
  if (received > 0) {
    r.rtt_min_ns = rtt_base;
    r.rtt_mean_ns = rtt_base + 100;
    r.rtt_p50_ns = rtt_base + 90;
    r.rtt_p99_ns = rtt_base + 500;
    r.rtt_max_ns = rtt_base + 900;
    r.jitter_ns = 30;
  }
  return r;
}

inline PathEvent switchover(const std::string& target, Proto proto, std::uint32_t session,
                            std::int64_t ts_ns, std::uint64_t event_id) {
  PathEvent e;
  e.type = EventType::Switchover;
  e.target = target;
  e.proto = proto;
  e.session_id = session;
  e.direction = Direction::Forward;
  e.ts_ns = ts_ns;
  e.seq = 77;
  e.detected_ns = ts_ns + 20'000'000;
  e.from = "express-connect";
  e.to = "ipsec";
  e.last_ok_on_old_ns = ts_ns - 60'000'000;
  e.first_ok_on_new_ns = ts_ns - 1'000'000;
  e.outage_ns = e.first_ok_on_new_ns - e.last_ok_on_old_ns;
  e.probes_lost = 59;
  e.outage_kind = OutageKind::Measured;
  e.resolution_ns = 1'000'000;
  e.event_id = event_id;
  return e;
}

inline PathEvent tap_down(std::int64_t ts_ns, std::uint64_t event_id) {
  PathEvent e;
  e.type = EventType::TapDown;
  e.tap = "tap-inet";
  e.path = "ipsec";
  e.reason = "pcap read: The interface disappeared";
  e.ts_ns = ts_ns;
  e.detected_ns = ts_ns + 5'000'000;
  e.event_id = event_id;
  return e;
}

inline pathsentry::db::IngestBatch batch(const std::string& agent, const std::string& run,
                                         std::uint64_t n) {
  pathsentry::db::IngestBatch b;
  b.header.agent = agent;
  b.header.run = run;
  b.header.batch = n;
  b.header.created_ns = kT0 + static_cast<std::int64_t>(n) * kSec;
  b.header.version = "0.1.0";
  return b;
}

/// Waits for an ingest and returns its counts; throws with the store's message on failure.
inline pathsentry::db::IngestCounts ingest_ok(pathsentry::db::Store& s,
                                              pathsentry::db::IngestBatch b) {
  auto r = s.ingest(std::move(b)).get();
  if (!r) throw std::runtime_error("ingest failed: " + r.error().message);
  return *r;
}

/// Runs SQL on a database file with a connection of its own (fixtures, tampering).
inline void exec_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    sqlite3_close(db);
    throw std::runtime_error("cannot open " + path);
  }
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  const std::string msg = err != nullptr ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  if (rc != SQLITE_OK) throw std::runtime_error(path + ": " + msg);
}

/// The first column of the first row of a query, as text ("" when no row).
inline std::string query_text(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

/// Moves the test process into a mount namespace of its own (once), with private propagation:
/// what the [privileged] tests mount there is seen by nobody else and vanishes with the process.
/// unshare(CLONE_NEWNS) needs a single-threaded process: call it with no store open.
inline void enter_private_mount_namespace() {
  static bool done = false;
  if (done) return;
  if (unshare(CLONE_NEWNS) != 0) throw std::runtime_error("unshare(CLONE_NEWNS) failed");
  if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    throw std::runtime_error("cannot make / private in the new mount namespace");
  }
  done = true;
}

/// Unmounts `dir` when it goes out of scope.
struct MountGuard {
  std::string dir;
  explicit MountGuard(std::string d) : dir(std::move(d)) {}
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;
  ~MountGuard() { umount2(dir.c_str(), MNT_DETACH); }
};

}  // namespace pathsentry::test::db
