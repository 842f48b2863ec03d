#include "claim_decide.h"

// Claim and decide: the probe logs' windows claim ESP packets, then decide.

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>

namespace pathsentry::probe::attr {

ClaimDecide::ClaimDecide(const Setup& setup, EspLanes& lanes, const SlotTable& table,
                         AttributorStats& stats, std::vector<std::string>& notes)
    : setup_(setup), lanes_(lanes), table_(table), stats_(stats), notes_(notes) {}

void ClaimDecide::claim(LogEntry& e, Direction d) {
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    const auto& tap = setup_.cfg.taps[setup_.lane_tap[lane]];
    EspLane& ln = lanes_.lane(lane, d);
    const auto [from, to] = window_of(tap, d, e.anchor_ns);
    const auto want = lanes_.expected_len(lane, d, e.wire);
    Claim& c = e.claims[lane];
    c = Claim{};
    c.incomplete = from <= ln.evicted_through_ns;
    const std::uint64_t first = EspLanes::lower_bound_from(ln.obs, from, ln.claim_hint);
    ln.claim_hint = first;
    for (std::uint64_t i = first; i < ln.obs.end_abs(); ++i) {
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

void ClaimDecide::note_outcome(const Log& log, std::size_t lane, const LogEntry& e, Direction d,
                               const Claim& c, std::int8_t v) {
  const std::size_t tap = setup_.lane_tap[lane];
  SilentPeriod& p = lanes_.silent(lane, d);
  if (v >= 0) {
    ++p.matched;
    return;
  }
  if (c.any == 0) return;  // no ESP in the window: it took another path, or was lost
  const Slot* sl = SlotTable::lookup(table_.sessions[e.session], e.seq);
  if (sl != nullptr && sl->clear(d) != 0) return;
  const auto want = lanes_.expected_len(lane, d, e.wire);
  if (v == kAmbiguous) {
    ++p.ambiguous;
    const EspLearner& l = lanes_.lane(lane, d).learner;
    if (!setup_.cfg.taps[tap].transform && l.model() && l.model()->transform.tfc_pad_to >= e.wire) {
      ++p.collapsed;
    }
  } else if (!want) {
    ++p.unlearned;
    ++stats_.taps[tap].unlearned;
  } else {
    ++p.no_cand;
    ++stats_.taps[tap].no_candidate;
  }
  if (setup_.explain) explain_unknown(log, lane, e, d, c, want);
}

void ClaimDecide::explain_unknown(const Log& log, std::size_t lane, const LogEntry& e, Direction d,
                                  const Claim& c, std::optional<std::uint32_t> want) {
  const auto& tap = setup_.cfg.taps[setup_.lane_tap[lane]];
  EspLane& ln = lanes_.lane(lane, d);
  const bool fwd = d == Direction::Forward;
  auto off_us = [&](std::int64_t ts) { return (fwd ? ts - e.anchor_ns : e.anchor_ns - ts) / 1000; };
  const auto [from, to] = window_of(tap, d, e.anchor_ns);
  std::string t = std::string("explain ") + (fwd ? "fwd" : "rev") + " session " +
                  std::to_string(table_.sessions[e.session].spec.session_id) + " seq " +
                  std::to_string(e.seq) + " wire " + std::to_string(e.wire) + " len " +
                  (want ? std::to_string(*want) : "?") + ": " +
                  (c.incomplete  ? "incomplete"
                   : !want       ? "no length"
                   : c.cand > 1  ? "multi " + std::to_string(c.cand)
                   : c.cand == 1 ? "shared"
                                 : "no candidate") +
                  ", window ESP " + std::to_string(c.any) + "; cands:";
  if (want) {
    for (std::uint64_t i = EspLanes::lower_bound(ln.obs, from - 20'000'000); i < ln.obs.end_abs();
         ++i) {
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
      if (!in) continue;
      for (std::uint64_t j = log.entries.begin_abs(); j < log.entries.end_abs(); ++j) {
        const LogEntry& x = log.entries.at(j);
        if (&x == &e || x.wire != e.wire) continue;
        const Window xw = window_of(tap, d, x.anchor_ns);
        if (o.ts_ns < xw.from_ns || o.ts_ns > xw.to_ns) continue;
        t += "[also s" + std::to_string(table_.sessions[x.session].spec.session_id) + "#" +
             std::to_string(x.seq) + " d" + std::to_string((x.anchor_ns - e.anchor_ns) / 1000) +
             "us]";
      }
    }
  }
  notes_.push_back(std::move(t));
}

namespace {

constexpr std::int64_t kMaxSpanNs = 500'000'000;  // the order rule's longest span
constexpr std::uint64_t kMaxAhead = 1024;         // probes searched for the span's end
constexpr std::int64_t kMaxSpanWaitNs = 200'000'000;
constexpr std::size_t kMaxSpanEnds = 64;  // unique claims tried as the span's end

}  // namespace

bool ClaimDecide::unique_claim(const EspLane& ln, const Claim& xc) {
  return !xc.incomplete && xc.cand == 1 && xc.cand_idx >= ln.obs.begin_abs() &&
         xc.cand_idx < ln.obs.end_abs() && ln.obs.at(xc.cand_idx).claims == 1;
}

ClaimDecide::Span ClaimDecide::order_span(const Log& log, std::size_t lane, Direction d,
                                          const LogEntry& e) const {
  const EspLane& ln = lanes_.lane(lane, d);
  const auto want = lanes_.expected_len(lane, d, e.wire);
  if (!want || !ln.has_last || ln.pending_overflow ||
      std::abs(e.anchor_ns - ln.last.ts_ns) > kMaxSpanNs ||
      ln.last.ts_ns <= ln.evicted_through_ns) {
    return {};  // (nothing attributed here lately: the probes take another path)
  }
  std::size_t before = 0;  // probes of its length in the span before it (decided unexplained)
  for (std::size_t i = 0; i < ln.npending; ++i) before += ln.pending[i] == *want ? 1 : 0;
  // The span ends at the next probe (in anchor order) with a unique claim; `after` counts those
  // of its length before that one. The span's packets of its length, in the SA's order, must be
  // exactly as many as its probes of that length: then the (before + 1)-th is its own. Fewer
  // means that claim took an earlier probe's packet (a stall released it into a later window):
  // the span then ends at the next unique claim after it.
  std::size_t after = 0;
  std::size_t tried = 0;
  const std::uint64_t end = std::min(log.entries.end_abs(), log.claimed);
  const std::uint64_t first = log.entries.begin_abs() + 1;  // e is the log's front
  std::uint64_t j = first;
  for (; j < end && j < first + kMaxAhead; ++j) {
    const LogEntry& x = log.entries.at(j);
    const bool same_len = lanes_.expected_len(lane, d, x.wire) == want;
    if (!unique_claim(ln, x.claims[lane])) {
      after += same_len ? 1 : 0;
      continue;
    }
    const EspObs& next = ln.obs.at(x.claims[lane].cand_idx);
    if (next.spi == ln.last.spi && next.seq <= ln.last.seq) {
      after += same_len ? 1 : 0;  // a packet before the span: not that probe's own
      continue;
    }
    if (next.spi != ln.last.spi || next.ts_ns - ln.last.ts_ns > kMaxSpanNs) {
      return {};
    }
    std::optional<std::uint64_t> found;
    std::size_t k = 0;
    for (std::uint64_t i = EspLanes::lower_bound(ln.obs, ln.last.ts_ns); i < ln.obs.end_abs();
         ++i) {
      const EspObs& o = ln.obs.at(i);
      if (o.ts_ns > next.ts_ns) break;
      if (o.len != *want || o.spi != ln.last.spi || o.seq <= ln.last.seq || o.seq >= next.seq) {
        continue;
      }
      if (o.attributed) return {};
      if (k == before) found = i;
      ++k;
    }
    if (k == before + 1 + after) {
      // Causality, which does not rest on the SA's order: a probe's ESP cannot come before it
      // left (forward) or after its reply arrived (reverse), beyond the window's tolerance.
      const Window w = window_of(setup_.cfg.taps[setup_.lane_tap[lane]], d, e.anchor_ns);
      const std::int64_t ts = ln.obs.at(*found).ts_ns;
      if (d == Direction::Forward ? ts < w.from_ns : ts > w.to_ns) return {};
      return {SpanState::Found, *found};
    }
    if (k > before + 1 + after || ++tried == kMaxSpanEnds) return {};  // a look-alike too many
    after += same_len ? 1 : 0;  // that probe is inside the longer span
  }
  return {j == end ? SpanState::Open : SpanState::None, 0};
}

bool ClaimDecide::front_waits_unseen(Direction d, std::int64_t now) const {
  const Log& log = logs_[index(d)];
  if (lanes_.empty() || log.entries.empty()) return false;
  const LogEntry& e = log.entries.front();
  const std::int64_t wait = std::min(kMaxSpanWaitNs, setup_.cfg.esp_stall_wait_ns);
  if (now - e.anchor_ns - setup_.decide_delay(d) >= wait) return false;
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    const Claim& c = e.claims[lane];
    if (c.incomplete || unique_claim(lanes_.lane(lane, d), c)) continue;  // decided by its window
    if (order_span(log, lane, d, e).state == SpanState::Open) return !later_seen_clear(log, d);
  }
  return false;
}

bool ClaimDecide::later_seen_clear(const Log& log, Direction d) const {
  const std::uint64_t end = std::min(log.entries.end_abs(), log.claimed);
  const std::uint64_t first = log.entries.begin_abs() + 1;
  for (std::uint64_t j = first; j < end && j < first + kMaxAhead; ++j) {
    const LogEntry& x = log.entries.at(j);
    const Slot* sl = SlotTable::lookup(table_.sessions[x.session], x.seq);
    if (sl != nullptr && sl->clear(d) != 0) return true;
  }
  return false;
}

std::optional<std::uint64_t> ClaimDecide::only_unattributed(const EspLane& ln, Window w,
                                                            std::uint32_t len, std::uint64_t skip) {
  std::optional<std::uint64_t> left;
  for (std::uint64_t i = EspLanes::lower_bound(ln.obs, w.from_ns); i < ln.obs.end_abs(); ++i) {
    const EspObs& o = ln.obs.at(i);
    if (o.ts_ns > w.to_ns) break;
    if (o.len != len || o.attributed || i == skip) continue;
    if (left) return std::nullopt;  // two or more left
    left = i;
  }
  return left;
}

std::optional<std::uint64_t> ClaimDecide::eliminate(std::size_t lane, Direction d,
                                                    const LogEntry& e) const {
  const Claim& c = e.claims[lane];
  if (c.cand < 2) return std::nullopt;  // (one candidate: the window rule decided)
  const EspLane& ln = lanes_.lane(lane, d);
  const auto want = lanes_.expected_len(lane, d, e.wire);
  if (!want) return std::nullopt;
  const auto left = only_unattributed(
      ln, window_of(setup_.cfg.taps[setup_.lane_tap[lane]], d, e.anchor_ns), *want, kNoSkip);
  if (!left || ln.obs.at(*left).claims != 1) return std::nullopt;
  return left;
}

std::optional<std::uint64_t> ClaimDecide::sole_candidate(const Log& log, std::size_t lane,
                                                         Direction d, const LogEntry& e) const {
  const Claim& c = e.claims[lane];
  const EspLane& ln = lanes_.lane(lane, d);
  if (c.incomplete || c.cand != 1 || c.cand_idx < ln.obs.begin_abs() ||
      c.cand_idx >= ln.obs.end_abs()) {
    return std::nullopt;
  }
  const EspObs& shared = ln.obs.at(c.cand_idx);
  const auto want = lanes_.expected_len(lane, d, e.wire);
  if (!want || shared.attributed || shared.claims < 2) return std::nullopt;
  const TapSpec& tap = setup_.cfg.taps[setup_.lane_tap[lane]];
  std::size_t others = 0;
  const std::uint64_t end = std::min(log.entries.end_abs(), log.claimed);
  const std::uint64_t first = log.entries.begin_abs() + 1;  // e is the log's front
  for (std::uint64_t j = first; j < end && j < first + kMaxAhead; ++j) {
    const LogEntry& x = log.entries.at(j);
    if (lanes_.expected_len(lane, d, x.wire) != want) continue;
    const Window w = window_of(tap, d, x.anchor_ns);
    if (shared.ts_ns < w.from_ns || shared.ts_ns > w.to_ns) continue;
    const Claim& xc = x.claims[lane];
    if (xc.incomplete || xc.cand != 2) return std::nullopt;
    // x's other packet: unattributed, claimed by x alone.
    const auto own = only_unattributed(ln, w, *want, c.cand_idx);
    if (!own || ln.obs.at(*own).claims != 1) return std::nullopt;
    if (++others == shared.claims - 1U) return c.cand_idx;
  }
  return std::nullopt;
}

std::int8_t ClaimDecide::decide(const Log& log, const LogEntry& e, Direction d) {
  const auto di = static_cast<std::size_t>(d);
  std::int8_t verdict = kNoEvidence;
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    const std::size_t tap = setup_.lane_tap[lane];
    EspLane& ln = lanes_.lane(lane, d);
    const Claim& c = e.claims[lane];
    auto valid = [&](std::uint64_t i) { return i >= ln.obs.begin_abs() && i < ln.obs.end_abs(); };
    std::int8_t v = kNoEvidence;
    if (!c.incomplete && c.cand == 1 && valid(c.cand_idx) && ln.obs.at(c.cand_idx).claims == 1 &&
        !ln.obs.at(c.cand_idx).attributed) {  // (attributed by order to a neighbour)
      v = setup_.tap_path[tap];
    } else if (c.incomplete || c.cand > 0) {
      v = kAmbiguous;
    }
    std::optional<std::uint64_t> match;
    if (v == setup_.tap_path[tap]) {
      match = c.cand_idx;
    } else if (!c.incomplete) {
      if ((match = eliminate(lane, d, e)) || (match = sole_candidate(log, lane, d, e))) {
        v = setup_.tap_path[tap];
        ++stats_.taps[tap].eliminated;
      } else if (const Span sp = order_span(log, lane, d, e); sp.state == SpanState::Found) {
        match = sp.idx;
        v = setup_.tap_path[tap];
        ++stats_.taps[tap].order_rescued;
      }
    }
    if (match) {
      EspObs& o = ln.obs.at(*match);
      o.attributed = true;
      ++stats_.taps[tap].matched;
      const auto& spec = setup_.cfg.taps[tap];
      const std::int64_t delay =
          d == Direction::Forward ? o.ts_ns - e.anchor_ns : e.anchor_ns - o.ts_ns;
      DelayStats& ds = stats_.taps[tap].delay[di];
      ds.min_ns = ds.count == 0 ? delay : std::min(ds.min_ns, delay);
      ds.max_ns = ds.count == 0 ? delay : std::max(ds.max_ns, delay);
      ds.sum_ns += delay;
      ++ds.count;
      if (5 * (delay - spec.lo_ns(d)) >= 4 * (spec.hi_ns(d) - spec.lo_ns(d))) ++ds.near_hi;
      if (d == Direction::Forward) ln.progress.push_back({e.anchor_ns, o.ts_ns});
      ln.has_last = true;
      ln.last = o;
      ln.npending = 0;
      ln.pending_overflow = false;
    } else if (const auto want = lanes_.expected_len(lane, d, e.wire)) {
      if (ln.npending < ln.pending.size()) {
        ln.pending[ln.npending++] = *want;
      } else {
        ln.pending_overflow = true;
      }
    }
    if (v == kAmbiguous) ++stats_.taps[tap].ambiguous;
    note_outcome(log, lane, e, d, c, v);
    if (!c.incomplete && c.any == 1 && valid(c.any_idx) && ln.obs.at(c.any_idx).any_claims == 1) {
      lanes_.learn(lane, d, e.wire, ln.obs.at(c.any_idx).len);
    }
    if (v == kNoEvidence) continue;
    verdict = verdict == kNoEvidence || verdict == v ? v : kAmbiguous;
  }
  return verdict;
}

void ClaimDecide::settle(Log& log) {
  if (log.unsorted_from == kSorted) return;
  const std::uint64_t floor = std::max({log.entries.begin_abs(), log.claimed, log.learned});
  const std::uint64_t end = log.entries.end_abs();
  // Entries before `unsorted_from` are in order: start at the first of them younger than the
  // oldest entry from there on.
  const std::uint64_t from = std::max(log.unsorted_from, floor);
  log.unsorted_from = kSorted;
  if (from >= end) return;
  std::int64_t oldest = std::numeric_limits<std::int64_t>::max();
  for (std::uint64_t i = from; i < end; ++i) oldest = std::min(oldest, log.entries.at(i).anchor_ns);
  std::uint64_t cut = from;
  while (cut > floor && log.entries.at(cut - 1).anchor_ns > oldest) --cut;
  settle_scratch_.clear();
  for (std::uint64_t i = cut; i < end; ++i) settle_scratch_.push_back(log.entries.at(i));
  std::stable_sort(settle_scratch_.begin(), settle_scratch_.end(),
                   [](const LogEntry& a, const LogEntry& b) { return a.anchor_ns < b.anchor_ns; });
  for (std::uint64_t i = cut; i < end; ++i) log.entries.at(i) = settle_scratch_[i - cut];
}

void ClaimDecide::learn_due(Direction d, std::int64_t now) {
  Log& log = logs_[index(d)];
  settle(log);
  const std::int64_t claim_delay = setup_.claim_delay(d);
  log.learned = std::max(log.learned, log.entries.begin_abs());
  while (!lanes_.empty() && log.learned < log.entries.end_abs() &&
         log.entries.at(log.learned).anchor_ns + claim_delay <= now) {
    const LogEntry& e = log.entries.at(log.learned);
    lanes_.learn_window(d, e.anchor_ns, e.wire);
    ++log.learned;
  }
}

void ClaimDecide::claim_due(Direction d, std::int64_t now, std::int64_t hold) {
  Log& log = logs_[index(d)];
  const std::int64_t claim_delay = setup_.claim_delay(d);
  log.claimed = std::max(log.claimed, log.entries.begin_abs());
  while (log.claimed < log.entries.end_abs() &&
         log.entries.at(log.claimed).anchor_ns + claim_delay + hold <= now) {
    if (!lanes_.empty()) claim(log.entries.at(log.claimed), d);
    ++log.claimed;
  }
}

bool ClaimDecide::decide_due(Direction d, std::int64_t now) const {
  const Log& log = logs_[index(d)];
  return log.entries.begin_abs() < log.claimed &&
         log.entries.front().anchor_ns + setup_.decide_delay(d) <= now;
}

std::int8_t ClaimDecide::decide_front(Direction d) {
  const Log& log = logs_[index(d)];
  return lanes_.empty() ? kNoEvidence : decide(log, log.entries.front(), d);
}

}  // namespace pathsentry::probe::attr
