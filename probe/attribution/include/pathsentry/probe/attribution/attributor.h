#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pathsentry/common/ip.h"
#include "pathsentry/common/record.h"
#include "pathsentry/probe/attribution/detector.h"
#include "pathsentry/probe/capture/tap.h"

namespace pathsentry::probe {

/// One probe session as the attributor needs to know it.
struct SessionSpec {
  std::uint32_t session_id = 0;  ///< on the wire: ICMP payload
  Proto proto = Proto::Icmp;
  IpAddress target{};
  /// IP total length of a request (IP header included), which fixes its ESP length.
  std::uint32_t wire_bytes = 0;
  /// IP total length of a reply; 0 = same as the request (ICMP echo, symmetric STAMP).
  std::uint32_t reply_wire_bytes = 0;
  /// STAMP: the reflector keeps its own sequence (RFC 8762 stateful), so a gap in it tells a
  /// forward loss from a reverse one. Must be false for stateless reflectors.
  bool stateful_reflector = true;
  double rate_pps = 1000;                   ///< sizes the per-session state
  std::int64_t timeout_ns = 1'000'000'000;  ///< the sender's loss timeout
  /// STAMP: the SSID of the session's requests (SessionConfig::stamp_ssid); 0 = the low 16
  /// bits of session_id.
  std::uint16_t stamp_ssid = 0;
};

/// The sender's announcement that a probe left (call it within AttributorConfig::settle_ns of
/// the send). Forward ESP correlation needs every probe that could explain an ESP packet, lost
/// ones included, long before their records arrive: these announcements are that list.
struct ProbeSent {
  std::uint32_t session_id = 0;
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;        ///< CLOCK_REALTIME ns (a clock read next to the send is fine)
  std::uint32_t wire_bytes = 0;  ///< 0 = the session's wire_bytes (set it when sizes vary)
};

/// Attribution settings.
struct AttributorConfig {
  std::vector<TapSpec> taps{};  ///< a tap's index here is its index in on_observation()
  /// Capture and hand-off slack: observations are considered complete this long after the
  /// window they belong to has closed.
  std::int64_t settle_ns = 20'000'000;
  /// A probe still unanswered this long (or twice the largest RTT of the last 1-2 s, if more)
  /// after a later probe of its session was answered is declared lost without waiting for the
  /// sender's timeout (0 = wait for the sender).
  std::int64_t reorder_grace_ns = 50'000'000;
  /// A probe announced but without any record from the sender timeout + this later is
  /// finalized as lost (and counted: the sender should always report).
  std::int64_t record_grace_ns = 1'000'000'000;
  /// A probe seen on no tap is taken as lost before the taps (forward "none") this long after
  /// it left, unless its fate is known sooner: the forward sample does not wait for the
  /// sender's timeout. The record still follows the probe's fate (see docs/attribution.md).
  std::int64_t fwd_unseen_wait_ns = 0;
  /// ESP taps: a probe with no candidate in its forward window is only called lost ("none")
  /// when no unattributed ESP packet of its expected length came in this long after the window
  /// either; otherwise it may have left late through the tunnel and is "unknown". So a
  /// forward "none" waits this long when ESP taps exist (absence is evidence only once the
  /// gateway's slowest ESP could have shown up).
  std::int64_t esp_late_horizon_ns = 50'000'000;
  /// ESP taps: a userspace IPsec gateway under load stalls its ESP output for tens to hundreds
  /// of milliseconds, then releases a burst, past any window and the late horizon. So while an
  /// ESP tap was carrying probes (one attributed there at most this long before a probe seen
  /// nowhere was sent), the probe's forward fate waits until a probe sent after it is attributed
  /// there (the gateway keeps order: its packet, had it entered the tunnel, came before that
  /// one; an unexplained packet of its length up to then makes it "unknown"), at most this long
  /// past its window. Only then is absence evidence ("none", a forward loss).
  std::int64_t esp_stall_wait_ns = 1'000'000'000;
  /// STAMP with a stateful reflector: a lost probe's direction comes from the reflector's
  /// counter in the next answered probe of its session. A lost probe waits for it this long
  /// after being declared lost, then its direction is decided without it (usually
  /// "undetermined"). Its samples and record wait too, so this bounds how late a STAMP outage
  /// that never ends is reported (docs/attribution.md §3).
  std::int64_t stamp_evidence_wait_ns = 2'000'000'000;
  /// Learning an ESP length: consistent single-candidate sightings needed before it is used
  /// (the fallback for a transform none of the candidates describes).
  std::uint32_t learn_samples = 8;
  /// ESP taps without a transform: while the transform is being learned (from the tap's first
  /// ESP packet until it is locked in, at most this long) windows are claimed this much later,
  /// so the probes sent while learning are attributed with what was learned.
  std::int64_t learn_hold_ns = 2'000'000'000;
  /// An ESP tap that sees ESP yet attributes nothing, while probes stay unexplained, for this
  /// long logs a warning with the likely cause (take_notes()), again every period it lasts.
  std::int64_t silent_warn_ns = 5'000'000'000;
  /// Upper bound on buffered ESP observations per tap and direction.
  std::size_t max_esp_observations = 1u << 20;
};

/// Where attributed ESP packets fell inside their window, for tuning it: the delay is
/// packet − tx forward and rx − packet reverse (so both read like the window's lo..hi).
struct DelayStats {
  std::uint64_t count = 0;
  std::int64_t min_ns = 0;
  std::int64_t max_ns = 0;
  std::int64_t sum_ns = 0;  ///< mean = sum_ns / count
  /// Matches in the window's top fifth: many mean the delay spreads past hi, where a probe's
  /// packet is missed (unknown) or a neighbour's is taken — widen the window or vary sizes.
  std::uint64_t near_hi = 0;
};

/// Counters of one tap in the attributor.
struct TapAttribution {
  std::uint64_t matched = 0;          ///< clear: observations matched to a probe; esp: attributed
  std::uint64_t unmatched = 0;        ///< observations no probe took (ESP: no unique probe)
  std::uint64_t ambiguous = 0;        ///< esp: probe-directions with >1 candidate or a shared one
  std::uint64_t esp_seq_gaps = 0;     ///< esp: packets missing from an SA's sequence (not captured)
  std::uint64_t late = 0;             ///< observations arriving after their window was decided
  std::uint64_t overflow = 0;         ///< esp: observations evicted early from a full buffer
  std::uint64_t length_mismatch = 0;  ///< esp: a learned length disagreed with the transform
  /// esp: probe-directions (seen on no clear tap) whose window held ESP, none of the expected
  /// length (delay outside the window, or a wrong transform).
  std::uint64_t no_candidate = 0;
  /// esp: probe-directions whose window held ESP while no length was known for them (learning).
  std::uint64_t unlearned = 0;
  std::uint64_t transform_changes = 0;  ///< esp: a learned transform replaced by another
  /// esp: probe windows holding ESP that the transform learner learned, and those its thinning
  /// only counted (once a transform is locked, dense windows are learned one in a stride).
  std::uint64_t learn_windows = 0;
  std::uint64_t learn_skipped = 0;
  /// esp: probe-directions the window rule left unexplained, attributed by the SA's order (the
  /// only packet of their length between their neighbours' packets; included in matched).
  std::uint64_t order_rescued = 0;
  /// esp: probe-directions whose window held several packets of their length, all but one
  /// already attributed to other probes, the last claimed by no other window (included in
  /// matched).
  std::uint64_t eliminated = 0;
  /// esp: warnings that the tap saw ESP but attributed nothing for silent_warn_ns.
  std::uint64_t silent_warnings = 0;
  /// esp: the transform learned per direction ("" while learning, or when configured).
  std::array<std::string, 2> transform{};
  std::array<DelayStats, 2> delay{};  ///< esp: [0 = forward, 1 = reverse]
};

/// Counters of the attributor. Path counts are indexed like Attributor::path_labels().
struct AttributorStats {
  std::uint64_t records = 0;       ///< records emitted (late corrections included)
  std::uint64_t late_records = 0;  ///< records re-emitted because a reply came after a loss
  /// Of those: late answers to probes whose state the table had let go (a slot taken by a newer
  /// probe, or emptied by a growth), passed on with their paths unknown.
  std::uint64_t late_forgotten = 0;
  std::uint64_t early_losses = 0;     ///< declared lost because a later probe was answered
  std::uint64_t unannounced = 0;      ///< records for probes never passed to on_sent()
  std::uint64_t no_record = 0;        ///< announced probes the sender never reported (lost)
  std::uint64_t unknown_session = 0;  ///< observations naming no registered session
  std::uint64_t clear_conflicts = 0;  ///< probes seen exactly on taps of different paths
  std::uint64_t esp_conflicts = 0;    ///< ESP correlation contradicted by an exact clear match
  std::uint64_t state_overruns = 0;   ///< probe state dropped (a session's ring was full)
  /// Announcements and sender records dropped: a newer probe already held their slot (their
  /// probe is never emitted; on the agent's `attribution:` line, never expected).
  std::uint64_t superseded_inputs = 0;
  /// Forward samples whose record later said otherwise (e.g. seen nowhere, yet answered).
  std::uint64_t fwd_samples_revised = 0;
  /// Probes seen nowhere made "unknown" instead of "none": an unattributed ESP packet of their
  /// length came after their window, within esp_late_horizon_ns or, on a tap carrying probes,
  /// before the tunnel caught up with them (a slow tunnel gateway; esp_stall_wait_ns).
  std::uint64_t fwd_late_esp = 0;
  /// Of those, the ones whose packet came past esp_late_horizon_ns (a stalled gateway): each
  /// would have been called a forward loss without waiting for the tunnel to catch up.
  std::uint64_t fwd_late_esp_stalled = 0;
  /// Records emitted with taps_down (a tap was down during the probe's windows).
  std::uint64_t tap_down_records = 0;
  /// Probes seen nowhere made "unknown" instead of "none" because a tap was down.
  std::uint64_t fwd_unseen_tap_down = 0;
  std::vector<std::array<std::uint64_t, 2>> path_counts{};  ///< [path][0 = fwd, 1 = rev]
  /// Lost probes by ProbeRecord::loss: [0 = forward, 1 = reverse, 2 = undetermined], net of
  /// late answers.
  std::array<std::uint64_t, 3> losses{};
  std::vector<TapAttribution> taps{};
};

/// Joins the sender's probes with tap observations into per-probe records with fwd_path and
/// rev_path (architecture.md §3; docs/attribution.md explains the rules).
///
/// - clear taps: a probe observed exactly (identity + sequence) in a direction took that tap's
///   path in that direction;
/// - esp taps: an ESP packet of the expected length inside the probe's window is attributed
///   only when it is the probe's only candidate and the probe is the only probe that could
///   explain it; otherwise the direction is "unknown". Nothing is guessed.
/// - loss: a record's `loss` says where a lost probe was lost, from evidence only: a stateful
///   STAMP reflector's sequence, a reply seen on a tap, or no tap seeing it leave; a probe seen
///   leaving and never answered is "undetermined" (fwd_path says where it left).
///
/// Inputs: add_session() at start, on_sent() per probe, on_record() per sender record (the
/// sender's RecordSink), on_observation() per decoded tap frame; poll() emits finished
/// records. Times are CLOCK_REALTIME ns throughout (kernel TX/RX and capture timestamps).
/// Not thread-safe: call everything from one thread (or under one lock). No allocation per
/// probe in steady state (buffers grow to the working set, then are reused).
class Attributor final : public ObservationSink {
 public:
  /// Throws ConfigError on an invalid configuration (no taps is valid: everything unknown).
  explicit Attributor(AttributorConfig config);
  ~Attributor() override;
  Attributor(const Attributor&) = delete;
  Attributor& operator=(const Attributor&) = delete;

