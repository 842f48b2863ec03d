// bench-ingest: the store's ingest rate beside a bare SQLite program, in one run on one disk,
// and the database's size per million raw records and per day of rollups (docs/bench.md
// "Store ingest"). A benchmark: it asserts nothing about timings.
//
//   bench-ingest [--dir DIR] [--probes N] [--rate PPS] [--targets T] [--window W]
//                [--rounds R] [--rollup-days D] [--keep]
//                [--http [--clients 1,4] [--collector PATH]]
//
// Batches are what one agent ships each second at the default rates: for each target, `rate`
// ICMP and `rate` STAMP probe records (record_json's fields, 10 % lost, STAMP with reflector
// timestamps) and the second's rollups (2 sessions x 2 directions x 1-2 paths). The store gets
// them through Store::ingest with `window` batches in flight (as concurrent HTTP requests
// would be); the bare program inserts the same rows with prepared statements, one transaction
// per batch, into the same tables (the store's probe and rollup layout, session ids known in
// advance: no lookups, no duplicate counting, no queue). Rounds alternate bare/store; the
// best of each is compared.
//
// --http adds the collector end to end: the bench starts the real pathsentry-collector (its
// own temp dir under --dir: database, token file, log; 127.0.0.1 on an ephemeral port), POSTs
// the same batches encoded as the agent encodes them (probe_ship's encode_batch) from C
// concurrent clients, each its own agent with a keep-alive connection and one request in flight
// (as an agent's shipper), stops the collector by its PID and then counts the rows in its
// database: exactly the rows sent, or the run fails.

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "pathsentry/db/store.h"
#include "pathsentry/probe/ship/batch.h"
#include "pathsentry/probe/ship/http_client.h"

using namespace pathsentry;

namespace {

constexpr std::int64_t kSec = 1'000'000'000;
// Batches start this many seconds before the bench started: recent enough that the collector's
// retention (raw records older than 1 h go, every 60 s) does not touch them during a run.
std::int64_t kT0 = 0;

struct Options {
  std::string dir = "/var/tmp";
  std::uint64_t probes = 1'000'000;
  std::uint64_t rate = 1000;  // per protocol per target
  int targets = 1;
  int window = 4;
  int rounds = 2;
  double rollup_days = 1.0;
  bool keep = false;  // leave the last round's databases in --dir for inspection
  bool http = false;
  std::vector<int> clients{1, 4};
  std::string collector;  // default: ../../probe/pathsentry-collector from this binary
};

ProbeRecord make_probe(const std::string& target, Proto proto, std::uint32_t session,
                       std::uint64_t seq, std::int64_t tx) {
  ProbeRecord r;
  r.target = target;
  r.proto = proto;
  r.session_id = session;
  r.seq = seq;
  r.tx_ns = tx;
  r.tx_kernel_ts = true;
  r.fwd_path = seq % 600 < 300 ? "express-connect" : "ipsec";
  if (seq % 10 == 9) {
    r.rev_path = "none";
    r.loss = LossDirection::Undetermined;
    return r;
  }
  r.rev_path = r.fwd_path;
  r.rtt_ns = 800'000 + static_cast<std::int64_t>((seq * 7919) % 400'000);
  r.rx_ns = tx + r.rtt_ns;
  if (proto == Proto::Stamp) {
    r.reflector_seq = static_cast<std::uint32_t>(seq);
    r.reflector_rx_ns = tx + r.rtt_ns / 2 + 1234;  // unsynced clocks would be a larger offset
    r.reflector_tx_ns = *r.reflector_rx_ns + 9'000;
    r.reflector_clock_synced = true;
  }
  return r;
}

