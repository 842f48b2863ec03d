// RollupBuilder: the per-second rows of common/rollup.h, figure by figure.
#include "pathsentry/probe/ship/rollup_builder.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "pathsentry/common/clock.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

constexpr std::int64_t kS = kNsPerSec;
constexpr std::int64_t kMs = 1'000'000;

ProbeRecord rec(std::uint32_t session, std::uint64_t seq, std::int64_t tx_ns,
                std::optional<std::int64_t> rtt, const std::string& fwd, const std::string& rev,
                LossDirection loss = LossDirection::None) {
  ProbeRecord r;
  r.target = "192.0.2.7";
  r.proto = Proto::Stamp;
  r.session_id = session;
  r.seq = seq;
  r.tx_ns = tx_ns;
  if (rtt) {
    r.rx_ns = tx_ns + *rtt;
    r.rtt_ns = *rtt;
  }
  r.fwd_path = fwd;
  r.rev_path = rev;
  r.loss = rtt ? LossDirection::None : loss;
  return r;
}

const Rollup* find(const std::vector<Rollup>& rows, Direction d, const std::string& path,
                   std::int64_t second_ns) {
  for (const Rollup& r : rows) {
    if (r.direction == d && r.path == path && r.second_ns == second_ns) return &r;
  }
  return nullptr;
}

// Second 100 of session 1: seven probes over four paths in each direction.
void feed_second_100(RollupBuilder& b, std::vector<Rollup>& out) {
  const std::int64_t t = 100 * kS;
  b.add(rec(1, 0, t + 100 * kMs, 10, "ec", "ec"), out);
  b.add(rec(1, 1, t + 200 * kMs, 30, "ec", "ipsec"), out);
  b.add(rec(1, 2, t + 300 * kMs, 20, "ipsec", "ec"), out);
  b.add(rec(1, 4, t + 500 * kMs, 50, "ec", "ec"), out);  // before seq 3's loss is known
  b.add(rec(1, 3, t + 400 * kMs, std::nullopt, "ec", "none", LossDirection::Reverse), out);
  b.add(rec(1, 5, t + 600 * kMs, std::nullopt, "none", "none", LossDirection::Forward), out);
  // A lost probe without a verdict (the engine's, no taps) counts as undetermined.
  b.add(rec(1, 6, t + 700 * kMs, std::nullopt, "unknown", "unknown"), out);
}

}  // namespace

