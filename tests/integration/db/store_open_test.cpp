// Opening the store: a new file, every earlier schema version migrated, a newer one refused, a
// corrupt one refused with the command that recovers it.

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "capture/pcap_builder.h"
#include "db/store_samples.h"

using namespace pathsentry;
using namespace pathsentry::test::db;
using pathsentry::db::ErrorKind;
using pathsentry::db::StoreOpenError;

namespace {

db::StoreConfig config_for(const std::string& path) {
  db::StoreConfig c;
  c.path = path;
  return c;
}

// Sample rows for a fixture: what every version's fixture holds (docs/store.md "Migrations").
void fill(db::Store& s) {
  auto b = batch("fixture-agent", "00000000000000a1", 1);
  b.probes.push_back(sample_probe("192.0.2.1", Proto::Stamp, 2, 5, kT0 + 5 * kSec));
  b.rollups.push_back(
      rollup("192.0.2.1", Proto::Stamp, 2, kT0 + 5 * kSec, Direction::Forward, "ipsec", 1, 1, 100));
  b.events.push_back(switchover("192.0.2.1", Proto::Stamp, 2, kT0 + 5 * kSec, 1));
  ingest_ok(s, std::move(b));
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

StoreOpenError open_error(const std::string& path) {
  try {
    auto s = db::open_sqlite_store(config_for(path));
  } catch (const StoreOpenError& e) {
    return e;
  }
  FAIL("the store opened " << path);
  return StoreOpenError(ErrorKind::Io, "");
}

}  // namespace

TEST_CASE("a new store is created in WAL mode at the current schema version", "[integration][db]") {
  test::TempDir dir;
  const auto path = dir.file("new.db");
  {
    auto s = db::open_sqlite_store(config_for(path));
    CHECK(s->stats().schema_version == db::schema_version());
    CHECK(s->stats().file_bytes > 0);
    CHECK(query_text(path, "PRAGMA journal_mode") == "wal");
    CHECK(query_text(path, "PRAGMA user_version") == std::to_string(db::schema_version()));
    for (const char* table :
         {"agents", "paths", "targets", "sessions", "probes", "rollup_1s", "events"}) {
      INFO(table);
      CHECK(query_text(path, std::string("SELECT name FROM sqlite_master WHERE name = '") + table +
                                 "'") == table);
    }
    fill(*s);
  }
  // Opened again: nothing migrated twice, the rows are there.
  auto s = db::open_sqlite_store(config_for(path));
  REQUIRE(s->agents().value().size() == 1);
  CHECK(s->events({}).value().size() == 1);
}

TEST_CASE("an existing empty file becomes a store", "[integration][db]") {
  test::TempDir dir;
  const auto path = dir.file("empty.db");
  std::ofstream(path).close();
  auto s = db::open_sqlite_store(config_for(path));
  CHECK(query_text(path, "PRAGMA user_version") == std::to_string(db::schema_version()));
}

// Every schema version 1..N has a fixture (a database that version wrote, as SQL text, with
// PRAGMA user_version set): adding migration N+1 without keeping fixture vN+1.sql fails here,
// and every earlier fixture must still migrate to the current version with its rows intact.
TEST_CASE("every earlier schema version migrates to the current one", "[integration][db]") {
  for (int v = 1; v <= db::schema_version(); ++v) {
    INFO("schema version " << v);
    const std::string fixture = std::string(PS_DB_FIXTURES) + "/v" + std::to_string(v) + ".sql";
    REQUIRE(std::filesystem::exists(fixture));
    test::TempDir dir;
    const auto path = dir.file("old.db");
    exec_sql(path, slurp(fixture));
    REQUIRE(query_text(path, "PRAGMA user_version") == std::to_string(v));
    auto s = db::open_sqlite_store(config_for(path));
    CHECK(query_text(path, "PRAGMA user_version") == std::to_string(db::schema_version()));
    const auto agents = s->agents().value();
    REQUIRE(agents.size() == 1);
    CHECK(agents[0].name == "fixture-agent");
    const auto events = s->events({}).value();
    REQUIRE(events.size() == 1);
    CHECK(events[0].event.to == "ipsec");
    db::ProbeQuery q;
    q.target = "192.0.2.1";
    q.from_ns = kT0;
    q.to_ns = kT0 + 10 * kSec;
    const auto probes = s->probes(q).value();
    REQUIRE(probes.size() == 1);
    CHECK(json_of(probes[0].record) ==
          json_of(sample_probe("192.0.2.1", Proto::Stamp, 2, 5, kT0 + 5 * kSec)));
    // And it takes new rows (the migrated schema has the current keys).
    auto b = batch("fixture-agent", "00000000000000a2", 1);
    b.probes.push_back(sample_probe("192.0.2.1", Proto::Stamp, 2, 5, kT0 + 6 * kSec));
    CHECK(ingest_ok(*s, std::move(b)).probes == 1);
  }
}

// Writes the fixture of the current version (run by hand when adding a migration:
// `db_test "[.write-fixture]"`, then keep tests/integration/db/fixtures/vN.sql).
TEST_CASE("write the current version's fixture", "[.write-fixture]") {
  test::TempDir dir;
  const auto path = dir.file("fixture.db");
  {
    auto s = db::open_sqlite_store(config_for(path));
    fill(*s);
  }
  const std::string out =
      std::string(PS_DB_FIXTURES) + "/v" + std::to_string(db::schema_version()) + ".sql";
  const std::string cmd =
      "sqlite3 '" + path + "' .dump > '" + out +
      "' && echo 'PRAGMA user_version = " + std::to_string(db::schema_version()) + ";' >> '" + out +
      "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
}

TEST_CASE("a database newer than the binary is refused, naming both versions",
          "[integration][db]") {
  test::TempDir dir;
  const auto path = dir.file("newer.db");
  { auto s = db::open_sqlite_store(config_for(path)); }
  const int newer = db::schema_version() + 1;
  exec_sql(path, "PRAGMA user_version = " + std::to_string(newer));
  const auto e = open_error(path);
  CHECK(e.kind() == ErrorKind::TooNew);
  const std::string msg = e.what();
  CHECK_THAT(msg, Catch::Contains(path));
  CHECK_THAT(msg, Catch::Contains("schema version " + std::to_string(newer)));
  CHECK_THAT(msg, Catch::Contains("this binary's " + std::to_string(db::schema_version())));
  // Refused without touching it.
  CHECK(query_text(path, "PRAGMA user_version") == std::to_string(newer));
}

TEST_CASE("a file that is no database is refused with the recovery command", "[integration][db]") {
  test::TempDir dir;
  const auto path = dir.file("notadb.db");
  {
    std::ofstream out(path);
    for (int i = 0; i < 512; ++i) out << "this is not a database\n";
  }
  const auto e = open_error(path);
  CHECK(e.kind() == ErrorKind::Corrupt);
  const std::string msg = e.what();
  CHECK_THAT(msg, Catch::Contains(path));
  CHECK_THAT(msg, Catch::Contains("(sqlite3 '" + path + "' .dump | sed "));
  CHECK_THAT(msg, Catch::Contains("| sqlite3 '" + path + ".recovered'"));
  CHECK(std::filesystem::file_size(path) == 512 * 23);  // untouched
}

TEST_CASE("a damaged database is found by quick_check at open", "[integration][db]") {
  test::TempDir dir;
  const auto path = dir.file("damaged.db");
  {
    auto s = db::open_sqlite_store(config_for(path));
    auto b = batch("dc1", "00000000000000b1", 1);
    for (std::uint64_t i = 0; i < 20000; ++i) {
      b.probes.push_back(
          sample_probe("192.0.2.1", Proto::Icmp, 1, i, kT0 + static_cast<std::int64_t>(i)));
    }
    ingest_ok(*s, std::move(b));
  }
  REQUIRE(std::filesystem::file_size(path) > 40 * 4096);
  {
    // Garbage over pages 10..20 (the probes' b-tree), the header and schema intact.
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10 * 4096);
    const std::string junk(10 * 4096, '\xA5');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  const auto e = open_error(path);
  CHECK(e.kind() == ErrorKind::Corrupt);
  const std::string msg = e.what();
  CHECK_THAT(msg, Catch::Contains(path + ": damaged (quick_check: "));
  CHECK_THAT(msg, Catch::Contains("recover what can be recovered with: "));

  // The command in the message, run as written, salvages the readable rows into a file the
  // store opens as is (same schema version: no migration, no quick_check complaint).
  const std::string with = "recover what can be recovered with: ";
  const auto from = msg.find(with) + with.size();
  const auto to = msg.find(" (then move the damaged file away");
  REQUIRE(to != std::string::npos);
  const std::string command = msg.substr(from, to - from);
  INFO(command);
  CHECK(std::system((command + " 2>/dev/null").c_str()) == 0);
  REQUIRE(std::filesystem::exists(path + ".recovered"));
  CHECK(query_text(path + ".recovered", "PRAGMA user_version") ==
        std::to_string(db::schema_version()));
  const auto recovered = std::stoll(query_text(path + ".recovered", "SELECT count(*) FROM probes"));
  CHECK(recovered > 10000);  // most of the 20000 rows: only pages 10..20 were lost
  CHECK(recovered < 20000);
  CHECK_NOTHROW(db::open_sqlite_store(config_for(path + ".recovered")));
}

TEST_CASE("a database in a missing directory is refused with its path", "[integration][db]") {
  test::TempDir dir;
  const auto path = dir.file("no/such/dir/x.db");
  const auto e = open_error(path);
  CHECK(e.kind() == ErrorKind::Io);
  CHECK_THAT(std::string(e.what()), Catch::Contains(path + ": cannot open"));
}

TEST_CASE("check_at_open off skips quick_check (a damaged page goes unnoticed at open)",
          "[integration][db]") {
  test::TempDir dir;
  const auto path = dir.file("damaged.db");
  {
    auto s = db::open_sqlite_store(config_for(path));
    auto b = batch("dc1", "00000000000000b1", 1);
    for (std::uint64_t i = 0; i < 20000; ++i) {
      b.probes.push_back(
          sample_probe("192.0.2.1", Proto::Icmp, 1, i, kT0 + static_cast<std::int64_t>(i)));
    }
    ingest_ok(*s, std::move(b));
  }
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10 * 4096);
    const std::string junk(10 * 4096, '\xA5');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto cfg = config_for(path);
  cfg.check_at_open = false;
  auto s = db::open_sqlite_store(cfg);
  // The damage shows when read: Corrupt, with the recovery command.
  db::ProbeQuery q;
  q.target = "192.0.2.1";
  q.from_ns = kT0;
  q.to_ns = kT0 + kSec;
  const auto r = s->probes(q);
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == ErrorKind::Corrupt);
  CHECK_THAT(r.error().message, Catch::StartsWith(path + ": "));
  CHECK_THAT(r.error().message, Catch::Contains(".recovered'"));
}