Rollup make_rollup(const std::string& target, Proto proto, std::uint32_t session,
                   std::int64_t second, Direction d, const std::string& path, std::uint64_t sent) {
  Rollup r;
  r.target = target;
  r.proto = proto;
  r.session_id = session;
  r.second_ns = second;
  r.direction = d;
  r.path = path;
  r.sent = sent;
  r.received = sent - sent / 100;
  r.lost_undetermined = sent / 100;
  r.rtt_min_ns = 800'000;
  r.rtt_mean_ns = 1'000'000;
  r.rtt_p50_ns = 990'000;
  r.rtt_p99_ns = 1'190'000;
  r.rtt_max_ns = 1'199'000;
  r.jitter_ns = 12'000;
  return r;
}

// Rollups of one second for one target: 2 sessions x 2 directions; every other second the
// forward rows are split over two paths (a switchover second), so 1.5 paths on average.
void add_rollups(std::vector<Rollup>& out, const std::string& target, std::uint32_t base,
                 std::int64_t second, std::uint64_t rate) {
  const bool split = (second / kSec) % 2 == 1;
  for (const auto proto : {Proto::Icmp, Proto::Stamp}) {
    const auto sid = base + static_cast<std::uint32_t>(proto);
    for (const auto d : {Direction::Forward, Direction::Reverse}) {
      if (split) {
        out.push_back(make_rollup(target, proto, sid, second, d, "express-connect", rate / 2));
        out.push_back(make_rollup(target, proto, sid, second, d, "ipsec", rate - rate / 2));
      } else {
        out.push_back(make_rollup(target, proto, sid, second, d, "express-connect", rate));
      }
    }
  }
}

std::string target_name(int t) {
  return "192.0.2." + std::to_string(t + 1);
}

std::vector<db::IngestBatch> make_batches(const Options& o) {
  std::vector<db::IngestBatch> out;
  const std::uint64_t per_batch = o.rate * 2 * static_cast<std::uint64_t>(o.targets);
  const std::uint64_t n_batches = (o.probes + per_batch - 1) / per_batch;
  for (std::uint64_t b = 0; b < n_batches; ++b) {
    db::IngestBatch batch;
    batch.header = {"bench-agent", "0123456789abcdef", b + 1,
                    kT0 + static_cast<std::int64_t>(b) * kSec, "0.1.0"};
    const std::int64_t second = kT0 + static_cast<std::int64_t>(b) * kSec;
    for (int t = 0; t < o.targets; ++t) {
      const auto base = static_cast<std::uint32_t>(t * 4);
      for (std::uint64_t i = 0; i < o.rate; ++i) {
        const std::uint64_t seq = b * o.rate + i;
        const std::int64_t tx = second + static_cast<std::int64_t>(i * (kSec / o.rate));
        batch.probes.push_back(make_probe(target_name(t), Proto::Icmp, base, seq, tx));
        batch.probes.push_back(make_probe(target_name(t), Proto::Stamp, base + 1, seq, tx + 1));
      }
      add_rollups(batch.rollups, target_name(t), base, second, o.rate);
    }
    out.push_back(std::move(batch));
  }
  return out;
}

std::int64_t file_bytes(const std::string& path) {
  std::int64_t total = 0;
  for (const char* suffix : {"", "-wal"}) {
    struct stat st {};
    if (::stat((path + suffix).c_str(), &st) == 0) total += st.st_size;
  }
  return total;
}

void remove_db(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

struct RunResult {
  double seconds = 0;
  std::uint64_t rows = 0;
  std::int64_t bytes = 0;  // after close (WAL checkpointed into the file)
};

// ---- through the store --------------------------------------------------------------------

RunResult run_store(const std::vector<db::IngestBatch>& batches, const std::string& path,
                    int window) {
  remove_db(path);
  RunResult r;
  {
    db::StoreConfig cfg;
    cfg.path = path;
    auto store = db::open_sqlite_store(cfg);
    std::deque<std::future<tl::expected<db::IngestCounts, db::StoreError>>> inflight;
    const auto check = [&](auto& f) {
      const auto c = f.get();
      if (!c) throw std::runtime_error("ingest failed: " + c.error().message);
      r.rows += c->probes + c->rollups + c->events;
    };
    const std::int64_t start = bench::monotonic_ns();
    for (const auto& b : batches) {
      inflight.push_back(store->ingest(b));  // the copy is what a parsed HTTP body would be
      if (static_cast<int>(inflight.size()) >= window) {
        check(inflight.front());
        inflight.pop_front();
      }
    }
    while (!inflight.empty()) {
      check(inflight.front());
      inflight.pop_front();
    }
    r.seconds = static_cast<double>(bench::monotonic_ns() - start) / 1e9;
  }
  r.bytes = file_bytes(path);
  return r;
}

// ---- the bare program ---------------------------------------------------------------------

void must(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
  }
}

