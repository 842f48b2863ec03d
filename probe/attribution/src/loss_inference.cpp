#include "loss_inference.h"

// Loss inference: taps down, the reflector's gaps, which way a lost probe was lost.
// Part of Attributor::Impl (attributor_impl.h).

#include <algorithm>

#include "attributor_impl.h"
#include "pathsentry/probe/wire/seq.h"

namespace pathsentry::probe {

bool Attributor::Impl::tap_down_during(std::size_t tap, std::int64_t from, std::int64_t to) const {
  for (const DownSpan& d : down_spans[tap]) {
    if (d.from_ns <= to && from <= d.to_ns) return true;
  }
  return false;
}

/// The times a tap's silence about this probe would be evidence: its forward window (clear
/// copies at the send, ESP ones in the window and the late horizon), and the reply's window
/// when answered, else anything up to the sender's timeout. settle_ns of slack on each side.
bool Attributor::Impl::probe_tap_down(const Session& s, const Slot& sl, std::size_t tap,
                                      bool fwd_only) const {
  std::int64_t fwd_to = 0;
  for (std::size_t t : lane_tap) {
    fwd_to = std::max(fwd_to, cfg.taps[t].hi_ns(Direction::Forward) + cfg.esp_late_horizon_ns);
  }
  if (tap_down_during(tap, sl.anchor_ns - cfg.settle_ns, sl.anchor_ns + fwd_to + cfg.settle_ns)) {
    return true;
  }
  if (fwd_only) return false;
  if (sl.has(kReceived)) {
    std::int64_t rev_from = 0;
    for (std::size_t t : lane_tap)
      rev_from = std::max(rev_from, cfg.taps[t].hi_ns(Direction::Reverse));
    return tap_down_during(tap, sl.rx_ns - rev_from - cfg.settle_ns, sl.rx_ns + cfg.settle_ns);
  }
  return tap_down_during(tap, sl.anchor_ns, sl.anchor_ns + s.spec.timeout_ns + cfg.settle_ns);
}

bool Attributor::Impl::fwd_tap_down(const Session& s, const Slot& sl) const {
  for (std::size_t t = 0; t < down_spans.size(); ++t) {
    if (!down_spans[t].empty() && probe_tap_down(s, sl, t, true)) return true;
  }
  return false;
}

/// A probe seen on no tap while a tap that may have carried it was down: its absence is no
/// evidence that it did not leave (counted once per probe).
bool Attributor::Impl::unseen_tap_down(const Session& s, Slot& sl) {
  if (sl.has(kTapDownUnseen)) return true;
  if (!fwd_tap_down(s, sl)) return false;
  sl.flags |= kTapDownUnseen;
  ++stats.fwd_unseen_tap_down;
  return true;
}

void Attributor::Impl::prune_down_spans() {
  // A record can follow its probe by the sender's timeout plus record_grace_ns; keep a
  // closed span a generous minute past that.
  constexpr std::int64_t kKeepNs = 60'000'000'000;
  for (auto& spans : down_spans) {
    while (spans.size() > 1 && spans.front().to_ns != kOpen &&
           spans.front().to_ns < last_now - kKeepNs) {
      spans.pop_front();
    }
  }
}

GapClass Attributor::Impl::gap_class(const Session& s, Slot& sl) {
  if (sl.rev_clear != 0) return GapClass::Arrived;  // its reply was seen on a tap
  // Seen leaving on no tap, with the late horizon past and no late ESP packet: it did not
  // leave (the taps cover every path), so it cannot be one of those that arrived.
  if (sl.has(kFwdDecided) && evidence(sl.fwd_clear, sl.fwd_esp) == kNoEvidence &&
      sl.anchor_ns + fwd_none_delay <= last_now && !late_esp(sl) && !unseen_tap_down(s, sl)) {
    return GapClass::NotLeft;
  }
  return GapClass::Open;
}

/// The stateful reflector numbers the requests it receives: between two answered probes, the
/// jump in its numbers says how many of the lost requests in between reached it. Those whose
/// fate is known already (reply seen: arrived; did not leave: not arrived) are set aside; of
/// the others, none arrived → all lost forward, all arrived → all replies lost, otherwise it
/// is unknown which (Mixed: undetermined).
void Attributor::Impl::apply_reflector(std::uint32_t si, Session& s, std::uint64_t seq,
                                       std::uint32_t rseq) {
  if (s.spec.proto != Proto::Stamp || !s.spec.stateful_reflector) return;
  if (s.has_last_rx && seq > s.last_rx_seq && seq - s.last_rx_seq <= s.slots.size()) {
    const std::uint64_t gap = seq - s.last_rx_seq - 1;
    const std::uint64_t arrived = reflector_arrivals_between(s.last_reflector_seq, rseq);
    if (gap > 0 && arrived <= gap) {
      std::uint64_t known_arrived = 0;
      std::uint64_t open = 0;
      for (std::uint64_t q = s.last_rx_seq + 1; q < seq; ++q) {
        Slot* sl = lookup(s, q);
        if (sl == nullptr || sl->has(kReceived) || sl->has(kEmitted)) {
          ++open;  // nothing known of it: it may be any of them
          continue;
        }
        const GapClass c = gap_class(s, *sl);
        if (c == GapClass::Arrived) ++known_arrived;
        if (c == GapClass::Open) ++open;
      }
      LossHint h = LossHint::Mixed;
      if (arrived >= known_arrived && arrived - known_arrived == 0) h = LossHint::FwdLost;
      if (arrived >= known_arrived && arrived - known_arrived == open) h = LossHint::RevLost;
      for (std::uint64_t q = s.last_rx_seq + 1; q < seq; ++q) {
        Slot* sl = lookup(s, q);
        if (sl != nullptr && !sl->has(kReceived) && !sl->has(kEmitted)) {
          const GapClass c = gap_class(s, *sl);
          sl->hint = c == GapClass::Arrived   ? LossHint::RevLost
                     : c == GapClass::NotLeft ? LossHint::FwdLost
                                              : h;
          if (sl->has(kLoss)) ready.emplace_back(si, q);  // it was waiting for this
        }
      }
    } else if (gap > 0) {
      // More arrivals than requests (the reflector restarted or numbers another way): its
      // counter says nothing here, and waiting longer will not change that.
      for (std::uint64_t q = s.last_rx_seq + 1; q < seq; ++q) {
        Slot* sl = lookup(s, q);
        if (sl != nullptr && !sl->has(kReceived) && !sl->has(kEmitted)) {
          sl->hint = LossHint::Mixed;
          if (sl->has(kLoss)) ready.emplace_back(si, q);
        }
      }
    }
  }
  if (!s.has_last_rx || seq > s.last_rx_seq) {
    s.has_last_rx = true;
    s.last_rx_seq = seq;
    s.last_reflector_seq = rseq;
  }
}

/// Whether a lost probe's direction can be decided now (an answered probe's fate is known).
/// A reply seen on a tap or the reflector's counter decide at once. Otherwise a probe seen
/// nowhere waits for the ESP late horizon (it may have left late on the tunnel), and a STAMP
/// probe waits for the next answered probe of its session, whose reflector sequence tells
/// whether the gap's requests arrived, or stamp_evidence_wait_ns after it was declared lost.
bool Attributor::Impl::fate_known(const Session& s, const Slot& sl, std::int8_t ev,
                                  std::int64_t now) const {
  if (sl.has(kReceived)) return true;
  if (!sl.has(kLoss)) return false;
  if (sl.rev_clear != 0) return true;
  if (counts(s) && (sl.hint == LossHint::FwdLost || sl.hint == LossHint::RevLost)) return true;
  if (ev == kNoEvidence && sl.anchor_ns + fwd_none_delay > now) return false;
  if (counts(s) && sl.hint == LossHint::None && sl.lost_ns + cfg.stamp_evidence_wait_ns > now) {
    return false;
  }
  return true;
}

/// Where a lost probe was lost (fate_known() must hold): only evidence decides.
LossDirection Attributor::Impl::loss_of(const Session& s, Slot& sl, std::int8_t ev) {
  if (sl.rev_clear != 0) return LossDirection::Reverse;  // its reply was seen coming back
  if (counts(s)) {
    if (sl.hint == LossHint::FwdLost) return LossDirection::Forward;
    if (sl.hint == LossHint::RevLost) return LossDirection::Reverse;
  }
  // A mirror shows where a probe left, not where it died: seen leaving and never answered,
  // it was lost beyond the tap in either direction.
  if (ev >= 0 || ev == kAmbiguous) return LossDirection::Undetermined;
  // Seen nowhere: it did not leave (the taps cover every path), unless an ESP packet that
  // could be its own came late.
  // A tap that was down may have carried it: its silence is no evidence either.
  return late_esp(sl) || unseen_tap_down(s, sl) ? LossDirection::Undetermined
                                                : LossDirection::Forward;
}

/// The forward path: where the request was seen leaving ("unknown" when it went somewhere
/// unseen or ambiguously, "none" when it did not leave).
std::int8_t Attributor::Impl::fwd_path_of(Slot& sl, std::int8_t ev, LossDirection loss) {
  if (ev >= 0) return ev;
  if (ev == kAmbiguous || sl.has(kReceived) || loss == LossDirection::Reverse) return unknown_id;
  return loss == LossDirection::Undetermined ? unknown_id : none_id;
}

/// The reverse path: where the reply was seen ("none": no reply seen).
std::int8_t Attributor::Impl::rev_path_of(const Slot& sl) const {
  const std::int8_t ev = evidence(sl.rev_clear, sl.has(kReceived) ? sl.rev_esp : kNoEvidence);
  if (ev >= 0) return ev;
  return sl.has(kReceived) || ev == kAmbiguous ? unknown_id : none_id;
}

/// An ESP packet attributed to no probe (every window that could hold it has been decided),
/// of this probe's expected length (any length when it is not known), on an ESP tap in the
/// forward direction after the probe's window closed and within the late horizon: the probe
/// may have left through the tunnel late.
bool Attributor::Impl::late_esp(Slot& sl) {
  if (sl.has(kLateEsp)) return true;
  for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
    const auto& tap = cfg.taps[lane_tap[lane]];
    Ring<EspObs>& obs = lanes[lane][0].obs;
    const std::int64_t from = sl.anchor_ns + tap.hi_ns(Direction::Forward);
    const std::int64_t to = from + cfg.esp_late_horizon_ns;
    const auto want = expected_len(lane, Direction::Forward, sl.wire);
    for (std::uint64_t i = lower_bound(obs, from); i < obs.end_abs(); ++i) {
      const EspObs& o = obs.at(i);
      if (o.ts_ns > to) break;
      if (!o.attributed && (!want || o.len == *want)) {
        sl.flags |= kLateEsp;
        ++stats.fwd_late_esp;
        return true;
      }
    }
  }
  return false;
}

/// A probe is lost (declared by the sender, early, or for want of a record).
void Attributor::Impl::mark_lost(std::uint32_t si, Session& s, Slot& sl, std::int64_t now) {
  sl.flags |= kLoss;
  sl.lost_ns = now;
  if (counts(s) && sl.hint == LossHint::None && sl.rev_clear == 0) {
    held.push_back({now + cfg.stamp_evidence_wait_ns, si, sl.seq});
  }
}

}  // namespace pathsentry::probe
