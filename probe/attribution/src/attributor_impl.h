#pragma once

// Attributor::Impl: the attributor's state and its parts. One struct holds the state the parts
// share (the slot table, the ESP lanes, the probe logs, the stats); each part's functions live
// in their own source, its types in its own header:
//   slot_table.{h,cpp}      SlotTable: sessions and their per-probe slots
//   esp_lane.h, esp_lanes.cpp  ESP packets per tap and direction, length learning (esp_learner)
//   claim_decide.{h,cpp}    the probe logs: windows claim ESP packets, then decide
//   loss_inference.{h,cpp}  tap-down spans, reflector gaps, the direction of a loss
//   emission.{h,cpp}        records and samples
// Inside, paths are small integers (ids into `labels`); their text appears only in what is
// emitted. docs/attribution.md §2–3 has the rules; attributor.cpp the timeline.

#include <array>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "claim_decide.h"
#include "emission.h"
#include "esp_lane.h"
#include "loss_inference.h"
#include "pathsentry/common/ring.h"
#include "pathsentry/probe/attribution/attributor.h"
#include "slot_table.h"

namespace pathsentry::probe {

// The parts' types are private to the attributor's sources.
using namespace attr;  // NOLINT(google-build-using-namespace)

namespace attr {
inline constexpr std::size_t kMaxPaths = 30;  // path ids index a 32-bit mask
inline constexpr std::int64_t kRetentionMarginNs = 10'000'000;
inline constexpr std::int64_t kRttWindowNs = 1'000'000'000;  // recent-RTT window for early losses
}  // namespace attr

/// The slot table (SlotTable, slot_table.h) is a base: its sessions and slot functions are the
/// state every other part reads.
struct Attributor::Impl : SlotTable {
  AttributorConfig cfg;
  std::vector<std::string> labels;            // path ids → label, then unknown, none
  std::vector<std::int8_t> tap_path;          // tap → path id
  std::vector<int> tap_lane;                  // tap → ESP lane index, -1 for clear taps
  std::vector<std::size_t> lane_tap;          // ESP lane → tap
  std::vector<std::array<EspLane, 2>> lanes;  // [lane][direction]
  std::int8_t unknown_id = 0;
  std::int8_t none_id = 0;
  std::int64_t fwd_claim_delay = 0;
  std::int64_t fwd_decide_delay = 0;
  std::int64_t rev_claim_delay = 0;
  std::int64_t rev_decide_delay = 0;
  std::int64_t retention = 0;
  std::int64_t fwd_none_delay = 0;  // a probe seen nowhere is "none" this long after it left
  std::uint64_t sent_learned = 0;   // learn cursors: windows given to the learners
  std::uint64_t recv_learned = 0;
  std::vector<SilentPeriod> silent;  // per ESP lane
  std::vector<std::string> notes;
  // PATHSENTRY_EXPLAIN_UNKNOWN=1: a note per probe-direction an ESP tap leaves unexplained,
  // saying why (issue 8 item 3: where each unknown comes from).
  bool explain = false;
  Ring<LogEntry>* cur_log = nullptr;
  const std::uint64_t* cur_claimed = nullptr;

  Ring<LogEntry> sent_log;
  std::uint64_t sent_claimed = 0;  // absolute index of the first unclaimed entry
  Ring<LogEntry> recv_log;
  std::uint64_t recv_claimed = 0;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> ready;
  Ring<Unseen> unseen;
  Ring<Unseen> held;  // lost STAMP probes waiting for the reflector's counter (due: the cap)
  std::int64_t last_now = std::numeric_limits<std::int64_t>::min();
  // Per tap, the spans [from, to] during which it was down (to = kOpen while it still is).
  struct DownSpan {
    std::int64_t from_ns = 0;
    std::int64_t to_ns = 0;
  };
  static constexpr std::int64_t kOpen = std::numeric_limits<std::int64_t>::max();
  std::vector<std::deque<DownSpan>> down_spans;

  AttributorStats stats;

  // ---- Inputs and the poll loop (attributor.cpp). ----

  explicit Impl(AttributorConfig c);
  void on_record(const ProbeRecord& r);
  void on_clear(std::size_t tap, const Observation& o);
  void poll(std::int64_t now, Out& out);

  /// A probe enters the sent log (its slot's forward window anchor is `tx`).
  void announce(std::uint32_t si, Session& s, Slot& sl, std::int64_t tx, std::uint32_t wire);

  // ---- ESP lanes (esp_lanes.cpp): packets seen, lengths learned, the silent-tap warning. ----

  std::optional<std::uint32_t> expected_len(std::size_t lane, Direction d, std::uint32_t wire);
  void learn(std::size_t lane, Direction d, std::uint32_t wire, std::uint32_t len);
  /// Gives the learner of one direction a probe window: the distinct ESP lengths it holds.
  void learn_window(const LogEntry& e, Direction d);
  /// Runs the learners that have new evidence; notes what they locked in.
  void evaluate_learners();
  /// How much later windows are claimed now: learn_hold_ns while a tap without a transform has
  /// seen ESP but not learned it yet (for at most learn_hold_ns after its first ESP packet).
  std::int64_t learn_hold(std::int64_t now) const;
  /// Warns about an ESP tap that saw ESP but attributed nothing while probes went unexplained,
  /// with the likely cause, every silent_warn_ns it lasts.
  void check_silent(std::int64_t now);
  void add_esp(std::size_t tap, const Observation& o);
  void evict_front(std::size_t tap, EspLane& ln, bool overflow);
  std::uint64_t lower_bound(Ring<EspObs>& r, std::int64_t ts);

  // ---- Claim and decide (claim_decide.cpp): windows claim ESP packets, then decide. ----

