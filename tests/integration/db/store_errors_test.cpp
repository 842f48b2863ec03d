// A locked, full or read-only database: the store answers with the kind and a message naming
// the file, writes nothing of the failed batch, keeps serving reads, and the writer recovers
// once the cause is gone.

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "capture/pcap_builder.h"
#include "db/store_samples.h"

using namespace pathsentry;
using namespace pathsentry::test::db;
using pathsentry::db::ErrorKind;

namespace {

db::IngestBatch probes_batch(std::uint64_t n, std::uint64_t from, std::uint64_t to) {
  auto b = batch("dc1", "9f1c0a2b3d4e5f60", n);
  for (std::uint64_t i = from; i < to; ++i) {
    b.probes.push_back(
        sample_probe("192.0.2.1", Proto::Stamp, 2, i, kT0 + static_cast<std::int64_t>(i) * 1000));
  }
  return b;
}

std::size_t probe_count(db::Store& s) {
  db::ProbeQuery q;
  q.target = "192.0.2.1";
  q.from_ns = 0;
  q.to_ns = std::numeric_limits<std::int64_t>::max();
  return s.probes(q).value().size();
}

}  // namespace

TEST_CASE("a database locked by another writer beyond the busy timeout gives Busy",
          "[integration][db]") {
  test::TempDir dir;
  const auto path = dir.file("busy.db");
  db::StoreConfig cfg;
  cfg.path = path;
  cfg.busy_timeout_ms = 100;
  auto s = db::open_sqlite_store(cfg);
  REQUIRE(ingest_ok(*s, probes_batch(1, 0, 10)).probes == 10);

  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &other) == SQLITE_OK);
  REQUIRE(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  const auto r = s->ingest(probes_batch(2, 10, 20)).get();
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == ErrorKind::Busy);
  CHECK_THAT(r.error().message, Catch::StartsWith(path + ": "));
  CHECK(s->stats().failed_batches == 1);
  CHECK(probe_count(*s) == 10);  // reads are served meanwhile (WAL)
  REQUIRE(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(other);

  // The writer goes on: the resend is stored whole.
  const auto again = ingest_ok(*s, probes_batch(2, 10, 20));
  CHECK(again.probes == 10);
  CHECK(again.duplicate_probes == 0);
  CHECK(probe_count(*s) == 20);
}

// Root ignores file modes, so the file system itself is made read-only: a bind mount of the
// directory, remounted read-only, in a mount namespace of the test's own (nothing else sees it).
TEST_CASE("a database on a read-only file system is refused at open, naming the file",
          "[privileged][db]") {
  REQUIRE(geteuid() == 0);
  test::TempDir dir;
  const auto sub = dir.file("ro");
  std::filesystem::create_directory(sub);
  const auto path = sub + "/ro.db";
  {
    db::StoreConfig cfg;
    cfg.path = path;
    auto s = db::open_sqlite_store(cfg);
    ingest_ok(*s, probes_batch(1, 0, 10));
  }
  enter_private_mount_namespace();
  REQUIRE(mount(sub.c_str(), sub.c_str(), nullptr, MS_BIND, nullptr) == 0);
  MountGuard guard{sub};
  REQUIRE(mount(nullptr, sub.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0);
  // As root, only the file system stops a write: check it really does.
  REQUIRE(::open((sub + "/probe").c_str(), O_CREAT | O_WRONLY, 0644) == -1);
  REQUIRE(errno == EROFS);

  db::StoreConfig cfg;
  cfg.path = path;
  try {
    auto s = db::open_sqlite_store(cfg);
    FAIL("opened a database on a read-only file system");
  } catch (const db::StoreOpenError& e) {
    CHECK(e.kind() == ErrorKind::ReadOnly);
    CHECK_THAT(std::string(e.what()), Catch::StartsWith(path + ": "));
    CHECK_THAT(std::string(e.what()), Catch::Contains("read-only"));
  }
}

// A small tmpfs (in the test's own mount namespace) filled up by a file beside the database:
// the batch fails with Full and nothing of it is written; once the file is removed, the same
// batch goes in whole.
TEST_CASE("a full disk gives Full, and the writer recovers when space is freed",
          "[privileged][db]") {
  REQUIRE(geteuid() == 0);
  test::TempDir dir;
  const auto mnt = dir.file("small");
  std::filesystem::create_directory(mnt);
  enter_private_mount_namespace();
  REQUIRE(mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=8m") == 0);
  MountGuard guard{mnt};
  const auto path = mnt + "/full.db";
  db::StoreConfig cfg;
  cfg.path = path;
  auto s = db::open_sqlite_store(cfg);
  REQUIRE(ingest_ok(*s, probes_batch(1, 0, 100)).probes == 100);

  // Fill what is left.
  const auto filler = mnt + "/filler";
  {
    const int fd = ::open(filler.c_str(), O_CREAT | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    const std::string block(64 * 1024, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    const std::string small(512, 'x');
    while (::write(fd, small.data(), small.size()) > 0) {
    }
    ::close(fd);
  }
  const auto big = probes_batch(2, 100, 40'100);  // a few MB of pages: more than any WAL slack
  const auto r = s->ingest(big).get();
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == ErrorKind::Full);
  CHECK_THAT(r.error().message, Catch::StartsWith(path + ": "));
  CHECK(probe_count(*s) == 100);  // reads still served, nothing of the batch written

  std::filesystem::remove(filler);
  const auto again = ingest_ok(*s, big);
  CHECK(again.probes == 40'000);
  CHECK(again.duplicate_probes == 0);
  CHECK(probe_count(*s) == 40'100);
  CHECK(s->stats().failed_batches == 1);
}
