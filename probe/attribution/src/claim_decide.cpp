#include "claim_decide.h"

// Claim and decide: the probe logs' windows claim ESP packets, then decide.
// Part of Attributor::Impl (attributor_impl.h).

#include <algorithm>
#include <cstdlib>
#include <string>

#include "attributor_impl.h"

namespace pathsentry::probe {

void Attributor::Impl::claim(LogEntry& e, Direction d) {
  const auto di = static_cast<std::size_t>(d);
  for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
    const auto& tap = cfg.taps[lane_tap[lane]];
    EspLane& ln = lanes[lane][di];
    const auto [from, to] = window_of(tap, d, e.anchor_ns);
    const auto want = expected_len(lane, d, e.wire);
    Claim& c = e.claims[lane];
    c = Claim{};
    c.incomplete = from <= ln.evicted_through_ns;
    for (std::uint64_t i = lower_bound(ln.obs, from); i < ln.obs.end_abs(); ++i) {
      EspObs& o = ln.obs.at(i);
      if (o.ts_ns > to) break;
      if (o.any_claims < 0xFFFF) ++o.any_claims;
      if (c.any == 0) c.any_idx = i;
      if (c.any < 0xFFFF) ++c.any;
      if (want && o.len == *want) {
        if (o.claims < 0xFFFF) ++o.claims;
        if (c.cand == 0) c.cand_idx = i;
        if (c.cand < 0xFFFF) ++c.cand;
      }
    }
  }
}

/// Counts why a probe-direction no clear tap saw got no ESP attribution (TapAttribution and
/// the silent-tap warning).
void Attributor::Impl::note_outcome(std::size_t lane, const LogEntry& e, Direction d,
                                    const Claim& c, std::int8_t v) {
  const std::size_t tap = lane_tap[lane];
  SilentPeriod& p = silent[lane];
  if (v >= 0) {
    ++p.matched;
    return;
  }
  if (c.any == 0) return;  // no ESP in the window: it took another path, or was lost
  const Slot* sl = lookup(sessions[e.session], e.seq);
  if (sl != nullptr && (d == Direction::Forward ? sl->fwd_clear : sl->rev_clear) != 0) return;
  const auto want = expected_len(lane, d, e.wire);
  if (v == kAmbiguous) {
    ++p.ambiguous;
    const EspLearner& l = lanes[lane][static_cast<std::size_t>(d)].learner;
    if (!cfg.taps[tap].transform && l.model() && l.model()->transform.tfc_pad_to >= e.wire) {
      ++p.collapsed;
    }
  } else if (!want) {
    ++p.unlearned;
    ++stats.taps[tap].unlearned;
  } else {
    ++p.no_cand;
    ++stats.taps[tap].no_candidate;
  }
  if (explain) explain_unknown(lane, e, d, c, want);
}

/// The note PATHSENTRY_EXPLAIN_UNKNOWN asks for: the probe, its candidates (offset from the
/// anchor, their claimants), the other probes claiming them, the nearest packet of its length.
void Attributor::Impl::explain_unknown(std::size_t lane, const LogEntry& e, Direction d,
                                       const Claim& c, std::optional<std::uint32_t> want) {
  const auto& tap = cfg.taps[lane_tap[lane]];
  EspLane& ln = lanes[lane][static_cast<std::size_t>(d)];
  const bool fwd = d == Direction::Forward;
  auto off_us = [&](std::int64_t ts) { return (fwd ? ts - e.anchor_ns : e.anchor_ns - ts) / 1000; };
  const auto [from, to] = window_of(tap, d, e.anchor_ns);
  std::string t = std::string("explain ") + (fwd ? "fwd" : "rev") + " session " +
                  std::to_string(sessions[e.session].spec.session_id) + " seq " +
                  std::to_string(e.seq) + " wire " + std::to_string(e.wire) + " len " +
                  (want ? std::to_string(*want) : "?") + ": " +
                  (c.incomplete  ? "incomplete"
                   : !want       ? "no length"
                   : c.cand > 1  ? "multi " + std::to_string(c.cand)
                   : c.cand == 1 ? "shared"
                                 : "no candidate") +
                  ", window ESP " + std::to_string(c.any) + "; cands:";
  if (want) {
    for (std::uint64_t i = lower_bound(ln.obs, from - 20'000'000); i < ln.obs.end_abs(); ++i) {
      const EspObs& o = ln.obs.at(i);
      if (o.ts_ns > to + 20'000'000) break;
      if (o.len != *want) continue;
      const bool in = o.ts_ns >= from && o.ts_ns <= to;
      // Appended piece by piece: GCC 12 -O3 -Wrestrict false positive on `" " + std::string`.
      t += ' ';
      t += std::to_string(off_us(o.ts_ns));
      t += in ? "us" : "us(out)";
      t += "/c";
      t += std::to_string(o.claims);
      if (o.attributed) t += "/a";
      if (!in || cur_log == nullptr) continue;
      for (std::uint64_t j = cur_log->begin_abs(); j < cur_log->end_abs(); ++j) {
        const LogEntry& x = cur_log->at(j);
        if (&x == &e || x.wire != e.wire) continue;
        const Window xw = window_of(tap, d, x.anchor_ns);
        if (o.ts_ns < xw.from_ns || o.ts_ns > xw.to_ns) continue;
        t += "[also s" + std::to_string(sessions[x.session].spec.session_id) + "#" +
             std::to_string(x.seq) + " d" + std::to_string((x.anchor_ns - e.anchor_ns) / 1000) +
             "us]";
      }
    }
  }
  notes.push_back(std::move(t));
}

