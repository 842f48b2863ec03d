#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "pathsentry/common/ip.h"
#include "pathsentry/common/record.h"

namespace pathsentry::probe {

/// What the watcher is told about the cloud's health check on one line (issue 12).
struct HealthCheckConfig {
  /// Where the cloud's probes come from (Alibaba CEN: 100.96.0.0/16).
  IpPrefix prefix{*IpAddress::parse("100.96.0.0"), 16};
  /// The gateway's line address the probes go to; nullopt = learned from the first probe seen.
  std::optional<IpAddress> gateway{};
  /// Probes lost in a row after which the cloud moves the return path (CEN default 8).
  std::uint32_t fall = 8;
  /// The probe interval; 0 = learned (median of the gaps between probes).
  std::int64_t interval_ns = 0;
  /// The tap's interface and path label, carried by the events.
  std::string tap{};
  std::string path{};
};

/// One ICMP echo frame seen on a clear tap (request or reply), as far as the watcher needs it.
struct HealthCheckPacket {
  std::int64_t ts_ns = 0;  ///< capture time
  IpAddress src{};
  IpAddress dst{};
  bool request = true;  ///< echo request (true) or echo reply
  std::uint16_t id = 0;
  std::uint16_t seq = 0;
};

/// Watches the cloud's health check of a line on that line's clear tap: the probes (echo
/// requests from `prefix` to the gateway) and their answers (echo replies back, matched by
/// prober, ICMP id and sequence). Pure: time comes in with each call, no sockets, no clock.
/// Not thread-safe.
///
/// A probe is unanswered once its answer deadline (one interval after it, the health check's
/// own timeout) has passed, or when the next probe is seen while it is still open. Events:
/// healthcheck_degraded for each k = 1 … N-1 probes unanswered in a row (with the expected
/// time to the cloud's move, (N - k) x interval), healthcheck_failed when k reaches N,
/// healthcheck_recovered when a probe is answered again after either (or probes are seen again
/// after healthcheck_absent), healthcheck_absent when no probe was seen for more than 3
/// intervals while the tap was up. An answer arriving after its probe was declared unanswered
/// does not undo it (the cloud counted it lost too).
class HealthCheckWatcher {
 public:
  explicit HealthCheckWatcher(HealthCheckConfig cfg);

  /// Feeds one echo frame; returns false when it is not part of the health check.
  /// Emitted events are appended to `out`.
  bool on_packet(const HealthCheckPacket& p, std::vector<PathEvent>& out);
  /// Lets time pass to `now_ns` (capture clock): expires open probes, checks absence.
  void tick(std::int64_t now_ns, std::vector<PathEvent>& out);
  /// The tap's capture failed (up = false) or works again: while down nothing is concluded,
  /// and open probes are forgotten (what the tap did not see is no evidence).
  void set_tap_up(bool up, std::int64_t now_ns);
  /// What the agent's own probes say of the line (HealthCheckWork keeps it from the records).
  struct LineEvidence {
    bool any = false;               ///< false: no record yet (absence then judged on time alone)
    std::int64_t carried_ns = 0;    ///< newest send time of a probe that went both ways on it
    std::int64_t dead_from_ns = 0;  ///< after carried_ns, the first of >= 3 probes it did not
                                    ///< carry (lost or on another path); 0: none
    std::int64_t known_ns = 0;      ///< newest send time of any record (how far evidence goes)
  };
  /// The line's evidence. A probe that does not arrive when expected (one interval after the last
  /// seen, then each interval) is counted unanswered once its timeout has passed if the line was
  /// dead then (sent after carried_ns, with dead_from_ns set and evidence reaching it): the cloud
  /// lost it before the tap. Absence is concluded only while the line carried the agent's probes
  /// (a probe sent after the 3 intervals went both ways), or without any record.
  void set_line_evidence(const LineEvidence& ev) { line_ = ev; }

  /// Figures of the watch so far.
  struct Stats {
    std::uint64_t probes = 0;      ///< probes seen
    std::uint64_t answered = 0;    ///< probes answered in time
    std::uint64_t unanswered = 0;  ///< probes declared unanswered
    std::uint64_t late = 0;        ///< answers after their probe was declared unanswered
    std::uint64_t missing = 0;     ///< of `unanswered`: expected but never seen (line down)
    std::uint32_t run = 0;         ///< k: probes unanswered in a row now
    std::int64_t interval_ns = 0;  ///< configured, else learned (0: not yet known)
    bool absent = false;           ///< healthcheck_absent in force
  };
  [[nodiscard]] Stats stats() const;
  /// The gateway watched (configured or learned).
  [[nodiscard]] const std::optional<IpAddress>& gateway() const { return gateway_; }

  /// Interval used before one is known, for absence only (CEN's default).
  static constexpr std::int64_t kDefaultIntervalNs = 2'000'000'000;
  /// Gaps kept to learn the interval from.
  static constexpr std::size_t kGaps = 15;

 private:
  struct Open {
    std::int64_t ts_ns;
    IpAddress src;
    std::uint16_t id;
    std::uint16_t seq;
  };
  [[nodiscard]] std::int64_t interval() const;
  void resolve(const Open& o, bool answered, std::int64_t at_ns, std::int64_t now_ns,
               std::vector<PathEvent>& out);
  [[nodiscard]] PathEvent event(EventType t, std::int64_t ts_ns, std::int64_t now_ns,
                                const IpAddress& prober) const;
  void learn_gap(std::int64_t gap_ns);

  HealthCheckConfig cfg_;
  std::optional<IpAddress> gateway_;
  std::deque<Open> open_;
  std::vector<std::int64_t> gaps_;  ///< the last kGaps gaps between probes (ring)
  std::size_t gap_next_ = 0;
  std::int64_t learned_ns_ = 0;
  std::int64_t last_probe_ns_ = 0;    ///< 0: none yet
  std::int64_t watch_from_ns_ = 0;    ///< tap up since (absence counts from here or last probe)
  std::int64_t first_lost_ns_ = 0;    ///< send time of the first probe of the current run
  std::int64_t missing_from_ns_ = 0;  ///< send time of the last probe seen or counted missing
  IpAddress last_prober_{};
  LineEvidence line_{};
  bool tap_up_ = true;
  bool started_ = false;
  bool degraded_ = false;  ///< degraded/failed emitted for the current run
  Stats st_;
};

}  // namespace pathsentry::probe
