#include "pathsentry/probe/attribution/clock_steps.h"

#include <cstdlib>
#include <limits>

namespace pathsentry::probe {
namespace {
// Steps remembered: older epochs merge into the oldest kept (their timestamps are long gone).
constexpr std::size_t kMaxEpochs = 16;
// How far after "now" a timestamp may lie (clock read jitter).
constexpr std::int64_t kFutureSlackNs = 10'000'000;
}  // namespace

ClockSteps::ClockSteps(const Clock& clock, std::int64_t step_threshold_ns,
                       std::int64_t edge_slack_ns)
    : clock_(clock), threshold_ns_(step_threshold_ns), slack_ns_(edge_slack_ns) {
  const ClockReadings r = clock_.readings();
  offset0_ns_ = r.system_ns - r.monotonic_ns;
  epochs_.push_back(Epoch{std::numeric_limits<std::int64_t>::min(), 0});
}

std::int64_t ClockSteps::sample_locked() {
  const ClockReadings r = clock_.readings();
  const std::int64_t now = r.monotonic_ns + offset0_ns_;
  const std::int64_t shift = r.system_ns - r.monotonic_ns - offset0_ns_;
  if (std::llabs(shift - epochs_.back().shift_ns) > threshold_ns_) {
    epochs_.push_back(Epoch{now, shift});
    ++steps_;
    if (epochs_.size() > kMaxEpochs) {
      epochs_.erase(epochs_.begin());
      epochs_.front().start_ns = std::numeric_limits<std::int64_t>::min();
    }
  }
  return now;
}

std::int64_t ClockSteps::map_locked(std::int64_t real_ns, std::int64_t now_ns) const {
  const std::int64_t latest = now_ns + kFutureSlackNs;
  for (std::size_t k = epochs_.size(); k-- > 0;) {
    const Epoch& e = epochs_[k];
    const std::int64_t i = real_ns - e.shift_ns;
    const bool after_start =
        e.start_ns == std::numeric_limits<std::int64_t>::min() || i >= e.start_ns - slack_ns_;
    const bool before_end = k + 1 == epochs_.size() || i < epochs_[k + 1].start_ns + slack_ns_;
    if (after_start && before_end && i <= latest) return i;
  }
  // Fits no epoch (a timestamp from the future, as tests write them): the current one.
  return real_ns - epochs_.back().shift_ns;
}

std::int64_t ClockSteps::now() {
  const std::lock_guard lock(mu_);
  return sample_locked();
}

std::int64_t ClockSteps::to_internal(std::int64_t real_ns) {
  const std::lock_guard lock(mu_);
  const std::int64_t now = sample_locked();
  return map_locked(real_ns, now);
}

std::int64_t ClockSteps::to_internal(std::int64_t real_ns, std::int64_t now_ns) const {
  const std::lock_guard lock(mu_);
  return map_locked(real_ns, now_ns);
}

std::int64_t ClockSteps::to_real(std::int64_t internal_ns) const {
  const std::lock_guard lock(mu_);
  std::size_t k = epochs_.size() - 1;
  while (k > 0 && internal_ns < epochs_[k].start_ns) --k;
  return internal_ns + epochs_[k].shift_ns;
}

std::uint64_t ClockSteps::steps() const {
  const std::lock_guard lock(mu_);
  return steps_;
}

}  // namespace pathsentry::probe
