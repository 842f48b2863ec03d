#include "pathsentry/collector/live_state.h"

#include <algorithm>

namespace pathsentry::collector {

DirState dir_state(Direction d, const std::vector<const Rollup*>& rows) {
  DirState s;
  // Per path: probes that got through this direction (forward: answered, or lost on the way
  // back; reverse: answered).
  std::map<std::string, std::uint64_t> through;
  long double p50 = 0, mean = 0, jitter = 0;
  for (const Rollup* r : rows) {
    s.sent += r->sent;
    s.received += r->received;
    s.lost_forward += r->lost_forward;
    s.lost_reverse += r->lost_reverse;
    s.lost_undetermined += r->lost_undetermined;
    const std::uint64_t t = r->received + (d == Direction::Forward ? r->lost_reverse : 0);
    if (t > 0) through[r->path] += t;
    const auto w = static_cast<long double>(r->received);
    p50 += w * static_cast<long double>(r->rtt_p50_ns);
    mean += w * static_cast<long double>(r->rtt_mean_ns);
    jitter += w * static_cast<long double>(r->jitter_ns);
  }
  if (s.received > 0) {
    const auto n = static_cast<long double>(s.received);
    s.rtt_p50_ns = static_cast<std::int64_t>(p50 / n);
    s.rtt_mean_ns = static_cast<std::int64_t>(mean / n);
    s.jitter_ns = static_cast<std::int64_t>(jitter / n);
  }
  if (!through.empty()) {
    // The path most probes took; ties to the first name (a map is ordered).
    const auto best = std::max_element(through.begin(), through.end(),
                                       [](auto& a, auto& b) { return a.second < b.second; });
    s.path = best->first;
  } else if (s.sent > 0) {
    const std::uint64_t here = d == Direction::Forward ? s.lost_forward : s.lost_reverse;
    s.path = here == s.sent ? kPathDown : kPathUndetermined;
  } else {
    s.path = "";
  }
  return s;
}

void LiveState::recompute(Stream& s, const TargetState* previous) {
  s.state.session_id = s.session_id;
  s.state.second_ns = s.second_ns;
  for (const Direction d : {Direction::Forward, Direction::Reverse}) {
    std::vector<const Rollup*> rows;
    for (const auto& [k, r] : s.rows) {
      if (k.first == d) rows.push_back(&r);
    }
    auto& slot = d == Direction::Forward ? s.state.forward : s.state.reverse;
    if (rows.empty()) {
      slot.reset();
      continue;
    }
    DirState ds = dir_state(d, rows);
    const std::optional<DirState>* prev = nullptr;
    if (previous != nullptr)
      prev = d == Direction::Forward ? &previous->forward : &previous->reverse;
    if (prev != nullptr && prev->has_value()) {
      // Same path as the previous second: it began when that one did; another path began now.
      ds.since_ns = (*prev)->path == ds.path ? (*prev)->since_ns : s.second_ns;
    }
    slot = std::move(ds);
  }
}

std::vector<TargetState> LiveState::apply(const std::string& agent,
                                          const std::vector<Rollup>& rollups) {
  // The batch's rows by stream and second, in second order.
  std::map<Key, std::map<std::int64_t, std::vector<const Rollup*>>> by_stream;
  for (const Rollup& r : rollups) by_stream[{agent, r.target, r.proto}][r.second_ns].push_back(&r);

  std::vector<TargetState> changed;
  const std::lock_guard lock(mutex_);
  for (auto& [key, seconds] : by_stream) {
    auto [it, fresh] = streams_.try_emplace(key);
    Stream& s = it->second;
    if (fresh) {
      s.state.agent = std::get<0>(key);
      s.state.target = std::get<1>(key);
      s.state.proto = std::get<2>(key);
    }
    bool touched = false;
    for (auto& [second, rows] : seconds) {
      const std::uint32_t session = rows.front()->session_id;
      if (!fresh && second < s.second_ns) continue;  // older than the latest
      if (fresh || second > s.second_ns || session != s.session_id) {
        // A new latest second: the one before gives since_ns. A new session (the agent
        // restarted) continues the target's paths too: it is the same target.
        if (fresh) {
          s.before.reset();
        } else {
          s.before = s.state;
        }
        s.rows.clear();
        s.second_ns = second;
        s.session_id = session;
        fresh = false;
      }
      for (const Rollup* r : rows) {
        if (r->session_id != s.session_id) continue;
        s.rows[{r->direction, r->path}] = *r;
      }
      recompute(s, s.before ? &*s.before : nullptr);
      touched = true;
    }
    if (touched) changed.push_back(s.state);
  }
  return changed;
}

std::optional<TargetState> LiveState::get(const std::string& agent, const std::string& target,
                                          Proto proto) const {
  const std::lock_guard lock(mutex_);
  const auto it = streams_.find({agent, target, proto});
  if (it == streams_.end()) return std::nullopt;
  return it->second.state;
}

std::vector<TargetState> LiveState::all() const {
  const std::lock_guard lock(mutex_);
  std::vector<TargetState> out;
  out.reserve(streams_.size());
  for (const auto& [k, s] : streams_) out.push_back(s.state);
  return out;
}

std::size_t LiveState::size() const {
  const std::lock_guard lock(mutex_);
  return streams_.size();
}

}  // namespace pathsentry::collector
