#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace pathsentry {

/// Source of time. Production code takes a `Clock&` so tests can move time by hand.
/// Both readings are in nanoseconds. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  /// CLOCK_MONOTONIC in ns: for pacing, timeouts and durations.
  [[nodiscard]] virtual std::int64_t monotonic_ns() const = 0;
  /// CLOCK_REALTIME in ns since the Unix epoch: for timestamps that leave the process.
  [[nodiscard]] virtual std::int64_t system_ns() const = 0;
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
  /// Moves both clocks forward by `d`.
  void advance(std::chrono::nanoseconds d) {
    mono_ += d.count();
    sys_ += d.count();
  }

 private:
  std::atomic<std::int64_t> mono_;
  std::atomic<std::int64_t> sys_;
};

inline constexpr std::int64_t kNsPerSec = 1'000'000'000;

}  // namespace pathsentry
