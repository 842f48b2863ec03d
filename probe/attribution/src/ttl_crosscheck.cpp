#include "pathsentry/probe/attribution/ttl_crosscheck.h"

#include <algorithm>

#include "pathsentry/common/record.h"

namespace pathsentry::probe {

namespace {
bool is_label(std::string_view p) {
  return !p.empty() && p != kPathNone && p != kPathUnknown;
}
}  // namespace

TtlCrossCheck::TtlCrossCheck(std::int64_t window_ns, std::int64_t hold_ns, bool samples_in_order)
    : samples_in_order_(samples_in_order), window_ns_(window_ns), hold_ns_(hold_ns) {}

void TtlCrossCheck::on_tap_sample(std::string_view target, std::int64_t tx_ns,
                                  std::string_view path) {
  auto it = targets_.find(target);
  if (it == targets_.end()) it = targets_.emplace(std::string(target), Target{}).first;
  Target& t = it->second;
  t.newest_tap_ns = std::max(t.newest_tap_ns, tx_ns);
  if (is_label(path)) {
    // Samples come nearly in send order; keep the deque sorted anyway.
    auto pos = t.taps.end();
    while (pos != t.taps.begin() && std::prev(pos)->first > tx_ns) --pos;
    t.taps.emplace(pos, tx_ns, std::string(path));
  }
}

void TtlCrossCheck::on_ttl(std::string_view target, std::uint64_t seq, std::int64_t tx_ns,
                           std::string_view path) {
  if (!is_label(path)) {
    ++stats_.no_ttl_path;
    return;
  }
  auto it = targets_.find(target);
  if (it == targets_.end()) it = targets_.emplace(std::string(target), Target{}).first;
  it->second.pending.push_back(Pending{seq, tx_ns, std::string(path)});
}

void TtlCrossCheck::judge(const std::string& target, Target& t, const Pending& p,
                          std::vector<CrossCheckVerdict>& out) {
  CrossCheckVerdict v;
  v.target = target;
  v.seq = p.seq;
  v.tx_ns = p.tx_ns;
  v.ttl_path = p.path;
  const std::string* seen = nullptr;
  bool mixed = false;
  for (const auto& [tx, path] : t.taps) {
    if (tx < p.tx_ns - window_ns_) continue;
    if (tx > p.tx_ns + window_ns_) break;
    if (seen == nullptr) {
      seen = &path;
    } else if (*seen != path) {
      mixed = true;
    }
  }
  if (seen == nullptr || mixed) {
    v.kind = CrossCheckVerdict::Kind::Undecided;
    v.why = seen == nullptr ? "no tap-attributed probe of this target within the window"
                            : "the taps saw two paths within the window";
    ++stats_.undecided;
  } else {
    v.tap_path = *seen;
    v.kind = *seen == p.path ? CrossCheckVerdict::Kind::Agree : CrossCheckVerdict::Kind::Disagree;
    ++(*seen == p.path ? stats_.agree : stats_.disagree);
  }
  out.push_back(std::move(v));
}

void TtlCrossCheck::trim(Target& t) {
  // Tap samples older than the oldest probe still to judge (or than the newest sample, when
  // none is pending) minus the window are of no further use.
  std::int64_t keep_from = t.newest_tap_ns - hold_ns_ - window_ns_;
  if (!t.pending.empty()) keep_from = std::min(keep_from, t.pending.front().tx_ns - window_ns_);
  while (!t.taps.empty() && t.taps.front().first < keep_from) t.taps.pop_front();
}

void TtlCrossCheck::poll(std::int64_t now_ns, std::vector<CrossCheckVerdict>& out) {
  for (auto& [target, t] : targets_) {
    while (!t.pending.empty()) {
      const Pending& p = t.pending.front();
      const bool complete = samples_in_order_ && t.newest_tap_ns > p.tx_ns + window_ns_;
      if (!complete && now_ns - p.tx_ns < hold_ns_) break;
      judge(target, t, p, out);
      t.pending.pop_front();
    }
    trim(t);
  }
}

void TtlCrossCheck::flush(std::vector<CrossCheckVerdict>& out) {
  for (auto& [target, t] : targets_) {
    while (!t.pending.empty()) {
      judge(target, t, t.pending.front(), out);
      t.pending.pop_front();
    }
  }
}

}  // namespace pathsentry::probe
