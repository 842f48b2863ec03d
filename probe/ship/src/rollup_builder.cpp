#include "pathsentry/probe/ship/rollup_builder.h"

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "pathsentry/common/clock.h"

namespace pathsentry::probe {
namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

}  // namespace

RollupInput RollupInput::of(const ProbeRecord& r) {
  RollupInput in;
  in.session_id = r.session_id;
  in.target = r.target;
  in.proto = r.proto;
  in.seq = r.seq;
  in.tx_ns = r.tx_ns;
  in.received = r.rx_ns.has_value();
  in.rtt_ns = r.rtt_ns;
  in.loss = r.loss;
  in.late = r.late;
  in.fwd_path = r.fwd_path;
  in.rev_path = r.rev_path;
  return in;
}

std::int64_t nearest_rank(const std::vector<std::int64_t>& sorted, unsigned p) {
  const std::size_t n = sorted.size();
  std::size_t rank = (static_cast<std::size_t>(p) * n + 99) / 100;  // ceil(p/100 × n)
  rank = std::clamp<std::size_t>(rank, 1, n);
  return sorted[rank - 1];
}

void RollupBuilder::add(const RollupInput& in, std::vector<Rollup>& closed) {
  if (in.late) {
    ++stats_.late_ignored;
    return;
  }
  Session& s = sessions_[in.session_id];
  if (s.target.empty()) {
    s.target = std::string(in.target);
    s.proto = in.proto;
  }
  const std::int64_t second = floor_div(in.tx_ns, kNsPerSec);
  if (second < s.closed_before) {
    ++stats_.after_close;
  } else {
    Second& sec = s.open[second];
    const std::string_view paths[2] = {in.fwd_path, in.rev_path};
    for (int d = 0; d < 2; ++d) {
      auto it = sec.rows[d].find(paths[d]);
      if (it == sec.rows[d].end()) it = sec.rows[d].emplace(std::string(paths[d]), Row{}).first;
      Row& row = it->second;
      ++row.sent;
      if (in.received) {
        ++row.received;
        row.rtts.emplace_back(in.seq, in.rtt_ns);
      } else {
        switch (in.loss) {
          case LossDirection::Forward:
            ++row.lost[0];
            break;
          case LossDirection::Reverse:
            ++row.lost[1];
            break;
          case LossDirection::None:  // lost without a verdict: nothing says where
          case LossDirection::Undetermined:
            ++row.lost[2];
            break;
        }
      }
    }
    ++stats_.probes;
  }
  // Which seconds are complete: every sequence up to one sent in a later second has arrived.
  if (in.seq == s.contiguous) {
    ++s.contiguous;
    s.contiguous_tx = std::max(s.contiguous_tx, in.tx_ns);
    for (auto it = s.ahead.begin(); it != s.ahead.end() && it->first == s.contiguous;
         it = s.ahead.erase(it)) {
      ++s.contiguous;
      s.contiguous_tx = std::max(s.contiguous_tx, it->second);
    }
  } else if (in.seq > s.contiguous) {
    s.ahead.emplace(in.seq, in.tx_ns);
  }
  std::int64_t below = floor_div(in.tx_ns - grace_ns_, kNsPerSec);  // the backstop
  if (s.contiguous_tx != INT64_MIN) below = std::max(below, floor_div(s.contiguous_tx, kNsPerSec));
  if (below > s.closed_before) close_until(in.session_id, s, below, closed);
  // A sequence given up by the backstop: the next ones count as contiguous from here.
  while (!s.ahead.empty() && floor_div(s.ahead.begin()->second, kNsPerSec) < s.closed_before) {
    s.contiguous = s.ahead.begin()->first + 1;
    s.contiguous_tx = std::max(s.contiguous_tx, s.ahead.begin()->second);
    s.ahead.erase(s.ahead.begin());
    for (auto it = s.ahead.begin(); it != s.ahead.end() && it->first == s.contiguous;
         it = s.ahead.erase(it)) {
      ++s.contiguous;
      s.contiguous_tx = std::max(s.contiguous_tx, it->second);
    }
  }
}

void RollupBuilder::flush(std::vector<Rollup>& closed) {
  for (auto& [id, s] : sessions_) {
    if (s.open.empty()) continue;
    close_until(id, s, s.open.rbegin()->first + 1, closed);
  }
}

std::size_t RollupBuilder::open_seconds() const {
  std::size_t n = 0;
  for (const auto& [id, s] : sessions_) n += s.open.size();
  return n;
}

void RollupBuilder::close_until(std::uint32_t id, Session& s, std::int64_t below,
                                std::vector<Rollup>& out) {
  while (!s.open.empty() && s.open.begin()->first < below) {
    auto it = s.open.begin();
    emit(id, s, it->first, it->second, out);
    s.open.erase(it);
  }
  s.closed_before = std::max(s.closed_before, below);
}

void RollupBuilder::emit(std::uint32_t id, const Session& s, std::int64_t second, Second& sec,
                         std::vector<Rollup>& out) {
  std::vector<std::int64_t> sorted;
  for (int d = 0; d < 2; ++d) {
    for (auto& [path, row] : sec.rows[d]) {
      Rollup r;
      r.target = s.target;
      r.proto = s.proto;
      r.session_id = id;
      r.second_ns = second * kNsPerSec;
      r.direction = d == 0 ? Direction::Forward : Direction::Reverse;
      r.path = path;
      r.sent = row.sent;
      r.received = row.received;
      r.lost_forward = row.lost[0];
      r.lost_reverse = row.lost[1];
      r.lost_undetermined = row.lost[2];
      if (!row.rtts.empty()) {
        std::sort(row.rtts.begin(), row.rtts.end());  // by sequence
        std::int64_t sum = 0;
        std::int64_t jitter_sum = 0;
        sorted.clear();
        for (std::size_t i = 0; i < row.rtts.size(); ++i) {
          sum += row.rtts[i].second;
          sorted.push_back(row.rtts[i].second);
          if (i > 0) jitter_sum += std::llabs(row.rtts[i].second - row.rtts[i - 1].second);
        }
        const auto n = static_cast<std::int64_t>(row.rtts.size());
        r.rtt_mean_ns = sum / n;
        r.jitter_ns = n > 1 ? jitter_sum / (n - 1) : 0;
        std::sort(sorted.begin(), sorted.end());
        r.rtt_min_ns = sorted.front();
        r.rtt_max_ns = sorted.back();
        r.rtt_p50_ns = nearest_rank(sorted, 50);
        r.rtt_p99_ns = nearest_rank(sorted, 99);
      }
      out.push_back(std::move(r));
      ++stats_.rollups;
    }
  }
}

}  // namespace pathsentry::probe