TEST_CASE("rollup rows: each probe once per direction, in its path's row, exact figures",
          "[unit]") {
  RollupBuilder b(2 * kS);
  std::vector<Rollup> out;
  feed_second_100(b, out);
  CHECK(out.empty());
  b.flush(out);
  REQUIRE(out.size() == 8);
  const std::int64_t s100 = 100 * kS;

  const Rollup* f_ec = find(out, Direction::Forward, "ec", s100);
  REQUIRE(f_ec != nullptr);
  CHECK(f_ec->target == "192.0.2.7");
  CHECK(f_ec->proto == Proto::Stamp);
  CHECK(f_ec->session_id == 1);
  CHECK(f_ec->sent == 4);  // seq 0, 1, 3, 4
  CHECK(f_ec->received == 3);
  CHECK(f_ec->lost_forward == 0);
  CHECK(f_ec->lost_reverse == 1);
  CHECK(f_ec->lost_undetermined == 0);
  CHECK(f_ec->rtt_min_ns == 10);
  CHECK(f_ec->rtt_max_ns == 50);
  CHECK(f_ec->rtt_mean_ns == 30);
  CHECK(f_ec->rtt_p50_ns == 30);  // rank ceil(0.5 × 3) = 2 of 10, 30, 50
  CHECK(f_ec->rtt_p99_ns == 50);  // rank 3
  CHECK(f_ec->jitter_ns == 20);   // by seq: 10, 30, 50 → (20 + 20) / 2

  const Rollup* f_ipsec = find(out, Direction::Forward, "ipsec", s100);
  REQUIRE(f_ipsec != nullptr);
  CHECK(f_ipsec->sent == 1);
  CHECK(f_ipsec->received == 1);
  CHECK(f_ipsec->rtt_min_ns == 20);
  CHECK(f_ipsec->rtt_p50_ns == 20);
  CHECK(f_ipsec->rtt_p99_ns == 20);
  CHECK(f_ipsec->rtt_max_ns == 20);
  CHECK(f_ipsec->jitter_ns == 0);

  const Rollup* f_none = find(out, Direction::Forward, "none", s100);
  REQUIRE(f_none != nullptr);
  CHECK(f_none->sent == 1);
  CHECK(f_none->received == 0);
  CHECK(f_none->lost_forward == 1);
  CHECK(f_none->rtt_min_ns == 0);
  CHECK(f_none->rtt_mean_ns == 0);
  CHECK(f_none->jitter_ns == 0);

  const Rollup* f_unknown = find(out, Direction::Forward, "unknown", s100);
  REQUIRE(f_unknown != nullptr);
  CHECK(f_unknown->sent == 1);
  CHECK(f_unknown->lost_undetermined == 1);

  const Rollup* r_ec = find(out, Direction::Reverse, "ec", s100);
  REQUIRE(r_ec != nullptr);
  CHECK(r_ec->sent == 3);  // seq 0, 2, 4
  CHECK(r_ec->received == 3);
  CHECK(r_ec->rtt_min_ns == 10);
  CHECK(r_ec->rtt_mean_ns == 26);  // 80 / 3, truncated
  CHECK(r_ec->rtt_p50_ns == 20);
  CHECK(r_ec->rtt_p99_ns == 50);
  CHECK(r_ec->rtt_max_ns == 50);
  CHECK(r_ec->jitter_ns == 20);  // by seq: 10, 20, 50 → (10 + 30) / 2

  const Rollup* r_ipsec = find(out, Direction::Reverse, "ipsec", s100);
  REQUIRE(r_ipsec != nullptr);
  CHECK(r_ipsec->sent == 1);
  CHECK(r_ipsec->rtt_mean_ns == 30);

  const Rollup* r_none = find(out, Direction::Reverse, "none", s100);
  REQUIRE(r_none != nullptr);
  CHECK(r_none->sent == 2);
  CHECK(r_none->received == 0);
  CHECK(r_none->lost_forward == 1);
  CHECK(r_none->lost_reverse == 1);

  // The rows of each direction add up to the seven probes of the second.
  for (Direction d : {Direction::Forward, Direction::Reverse}) {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::uint64_t lost = 0;
    for (const Rollup& r : out) {
      if (r.direction != d) continue;
      sent += r.sent;
      received += r.received;
      lost += r.lost_forward + r.lost_reverse + r.lost_undetermined;
    }
    CHECK(sent == 7);
    CHECK(received == 4);
    CHECK(lost == 3);
  }
  CHECK(b.stats().probes == 7);
  CHECK(b.stats().rollups == 8);
}

TEST_CASE("rollup seconds close as soon as all their sequences are in, never twice", "[unit]") {
  RollupBuilder b(30 * kS);
  std::vector<Rollup> out;
  feed_second_100(b, out);  // seqs 0..6, all in second 100 (4 before 3)
  CHECK(out.empty());       // seq 7 may still be in second 100
  // Seq 8 (second 101) arrives before seq 7 (held back, as the attribution does under load):
  // second 100 stays open however late it is, until seq 7 is in.
  b.add(rec(1, 8, 101 * kS + 500 * kMs, 1, "ec", "ec"), out);
  CHECK(out.empty());
  CHECK(b.open_seconds() == 2);
  b.add(rec(1, 7, 100 * kS + 990 * kMs, 1, "ec", "ec"), out);  // 0..8 in: 100 is complete
  REQUIRE(out.size() == 8);
  for (const Rollup& r : out) CHECK(r.second_ns == 100 * kS);
  CHECK(find(out, Direction::Forward, "ec", 100 * kS)->sent == 5);  // seq 0, 1, 3, 4, 7
  CHECK(b.open_seconds() == 1);                                     // 101

  // A record for the closed second is left out and counted; nothing is emitted again.
  out.clear();
  b.add(rec(1, 9, 100 * kS + 800 * kMs, 5, "ec", "ec"), out);
  CHECK(out.empty());
  CHECK(b.stats().after_close == 1);

  // A late record (its probe was counted as lost) is not counted again.
  ProbeRecord late = rec(1, 7, 100 * kS + 990 * kMs, 1, "ec", "ec");
  late.late = true;
  b.add(late, out);
  CHECK(b.stats().late_ignored == 1);

  // Another session's records close nothing of session 1.
  b.add(rec(2, 0, 200 * kS, 1, "ec", "ec"), out);
  CHECK(out.empty());

  b.flush(out);
  REQUIRE(out.size() == 4);  // session 1: 101; session 2: 200 (each fwd + rev)
  CHECK(find(out, Direction::Forward, "ec", 101 * kS)->sent == 1);
  CHECK(b.open_seconds() == 0);
  out.clear();
  b.flush(out);  // nothing twice
  CHECK(out.empty());
  CHECK(b.stats().probes == 10);
}

