#pragma once

// Claim and decide: the probe logs whose windows claim ESP packets, then decide.
// docs/attribution.md §2–3 has the rules; attributor.cpp the timeline.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "esp_lanes.h"
#include "pathsentry/common/ring.h"
#include "setup.h"
#include "slot_table.h"

namespace pathsentry::probe::attr {

/// A probe-direction's claim on one ESP lane: the packets in its window.
struct Claim {
  std::uint16_t cand = 0;
  std::uint16_t any = 0;
  std::uint64_t cand_idx = 0;
  std::uint64_t any_idx = 0;
  bool incomplete = false;
};

/// A probe waiting for its window to be claimed and decided (forward: by tx; reverse: by rx).
struct LogEntry {
  std::int64_t anchor_ns = 0;
  std::uint32_t session = 0;
  std::uint64_t seq = 0;
  std::uint32_t wire = 0;
  std::array<Claim, kMaxEspTaps> claims{};
};

/// The probe logs, one per direction in anchor order, and the rules that attribute ESP packets
/// to them: a window first claims the packets of its expected length (and they count it), then,
/// once every window that can hold those packets has claimed, decides (uniqueness, order
/// rescue). Reads the setup and the slot table (a probe's clear sightings; session ids for the
/// explain notes); writes the ESP lanes (claims, `attributed`, the order state, the fallback
/// learning, the silent-tap counts), the taps' attribution counters in `stats` and the explain
/// notes. Not thread-safe.
class ClaimDecide {
 public:
  ClaimDecide(const Setup& setup, EspLanes& lanes, const SlotTable& table, AttributorStats& stats,
              std::vector<std::string>& notes);

  /// A probe enters direction `d`'s log (forward when sent, reverse when answered). The sessions'
  /// announcements and records arrive in batches per session (each receiver tick: one
  /// session's, then the next's), so a log is not in anchor order as it grows; learn_due()
  /// sorts what is not yet learned or claimed (settle()), and the windows are claimed and
  /// decided in anchor order, which the order rule and elimination's sides rest on.
  void push(Direction d, const LogEntry& e) {
    Log& log = logs_[index(d)];
    if (!log.entries.empty() && log.entries.back().anchor_ns > e.anchor_ns &&
        log.unsorted_from == kSorted) {
      log.unsorted_from = log.entries.end_abs();
    }
    log.entries.push_back(e);
  }
  /// Gives the learners the windows complete at `now` (the claim delay past their anchor).
  void learn_due(Direction d, std::int64_t now);
  /// Claims the windows complete at `now - hold` (hold: EspLanes::learn_hold).
  void claim_due(Direction d, std::int64_t now, std::int64_t hold);
  /// Whether the oldest claimed probe's decision is due at `now`.
  [[nodiscard]] bool decide_due(Direction d, std::int64_t now) const;
  /// Decides the oldest claimed probe (decide_due() must hold): its ESP verdict over all ESP
  /// taps, a path id, kAmbiguous or kNoEvidence. Then front() / pop_front().
  std::int8_t decide_front(Direction d);
  /// Whether the oldest claimed probe's decision should wait (docs/attribution.md "Order"): no
  /// clear tap saw it, its window on an ESP lane carrying probes left it unexplained, the span
  /// the order rule needs is still open (no probe after it has a unique claim yet), and no
  /// probe after it was seen on a clear tap. At most min(kMaxSpanWaitNs, esp_stall_wait_ns)
  /// past its decision time.
  /// `sl`: the front probe's slot (null when it has none).
  [[nodiscard]] bool front_waits(Direction d, std::int64_t now, const Slot* sl) const {
    if (sl == nullptr || sl->clear(d) != 0 || (d == Direction::Reverse && !sl->has(kReceived))) {
      return false;  // a clear tap saw it, or there is no reply to attribute
    }
    return front_waits_unseen(d, now);
  }
  [[nodiscard]] const LogEntry& front(Direction d) const { return logs_[index(d)].entries.front(); }
  void pop_front(Direction d) { logs_[index(d)].entries.pop_front(); }

 private:
  static constexpr std::uint64_t kSorted = ~std::uint64_t{0};
  struct Log {
    Ring<LogEntry> entries;
    std::uint64_t claimed = 0;              // absolute index of the first unclaimed entry
    std::uint64_t learned = 0;              // learn cursor: windows given to the learners
    std::uint64_t unsorted_from = kSorted;  // the first entry pushed before a younger one
  };
  /// Puts the entries from the first one pushed out of order (and those before it it must pass)
  /// into anchor order, never moving one already learned or claimed.
  void settle(Log& log);
  std::vector<LogEntry> settle_scratch_;
  static std::size_t index(Direction d) { return static_cast<std::size_t>(d); }

