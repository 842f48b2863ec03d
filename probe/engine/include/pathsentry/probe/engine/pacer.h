#pragma once

#include <cstdint>
#include <limits>

namespace pathsentry::probe {

/// Absolute-deadline pacing for one session: slot k is due at start + k / rate, computed from k
/// (never accumulated), so the rate does not drift however long it runs. A pure function of
/// (state, now): it never reads a clock and never sleeps; the caller sleeps until
/// next_deadline_ns().
///
/// A slot that is more than `max_lag` late when polled is *missed*: it is counted and skipped,
/// never sent late in a burst. So after a stall the sender resumes at the current slot rather
/// than catching up. The lag allowed is max(max_lag_ns, one period), so at low rates a slot is
/// only missed when the next one is due too. Not thread-safe (one sender thread owns it).
class Pacer {
 public:
  /// `rate_pps` > 0 probes per second (resolution 1e-6/s); the first slot is due at `start_ns`.
  Pacer(double rate_pps, std::int64_t start_ns, std::int64_t max_lag_ns);

  /// What poll() decided: how many slots to send now (consecutive, oldest first) and how many
  /// were skipped as missed.
  struct Due {
    std::uint64_t send = 0;
    std::uint64_t missed = 0;
  };

  /// Advances over the slots due at `now_ns`. At most `max_send` are returned for sending;
  /// the rest stay due for the next poll (if still within the allowed lag then).
  /// `until_ns` (>= now_ns) hands out slots due up to then as well, ahead of their deadline
  /// (launch-time pacing: the kernel holds each until its deadline); the lag that makes a slot
  /// missed is still measured from `now_ns`.
  Due poll(std::int64_t now_ns, std::uint64_t max_send, std::int64_t until_ns);
  Due poll(std::int64_t now_ns, std::uint64_t max_send) { return poll(now_ns, max_send, now_ns); }

  /// Counts the next `n` due slots as missed without sending them (e.g. when the sender has no
  /// free slot to track them). `n` must not exceed what poll() returned as `send`.
  void give_back_as_missed(std::uint64_t n);

  /// No slot due at or after `end_ns` will ever be returned (end of the run or a stop request).
  void stop_at(std::int64_t end_ns);

  /// Deadline of the next slot not yet handed out; INT64_MAX when stopped before it.
  [[nodiscard]] std::int64_t next_deadline_ns() const;
  /// True when no further slot will be due (stop_at() passed the next slot).
  [[nodiscard]] bool finished() const { return next_deadline_ns() == kNever; }
  /// Deadline of slot `k` (CLOCK_MONOTONIC ns).
  [[nodiscard]] std::int64_t deadline_ns(std::uint64_t k) const;
  /// Slots handed out or missed so far (the index of the next slot).
  [[nodiscard]] std::uint64_t next_slot() const { return next_; }
  /// Slots missed so far.
  [[nodiscard]] std::uint64_t missed() const { return missed_; }
  /// The lag beyond which a slot is missed.
  [[nodiscard]] std::int64_t allowed_lag_ns() const { return lag_ns_; }

  static constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

 private:
  /// Number of slots whose deadline is strictly before `t`.
  [[nodiscard]] std::uint64_t slots_before(std::int64_t t) const;

  std::uint64_t rate_upps_;  // rate in micro-probes per second
  std::int64_t start_ns_;
  std::int64_t lag_ns_;
  std::int64_t end_ns_ = kNever;
  std::uint64_t next_ = 0;
  std::uint64_t missed_ = 0;
};

}  // namespace pathsentry::probe
