#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pathsentry {

/// Probe protocol of a session. Ttl: TTL-limited UDP probes whose ICMP time-exceeded source
/// names the forward path (docs/ttl.md); their records have a forward path only (rev_path "").
enum class Proto : std::uint8_t { Icmp, Stamp, Ttl };

/// Which path carried a probe in one direction. Configured taps name the real paths
/// ("express-connect", "ipsec", …); these are the values that are not a tap's label.
inline constexpr const char* kPathNone = "none";        ///< lost in that direction
inline constexpr const char* kPathUnknown = "unknown";  ///< seen/answered, not attributable
inline constexpr const char* kPathPending = "";         ///< not yet attributed

/// Where a lost probe was lost, decided only from evidence (docs/attribution.md §2 "Loss"):
/// None = answered; Forward = the request provably never reached the target (the stateful
/// STAMP reflector's counter, or it left on no tap while every tap was up); Reverse = it
/// provably reached the target (the reflector's counter, or the reply was seen on a tap) and
/// the reply never reached the agent; Undetermined = it left on a tap and nothing more is known
/// (a mirror shows where a probe left, not where it died).
enum class LossDirection : std::uint8_t { None, Forward, Reverse, Undetermined };

/// One probe's outcome: the per-probe record of architecture.md §3. Filled by the sender
/// (timing, loss) and completed by the attributor (paths). Times are CLOCK_REALTIME ns.
struct ProbeRecord {
  std::string target;  ///< target address as text
  Proto proto = Proto::Icmp;
  std::uint32_t session_id = 0;  ///< agent-unique session identity (also on the wire)
  std::uint64_t seq = 0;         ///< 64-bit session sequence
  std::int64_t tx_ns = 0;        ///< kernel TX timestamp (software), or the send-time clock read
  std::optional<std::int64_t> rx_ns;  ///< kernel RX timestamp of the reply; nullopt = lost
  std::int64_t rtt_ns = 0;            ///< rx_ns - tx_ns when received, else 0
  bool tx_kernel_ts = false;          ///< tx_ns came from the kernel (errqueue)
  /// STAMP only: reflector's own sequence and timestamps (t2 = its RX, t3 = its TX).
  std::optional<std::uint32_t> reflector_seq;
  std::optional<std::int64_t> reflector_rx_ns;
  std::optional<std::int64_t> reflector_tx_ns;
  bool reflector_clock_synced = false;  ///< reflector's error estimate S bit
  /// Forward (DC→cloud) / reverse (cloud→DC) path; kPathPending until attributed.
  std::string fwd_path = kPathPending;
  std::string rev_path = kPathPending;
  /// Where it was lost (None when answered). JSON "loss": null|"forward"|"reverse"|"undetermined".
  LossDirection loss = LossDirection::None;
  /// Set when a reply arrived after the loss timeout had already declared the probe lost.
  bool late = false;
  /// Interfaces of the taps that were down (capture failed, being reopened) during the probe's
  /// windows: what they did not see is no evidence (docs/attribution.md "Tap failures").
  std::vector<std::string> taps_down{};
};

/// Direction of travel: forward = DC agent → target, reverse = target → DC agent.
enum class Direction : std::uint8_t { Forward, Reverse };

/// Kind of a path event (architecture.md §3 "Detection").
enum class EventType : std::uint8_t {
  Switchover,       ///< a direction's path changed, confirmed by N consecutive probes
  OutageBegin,      ///< K consecutive probes lost in a direction (no path)
  OutageEnd,        ///< the first probe that got through again after an OutageBegin
  AsymmetricBegin,  ///< forward and reverse settled on different paths
  AsymmetricEnd,    ///< they agree again (or one direction went down)
  TapDown,          ///< a tap's capture failed: what it does not see is no evidence meanwhile
  TapUp,            ///< the tap's capture was reopened and sees its path again
  /// The cloud's health check of a line, watched on its clear tap (docs/attribution.md, issue
  /// 12): k probes unanswered in a row (k < N), N reached (the cloud moves the return path),
  /// answered again (or probes seen again after absent), no probe for more than 3 intervals.
  HealthcheckDegraded,
  HealthcheckFailed,
  HealthcheckRecovered,
  HealthcheckAbsent,
  /// The health check's probes go unanswered (k in a row) while the same line carries the
  /// agent's own probes fine: a false failover of the return path is coming although the line
  /// works (a filter on the prober's prefix, or no route back to it). eta_ns as Degraded.
  HealthcheckBlocked,
};

