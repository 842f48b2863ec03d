#include "emission.h"

// Emission: records and samples.

#include <algorithm>
#include <bit>
#include <string>

namespace pathsentry::probe::attr {

Emission::Emission(const Setup& setup, LossInference& loss, AttributorStats& stats)
    : setup_(setup), loss_(loss), stats_(stats) {}

void Emission::sample(const Session& s, Slot& sl, Direction d, std::int8_t path,
                      PathSample::Fate fate, Out& out, bool revision) {
  if (d == Direction::Forward) {
    sl.flags |= kFwdSampled;
    sl.fwd_sampled = path;
  } else {
    sl.flags |= kRevSampled;
  }
  if (out.samples == nullptr) return;
  PathSample& p = out.samples->emplace_back();
  p.session_id = s.spec.session_id;
  p.target = s.target_text;
  p.proto = s.spec.proto;
  p.dir = d;
  p.seq = sl.seq;
  p.tx_ns = sl.anchor_ns;  // one clock for every sample: event figures stay consistent
  const auto idx = static_cast<std::size_t>(static_cast<std::uint8_t>(path));  // a label: >= 0
  p.path = setup_.labels[idx];
  p.path_id = static_cast<std::int16_t>(idx);
  p.fate = fate;
  p.revision = revision;
}

void Emission::sample_fate(const Session& s, Slot& sl, Direction d, std::int8_t ev, Out& out) {
  using Fate = PathSample::Fate;
  const bool fwd = d == Direction::Forward;
  if (sl.has(kReceived)) {
    sample(s, sl, d, fwd ? loss_.fwd_path_of(sl, ev, LossDirection::None) : loss_.rev_path_of(sl),
           Fate::Through, out);
    return;
  }
  const LossDirection loss = loss_.loss_of(s, sl, ev);
  const std::int8_t path = fwd ? loss_.fwd_path_of(sl, ev, loss) : loss_.rev_path_of(sl);
  Fate fate = Fate::Undetermined;
  if (loss == LossDirection::Forward) fate = fwd ? Fate::Lost : Fate::NotApplicable;
  if (loss == LossDirection::Reverse) fate = fwd ? Fate::Through : Fate::Lost;
  sample(s, sl, d, path, fate, out);
}

void Emission::try_sample_fwd(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out) {
  if (sl.has(kFwdSampled) || !sl.has(kFwdDecided)) return;
  const std::int8_t ev = evidence(sl.fwd_clear, sl.fwd_esp);
  if (loss_.fate_known(s, sl, ev, now)) {
    sample_fate(s, sl, Direction::Forward, ev, out);
  } else if (ev == kNoEvidence && loss_.unseen_due(sl) <= now) {
    if (loss_.late_esp(sl) || loss_.unseen_tap_down(s, sl)) {
      sample(s, sl, Direction::Forward, setup_.unknown_id, PathSample::Fate::MaybeLost, out);
    } else {
      sample(s, sl, Direction::Forward, setup_.none_id, PathSample::Fate::Lost, out);
    }
  } else if (ev == kNoEvidence) {
    look_again(si, sl, now);
  }
}

void Emission::look_again(std::uint32_t si, const Slot& sl, std::int64_t now) {
  if (!unseen_.empty() && unseen_.back().seq == sl.seq && unseen_.back().session == si) return;
  // When due, or sooner: a tunnel catching up brings the due time forward.
  constexpr std::int64_t kRecheckNs = 10'000'000;
  unseen_.push_back({std::min(loss_.unseen_due(sl), now + kRecheckNs), si, sl.seq});
}

void Emission::emit(Session& s, Slot& sl, Out& out) {
  if (!sl.has(kLate)) {
    for (const auto& [clear, esp] :
         {std::pair{sl.fwd_clear, sl.fwd_esp}, std::pair{sl.rev_clear, sl.rev_esp}}) {
      if (std::popcount(clear) > 1) ++stats_.clear_conflicts;
      if (std::popcount(clear) == 1 && esp >= 0 && esp != std::countr_zero(clear)) {
        ++stats_.esp_conflicts;  // exact sighting beats correlation
      }
    }
  }
  const std::int8_t ev = evidence(sl.fwd_clear, sl.fwd_esp);
  const LossDirection loss = sl.has(kReceived) ? LossDirection::None : loss_.loss_of(s, sl, ev);
  const std::int8_t fwd = loss_.fwd_path_of(sl, ev, loss);
  const std::int8_t rev = loss_.rev_path_of(sl);
  // A late answer to a probe already emitted as lost: it got through after all, in each
  // direction its earlier sample did not say so (the detector revises that sample).
  const bool answered_late = sl.has(kLate) && sl.has(kReceived);
  if (!sl.has(kFwdSampled)) {
    sample_fate(s, sl, Direction::Forward, ev, out);
  } else if (answered_late && sl.emitted_loss != LossDirection::Reverse) {
    sample(s, sl, Direction::Forward, fwd, PathSample::Fate::Through, out, true);
  } else if (sl.fwd_sampled != fwd && !sl.has(kLate)) {
    ++stats_.fwd_samples_revised;
  }
  if (!sl.has(kRevSampled)) {
    sample_fate(s, sl, Direction::Reverse, ev, out);
  } else if (answered_late) {
    sample(s, sl, Direction::Reverse, rev, PathSample::Fate::Through, out, true);
  }
  ProbeRecord& r = out.records.emplace_back();
  r.target = s.target_text;
  r.proto = s.spec.proto;
  r.session_id = s.spec.session_id;
  r.seq = sl.seq;
  r.tx_ns = sl.tx_ns;
  r.tx_kernel_ts = sl.tx_kernel;
  if (sl.has(kReceived)) {
    r.rx_ns = sl.rx_ns;
    r.rtt_ns = sl.rtt_ns;
  }
  if (sl.has_reflector) {
    const ReflectorFields& rf = SlotTable::reflector_of(std::as_const(s), sl);
    r.reflector_seq = rf.seq;
    r.reflector_rx_ns = rf.rx_ns;
    r.reflector_tx_ns = rf.tx_ns;
    r.reflector_clock_synced = rf.synced;
  }
  r.fwd_path = setup_.labels[static_cast<std::size_t>(fwd)];
  r.rev_path = setup_.labels[static_cast<std::size_t>(rev)];
  r.loss = loss;
  r.late = sl.has(kLate);
  for (std::size_t t = 0; t < setup_.cfg.taps.size(); ++t) {
    if (!loss_.down_for_record(s, sl, t)) continue;
    const std::string& name = setup_.cfg.taps[t].interface;
    if (std::find(r.taps_down.begin(), r.taps_down.end(), name) == r.taps_down.end()) {
      r.taps_down.push_back(name);
    }
  }
  if (!r.taps_down.empty()) ++stats_.tap_down_records;
  sl.flags |= kEmitted;
  ++stats_.records;
  if (r.late) {
    ++stats_.late_records;
  } else {
    ++stats_.path_counts[static_cast<std::size_t>(fwd)][0];
    ++stats_.path_counts[static_cast<std::size_t>(rev)][1];
  }
  // The loss counts follow the latest record of each probe (a late answer replaces its loss).
  if (sl.emitted_loss != LossDirection::None) {
    const auto i = static_cast<std::size_t>(sl.emitted_loss) - 1;
    --stats_.losses[i];
    --s.losses[i];
  }
  if (loss != LossDirection::None) {
    const auto i = static_cast<std::size_t>(loss) - 1;
    ++stats_.losses[i];
    ++s.losses[i];
  }
  sl.emitted_loss = loss;
}

void Emission::try_finish(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out) {
  if (sl.has(kEmitted) || !sl.has(kFwdDecided)) return;
  if (sl.has(kReceived) ? !sl.has(kRevDecided) : !sl.has(kLoss)) return;
  // A lost probe waits until its direction can be decided (the ESP late horizon, the
  // reflector's counter), like its samples.
  const std::int8_t ev = evidence(sl.fwd_clear, sl.fwd_esp);
  if (!loss_.fate_known(s, sl, ev, now)) {
    // Seen nowhere, its late span not over: looked at again then. Its forward sample may have
    // left already (its queue entry gone) while a later probe attributed on the tunnel moved
    // the span's end past now; without this nothing looked at it again, and its record never
    // came out (lab: 4-5 ICMP records missing where a tunnel went down).
    // Only then: a probe that waits for something else (the reflector's counter) is on the
    // held queue, and one due now would be taken off this queue and put back for ever.
    if (ev == kNoEvidence && loss_.unseen_due(sl) > now) look_again(si, sl, now);
    return;
  }
  emit(s, sl, out);
}

void Emission::declare_loss(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out) {
  loss_.mark_lost(si, s, sl, now);
  try_sample_fwd(si, s, sl, now, out);
  try_finish(si, s, sl, now, out);
}

}  // namespace pathsentry::probe::attr
