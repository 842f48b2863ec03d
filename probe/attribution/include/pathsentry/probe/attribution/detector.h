#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/common/record.h"

namespace pathsentry::probe {

/// Detection settings (architecture.md §3 "Detection").
struct DetectorConfig {
  /// N: consecutive probes on a new path that confirm a switchover (and establish the first
  /// path). Losses and "unknown" probes in between neither count nor break the run.
  std::uint32_t confirm_probes = 3;
  /// K: consecutive lost probes in a direction that make an outage.
  std::uint32_t outage_losses = 3;
  /// Records are processed in sequence order; a missing sequence is waited for this long
  /// (the attributor always reports every probe, so this only guards against its bugs).
  std::int64_t reorder_hold_ns = 3'000'000'000;
  /// Records held per stream while waiting; beyond it the oldest gap is skipped.
  std::size_t reorder_window = std::size_t{1} << 16;
  /// For late_hold_for_ns after a late answer (a revision) in a direction, a sample of it that
  /// is not through waits up to late_hold_ns (at most reorder_hold_ns) for its own late answer
  /// before it is processed: a slow tunnel's backlog is answered late in a run, and an outage
  /// closed before those answers came could not use them. 0: never wait.
  std::int64_t late_hold_ns = 1'000'000'000;
  std::int64_t late_hold_for_ns = 10'000'000'000;
};

/// One direction of one probe, as the detector consumes it. The attributor emits these as soon
/// as each direction is final (the forward one usually long before the reply's fate is known),
/// so a forward switchover is seen while the return path is still dead. Views are only read
/// during the call.
struct PathSample {
  /// What became of the probe in this direction (docs/attribution.md §2 "Samples").
  enum class Fate : std::uint8_t {
    Through,       ///< got through this way; `path` is a label or "unknown"
    Lost,          ///< proven lost in this direction
    Undetermined,  ///< lost, direction unknown: counts toward an outage in both directions
    /// "unknown" and nothing says it got through either (a probe seen nowhere that an ESP
    /// packet seen late may or may not be, its fate not known yet): neither a loss nor a probe
    /// through, it neither ends nor extends an outage, nor counts in one.
    MaybeLost,
    /// The reverse sample of a request lost forward: no reply was ever sent, so it is no
    /// reverse loss; the reverse machine skips it (it only bounds the gap, see Detector).
    NotApplicable,
  };
  std::uint32_t session_id = 0;
  std::string_view target{};  ///< the session's target as text
  Proto proto = Proto::Icmp;
  Direction dir = Direction::Forward;
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;  ///< the probe's TX time (from the attributor: as announced)
  /// A path label, "unknown" or "none". Through: the path it took; otherwise where it was seen
  /// leaving (a label), or not ("none"/"unknown") — informative only, the fate decides.
  std::string_view path{};
  /// The attributor's small-integer id of `path` (its index in Attributor::path_labels()), so
  /// that the detector maps it without comparing strings; -1 when the caller has none (then
  /// `path` is looked up by its text).
  std::int16_t path_id = -1;
  Fate fate = Fate::Through;
  /// A late answer (Fate::Through) for a probe whose earlier sample in this direction was not
  /// through (lost, undetermined, maybe lost, not applicable): it revises that sample. The
  /// outage still open, or the loss run, is then measured as if the probe had been through
  /// (Detector). A revision for a probe no longer pending is counted late and ignored.
  bool revision = false;
};

/// The fate a record implies for a direction, for callers that only have records: answered →
/// Through; otherwise by `loss` (Forward: forward Lost, reverse NotApplicable; Reverse: forward
/// Through, reverse Lost; Undetermined: both Undetermined; None on a lost record, as older
/// records have: a path "none" is Lost, anything else Through).
[[nodiscard]] PathSample::Fate fate_of(const ProbeRecord& r, Direction d);

/// One direction of a finished record as a sample (fate by fate_of(); its views point into
/// `r`; no path id: the detector takes the path by its text).
[[nodiscard]] PathSample sample_of(const ProbeRecord& r, Direction d);

/// Counters of the detector.
struct DetectorStats {
  std::uint64_t samples = 0;     ///< samples processed in order (two per record)
  std::uint64_t late = 0;        ///< samples for a sequence already processed (ignored)
  std::uint64_t duplicates = 0;  ///< a sequence held twice (ignored)
  std::uint64_t skipped = 0;     ///< sequences never seen, given up after reorder_hold_ns
  std::uint64_t events = 0;
  std::uint64_t revisions = 0;     ///< late answers that revised a sample not through
  std::uint64_t revised_gaps = 0;  ///< gaps (outages) measured differently for revisions
  std::uint64_t late_holds = 0;    ///< times processing stopped to wait for a late answer
};

/// Path state machine per probe stream (one session: a target and a protocol) and direction.
/// A pure function of (state, sample, now) → events: it reads no clock and does no I/O, so the
/// agent calls it right after the attributor and an event leaves with the sample that
/// confirmed it. Event times come from the probes' TX timestamps. Each direction is processed
/// in sequence order on its own, so the forward direction never waits for replies.
///
/// Per direction, each probe is through (on a path label or "unknown"), proven lost, lost in an
/// undetermined direction (counts toward outages in both directions), maybe lost (ignored), or
/// not applicable (a reverse sample of a forward loss: ignored, but it bounds the gap).
/// - Switchover: N consecutive probes on a path other than the current one (failback when it
///   is the path last left); last_ok_on_old_ns / first_ok_on_new_ns are the TX times of the last
///   probe on the old path and the first on the new, probes_lost the proven losses in between
///   (probes_lost_undetermined the others), and outage_ns the longest time in between that no
///   probe got through (probes through on an "unknown" path are through: they shorten the
///   outage, not the attribution bounds), with its resolution_ns and outage_kind (measured with
///   proven losses, undetermined with only undetermined ones, bound without any).
/// - OutageBegin after K consecutive losses (a candidate new path seen before it is dropped:
///   the path after the outage is confirmed afresh); OutageEnd with the first probe through
///   again, outage_ns since the last probe through before it.
/// - Late answers (PathSample::revision) revise a pending loss to through: it counts in no
///   loss, and an outage, which still ends with a probe through in order, is measured to the
///   first probe through after its last run of losses (docs/attribution.md §3).
/// - AsymmetricBegin/End: both directions have a confirmed path, neither is in an outage, and
///   the paths differ / no longer do. Judged probe by probe once both directions have processed
///   the probe, and only on probes that both directions saw on their confirmed paths with no
///   new path in sight (after a loss or an "unknown" the confirmed path may be stale); an
///   outage ends asymmetry.
/// Not thread-safe.
class Detector {
 public:
  /// Throws ConfigError when N or K is 0 or the window is 0.
  explicit Detector(DetectorConfig config);
  ~Detector();
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  /// Takes one direction of one probe (any order: each direction is processed in sequence
  /// order, a sample waits for its predecessors) and appends the events it completes to `out`.
  /// `now_ns` stamps detected_ns and times the reorder hold. Each (session, direction, seq) is
  /// used once; repeats are counted as late or duplicate.
  void on_sample(const PathSample& sample, std::int64_t now_ns, std::vector<PathEvent>& out);
  /// Both directions of a finished record (forward first), for callers that only have records.
  void on_record(const ProbeRecord& record, std::int64_t now_ns, std::vector<PathEvent>& out);
  /// Gives up on sequences missing longer than reorder_hold_ns and processes what follows.
  void poll(std::int64_t now_ns, std::vector<PathEvent>& out);

  /// The confirmed path of a session in a direction; nullopt before one is established or for
  /// an unknown session.
  [[nodiscard]] std::optional<std::string> current_path(std::uint32_t session_id,
                                                        Direction dir) const;
  /// True while the direction is in an outage.
  [[nodiscard]] bool in_outage(std::uint32_t session_id, Direction dir) const;
  /// True while the session's directions are asymmetric.
  [[nodiscard]] bool asymmetric(std::uint32_t session_id) const;
  [[nodiscard]] const DetectorStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pathsentry::probe