  /// Registers a session. Throws ConfigError when its id, or its (target, SSID) for STAMP,
  /// collides with one already registered.
  void add_session(const SessionSpec& spec);

  /// A probe left. Unknown sessions are counted and ignored.
  void on_sent(const ProbeSent& sent);
  /// The sender's record of a probe: answered (rx_ns set) or declared lost, possibly a late
  /// answer after a loss. The attributor keeps what it needs; `record` may go away after.
  void on_record(const ProbeRecord& record);
  /// A decoded frame from tap number `tap`.
  void on_observation(std::size_t tap, const Observation& obs) override;

  /// Decides every probe whose evidence is complete at `now_ns`: appends finished records to
  /// `records` (roughly in send order), and, when `samples` is given, each direction's path as
  /// soon as it is final (for the Detector; the forward one usually well before the record).
  /// A record is normally finished a few window lengths plus settle_ns after its reply, or
  /// when declared lost. Samples point into the attributor (target, path labels): use them
  /// before the next add_session() or the attributor's destruction.
  void poll(std::int64_t now_ns, std::vector<ProbeRecord>& records,
            std::vector<PathSample>* samples = nullptr);
  /// Finishes everything still pending as if all deadlines had passed (shutdown, end of file).
  void flush(std::vector<ProbeRecord>& records, std::vector<PathSample>* samples = nullptr);

