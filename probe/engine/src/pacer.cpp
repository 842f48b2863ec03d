#include "pathsentry/probe/engine/pacer.h"

#include <algorithm>
#include <cmath>

namespace pathsentry::probe {
namespace {
// Slot times are k * 1e15 / rate_upps ns: 1e9 ns/s times 1e6 for the micro-pps unit.
__extension__ using U128 = unsigned __int128;  // exact k * 1e15 products
constexpr U128 kScale = 1'000'000'000'000'000ULL;
}  // namespace

Pacer::Pacer(double rate_pps, std::int64_t start_ns, std::int64_t max_lag_ns)
    : rate_upps_(
          std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::llround(rate_pps * 1e6)))),
      start_ns_(start_ns) {
  const auto period = static_cast<std::int64_t>(kScale / rate_upps_);
  lag_ns_ = std::max(max_lag_ns, period);
}

std::int64_t Pacer::deadline_ns(std::uint64_t k) const {
  return start_ns_ + static_cast<std::int64_t>(static_cast<U128>(k) * kScale / rate_upps_);
}

std::uint64_t Pacer::slots_before(std::int64_t t) const {
  if (t <= start_ns_) return 0;
  // deadline(k) < t  <=>  k * 1e15 / R < t - start  <=>  k < (t - start) * R / 1e15.
  const auto num = static_cast<U128>(t - start_ns_) * rate_upps_;
  return static_cast<std::uint64_t>((num + kScale - 1) / kScale);
}

Pacer::Due Pacer::poll(std::int64_t now_ns, std::uint64_t max_send, std::int64_t until_ns) {
  Due due;
  until_ns = std::max(until_ns, now_ns);
  std::uint64_t due_end =
      slots_before(until_ns == kNever ? until_ns : until_ns + 1);  // deadline <= until
  if (end_ns_ != kNever) due_end = std::min(due_end, slots_before(end_ns_));
  if (due_end <= next_) return due;
  // Slots whose deadline is more than the allowed lag behind `now` are missed, not sent late.
  const std::uint64_t fresh_begin = std::min(slots_before(now_ns - lag_ns_), due_end);
  if (fresh_begin > next_) {
    due.missed = fresh_begin - next_;
    missed_ += due.missed;
    next_ = fresh_begin;
  }
  due.send = std::min(due_end - next_, max_send);
  next_ += due.send;
  return due;
}

void Pacer::give_back_as_missed(std::uint64_t n) {
  missed_ += n;
}

void Pacer::stop_at(std::int64_t end_ns) {
  end_ns_ = std::min(end_ns_, end_ns);
}

std::int64_t Pacer::next_deadline_ns() const {
  const std::int64_t d = deadline_ns(next_);
  return d >= end_ns_ ? kNever : d;
}

}  // namespace pathsentry::probe