RunResult run_bare(const std::vector<db::IngestBatch>& batches, const std::string& path) {
  remove_db(path);
  RunResult r;
  sqlite3* db = nullptr;
  must(sqlite3_open(path.c_str(), &db), db, "open");
  must(sqlite3_exec(db,
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                    "CREATE TABLE probes (session INTEGER NOT NULL, seq INTEGER NOT NULL, "
                    "tx_ns INTEGER NOT NULL, rx_off INTEGER, rtt_x INTEGER, flags INTEGER NOT "
                    "NULL, fwd_path INTEGER NOT NULL, rev_path INTEGER NOT NULL, refl_seq INTEGER, "
                    "refl_rx_off INTEGER, refl_tx_off INTEGER, taps_down BLOB, "
                    "PRIMARY KEY (session, seq)) WITHOUT ROWID;"
                    "CREATE INDEX probes_time ON probes (session, tx_ns);"
                    "CREATE TABLE rollup_1s (session INTEGER NOT NULL, second_ns INTEGER NOT NULL, "
                    "direction INTEGER NOT NULL, path INTEGER NOT NULL, sent INTEGER NOT NULL, "
                    "received INTEGER NOT NULL, lost_forward INTEGER NOT NULL, lost_reverse "
                    "INTEGER NOT NULL, lost_undetermined INTEGER NOT NULL, rtt_min_ns INTEGER NOT "
                    "NULL, rtt_mean_ns INTEGER NOT NULL, rtt_p50_ns INTEGER NOT NULL, rtt_p99_ns "
                    "INTEGER NOT NULL, rtt_max_ns INTEGER NOT NULL, jitter_ns INTEGER NOT NULL, "
                    "PRIMARY KEY (session, second_ns, direction, path)) WITHOUT ROWID;",
                    nullptr, nullptr, nullptr),
       db, "schema");
  sqlite3_stmt* ins_probe = nullptr;
  sqlite3_stmt* ins_rollup = nullptr;
  must(sqlite3_prepare_v2(db,
                          "INSERT INTO probes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                          "?11, ?12)",
                          -1, &ins_probe, nullptr),
       db, "prepare");
  must(sqlite3_prepare_v2(db,
                          "INSERT INTO rollup_1s VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                          "?10, ?11, ?12, ?13, ?14, ?15)",
                          -1, &ins_rollup, nullptr),
       db, "prepare");
  const auto path_id = [](const std::string& p) -> std::int64_t {
    return p == "express-connect" ? 1 : p == "ipsec" ? 2 : 3;
  };
  const auto opt = [](sqlite3_stmt* st, int i, bool has, std::int64_t v) {
    if (has) {
      sqlite3_bind_int64(st, i, v);
    } else {
      sqlite3_bind_null(st, i);
    }
  };
  const std::int64_t start = bench::monotonic_ns();
  for (const auto& b : batches) {
    must(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
    for (const auto& p : b.probes) {
      sqlite3_bind_int64(ins_probe, 1, p.session_id + 1);
      sqlite3_bind_int64(ins_probe, 2, static_cast<std::int64_t>(p.seq));
      sqlite3_bind_int64(ins_probe, 3, p.tx_ns);
      opt(ins_probe, 4, p.rx_ns.has_value(), p.rx_ns.value_or(0) - p.tx_ns);
      sqlite3_bind_null(ins_probe, 5);
      sqlite3_bind_int64(ins_probe, 6,
                         (p.tx_kernel_ts ? 1 : 0) | (p.reflector_clock_synced ? 2 : 0) |
                             (static_cast<int>(p.loss) << 3));
      sqlite3_bind_int64(ins_probe, 7, path_id(p.fwd_path));
      sqlite3_bind_int64(ins_probe, 8, path_id(p.rev_path));
      opt(ins_probe, 9, p.reflector_seq.has_value(), p.reflector_seq.value_or(0));
      opt(ins_probe, 10, p.reflector_rx_ns.has_value(), p.reflector_rx_ns.value_or(0) - p.tx_ns);
      opt(ins_probe, 11, p.reflector_tx_ns.has_value(),
          p.reflector_tx_ns.value_or(0) - p.reflector_rx_ns.value_or(0));
      sqlite3_bind_null(ins_probe, 12);
      must(sqlite3_step(ins_probe), db, "insert probe");
      sqlite3_reset(ins_probe);
      ++r.rows;
    }
    for (const auto& x : b.rollups) {
      const std::int64_t v[] = {x.session_id + 1,
                                x.second_ns,
                                static_cast<std::int64_t>(x.direction),
                                path_id(x.path),
                                static_cast<std::int64_t>(x.sent),
                                static_cast<std::int64_t>(x.received),
                                static_cast<std::int64_t>(x.lost_forward),
                                static_cast<std::int64_t>(x.lost_reverse),
                                static_cast<std::int64_t>(x.lost_undetermined),
                                x.rtt_min_ns,
                                x.rtt_mean_ns,
                                x.rtt_p50_ns,
                                x.rtt_p99_ns,
                                x.rtt_max_ns,
                                x.jitter_ns};
      for (int i = 0; i < 15; ++i) sqlite3_bind_int64(ins_rollup, i + 1, v[i]);
      must(sqlite3_step(ins_rollup), db, "insert rollup");
      sqlite3_reset(ins_rollup);
      ++r.rows;
    }
    must(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
  }
  r.seconds = static_cast<double>(bench::monotonic_ns() - start) / 1e9;
  sqlite3_finalize(ins_probe);
  sqlite3_finalize(ins_rollup);
  sqlite3_close(db);
  r.bytes = file_bytes(path);
  return r;
}

// ---- through the collector, over HTTP on loopback -----------------------------------------

struct Collector {
  pid_t pid = -1;
  int out_fd = -1;
  std::string port;
};

// Starts `bin` with its database, token file and log in `dir`, listening on 127.0.0.1:0; waits
// for its "collector listening on 127.0.0.1:PORT" line.
Collector start_collector(const std::string& bin, const std::string& dir) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const std::string db = dir + "/collector.db";
  const std::string tokens = dir + "/tokens";
  const std::string log = dir + "/collector.log";
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    const int lfd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (lfd >= 0) ::dup2(lfd, STDERR_FILENO);
    ::close(fds[0]);
    ::execl(bin.c_str(), bin.c_str(), "--db", db.c_str(), "--listen", "127.0.0.1:0", "--token-file",
            tokens.c_str(), "--log-level", "warn", static_cast<char*>(nullptr));
    std::perror("exec pathsentry-collector");
    ::_exit(127);
  }
  ::close(fds[1]);
  Collector c{pid, fds[0], {}};
  std::string line;
  char ch = 0;
  while (::read(c.out_fd, &ch, 1) == 1 && ch != '\n') line += ch;
  const auto colon = line.rfind(':');
  if (line.rfind("collector listening on 127.0.0.1:", 0) != 0 || colon == std::string::npos) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw std::runtime_error("collector did not start (see " + log + "): '" + line + "'");
  }
  c.port = line.substr(colon + 1);
  const auto sp = c.port.find(' ');
  if (sp != std::string::npos) c.port.resize(sp);
  return c;
}

