// The store's compact probe columns round-trip every record exactly; SQLite result codes map
// to the store's error kinds.

#include "probe_columns.h"

#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <limits>

#include "common/sample_records.h"
#include "db/store_samples.h"
#include "sqlite_util.h"

using namespace pathsentry;
using pathsentry::db::ErrorKind;
using pathsentry::test::db::json_of;

namespace {

ProbeRecord round_trip(const ProbeRecord& r) {
  const auto c = db::detail::to_columns(r);
  ProbeRecord out;
  out.target = r.target;
  out.proto = r.proto;
  out.session_id = r.session_id;
  out.fwd_path = r.fwd_path;
  out.rev_path = r.rev_path;
  REQUIRE(db::detail::from_columns(c, out));
  return out;
}

}  // namespace

TEST_CASE("probe columns round-trip every field of a record", "[unit][db]") {
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  std::vector<ProbeRecord> records;
  records.push_back(test::sample_records::stamp_record());
  records.push_back(test::sample_records::lost_icmp());
  auto odd = test::sample_records::stamp_record();
  odd.rtt_ns = 12;  // not rx - tx: kept as given
  odd.late = true;
  odd.taps_down = {"tap-inet", "", "a:b", std::string("x\0y", 3)};
  odd.reflector_rx_ns.reset();  // tx without rx
  odd.reflector_seq = 0xFFFFFFFFu;
  records.push_back(odd);
  auto extreme = test::sample_records::lost_icmp();
  extreme.tx_ns = kMin;
  extreme.rx_ns = kMax;  // the offset wraps; the value comes back
  extreme.rtt_ns = -1;
  extreme.reflector_rx_ns = kMax;
  extreme.reflector_tx_ns = kMin;
  extreme.seq = std::numeric_limits<std::uint64_t>::max();
  extreme.loss = LossDirection::Reverse;
  records.push_back(extreme);
  auto lost_with_rtt = test::sample_records::lost_icmp();
  lost_with_rtt.rtt_ns = 5;  // lost yet an rtt: kept
  records.push_back(lost_with_rtt);
  for (const auto& r : records) CHECK(json_of(round_trip(r)) == json_of(r));
}

TEST_CASE("probe columns store nothing for the common case", "[unit][db]") {
  // An answered probe's rtt is rx - tx: no rtt column; no taps down: no blob.
  const auto c = db::detail::to_columns(test::sample_records::stamp_record());
  CHECK_FALSE(c.rtt_x.has_value());
  CHECK_FALSE(c.taps_down.has_value());
  REQUIRE(c.rx_off.has_value());
  CHECK(*c.rx_off == 8'000'333);
  CHECK(*c.refl_tx_off == 10'000);
  const auto lost = db::detail::to_columns(test::sample_records::lost_icmp());
  CHECK_FALSE(lost.rx_off.has_value());
  CHECK_FALSE(lost.rtt_x.has_value());
  CHECK(lost.flags == (static_cast<std::int64_t>(LossDirection::Undetermined) << 3));
}

TEST_CASE("damaged probe columns are refused, not misread", "[unit][db]") {
  std::vector<std::string> taps;
  CHECK_FALSE(db::detail::decode_taps("3:ab", taps));
  CHECK_FALSE(db::detail::decode_taps("x:ab", taps));
  CHECK_FALSE(db::detail::decode_taps("2ab", taps));
  CHECK_FALSE(db::detail::decode_taps("2", taps));
  CHECK(db::detail::decode_taps("", taps));
  CHECK(taps.empty());
  ProbeRecord r;
  db::detail::ProbeColumns c;
  c.flags = 4 << 3;  // loss 4 does not exist
  CHECK_FALSE(db::detail::from_columns(c, r));
  c.flags = -1;
  CHECK_FALSE(db::detail::from_columns(c, r));
  c.flags = 0;
  c.refl_seq = std::int64_t{1} << 32;
  CHECK_FALSE(db::detail::from_columns(c, r));
}

TEST_CASE("SQLite result codes and errno map to the store's error kinds", "[unit][db]") {
  using db::detail::kind_of;
  CHECK(kind_of(SQLITE_BUSY, 0) == ErrorKind::Busy);
  CHECK(kind_of(SQLITE_BUSY_SNAPSHOT, 0) == ErrorKind::Busy);
  CHECK(kind_of(SQLITE_LOCKED, 0) == ErrorKind::Busy);
  CHECK(kind_of(SQLITE_FULL, 0) == ErrorKind::Full);
  CHECK(kind_of(SQLITE_IOERR_WRITE, ENOSPC) == ErrorKind::Full);
  CHECK(kind_of(SQLITE_IOERR_WRITE, EDQUOT) == ErrorKind::Full);
  CHECK(kind_of(SQLITE_READONLY, 0) == ErrorKind::ReadOnly);
  CHECK(kind_of(SQLITE_READONLY_DBMOVED, 0) == ErrorKind::ReadOnly);
  CHECK(kind_of(SQLITE_IOERR_WRITE, EROFS) == ErrorKind::ReadOnly);
  CHECK(kind_of(SQLITE_CANTOPEN, EACCES) == ErrorKind::ReadOnly);
  CHECK(kind_of(SQLITE_CANTOPEN, ENOENT) == ErrorKind::Io);
  CHECK(kind_of(SQLITE_CORRUPT, 0) == ErrorKind::Corrupt);
  CHECK(kind_of(SQLITE_NOTADB, 0) == ErrorKind::Corrupt);
  CHECK(kind_of(SQLITE_IOERR_FSYNC, EIO) == ErrorKind::Io);
  CHECK(kind_of(SQLITE_ERROR, 0) == ErrorKind::Io);
}

TEST_CASE("error kinds have names for logs and answers", "[unit][db]") {
  CHECK(std::string(db::to_string(ErrorKind::Full)) == "full");
  CHECK(std::string(db::to_string(ErrorKind::ReadOnly)) == "read-only");
  CHECK(std::string(db::to_string(ErrorKind::TooNew)) == "too new");
  CHECK(std::string(db::to_string(ErrorKind::Closed)) == "closed");
}
