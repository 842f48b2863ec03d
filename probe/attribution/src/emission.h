#pragma once

// Emission: a finished probe's record and its per-direction samples.
// docs/attribution.md §2–3 has the rules.

#include <cstdint>
#include <vector>

#include "loss_inference.h"
#include "pathsentry/common/record.h"
#include "pathsentry/common/ring.h"
#include "pathsentry/probe/attribution/detector.h"
#include "setup.h"
#include "slot_table.h"

namespace pathsentry::probe::attr {

/// Where poll() puts what it finishes: records, and samples when asked for.
struct Out {
  std::vector<ProbeRecord>& records;
  std::vector<PathSample>* samples;
};

/// Emission: when a probe's samples and record may leave, and what they say. Owns the queue of
/// forward samples that wait for the late horizon. Reads the setup (labels); asks the loss
/// inference for a lost probe's fate; writes the slots' sampled/emitted flags, the record and
/// path counters in `stats` and the session's loss counts, and appends to `Out`. Not
/// thread-safe.
class Emission {
 public:
  Emission(const Setup& setup, LossInference& loss, AttributorStats& stats);

  /// The forward sample leaves as soon as it is final. A probe seen leaving on a tap is through
  /// only once its fate is known (answered, or its reply's loss proven): a mirror shows where it
  /// left, not that it arrived. A probe seen nowhere is final once the ESP late horizon has
  /// passed (or fwd_unseen_wait_ns, if larger): it did not leave (a forward loss), or, with an
  /// unexplained ESP packet of its length late, it may have (MaybeLost while its fate is open).
  void try_sample_fwd(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out);
  /// Emits the probe's record once both directions are decided and its fate is known; a probe
  /// seen nowhere whose fate waits for its late span is queued to be looked at again.
  void try_finish(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out);
  /// A probe is declared lost now: its forward sample and record, when final.
  void declare_loss(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out);
  /// A probe seen nowhere: its forward sample is judged from the unseen queue after the late
  /// horizon (fwd_none_delay past its anchor).
  void defer_unseen(std::uint32_t si, const Slot& sl) {
    unseen_.push_back({sl.anchor_ns + setup_.fwd_none_delay, si, sl.seq});
  }
  /// The forward samples waiting (due: the late horizon).
  Ring<Recheck>& unseen() { return unseen_; }

 private:
  /// A direction's sample; `revision`: a late answer's, revising an earlier one (PathSample).
  void sample(const Session& s, Slot& sl, Direction d, std::int8_t path, PathSample::Fate fate,
              Out& out, bool revision = false);
  /// A direction's sample of a probe whose fate is known.
  void sample_fate(const Session& s, Slot& sl, Direction d, std::int8_t ev, Out& out);
  void emit(Session& s, Slot& sl, Out& out);
  /// Queues probe `sl` of session `si` on the unseen queue (once: not when it is the last one
  /// queued), due when its late span is over or within 10 ms.
  void look_again(std::uint32_t si, const Slot& sl, std::int64_t now);

  const Setup& setup_;
  LossInference& loss_;
  AttributorStats& stats_;
  Ring<Recheck> unseen_;
};

}  // namespace pathsentry::probe::attr