// SIGTERM to the collector we started (its PID only), SIGKILL after 30 s; its exit status.
int stop_collector(Collector& c) {
  if (c.pid <= 0) return -1;
  ::kill(c.pid, SIGTERM);
  int status = 0;
  const std::int64_t deadline = bench::monotonic_ns() + 30 * kSec;
  while (::waitpid(c.pid, &status, WNOHANG) == 0) {
    if (bench::monotonic_ns() > deadline) {
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  c.pid = -1;
  ::close(c.out_fd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::int64_t count_rows(const std::string& path, const char* table) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    const std::string e = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw std::runtime_error("open " + path + ": " + e);
  }
  sqlite3_stmt* st = nullptr;
  const std::string sql = std::string("SELECT COUNT(*) FROM ") + table;
  std::int64_t n = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    n = sqlite3_column_int64(st, 0);
  }
  const std::string e = sqlite3_errmsg(db);
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (n < 0) throw std::runtime_error(sql + " in " + path + ": " + e);
  return n;
}

struct HttpResult : RunResult {
  int clients = 0;
  std::uint64_t body_bytes = 0;
  std::vector<std::int64_t> post_ns;  // each POST's round trip
};

// One run: a fresh collector, `clients` agents posting batch b from client b % clients.
HttpResult run_http(const std::vector<db::IngestBatch>& batches, const Options& o, int clients) {
  const std::string dir = o.dir + "/bench-ingest-http";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  const std::string token = "bench-ingest-token-" + probe::new_run_id();
  {
    FILE* f = std::fopen((dir + "/tokens").c_str(), "w");
    if (f == nullptr) throw std::runtime_error("cannot write " + dir + "/tokens");
    std::fprintf(f, "%s\n", token.c_str());
    std::fclose(f);
    std::filesystem::permissions(
        dir + "/tokens", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  // The agent's own encoding, before timing (an agent encodes on its own machine).
  std::vector<std::vector<std::string>> bodies(static_cast<std::size_t>(clients));
  HttpResult r;
  r.clients = clients;
  std::uint64_t want_probes = 0, want_rollups = 0;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const auto c = b % static_cast<std::size_t>(clients);
    auto h = batches[b].header;
    h.agent = "bench-agent-" + std::to_string(c);
    bodies[c].push_back(
        probe::encode_batch(h, batches[b].rollups, batches[b].events, batches[b].probes));
    r.body_bytes += bodies[c].back().size();
    want_probes += batches[b].probes.size();
    want_rollups += batches[b].rollups.size();
  }
  auto col = start_collector(o.collector, dir);
  const auto url = probe::parse_collector_url("http://127.0.0.1:" + col.port);
  if (!url) {
    stop_collector(col);
    throw std::runtime_error("collector url: " + url.error());
  }
  struct PerClient {
    std::uint64_t probes = 0, rollups = 0, duplicates = 0;
    std::string error;
    std::vector<std::int64_t> post_ns;
  };
  std::vector<PerClient> per(static_cast<std::size_t>(clients));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto& me = per[static_cast<std::size_t>(c)];
      probe::HttpClient client(*url, token, "bench-ingest");
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      for (const auto& body : bodies[static_cast<std::size_t>(c)]) {
        const std::int64_t t = bench::monotonic_ns();
        const auto res = client.post(body, 120 * kSec);
        me.post_ns.push_back(bench::monotonic_ns() - t);
        if (res.status != 200) {
          me.error = "POST answered " + std::to_string(res.status) + ": " +
                     (res.status == 0 ? res.error : res.body);
          return;
        }
        try {
          const auto j = nlohmann::json::parse(res.body);
          me.probes += j.at("accepted").at("probes").get<std::uint64_t>();
          me.rollups += j.at("accepted").at("rollups").get<std::uint64_t>();
          for (const char* k : {"probes", "rollups", "events"}) {
            me.duplicates += j.at("duplicates").at(k).get<std::uint64_t>();
          }
        } catch (const std::exception& e) {
          me.error = std::string("bad answer: ") + e.what() + ": " + res.body;
          return;
        }
      }
    });
  }
  while (ready.load() < clients) std::this_thread::yield();
  const std::int64_t start = bench::monotonic_ns();
  go.store(true);
  for (auto& t : threads) t.join();
  r.seconds = static_cast<double>(bench::monotonic_ns() - start) / 1e9;
  const int exit_status = stop_collector(col);
  std::uint64_t got_probes = 0, got_rollups = 0, dups = 0;
  for (auto& p : per) {
    if (!p.error.empty()) throw std::runtime_error("http client: " + p.error);
    got_probes += p.probes;
    got_rollups += p.rollups;
    dups += p.duplicates;
    r.post_ns.insert(r.post_ns.end(), p.post_ns.begin(), p.post_ns.end());
  }
  const std::string db_path = dir + "/collector.db";
  // The check that makes the figure worth anything: exactly the rows sent, acknowledged and in
  // the database after the collector stopped.
  const auto db_probes = count_rows(db_path, "probes");
  const auto db_rollups = count_rows(db_path, "rollup_1s");
  if (exit_status != 0 || got_probes != want_probes || got_rollups != want_rollups || dups != 0 ||
      db_probes != static_cast<std::int64_t>(want_probes) ||
      db_rollups != static_cast<std::int64_t>(want_rollups)) {
    throw std::runtime_error("http run with " + std::to_string(clients) +
                             " clients is wrong: sent " + std::to_string(want_probes) +
                             " probes + " + std::to_string(want_rollups) +
                             " rollups; acknowledged " + std::to_string(got_probes) + " + " +
                             std::to_string(got_rollups) + " (" + std::to_string(dups) +
                             " duplicates); database " + std::to_string(db_probes) + " + " +
                             std::to_string(db_rollups) + "; collector exit status " +
                             std::to_string(exit_status) + " (log: " + dir + "/collector.log)");
  }
  r.rows = want_probes + want_rollups;
  r.bytes = file_bytes(db_path);
  if (!o.keep) std::filesystem::remove_all(dir);
  return r;
}

