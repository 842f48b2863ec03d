#pragma once

// Attributor::Impl: the attributor's parts and the order they run in. Each part is a class of
// its own that names what it reads and writes (its constructor's references):
//   setup.{h,cpp}            Setup: taps → path ids and ESP lanes, windows → delays (read-only)
//   slot_table.{h,cpp}       SlotTable: sessions and their per-probe slots
//   esp_lanes.{h,cpp}        EspLanes: ESP packets per tap and direction, length learning
//                            (esp_learner), the silent-tap warning
//   claim_decide.{h,cpp}     ClaimDecide: the probe logs; windows claim ESP packets, then decide
//   loss_inference.{h,cpp}   LossInference: taps down, reflector gaps, the direction of a loss
//   emission.{h,cpp}         Emission: records and samples
// Impl itself (attributor.cpp) takes the inputs (probes sent, records, clear sightings) into the
// slot table and the logs, and runs the parts in poll(). Inside, paths are small integers (ids
// into `Setup::labels`); their text appears only in what is emitted. docs/attribution.md §2–3
// has the rules; attributor.cpp the timeline.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "claim_decide.h"
#include "emission.h"
#include "esp_lanes.h"
#include "loss_inference.h"
#include "pathsentry/probe/attribution/attributor.h"
#include "setup.h"
#include "slot_table.h"

namespace pathsentry::probe {

struct Attributor::Impl {
  // Declaration order is construction order: each part refers to those above it.
  attr::Setup setup;
  AttributorStats stats;
  std::vector<std::string> notes;
  attr::SlotTable table;
  attr::EspLanes esp;
  attr::ClaimDecide logs;
  attr::LossInference loss;
  attr::Emission emission;
  attr::ReadyList ready;  // probes to look at again in the next poll
  /// Late answers to probes the table no longer holds (their records left long ago): they
  /// leave as late records at the next poll, paths unknown (no evidence is kept for them).
  std::vector<ProbeRecord> forgotten;
  std::int64_t last_now = std::numeric_limits<std::int64_t>::min();

  explicit Impl(AttributorConfig c);
  void on_sent(const ProbeSent& p);
  void on_record(const ProbeRecord& r);
  void on_clear(std::size_t tap, const Observation& o);
  void poll(std::int64_t now, attr::Out& out);

 private:
  /// A probe enters the sent log (its slot's forward window anchor is `tx`).
  void announce(std::uint32_t si, attr::Session& s, attr::Slot& sl, std::int64_t tx,
                std::uint32_t wire);
  /// Claims and decides direction `d`'s due windows and applies each verdict to its slot.
  void decide_due(Direction d, std::int64_t now, std::int64_t hold, attr::Out& out);
  /// Rechecks the probes whose fate may be known now (ready list, the parts' queues).
  void recheck(std::int64_t now, attr::Out& out);
  /// Declares the lost probes: overtaken past the grace, or with no record long after the
  /// sender's timeout.
  void declare_losses(std::int64_t now, attr::Out& out);
};

}  // namespace pathsentry::probe