/// What an event's outage figure is (JSON "outage_kind"). Measured: probes were proven lost in
/// this direction, the outage lies between outage_ns - resolution_ns and outage_ns. Bound: no
/// probe was lost, "no loss seen, at most outage_ns". Undetermined: only losses of undetermined
/// direction (beyond the tap), at most outage_ns, possibly the other direction's.
enum class OutageKind : std::uint8_t { Bound, Measured, Undetermined };

/// A path event of one probe stream (target + protocol), emitted by the detector. Which fields
/// are meaningful depends on `type`; the others keep their defaults. Times are CLOCK_REALTIME ns
/// taken from probe TX timestamps, so an event's figures do not depend on when it was detected.
struct PathEvent {
  EventType type = EventType::Switchover;
  std::string target;  ///< target address as text
  Proto proto = Proto::Icmp;
  std::uint32_t session_id = 0;
  Direction direction = Direction::Forward;  ///< Switchover/Outage*; Asymmetric*: Forward
  std::int64_t ts_ns = 0;                    ///< tx of the probe that confirmed the event
  std::uint64_t seq = 0;                     ///< sequence of that probe
  std::int64_t detected_ns = 0;              ///< when the detector emitted it (its `now`)
  /// Switchover: old and new path. OutageBegin: from = path before the outage, to = "none".
  /// OutageEnd: from = "none", to = the path (or "unknown") the first probe through took.
  std::string from;
  std::string to;
  std::int64_t last_ok_on_old_ns = 0;   ///< tx of the last probe seen on the old path (0: none)
  std::int64_t first_ok_on_new_ns = 0;  ///< tx of the first probe seen on the new path
  std::int64_t outage_ns = 0;           ///< first_ok_on_new_ns - last_ok_on_old_ns
  std::uint64_t probes_lost = 0;        ///< probes proven lost in this direction in between
  /// Probes lost in between whose direction is undetermined (this one or the other).
  std::uint64_t probes_lost_undetermined = 0;
  /// Switchover/Outage*: what outage_ns is (OutageBegin: whether its K losses were proven).
  OutageKind outage_kind = OutageKind::Bound;
  /// Switchover/Outage*: the probe spacing around the outage's ends (from the last probe through
  /// to the next probe, or from the probe before the first through to it, the larger): the
  /// uncertainty of outage_ns. OutageBegin: the spacing after the last probe through.
  std::int64_t resolution_ns = 0;
  bool failback = false;  ///< Switchover back to the path it last left
  /// Asymmetric*: the confirmed paths at that moment; duration_ns set on AsymmetricEnd.
  std::string fwd_path;
  std::string rev_path;
  std::int64_t duration_ns = 0;
  /// TapDown/TapUp (no target, session, direction or seq): the tap's interface, its path label
  /// and why its capture failed. ts_ns: TapDown, the capture time up to which the tap had
  /// delivered everything (the down span's start); TapUp, when it captures again.
  /// detected_ns: when the failure was seen / the reopen succeeded. TapUp: duration_ns down.
  std::string tap;
  std::string path;
  std::string reason;
  /// Healthcheck* (no session, direction or seq; target = the gateway's line address probed,
  /// tap/path = the clear tap that sees it; reason, Recovered: "answered" or "probes_resumed"):
  /// the prober's address (empty on Absent), k probes unanswered in a row, N (the health check's
  /// fall), its interval (configured or learned), and Degraded/Blocked: (N - k) x interval, the
  /// expected
  /// time until the cloud moves the return path. duration_ns: Degraded/Failed, from the first
  /// unanswered probe of the run to this one; Recovered, from it to the answer; Absent, since the
  /// last probe (or since the watch began). ts_ns: the probe's capture time (Absent: 3 intervals
  /// after the last probe).
  std::string prober;
  std::uint32_t unanswered = 0;
  std::uint32_t fall = 0;
  std::int64_t interval_ns = 0;
  std::int64_t eta_ns = 0;
  /// The event's identity within its agent's run (1, 2, …; JSON "event_id", omitted when 0):
  /// assigned by the agent where events leave it, so a resent event is recognised.
  std::uint64_t event_id = 0;
};

/// Tap events carry a tap, not a probe stream.
[[nodiscard]] inline bool is_tap_event(EventType t) {
  return t == EventType::TapDown || t == EventType::TapUp;
}

/// Health-check events carry a line's health check, not a probe stream.
[[nodiscard]] inline bool is_healthcheck_event(EventType t) {
  return t == EventType::HealthcheckDegraded || t == EventType::HealthcheckFailed ||
         t == EventType::HealthcheckRecovered || t == EventType::HealthcheckAbsent ||
         t == EventType::HealthcheckBlocked;
}

}  // namespace pathsentry
