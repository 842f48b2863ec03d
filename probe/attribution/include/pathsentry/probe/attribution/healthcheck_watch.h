#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pathsentry/common/ip.h"
#include "pathsentry/common/record.h"
#include "pathsentry/probe/attribution/healthcheck.h"
#include "pathsentry/probe/capture/echo.h"
#include "pathsentry/probe/capture/tap.h"

namespace pathsentry::probe {

/// The agent's health-check settings ([healthcheck], --healthcheck-*; docs/healthcheck.md).
/// They apply to every clear tap.
struct HealthCheckSettings {
  bool enabled = true;  ///< watched on every clear tap unless switched off
  IpPrefix prefix{*IpAddress::parse("100.96.0.0"), 16};
  std::optional<IpAddress> gateway{};  ///< nullopt = learned from the first probe seen
  std::uint32_t fall = 8;
  std::int64_t interval_ns = 0;  ///< 0 = learned
  /// healthcheck_blocked needs at least this many health-check probes unanswered in a row …
  std::uint32_t blocked_after = 2;
  /// … and at least this many of the agent's own probes carried both ways on the tap's path
  /// since the first of them (with at most 1 in 10 of those on the line lost).
  std::uint32_t blocked_evidence = 3;
};

/// Where a line's health check stands (the agent's pathsentry_healthcheck_state).
enum class HealthCheckState : std::uint8_t { Ok, Degraded, Failed, Blocked, Absent };
[[nodiscard]] const char* to_string(HealthCheckState s);
inline constexpr std::size_t kHealthCheckStateCount = 5;

/// Decides healthcheck_blocked for one line: the health check's probes go unanswered while the
/// same line carries the agent's own probes fine. Fed the line's HealthCheckWatcher events and
/// the agent's attributed records; pure (time comes in with the calls). The evidence counts
/// records of probes sent after the first unanswered health-check probe of the current run:
/// answered, with both directions attributed to the line's path (carried), or lost with a
/// direction on the line (lost). Blocked once per run, when k >= blocked_after, carried >=
/// blocked_evidence and lost <= carried / 10; a line that is really dead carries nothing, so
/// only degraded/failed are said.
class BlockedJudge {
 public:
  BlockedJudge(std::string path, const HealthCheckSettings& s);

  /// One of the watcher's events (of this line).
  void on_event(const PathEvent& e, std::int64_t now_ns, std::vector<PathEvent>& out);
  /// One of the agent's finished records (any session; those of other paths are ignored).
  void on_record(const ProbeRecord& r, std::int64_t now_ns, std::vector<PathEvent>& out);
  /// healthcheck_blocked said for the current run.
  [[nodiscard]] bool blocked() const { return emitted_; }

 private:
  void judge(std::int64_t now_ns, std::vector<PathEvent>& out);

  std::string path_;
  std::uint32_t blocked_after_;
  std::uint32_t evidence_;
  bool in_run_ = false;
  bool emitted_ = false;
  std::int64_t first_lost_ns_ = 0;
  PathEvent last_{};  ///< the run's latest degraded/failed event
  std::uint64_t carried_ = 0;
  std::uint64_t lost_ = 0;
};

/// One line's health check as the metrics show it.
struct HealthCheckStatus {
  std::string tap;
  std::string path;
  std::string target;  ///< the gateway watched ("" before one is configured or learned)
  HealthCheckWatcher::Stats stats;
  std::uint32_t fall = 0;
  HealthCheckState state = HealthCheckState::Ok;
  /// (N - k) x interval while 0 < k < N, 0 when failed; nullopt otherwise.
  std::optional<std::int64_t> eta_ns;
};

/// Turns on the health-check watch of every clear tap (sets TapSpec::healthcheck_prefix) when
/// `s.enabled`.
void enable_health_check(std::vector<TapSpec>& taps, const HealthCheckSettings& s);

/// The pipeline's health-check part: one HealthCheckWatcher and BlockedJudge per watched tap
/// (TapSpec::healthcheck_prefix set). The agent's records also tell each watcher what they
/// say of its line (HealthCheckWatcher::set_line_evidence): the newest probe that went both ways
/// on the tap's path, and whether kNotCarried probes sent after it did not (lost, or on another
/// path) — so that probes that stop arriving on a dead line are lost, not a health check switched
/// off. Records come late (attribution): the watcher judges a missing probe only once they reach
/// its time. Worker thread only.
class HealthCheckWork {
 public:
  HealthCheckWork(const std::vector<TapSpec>& taps, const HealthCheckSettings& s);
  [[nodiscard]] bool active() const { return !watches_.empty(); }

  void on_echo(std::size_t tap, const EchoFrame& f, std::vector<PathEvent>& out);
  void on_record(const ProbeRecord& r, std::int64_t now_ns, std::vector<PathEvent>& out);
  /// Tap `tap`'s capture is complete up to `now_ns` (its watermark).
  void tick(std::size_t tap, std::int64_t now_ns, std::vector<PathEvent>& out);
  void set_tap_up(std::size_t tap, bool up, std::int64_t now_ns);
  [[nodiscard]] std::vector<HealthCheckStatus> status() const;

  static constexpr std::uint32_t kNotCarried = 3;

 private:
  struct Watch {
    std::size_t tap;
    std::string interface;
    std::string path;
    HealthCheckWatcher watcher;
    BlockedJudge judge;
    HealthCheckState state = HealthCheckState::Ok;
    // What the agent's records say of the line (HealthCheckWatcher::LineEvidence), and how many
    // probes sent after the newest carried one it did not carry (the first at first_not_ns).
    HealthCheckWatcher::LineEvidence line;
    std::uint32_t not_carried = 0;
    std::int64_t first_not_ns = 0;
  };
  Watch* find(std::size_t tap);
  void take(Watch& w, std::vector<PathEvent>& events, std::int64_t now_ns,
            std::vector<PathEvent>& out);

  std::uint32_t fall_;
  std::vector<Watch> watches_;
  std::vector<PathEvent> scratch_;
};

}  // namespace pathsentry::probe