  void claim(LogEntry& e, Direction d);
  /// The ESP verdict of one lane's claim, the match attributed, the counters.
  std::int8_t decide(const Log& log, const LogEntry& e, Direction d);
  /// Counts why a probe-direction no clear tap saw got no ESP attribution (TapAttribution and
  /// the silent-tap warning).
  void note_outcome(const Log& log, std::size_t lane, const LogEntry& e, Direction d,
                    const Claim& c, std::int8_t v);
  /// The note PATHSENTRY_EXPLAIN_UNKNOWN asks for: the probe, its candidates (offset from the
  /// anchor, their claimants), the other probes claiming them, the nearest packet of its length.
  void explain_unknown(const Log& log, std::size_t lane, const LogEntry& e, Direction d,
                       const Claim& c, std::optional<std::uint32_t> want);
  /// front_waits for a probe no clear tap saw.
  [[nodiscard]] bool front_waits_unseen(Direction d, std::int64_t now) const;
  static constexpr std::uint64_t kNoSkip = ~std::uint64_t{0};
  /// The one packet of length `len` in window `w` not attributed yet (`skip` aside), if exactly
  /// one: what both sides of elimination look for.
  [[nodiscard]] static std::optional<std::uint64_t> only_unattributed(const EspLane& ln, Window w,
                                                                      std::uint32_t len,
                                                                      std::uint64_t skip);
  /// Elimination: of the packets of its length in `e`'s window, all but one are attributed to
  /// other probes already and the one left is in no other window: that one.
  [[nodiscard]] std::optional<std::uint64_t> eliminate(std::size_t lane, Direction d,
                                                       const LogEntry& e) const;
  /// The other side of elimination: `e`'s window holds one packet of its length, which later
  /// probes' windows claim too, but each of those holds exactly one other packet of its length,
  /// unattributed and claimed by it alone — theirs (they take them by elimination when they are
  /// decided). Then the shared one is `e`'s. (A claimant not found among the later probes — one
  /// decided already, or beyond the search — leaves it unexplained.)
  [[nodiscard]] std::optional<std::uint64_t> sole_candidate(const Log& log, std::size_t lane,
                                                            Direction d, const LogEntry& e) const;
  /// Whether `x`'s window claimed one packet of its length that no other window claimed.
  [[nodiscard]] static bool unique_claim(const EspLane& ln, const Claim& xc);
  /// A gateway sends one SA's packets in the order they reach it (their ESP sequence numbers),
  /// and our probes reach it in the order they were sent (forward) or leave it in the order they
  /// are received (reverse, the agent's gateway decrypting in order). So a probe the window rule
  /// leaves unexplained (its packet delayed past the window, or a burst putting another probe of
  /// its length in the window) is between the last probe attributed before it and the next one
  /// uniquely claiming a packet after it: if that span of the SA holds exactly one unattributed
  /// packet of its length, and no other probe in the span (decided unexplained since the last
  /// match, or still to be decided before the next) expects that length, the packet is its own.
  /// (A span whose end is a claim on a packet before it, or which holds too few packets of the
  /// length, ends at a later unique claim instead; the packet must lie within the probe's
  /// window's outer edge.) What the rule says of `e` (the front of `log`) on `lane`: its packet
  /// (Found), not yet (Open: no probe claimed so far closes a consistent span), or nothing
  /// (None).
  enum class SpanState : std::uint8_t { None, Open, Found };
  struct Span {
    SpanState state = SpanState::None;
    std::uint64_t idx = 0;  // Found: the packet (absolute index in the lane's ring)
  };
  [[nodiscard]] Span order_span(const Log& log, std::size_t lane, Direction d,
                                const LogEntry& e) const;
  /// Whether a probe claimed after the front of `log` was seen on a clear tap: the probes have
  /// left the tunnel (a failback), so no span there will close; the front need not wait.
  [[nodiscard]] bool later_seen_clear(const Log& log, Direction d) const;

  const Setup& setup_;
  EspLanes& lanes_;
  const SlotTable& table_;
  AttributorStats& stats_;
  std::vector<std::string>& notes_;
  std::array<Log, 2> logs_;  // [direction]
};

}  // namespace pathsentry::probe::attr
