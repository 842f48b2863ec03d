#include "loss_inference.h"

// Loss inference: taps down, the reflector's gaps, which way a lost probe was lost.

#include <algorithm>

#include "pathsentry/probe/wire/seq.h"

namespace pathsentry::probe::attr {

LossInference::LossInference(const Setup& setup, const EspLanes& lanes, AttributorStats& stats,
                             const std::int64_t& poll_ns)
    : setup_(setup),
      lanes_(lanes),
      stats_(stats),
      down_spans_(setup.cfg.taps.size()),
      poll_ns_(poll_ns) {}

void LossInference::tap_down(std::size_t tap, std::int64_t from_ns) {
  if (tap >= down_spans_.size()) return;
  auto& spans = down_spans_[tap];
  if (!spans.empty() && spans.back().to_ns == kOpen) return;
  spans.push_back({from_ns, kOpen});
}

void LossInference::tap_up(std::size_t tap, std::int64_t at_ns) {
  if (tap >= down_spans_.size()) return;
  auto& spans = down_spans_[tap];
  if (spans.empty() || spans.back().to_ns != kOpen) return;
  spans.back().to_ns = std::max(at_ns, spans.back().from_ns);
}

bool LossInference::any_tap_down(std::int64_t from, std::int64_t to) const {
  for (std::size_t t = 0; t < down_spans_.size(); ++t) {
    if (tap_down_during(t, from, to)) return true;
  }
  return false;
}

bool LossInference::tap_down_during(std::size_t tap, std::int64_t from, std::int64_t to) const {
  // A window ending at a span's start was judged complete (tap_down: poll() had got that far
  // with the tap up), so the span starts just after it.
  for (const DownSpan& d : down_spans_[tap]) {
    if (d.from_ns < to && from <= d.to_ns) return true;
  }
  return false;
}

bool LossInference::probe_tap_down(const Session& s, const Slot& sl, std::size_t tap,
                                   bool fwd_only) const {
  std::int64_t fwd_to = 0;
  for (std::size_t t : setup_.lane_tap) {
    fwd_to = std::max(
        fwd_to, setup_.cfg.taps[t].hi_ns(Direction::Forward) + setup_.cfg.esp_late_horizon_ns);
  }
  // A span that starts at or after the poll under way came after this probe's decisions (in
  // the pipeline a tap's failure and the worker's poll race: the answer must not depend on
  // which came first). Its windows may reach past that poll (the ESP late horizon of a probe
  // already seen), but nothing after it was needed to judge the probe.
  const std::int64_t to_cap = poll_ns_;
  auto during = [&](std::int64_t from, std::int64_t to) {
    return tap_down_during(tap, from, std::min(to, to_cap));
  };
  if (during(sl.anchor_ns - setup_.cfg.settle_ns, sl.anchor_ns + fwd_to + setup_.cfg.settle_ns)) {
    return true;
  }
  if (fwd_only) return false;
  if (sl.has(kReceived)) {
    std::int64_t rev_from = 0;
    for (std::size_t t : setup_.lane_tap)
      rev_from = std::max(rev_from, setup_.cfg.taps[t].hi_ns(Direction::Reverse));
    return during(sl.rx_ns - rev_from - setup_.cfg.settle_ns, sl.rx_ns + setup_.cfg.settle_ns);
  }
  return during(sl.anchor_ns, sl.anchor_ns + s.spec.timeout_ns + setup_.cfg.settle_ns);
}

bool LossInference::fwd_tap_down(const Session& s, const Slot& sl) const {
  for (std::size_t t = 0; t < down_spans_.size(); ++t) {
    if (!down_spans_[t].empty() && probe_tap_down(s, sl, t, true)) return true;
  }
  return false;
}

bool LossInference::unseen_tap_down(const Session& s, Slot& sl) {
  if (sl.has(kTapDownUnseen)) return true;
  if (!fwd_tap_down(s, sl)) return false;
  sl.flags |= kTapDownUnseen;
  ++stats_.fwd_unseen_tap_down;
  return true;
}

void LossInference::prune_down_spans(std::int64_t last_now) {
  // A record can follow its probe by the sender's timeout plus record_grace_ns; keep a
  // closed span a generous minute past that.
  constexpr std::int64_t kKeepNs = 60'000'000'000;
  for (auto& spans : down_spans_) {
    while (spans.size() > 1 && spans.front().to_ns != kOpen &&
           spans.front().to_ns < last_now - kKeepNs) {
      spans.pop_front();
    }
  }
}

GapClass LossInference::gap_class(const Session& s, Slot& sl, std::int64_t last_now) {
  if (sl.rev_clear != 0) return GapClass::Arrived;  // its reply was seen on a tap
  // Seen leaving on no tap, with the late horizon past and no late ESP packet: it did not
  // leave (the taps cover every path), so it cannot be one of those that arrived.
  if (sl.has(kFwdDecided) && evidence(sl.fwd_clear, sl.fwd_esp) == kNoEvidence &&
      unseen_due(sl) <= last_now && !late_esp(sl) && !unseen_tap_down(s, sl)) {
    return GapClass::NotLeft;
  }
  return GapClass::Open;
}

void LossInference::apply_reflector(std::uint32_t si, Session& s, std::uint64_t seq,
                                    std::uint32_t rseq, std::int64_t last_now, ReadyList& ready) {
  if (s.spec.proto != Proto::Stamp || !s.spec.stateful_reflector) return;
  if (s.has_last_rx && seq > s.last_rx_seq && seq - s.last_rx_seq <= s.slots.size()) {
    const std::uint64_t gap = seq - s.last_rx_seq - 1;
    const std::uint64_t arrived = reflector_arrivals_between(s.last_reflector_seq, rseq);
    if (gap > 0 && arrived <= gap) {
      std::uint64_t known_arrived = 0;
      std::uint64_t open = 0;
      for (std::uint64_t q = s.last_rx_seq + 1; q < seq; ++q) {
        Slot* sl = SlotTable::lookup(s, q);
        if (sl == nullptr || sl->has(kReceived) || sl->has(kEmitted)) {
          ++open;  // nothing known of it: it may be any of them
          continue;
        }
        const GapClass c = gap_class(s, *sl, last_now);
        if (c == GapClass::Arrived) ++known_arrived;
        if (c == GapClass::Open) ++open;
      }
      LossHint h = LossHint::Mixed;
      if (arrived >= known_arrived && arrived - known_arrived == 0) h = LossHint::FwdLost;
      if (arrived >= known_arrived && arrived - known_arrived == open) h = LossHint::RevLost;
      for (std::uint64_t q = s.last_rx_seq + 1; q < seq; ++q) {
        Slot* sl = SlotTable::lookup(s, q);
        if (sl != nullptr && !sl->has(kReceived) && !sl->has(kEmitted)) {
          const GapClass c = gap_class(s, *sl, last_now);
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
        Slot* sl = SlotTable::lookup(s, q);
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

bool LossInference::fate_known(const Session& s, const Slot& sl, std::int8_t ev,
                               std::int64_t now) const {
  if (sl.has(kReceived)) return true;
  if (!sl.has(kLoss)) return false;
  if (sl.rev_clear != 0) return true;
  if (counts(s) && (sl.hint == LossHint::FwdLost || sl.hint == LossHint::RevLost)) return true;
  if (ev == kNoEvidence && unseen_due(sl) > now) return false;
  if (counts(s) && sl.hint == LossHint::None &&
      sl.lost_ns() + setup_.cfg.stamp_evidence_wait_ns > now) {
    return false;
  }
  return true;
}

LossDirection LossInference::loss_of(const Session& s, Slot& sl, std::int8_t ev) {
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

std::int8_t LossInference::fwd_path_of(const Slot& sl, std::int8_t ev, LossDirection loss) const {
  if (ev >= 0) return ev;
  if (ev == kAmbiguous || sl.has(kReceived) || loss == LossDirection::Reverse)
    return setup_.unknown_id;
  return loss == LossDirection::Undetermined ? setup_.unknown_id : setup_.none_id;
}

std::int8_t LossInference::rev_path_of(const Slot& sl) const {
  const std::int8_t ev = evidence(sl.rev_clear, sl.has(kReceived) ? sl.rev_esp : kNoEvidence);
  if (ev >= 0) return ev;
  return sl.has(kReceived) || ev == kAmbiguous ? setup_.unknown_id : setup_.none_id;
}

LossInference::LateSpan LossInference::late_span(std::size_t lane, const Slot& sl) const {
  const auto& tap = setup_.cfg.taps[setup_.lane_tap[lane]];
  const std::int64_t wait = setup_.cfg.esp_stall_wait_ns;
  LateSpan s;
  s.from_ns = sl.anchor_ns + tap.hi_ns(Direction::Forward);
  s.to_ns = s.from_ns + setup_.cfg.esp_late_horizon_ns;
  // The first probe sent after this one that was attributed here (decisions run in send
  // order), and whether the one before it was recent: the tunnel was carrying probes.
  const auto& pr = lanes_.lane(lane, Direction::Forward).progress;
  const std::uint64_t lo =
      EspLanes::partition_point(pr, [&](const auto& p) { return p.anchor_ns <= sl.anchor_ns; });
  const bool carrying = lo > pr.begin_abs() && sl.anchor_ns - pr.at(lo - 1).anchor_ns <= wait;
  if (lo < pr.end_abs() && pr.at(lo).anchor_ns - sl.anchor_ns <= wait) {
    s.to_ns = std::max(s.to_ns, std::min(pr.at(lo).ts_ns, s.from_ns + wait));  // caught up
  } else if (carrying) {
    s.to_ns = std::max(s.to_ns, s.from_ns + wait);  // not yet: it may be stalled
  }
  // A packet at to_ns is in the windows of probes sent up to to_ns - lo: decided then.
  s.due_ns = s.to_ns - tap.lo_ns(Direction::Forward) + setup_.fwd_decide_delay;
  return s;
}

std::int64_t LossInference::unseen_due(const Slot& sl) const {
  std::int64_t due = sl.anchor_ns + setup_.cfg.fwd_unseen_wait_ns;
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    due = std::max(due, late_span(lane, sl).due_ns);
  }
  return due;
}

bool LossInference::late_esp(Slot& sl) {
  if (sl.has(kLateEsp)) return true;
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    const Ring<EspObs>& obs = lanes_.lane(lane, Direction::Forward).obs;
    const LateSpan span = late_span(lane, sl);
    const auto want = lanes_.expected_len(lane, Direction::Forward, sl.wire);
    for (std::uint64_t i = EspLanes::lower_bound(obs, span.from_ns); i < obs.end_abs(); ++i) {
      const EspObs& o = obs.at(i);
      if (o.ts_ns > span.to_ns) break;
      if (!o.attributed && (!want || o.len == *want)) {
        sl.flags |= kLateEsp;
        ++stats_.fwd_late_esp;
        if (o.ts_ns > span.from_ns + setup_.cfg.esp_late_horizon_ns) ++stats_.fwd_late_esp_stalled;
        return true;
      }
    }
  }
  return false;
}

void LossInference::mark_lost(std::uint32_t si, Session& s, Slot& sl, std::int64_t now) {
  sl.flags |= kLoss;
  sl.set_lost_ns(now);
  if (counts(s) && sl.hint == LossHint::None && sl.rev_clear == 0) {
    held_.push_back({now + setup_.cfg.stamp_evidence_wait_ns, si, sl.seq});
  }
}

}  // namespace pathsentry::probe::attr