  void claim(LogEntry& e, Direction d);
  /// Counts why a probe-direction no clear tap saw got no ESP attribution (TapAttribution and
  /// the silent-tap warning).
  void note_outcome(std::size_t lane, const LogEntry& e, Direction d, const Claim& c,
                    std::int8_t v);
  /// The note PATHSENTRY_EXPLAIN_UNKNOWN asks for: the probe, its candidates (offset from the
  /// anchor, their claimants), the other probes claiming them, the nearest packet of its length.
  void explain_unknown(std::size_t lane, const LogEntry& e, Direction d, const Claim& c,
                       std::optional<std::uint32_t> want);
  /// A gateway sends one SA's packets in the order they reach it (their ESP sequence numbers),
  /// and our probes reach it in the order they were sent (forward) or leave it in the order they
  /// are received (reverse, the agent's gateway decrypting in order). So a probe the window rule
  /// leaves unexplained (its packet delayed past the window, or a burst putting another probe of
  /// its length in the window) is between the last probe attributed before it and the next one
  /// uniquely claiming a packet after it: if that span of the SA holds exactly one unattributed
  /// packet of its length, and no other probe in the span (decided unexplained since the last
  /// match, or still to be decided before the next) expects that length, the packet is its own.
  std::optional<std::uint64_t> order_rescue(std::size_t lane, Direction d, const LogEntry& e);
  /// The ESP verdict over all ESP taps for one direction of one probe.
  std::int8_t decide(LogEntry& e, Direction d);
  void process_log(Ring<LogEntry>& log, std::uint64_t& claimed, std::uint64_t& learned, Direction d,
                   std::int64_t now, std::int64_t hold, Out& out, bool learn_only = false);

  // ---- Loss inference (loss_inference.cpp): taps down, reflector gaps, loss direction. ----

  [[nodiscard]] bool tap_down_during(std::size_t tap, std::int64_t from, std::int64_t to) const;
  /// The times a tap's silence about this probe would be evidence: its forward window (clear
  /// copies at the send, ESP ones in the window and the late horizon), and the reply's window
  /// when answered, else anything up to the sender's timeout. settle_ns of slack on each side.
  [[nodiscard]] bool probe_tap_down(const Session& s, const Slot& sl, std::size_t tap,
                                    bool fwd_only) const;
  [[nodiscard]] bool fwd_tap_down(const Session& s, const Slot& sl) const;
  /// A probe seen on no tap while a tap that may have carried it was down: its absence is no
  /// evidence that it did not leave (counted once per probe).
  bool unseen_tap_down(const Session& s, Slot& sl);
  void prune_down_spans();
  GapClass gap_class(const Session& s, Slot& sl);
  /// The stateful reflector numbers the requests it receives: between two answered probes, the
  /// jump in its numbers says how many of the lost requests in between reached it. Those whose
  /// fate is known already (reply seen: arrived; did not leave: not arrived) are set aside; of
  /// the others, none arrived → all lost forward, all arrived → all replies lost, otherwise it
  /// is unknown which (Mixed: undetermined).
  void apply_reflector(std::uint32_t si, Session& s, std::uint64_t seq, std::uint32_t rseq);
  /// Whether a lost probe's direction can be decided now (an answered probe's fate is known).
  /// A reply seen on a tap or the reflector's counter decide at once. Otherwise a probe seen
  /// nowhere waits for the ESP late horizon (it may have left late on the tunnel), and a STAMP
  /// probe waits for the next answered probe of its session, whose reflector sequence tells
  /// whether the gap's requests arrived, or stamp_evidence_wait_ns after it was declared lost.
  bool fate_known(const Session& s, const Slot& sl, std::int8_t ev, std::int64_t now) const;
  /// Where a lost probe was lost (fate_known() must hold): only evidence decides.
  LossDirection loss_of(const Session& s, Slot& sl, std::int8_t ev);
  /// The forward path: where the request was seen leaving ("unknown" when it went somewhere
  /// unseen or ambiguously, "none" when it did not leave).
  std::int8_t fwd_path_of(Slot& sl, std::int8_t ev, LossDirection loss);
  /// The reverse path: where the reply was seen ("none": no reply seen).
  std::int8_t rev_path_of(const Slot& sl) const;
  /// An ESP packet attributed to no probe (every window that could hold it has been decided),
  /// of this probe's expected length (any length when it is not known), on an ESP tap in the
  /// forward direction after the probe's window closed and within the late horizon: the probe
  /// may have left through the tunnel late.
  bool late_esp(Slot& sl);
  /// A probe is lost (declared by the sender, early, or for want of a record).
  void mark_lost(std::uint32_t si, Session& s, Slot& sl, std::int64_t now);

  // ---- Emission (emission.cpp): records and samples. ----

  void sample(const Session& s, Slot& sl, Direction d, std::int8_t path, PathSample::Fate fate,
              Out& out);
  /// A direction's sample of a probe whose fate is known.
  void sample_fate(const Session& s, Slot& sl, Direction d, std::int8_t ev, Out& out);
  /// The forward sample leaves as soon as it is final. A probe seen leaving on a tap is through
  /// only once its fate is known (answered, or its reply's loss proven): a mirror shows where it
  /// left, not that it arrived. A probe seen nowhere is final once the ESP late horizon has
  /// passed (or fwd_unseen_wait_ns, if larger): it did not leave (a forward loss), or, with an
  /// unexplained ESP packet of its length late, it may have (MaybeLost while its fate is open).
  void try_sample_fwd(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out);
  void emit(Session& s, Slot& sl, Out& out);
  void try_finish(Session& s, Slot& sl, std::int64_t now, Out& out);
  void declare_loss(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out);
};

}  // namespace pathsentry::probe