// ---- sizes --------------------------------------------------------------------------------

// Bytes of one day of rollups for one target at the default rates, through the store.
std::int64_t rollup_bytes_per_day(const std::string& path, double days, std::uint64_t rate) {
  remove_db(path);
  std::int64_t empty = 0;
  {
    db::StoreConfig cfg;
    cfg.path = path;
    auto store = db::open_sqlite_store(cfg);
    const auto seconds = static_cast<std::int64_t>(days * 86400);
    db::IngestBatch b;
    b.header = {"bench-agent", "0123456789abcdef", 1, kT0, "0.1.0"};
    for (std::int64_t s = 0; s < seconds; ++s) {
      add_rollups(b.rollups, target_name(0), 0, kT0 + s * kSec, rate);
      if (b.rollups.size() >= 60'000 || s + 1 == seconds) {
        const auto c = store->ingest(std::move(b)).get();
        if (!c) throw std::runtime_error(c.error().message);
        b = {};
        b.header = {"bench-agent", "0123456789abcdef", 1, kT0, "0.1.0"};
      }
    }
  }
  {
    const std::string e = path + ".empty";
    remove_db(e);
    db::StoreConfig cfg;
    cfg.path = e;
    { auto s = db::open_sqlite_store(cfg); }
    empty = file_bytes(e);
    remove_db(e);
  }
  const auto bytes = file_bytes(path) - empty;
  remove_db(path);
  return static_cast<std::int64_t>(static_cast<double>(bytes) / days);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--dir") {
      o.dir = next();
    } else if (a == "--probes") {
      o.probes = std::stoull(next());
    } else if (a == "--rate") {
      o.rate = std::stoull(next());
    } else if (a == "--targets") {
      o.targets = std::stoi(next());
    } else if (a == "--window") {
      o.window = std::stoi(next());
    } else if (a == "--rounds") {
      o.rounds = std::stoi(next());
    } else if (a == "--rollup-days") {
      o.rollup_days = std::stod(next());
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--http") {
      o.http = true;
    } else if (a == "--collector") {
      o.collector = next();
    } else if (a == "--clients") {
      o.clients.clear();
      const std::string v = next();
      for (std::size_t pos = 0; pos <= v.size();) {
        const auto comma = std::min(v.find(',', pos), v.size());
        o.clients.push_back(std::stoi(v.substr(pos, comma - pos)));
        pos = comma + 1;
      }
    } else if (a == "--help" || a == "-h") {
      std::cout << "usage: bench-ingest [--dir DIR] [--probes N] [--rate PPS] [--targets T] "
                   "[--window W] [--rounds R] [--rollup-days D] [--keep]\n"
                   "                    [--http [--clients 1,4] [--collector PATH]]\n";
      return 0;
    } else {
      std::cerr << "bench-ingest: unknown argument " << a << " (--help)\n";
      return 2;
    }
  }
  if (o.rate == 0 || o.targets < 1 || o.window < 1 || o.rounds < 1 ||
      std::any_of(o.clients.begin(), o.clients.end(), [](int c) { return c < 1; })) {
    std::cerr << "bench-ingest: --rate, --targets, --window, --rounds, --clients must be >= 1\n";
    return 2;
  }
  if (o.http && o.collector.empty()) {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    o.collector = (self.parent_path() / "../../probe/pathsentry-collector").lexically_normal();
  }
  if (o.http && ::access(o.collector.c_str(), X_OK) != 0) {
    std::cerr << "bench-ingest: no collector at " << o.collector << " (build pathsentry-collector "
              << "or give --collector PATH)\n";
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  {
    const std::uint64_t per_batch = o.rate * 2 * static_cast<std::uint64_t>(o.targets);
    const auto n_batches = static_cast<std::int64_t>((o.probes + per_batch - 1) / per_batch);
    kT0 = (bench::realtime_ns() / kSec - n_batches - 60) * kSec;
  }
  try {
    const auto batches = make_batches(o);
    std::uint64_t probes = 0, rollups = 0;
    for (const auto& b : batches) {
      probes += b.probes.size();
      rollups += b.rollups.size();
    }
    std::cerr << "bench-ingest: " << batches.size() << " batches, " << probes << " probes, "
              << rollups << " rollups, in " << o.dir << "\n";
    const std::string store_path = o.dir + "/bench-ingest-store.db";
    const std::string bare_path = o.dir + "/bench-ingest-bare.db";
    RunResult best_store, best_bare;
    std::vector<HttpResult> best_http(o.http ? o.clients.size() : 0);
    nlohmann::json rounds = nlohmann::json::array();
    for (int round = 0; round < o.rounds; ++round) {
      const auto bare = run_bare(batches, bare_path);
      const auto store = run_store(batches, store_path, o.window);
      std::cerr << "round " << round + 1 << ": bare " << bare.rows / bare.seconds
                << " rows/s, store " << store.rows / store.seconds << " rows/s";
      nlohmann::json jr = {{"bare_rows_per_s", bare.rows / bare.seconds},
                           {"store_rows_per_s", store.rows / store.seconds}};
      for (std::size_t k = 0; k < best_http.size(); ++k) {
        auto h = run_http(batches, o, o.clients[k]);
        std::cerr << ", http x" << o.clients[k] << " " << h.rows / h.seconds << " rows/s";
        jr["http_rows_per_s"][std::to_string(o.clients[k])] = h.rows / h.seconds;
        if (best_http[k].seconds == 0 || h.seconds < best_http[k].seconds) {
          best_http[k] = std::move(h);
        }
      }
      std::cerr << "\n";
      rounds.push_back(jr);
      if (best_bare.seconds == 0 || bare.seconds < best_bare.seconds) best_bare = bare;
      if (best_store.seconds == 0 || store.seconds < best_store.seconds) best_store = store;
    }
    if (!o.keep) {
      remove_db(bare_path);
      remove_db(store_path);
    }
    const auto rollup_day =
        rollup_bytes_per_day(o.dir + "/bench-ingest-rollups.db", o.rollup_days, o.rate);
    const double bare_rate = static_cast<double>(best_bare.rows) / best_bare.seconds;
    const double store_rate = static_cast<double>(best_store.rows) / best_store.seconds;
    const double store_per_m =
        static_cast<double>(best_store.bytes) / static_cast<double>(probes) * 1e6;
    const double bare_per_m =
        static_cast<double>(best_bare.bytes) / static_cast<double>(probes) * 1e6;
    std::printf(
        "rows: %llu (%llu probes + %llu rollups), %zu batches of %zu rows, window %d\n",
        static_cast<unsigned long long>(probes + rollups), static_cast<unsigned long long>(probes),
        static_cast<unsigned long long>(rollups), batches.size(),
        batches.empty() ? 0 : batches[0].probes.size() + batches[0].rollups.size(), o.window);
    std::printf("%-34s %14s %14s\n", "", "Store::ingest", "bare SQLite");
    std::printf("%-34s %14.0f %14.0f   ratio %.1f %%\n", "rows/s (best of rounds)", store_rate,
                bare_rate, 100.0 * store_rate / bare_rate);
    nlohmann::json http = nlohmann::json::array();
    for (auto& h : best_http) {
      const double rate = static_cast<double>(h.rows) / h.seconds;
      const double per_m = static_cast<double>(h.bytes) / static_cast<double>(probes) * 1e6;
      std::sort(h.post_ns.begin(), h.post_ns.end());
      char label[64];
      std::snprintf(label, sizeof label, "HTTP collector, %d client%s", h.clients,
                    h.clients == 1 ? "" : "s");
      std::printf(
          "%-34s %14.0f %14.0f   ratio %.1f %%  (%.1f MB/s of NDJSON, POST p50 %.0f ms "
          "p99 %.0f ms; rows verified in the db)\n",
          label, rate, bare_rate, 100.0 * rate / bare_rate,
          static_cast<double>(h.body_bytes) / h.seconds / 1e6,
          static_cast<double>(bench::percentile_sorted(h.post_ns, 50)) / 1e6,
          static_cast<double>(bench::percentile_sorted(h.post_ns, 99)) / 1e6);
      http.push_back({{"clients", h.clients},
                      {"rows_per_s", rate},
                      {"ratio", rate / bare_rate},
                      {"body_bytes", h.body_bytes},
                      {"bytes_per_million_rows", per_m},
                      {"post_ns", bench::distribution_json(h.post_ns)}});
    }
    std::printf("%-34s %14.1f %14.1f\n", "MB per million raw records", store_per_m / 1e6,
                bare_per_m / 1e6);
    std::printf("%-34s %14.1f\n", "MB per day of rollups per target",
                static_cast<double>(rollup_day) / 1e6);
    const double probes_per_day = 2.0 * static_cast<double>(o.rate) * 86400;
    std::printf("%-34s %14.1f   (%.0f probes/day, kept raw_keep only)\n",
                "GB per day of raw records/target", probes_per_day * store_per_m / 1e6 / 1e9,
                probes_per_day);
    nlohmann::json j = {{"probes", probes},
                        {"rollups", rollups},
                        {"batches", batches.size()},
                        {"window", o.window},
                        {"store_rows_per_s", store_rate},
                        {"bare_rows_per_s", bare_rate},
                        {"ratio", store_rate / bare_rate},
                        {"store_bytes_per_million_rows", store_per_m},
                        {"bare_bytes_per_million_rows", bare_per_m},
                        {"rollup_bytes_per_day_per_target", rollup_day},
                        {"http", http},
                        {"rounds", rounds}};
    std::cout << j.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "bench-ingest: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