  /// Tap availability. Tap number `tap` delivered nothing after `from_ns` (its capture
  /// failed; `from_ns` is the time up to which poll() may have judged windows with the tap's
  /// capture complete: the pipeline's capture watermark plus its grace) until tap_up(). What a down
  /// tap did not see is no evidence: a probe whose window overlaps a down span of any tap and that
  /// no tap saw is "unknown" forward, not "none" (lost, its forward sample is maybe_lost), unless a
  /// stateful reflector proves the forward loss; its record lists the down taps in `taps_down`.
  /// Call before poll() is given a time past `from_ns` (the pipeline's capture watermark holds it
  /// back). A second tap_down() while down is ignored.
  void tap_down(std::size_t tap, std::int64_t from_ns);
  /// The tap captures again from `at_ns` on (ignored when it is not down).
  void tap_up(std::size_t tap, std::int64_t at_ns);
  /// Whether any tap was down at some time in [from_ns, to_ns].
  [[nodiscard]] bool any_tap_down(std::int64_t from_ns, std::int64_t to_ns) const;

  /// The path labels in id order, then "unknown" and "none".
  [[nodiscard]] const std::vector<std::string>& path_labels() const;
  [[nodiscard]] const AttributorStats& stats() const;
  /// A session's lost records by `loss` [forward, reverse, undetermined], net of late answers
  /// (a record re-emitted as answered no longer counts); nullopt for an unknown session.
  [[nodiscard]] std::optional<std::array<std::uint64_t, 3>> session_losses(
      std::uint32_t session_id) const;
  /// Log lines since the last call (learned transforms, silent-tap warnings), appended.
  void take_notes(std::vector<std::string>& out);
  /// The ESP length learned for (tap, direction, IP size), if any.
  [[nodiscard]] std::optional<std::uint32_t> learned_length(std::size_t tap, Direction dir,
                                                            std::uint32_t wire_bytes) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pathsentry::probe
