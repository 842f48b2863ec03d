#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace pathsentry {

/// Both readings of a Clock taken at (nearly) the same instant.
struct ClockReadings {
  std::int64_t monotonic_ns = 0;
  std::int64_t system_ns = 0;
};

/// Source of time. Production code takes a `Clock&` so tests can move time by hand.
/// Both readings are in nanoseconds. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  /// CLOCK_MONOTONIC in ns: for pacing, deadlines, timeouts, expiry and durations (it never
  /// steps; NTP only slews it).
  [[nodiscard]] virtual std::int64_t monotonic_ns() const = 0;
  /// CLOCK_REALTIME in ns since the Unix epoch: for timestamps that leave the process (and the
  /// kernel's packet timestamps are on it). It can step (settimeofday, an NTP step): never time a
  /// wait or an expiry on it (docs/design.md "Clocks").
  [[nodiscard]] virtual std::int64_t system_ns() const = 0;
  /// Both readings together, for the offset between them (which changes only when realtime
  /// steps). Default: monotonic, realtime, monotonic again, retried when the two monotonic
  /// reads lie more than 1 ms apart (the thread was preempted in between).
  [[nodiscard]] virtual ClockReadings readings() const;
};

/// The real clocks (clock_gettime).
class SystemClock final : public Clock {
 public:
  [[nodiscard]] std::int64_t monotonic_ns() const override;
  [[nodiscard]] std::int64_t system_ns() const override;
};

/// A clock that only moves when told to. Starts at the given instants.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t monotonic_start_ns = 1'000'000'000,
                       std::int64_t system_start_ns = 1'700'000'000'000'000'000)
      : mono_(monotonic_start_ns), sys_(system_start_ns) {}
  [[nodiscard]] std::int64_t monotonic_ns() const override { return mono_.load(); }
  [[nodiscard]] std::int64_t system_ns() const override { return sys_.load(); }
  /// Both readings of one instant (advance() moves them together).
  [[nodiscard]] ClockReadings readings() const override {
    const std::lock_guard lock(mu_);
    return {mono_.load(), sys_.load()};
  }
  /// Moves both clocks forward by `d`.
  void advance(std::chrono::nanoseconds d) {
    const std::lock_guard lock(mu_);
    mono_ += d.count();
    sys_ += d.count();
  }
  /// Steps the realtime reading alone by `d` (negative: backwards), as settimeofday() or an NTP
  /// step does; the monotonic reading does not move.
  void step_realtime(std::chrono::nanoseconds d) {
    const std::lock_guard lock(mu_);
    sys_ += d.count();
  }

 private:
  mutable std::mutex mu_;
  std::atomic<std::int64_t> mono_;
  std::atomic<std::int64_t> sys_;
};

inline constexpr std::int64_t kNsPerSec = 1'000'000'000;

}  // namespace pathsentry