/// A gateway sends one SA's packets in the order they reach it (their ESP sequence numbers),
/// and our probes reach it in the order they were sent (forward) or leave it in the order they
/// are received (reverse, the agent's gateway decrypting in order). So a probe the window rule
/// leaves unexplained (its packet delayed past the window, or a burst putting another probe of
/// its length in the window) is between the last probe attributed before it and the next one
/// uniquely claiming a packet after it: if that span of the SA holds exactly one unattributed
/// packet of its length, and no other probe in the span (decided unexplained since the last
/// match, or still to be decided before the next) expects that length, the packet is its own.
std::optional<std::uint64_t> Attributor::Impl::order_rescue(std::size_t lane, Direction d,
                                                            const LogEntry& e) {
  constexpr std::int64_t kMaxSpanNs = 500'000'000;
  constexpr std::uint64_t kMaxAhead = 1024;
  EspLane& ln = lanes[lane][static_cast<std::size_t>(d)];
  const auto want = expected_len(lane, d, e.wire);
  if (!want || !ln.has_last || ln.pending_overflow || cur_log == nullptr ||
      std::abs(e.anchor_ns - ln.last.ts_ns) > kMaxSpanNs) {
    return std::nullopt;  // (nothing attributed here lately: the probes take another path)
  }
  std::size_t before = 0;  // probes of its length in the span before it (decided unexplained)
  for (std::size_t i = 0; i < ln.npending; ++i) before += ln.pending[i] == *want ? 1 : 0;
  // The next probe (in anchor order) with a unique claim; those of its length before it.
  const EspObs* next = nullptr;
  std::size_t after = 0;
  const std::uint64_t end = std::min(cur_log->end_abs(), *cur_claimed);
  const std::uint64_t first = cur_log->begin_abs() + 1;  // e is the log's front
  for (std::uint64_t j = first; j < end && j < first + kMaxAhead; ++j) {
    const LogEntry& x = cur_log->at(j);
    const Claim& xc = x.claims[lane];
    if (!xc.incomplete && xc.cand == 1 && xc.cand_idx >= ln.obs.begin_abs() &&
        xc.cand_idx < ln.obs.end_abs() && ln.obs.at(xc.cand_idx).claims == 1) {
      next = &ln.obs.at(xc.cand_idx);
      break;
    }
    if (expected_len(lane, d, x.wire) == want) ++after;
  }
  if (next == nullptr || next->spi != ln.last.spi || next->seq <= ln.last.seq ||
      next->ts_ns - ln.last.ts_ns > kMaxSpanNs || ln.last.ts_ns <= ln.evicted_through_ns) {
    return std::nullopt;
  }
  // The span's packets of its length, in the SA's order, must be exactly as many as its probes
  // of that length: then the (before + 1)-th is its own.
  std::optional<std::uint64_t> found;
  std::size_t k = 0;
  for (std::uint64_t i = lower_bound(ln.obs, ln.last.ts_ns); i < ln.obs.end_abs(); ++i) {
    const EspObs& o = ln.obs.at(i);
    if (o.ts_ns > next->ts_ns) break;
    if (o.len != *want || o.spi != ln.last.spi || o.seq <= ln.last.seq || o.seq >= next->seq) {
      continue;
    }
    if (o.attributed) return std::nullopt;
    if (k == before) found = i;
    ++k;
  }
  if (k != before + 1 + after) return std::nullopt;
  return found;
}

