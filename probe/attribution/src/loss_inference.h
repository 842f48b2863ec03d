#pragma once

// Loss inference: which way a lost probe was lost, from the evidence (taps, the reflector's
// counter over a loss gap, late ESP packets, taps that were down), and the paths it was seen on.
// docs/attribution.md §2–3 has the rules.

#include <bit>
#include <cstdint>
#include <deque>
#include <limits>
#include <vector>

#include "esp_lanes.h"
#include "pathsentry/common/ring.h"
#include "setup.h"
#include "slot_table.h"

namespace pathsentry::probe::attr {

/// What is known of a lost probe in a reflector gap before the counter is applied.
enum class GapClass : std::uint8_t { Arrived, NotLeft, Open };

/// Exact clear evidence first, then the ESP verdict. Pure.
inline std::int8_t evidence(std::uint32_t clear, std::int8_t esp) {
  if (clear != 0) {
    if (std::popcount(clear) > 1) return kAmbiguous;
    return static_cast<std::int8_t>(std::countr_zero(clear));
  }
  return esp;
}

/// A stateful STAMP reflector's counter can tell this session's losses apart.
inline bool counts(const Session& s) {
  return s.spec.proto == Proto::Stamp && s.spec.stateful_reflector;
}

/// Loss inference. Owns the taps' down spans and the lost STAMP probes held for the reflector's
/// counter. Reads the setup and the ESP lanes (late packets); writes the slots it judges (loss
/// hints, kLoss, kLateEsp, kTapDownUnseen) and the loss counters in `stats`. Not thread-safe.
class LossInference {
 public:
  /// `poll_ns`: the attributor's latest poll time (the one under way during a poll): a down span
  /// starting at or after it concerns nothing decided so far (the tap was up for everything
  /// poll() judged up to it).
  LossInference(const Setup& setup, const EspLanes& lanes, AttributorStats& stats,
                const std::int64_t& poll_ns);

  // ---- Taps down (Attributor::tap_down / tap_up). ----
  void tap_down(std::size_t tap, std::int64_t from_ns);
  void tap_up(std::size_t tap, std::int64_t at_ns);
  [[nodiscard]] bool tap_down_during(std::size_t tap, std::int64_t from, std::int64_t to) const;
  [[nodiscard]] bool any_tap_down(std::int64_t from, std::int64_t to) const;
  /// Whether tap `tap` was down while this probe's record could have shown it (the probe's
  /// record names it in `taps_down`).
  [[nodiscard]] bool down_for_record(const Session& s, const Slot& sl, std::size_t tap) const {
    return !down_spans_[tap].empty() && probe_tap_down(s, sl, tap, false);
  }
  /// A probe seen on no tap while a tap that may have carried it was down: its absence is no
  /// evidence that it did not leave (counted once per probe).
  bool unseen_tap_down(const Session& s, Slot& sl);
  /// Drops the closed spans no record can reach any more (`last_now`: the latest poll).
  void prune_down_spans(std::int64_t last_now);

  // ---- The reflector's counter. ----
  /// The stateful reflector numbers the requests it receives: between two answered probes, the
  /// jump in its numbers says how many of the lost requests in between reached it. Those whose
  /// fate is known already (reply seen: arrived; did not leave: not arrived) are set aside; of
  /// the others, none arrived → all lost forward, all arrived → all replies lost, otherwise it
  /// is unknown which (Mixed: undetermined). Probe `seq` of session `si` was answered with the
  /// reflector's `rseq`; lost probes whose fate this settles go to `ready`.
  void apply_reflector(std::uint32_t si, Session& s, std::uint64_t seq, std::uint32_t rseq,
                       std::int64_t last_now, ReadyList& ready);

  // ---- A lost probe's fate. ----
  /// A probe is lost (declared by the sender, early, or for want of a record).
  void mark_lost(std::uint32_t si, Session& s, Slot& sl, std::int64_t now);
  /// The lost STAMP probes waiting for the reflector's counter (due: the cap).
  Ring<Recheck>& held() { return held_; }
  /// Whether a lost probe's direction can be decided now (an answered probe's fate is known).
  /// A reply seen on a tap or the reflector's counter decide at once. Otherwise a probe seen
  /// nowhere waits for the ESP late horizon (it may have left late on the tunnel), and a STAMP
  /// probe waits for the next answered probe of its session, whose reflector sequence tells
  /// whether the gap's requests arrived, or stamp_evidence_wait_ns after it was declared lost.
  [[nodiscard]] bool fate_known(const Session& s, const Slot& sl, std::int8_t ev,
                                std::int64_t now) const;
  /// Where a lost probe was lost (fate_known() must hold): only evidence decides.
  LossDirection loss_of(const Session& s, Slot& sl, std::int8_t ev);
  /// The forward path: where the request was seen leaving ("unknown" when it went somewhere
  /// unseen or ambiguously, "none" when it did not leave).
  [[nodiscard]] std::int8_t fwd_path_of(const Slot& sl, std::int8_t ev, LossDirection loss) const;
  /// The reverse path: where the reply was seen ("none": no reply seen).
  [[nodiscard]] std::int8_t rev_path_of(const Slot& sl) const;
  /// An ESP packet attributed to no probe (every window that could hold it has been decided),
  /// of this probe's expected length (any length when it is not known), on an ESP tap in the
  /// forward direction after the probe's window closed and within its late span (late_span):
  /// the probe may have left through the tunnel late. Meaningful once unseen_due() has passed.
  bool late_esp(Slot& sl);
  /// When the forward fate of a probe seen nowhere can be judged: every ESP lane's late span
  /// over and every window that could explain a packet in it decided (fwd_unseen_wait_ns after
  /// it left, if later). May move earlier as the tunnel catches up: ask again.
  [[nodiscard]] std::int64_t unseen_due(const Slot& sl) const;

  /// How far past its window (capture time) a probe's packet may come on ESP lane `lane`, and
  /// when every window that can hold a packet up to there is decided. The late horizon; on a
  /// lane that was carrying probes when it left, up to the packet of the first probe sent after
  /// it that was attributed there (the gateway keeps order, so its packet, had it entered the
  /// tunnel, came before that one), or esp_stall_wait_ns while none is.
  struct LateSpan {
    std::int64_t from_ns = 0;
    std::int64_t to_ns = 0;
    std::int64_t due_ns = 0;
  };
  [[nodiscard]] LateSpan late_span(std::size_t lane, const Slot& sl) const;

 private:
  /// The times a tap's silence about this probe would be evidence: its forward window (clear
  /// copies at the send, ESP ones in the window and the late horizon), and the reply's window
  /// when answered, else anything up to the sender's timeout. settle_ns of slack on each side.
  [[nodiscard]] bool probe_tap_down(const Session& s, const Slot& sl, std::size_t tap,
                                    bool fwd_only) const;
  [[nodiscard]] bool fwd_tap_down(const Session& s, const Slot& sl) const;
  GapClass gap_class(const Session& s, Slot& sl, std::int64_t last_now);

  const Setup& setup_;
  const EspLanes& lanes_;
  AttributorStats& stats_;
  // Per tap, the spans [from, to] during which it was down (to = kOpen while it still is).
  struct DownSpan {
    std::int64_t from_ns = 0;
    std::int64_t to_ns = 0;
  };
  static constexpr std::int64_t kOpen = std::numeric_limits<std::int64_t>::max();
  std::vector<std::deque<DownSpan>> down_spans_;
  const std::int64_t& poll_ns_;
  Ring<Recheck> held_;
};

}  // namespace pathsentry::probe::attr