TEST_CASE("rollup backstop: a sequence that never comes holds a second at most the grace",
          "[unit]") {
  RollupBuilder b(2 * kS);
  std::vector<Rollup> out;
  b.add(rec(1, 0, 100 * kS + 100 * kMs, 1, "ec", "ec"), out);
  // seq 1 (a failed send) never comes
  b.add(rec(1, 2, 102 * kS + 999 * kMs, 1, "ec", "ec"), out);  // 102.999 < 100 + 1 + 2
  CHECK(out.empty());
  b.add(rec(1, 3, 103 * kS, 1, "ec", "ec"), out);  // the backstop closes 100
  REQUIRE(out.size() == 2);
  CHECK(out[0].second_ns == 100 * kS);
  out.clear();
  b.add(rec(1, 4, 104 * kS + 100 * kMs, 1, "ec", "ec"), out);  // closes 101 (empty)
  CHECK(out.empty());
  b.add(rec(1, 5, 105 * kS, 1, "ec", "ec"), out);  // closes 102: seq 1 is given up
  REQUIRE(out.size() == 2);
  CHECK(out[0].second_ns == 102 * kS);
  out.clear();
  // From there the sequences are contiguous again: 103 and 104 close as soon as they are in.
  b.add(rec(1, 6, 105 * kS + 500 * kMs, 1, "ec", "ec"), out);
  REQUIRE(out.size() == 4);
  CHECK(find(out, Direction::Forward, "ec", 103 * kS)->sent == 1);
  CHECK(find(out, Direction::Forward, "ec", 104 * kS)->sent == 1);
  CHECK(b.stats().after_close == 0);
}

TEST_CASE("rollup nearest-rank percentiles over 200 answers", "[unit]") {
  std::vector<std::int64_t> v;
  for (int i = 1; i <= 200; ++i) v.push_back(i);
  CHECK(nearest_rank(v, 50) == 100);
  CHECK(nearest_rank(v, 99) == 198);
  CHECK(nearest_rank(v, 100) == 200);
  CHECK(nearest_rank({7}, 99) == 7);

  // The same through a row: RTTs 200..1 sent in reverse order of value, sequence ascending.
  RollupBuilder b(0);
  std::vector<Rollup> out;
  for (int i = 0; i < 200; ++i) {
    b.add(rec(1, static_cast<std::uint64_t>(i), 5 * kS + i * kMs, 200 - i, "", ""), out);
  }
  b.flush(out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].direction == Direction::Forward);
  CHECK(out[0].path.empty());
  CHECK(out[0].rtt_p50_ns == 100);
  CHECK(out[0].rtt_p99_ns == 198);
  CHECK(out[0].rtt_mean_ns == 100);  // 20100 / 200 = 100.5, truncated
  CHECK(out[0].jitter_ns == 1);
  CHECK(out[0] == [&] {
    Rollup r = out[1];
    r.direction = Direction::Forward;
    return r;
  }());
}