/// The ESP verdict over all ESP taps for one direction of one probe.
std::int8_t Attributor::Impl::decide(LogEntry& e, Direction d) {
  const auto di = static_cast<std::size_t>(d);
  std::int8_t verdict = kNoEvidence;
  for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
    const std::size_t tap = lane_tap[lane];
    EspLane& ln = lanes[lane][di];
    const Claim& c = e.claims[lane];
    auto valid = [&](std::uint64_t i) { return i >= ln.obs.begin_abs() && i < ln.obs.end_abs(); };
    std::int8_t v = kNoEvidence;
    if (!c.incomplete && c.cand == 1 && valid(c.cand_idx) && ln.obs.at(c.cand_idx).claims == 1 &&
        !ln.obs.at(c.cand_idx).attributed) {  // (attributed by order to a neighbour)
      v = tap_path[tap];
    } else if (c.incomplete || c.cand > 0) {
      v = kAmbiguous;
    }
    std::optional<std::uint64_t> match;
    if (v == tap_path[tap]) {
      match = c.cand_idx;
    } else if (!c.incomplete) {
      match = order_rescue(lane, d, e);
      if (match) {
        v = tap_path[tap];
        ++stats.taps[tap].order_rescued;
      }
    }
    if (match) {
      EspObs& o = ln.obs.at(*match);
      o.attributed = true;
      ++stats.taps[tap].matched;
      const auto& spec = cfg.taps[tap];
      const std::int64_t delay =
          d == Direction::Forward ? o.ts_ns - e.anchor_ns : e.anchor_ns - o.ts_ns;
      DelayStats& ds = stats.taps[tap].delay[di];
      ds.min_ns = ds.count == 0 ? delay : std::min(ds.min_ns, delay);
      ds.max_ns = ds.count == 0 ? delay : std::max(ds.max_ns, delay);
      ds.sum_ns += delay;
      ++ds.count;
      if (5 * (delay - spec.lo_ns(d)) >= 4 * (spec.hi_ns(d) - spec.lo_ns(d))) ++ds.near_hi;
      ln.has_last = true;
      ln.last = o;
      ln.npending = 0;
      ln.pending_overflow = false;
    } else if (const auto want = expected_len(lane, d, e.wire)) {
      if (ln.npending < ln.pending.size()) {
        ln.pending[ln.npending++] = *want;
      } else {
        ln.pending_overflow = true;
      }
    }
    if (v == kAmbiguous) ++stats.taps[tap].ambiguous;
    note_outcome(lane, e, d, c, v);
    if (!c.incomplete && c.any == 1 && valid(c.any_idx) && ln.obs.at(c.any_idx).any_claims == 1) {
      learn(lane, d, e.wire, ln.obs.at(c.any_idx).len);
    }
    if (v == kNoEvidence) continue;
    verdict = verdict == kNoEvidence || verdict == v ? v : kAmbiguous;
  }
  return verdict;
}

void Attributor::Impl::process_log(Ring<LogEntry>& log, std::uint64_t& claimed,
                                   std::uint64_t& learned, Direction d, std::int64_t now,
                                   std::int64_t hold, Out& out, bool learn_only) {
  const std::int64_t claim_delay = d == Direction::Forward ? fwd_claim_delay : rev_claim_delay;
  const std::int64_t decide_delay = d == Direction::Forward ? fwd_decide_delay : rev_decide_delay;
  learned = std::max(learned, log.begin_abs());
  while (!lanes.empty() && learned < log.end_abs() &&
         log.at(learned).anchor_ns + claim_delay <= now) {
    learn_window(log.at(learned), d);
    ++learned;
  }
  if (learn_only) return;
  cur_log = &log;
  cur_claimed = &claimed;
  claimed = std::max(claimed, log.begin_abs());
  while (claimed < log.end_abs() && log.at(claimed).anchor_ns + claim_delay + hold <= now) {
    if (!lanes.empty()) claim(log.at(claimed), d);
    ++claimed;
  }
  while (log.begin_abs() < claimed && log.front().anchor_ns + decide_delay <= now) {
    LogEntry& e = log.front();
    Session& s = sessions[e.session];
    const std::int8_t v = lanes.empty() ? kNoEvidence : decide(e, d);
    Slot* sl = lookup(s, e.seq);
    // A late answer re-opens an emitted probe (kEmitted cleared) for its reverse decision.
    if (sl != nullptr && !sl->has(kEmitted)) {
      if (d == Direction::Forward) {
        sl->fwd_esp = v;
        sl->flags |= kFwdDecided;
        if (!lanes.empty() && evidence(sl->fwd_clear, v) == kNoEvidence && !sl->has(kReceived)) {
          // Seen nowhere: judged from the unseen queue, after every later window this pass
          // may still decide (a flush decides them all at once).
          unseen.push_back({sl->anchor_ns + fwd_none_delay, e.session, e.seq});
          log.pop_front();
          continue;
        }
        try_sample_fwd(e.session, s, *sl, now, out);
      } else if (sl->has(kReceived)) {
        sl->rev_esp = v;
        sl->flags |= kRevDecided;
      }
      try_finish(s, *sl, now, out);
    }
    log.pop_front();
  }
}

}  // namespace pathsentry::probe
