// Attribution: joins probes (announced by the sender, completed by its records) with tap
// observations. docs/attribution.md describes the rules; the comments here say why the
// bookkeeping looks the way it does.
//
// Timeline of one probe p (CLOCK_REALTIME):
//   tx ─ forward window [tx+lo, tx+hi] ─ claim (tx+hi+settle) ─ decide fwd (tx+2hi-lo+settle)
//   rx ─ reverse window [rx-hi, rx-lo] ─ claim (rx-lo+settle) ─ decide rev (rx+hi-2lo+settle)
// "Claim": p counts every ESP packet of its expected length in its window, and each such packet
// counts p. "Decide": by then every probe whose window can hold one of p's candidates has claimed
// too, so "p has one candidate and that candidate has one claimant" is final.

#include "pathsentry/probe/attribution/attributor.h"

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "attributor_impl.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/common/ring.h"
#include "pathsentry/probe/wire/seq.h"

namespace pathsentry::probe {

Attributor::Impl::Impl(AttributorConfig c) : cfg(std::move(c)) {
  for (std::size_t t = 0; t < cfg.taps.size(); ++t) {
    const auto& tap = cfg.taps[t];
    const std::string key = "taps[" + std::to_string(t) + "]";
    if (tap.path.empty() || tap.path == kPathNone || tap.path == kPathUnknown) {
      throw ConfigError("", key + ".path", tap.path,
                        "a tap needs a path label other than 'none'/'unknown'");
    }
    auto it = std::find(labels.begin(), labels.end(), tap.path);
    if (it == labels.end()) {
      if (labels.size() == kMaxPaths)
        throw ConfigError("", key + ".path", tap.path, "too many paths");
      labels.push_back(tap.path);
      it = labels.end() - 1;
    }
    tap_path.push_back(static_cast<std::int8_t>(it - labels.begin()));
    if (tap.encap == Encap::Esp) {
      if (lane_tap.size() == kMaxEspTaps) {
        throw ConfigError("", key, tap.interface, "at most 4 ESP taps are supported");
      }
      if (tap.local_endpoint == tap.remote_endpoint) {
        throw ConfigError("", key + ".remote_endpoint", tap.remote_endpoint.to_string(),
                          "ESP taps need two different tunnel endpoints");
      }
      if (tap.window_hi_ns <= tap.window_lo_ns ||
          tap.hi_ns(Direction::Reverse) <= tap.lo_ns(Direction::Reverse)) {
        throw ConfigError("", key + ".window", std::to_string(tap.window_hi_ns),
                          "a window's hi must exceed its lo");
      }
      tap_lane.push_back(static_cast<int>(lane_tap.size()));
      lane_tap.push_back(t);
    } else {
      tap_lane.push_back(-1);
    }
  }
  if (cfg.settle_ns < 0 || cfg.reorder_grace_ns < 0 || cfg.record_grace_ns < 0 ||
      cfg.esp_late_horizon_ns < 0 || cfg.stamp_evidence_wait_ns < 0) {
    throw ConfigError("", "attribution", "", "settle/grace times must not be negative");
  }
  unknown_id = static_cast<std::int8_t>(labels.size());
  none_id = static_cast<std::int8_t>(labels.size() + 1);
  labels.emplace_back(kPathUnknown);
  labels.emplace_back(kPathNone);
  lanes.resize(lane_tap.size());
  std::int64_t fc = 0, fd = 0, rc = 0, rd = 0, span = 0;
  for (std::size_t t : lane_tap) {
    const auto& tap = cfg.taps[t];
    const std::int64_t flo = tap.lo_ns(Direction::Forward);
    const std::int64_t fhi = tap.hi_ns(Direction::Forward);
    const std::int64_t rlo = tap.lo_ns(Direction::Reverse);
    const std::int64_t rhi = tap.hi_ns(Direction::Reverse);
    fc = std::max(fc, fhi);
    fd = std::max(fd, 2 * fhi - flo);
    rc = std::max(rc, -rlo);
    rd = std::max(rd, rhi - 2 * rlo);
    span = std::max({span, 2 * (fhi - flo), 2 * (rhi - rlo)});
  }
  fwd_claim_delay = fc + cfg.settle_ns;
  fwd_decide_delay = std::max(fd, fc) + cfg.settle_ns;
  rev_claim_delay = rc + cfg.settle_ns;
  rev_decide_delay = std::max(rd, rc) + cfg.settle_ns;
  // A forward "none" waits until every probe whose window can hold a packet of its late
  // horizon has been decided (that packet is then explained, or not).
  fwd_none_delay =
      std::max(cfg.fwd_unseen_wait_ns,
               lanes.empty() ? 0 : fwd_decide_delay + span / 2 + cfg.esp_late_horizon_ns);
  retention = std::max(span + cfg.settle_ns, fwd_none_delay) + kRetentionMarginNs;
  bool learning = false;
  for (std::size_t t : lane_tap) learning = learning || !cfg.taps[t].transform;
  if (learning) retention += std::max<std::int64_t>(cfg.learn_hold_ns, 0);
  silent.resize(lanes.size());
  if (const char* x = std::getenv("PATHSENTRY_EXPLAIN_UNKNOWN")) explain = x[0] == '1';
  stats.path_counts.assign(labels.size(), {0, 0});
  stats.taps.assign(cfg.taps.size(), {});
  down_spans.resize(cfg.taps.size());
}

void Attributor::Impl::announce(std::uint32_t si, Session& s, Slot& sl, std::int64_t tx,
                                std::uint32_t wire) {
  sl.flags |= kAnnounced;
  sl.anchor_ns = tx;
  sl.tx_ns = tx;
  sl.wire = wire != 0 ? wire : s.spec.wire_bytes;
  if (!s.any) {
    s.any = true;
    s.max_seq = sl.seq;
    s.lowest_unresolved = sl.seq;
  } else if (sl.seq > s.max_seq) {
    s.max_seq = sl.seq;
  } else if (sl.seq < s.lowest_unresolved) {
    s.lowest_unresolved = sl.seq;
  }
  LogEntry e;
  e.anchor_ns = tx;
  e.session = si;
  e.seq = sl.seq;
  e.wire = sl.wire;
  sent_log.push_back(e);
}

void Attributor::Impl::on_record(const ProbeRecord& r) {
  const auto it = by_id.find(r.session_id);
  if (it == by_id.end()) {
    ++stats.unknown_session;
    return;
  }
  const std::uint32_t si = it->second;
  Session& s = sessions[si];
  Slot* sl = acquire(s, r.seq, stats.state_overruns);
  if (sl == nullptr) {
    ++stats.state_overruns;
    return;
  }
  if (!sl->has(kAnnounced)) {
    ++stats.unannounced;
    announce(si, s, *sl, r.tx_ns, 0);
  }
  sl->tx_ns = r.tx_ns;
  sl->tx_kernel = r.tx_kernel_ts;
  if (!r.rx_ns) {
    sl->flags |= kHaveRecord;
    if (!sl->has(kReceived) && !sl->has(kLoss)) {
      mark_lost(si, s, *sl, std::max(last_now, r.tx_ns));
      ready.emplace_back(si, r.seq);
    }
    advance_lowest(s);
    return;
  }
  if (sl->has(kReceived)) return;  // duplicate report
  const bool was_emitted = sl->has(kEmitted);
  sl->flags = static_cast<std::uint16_t>((sl->flags | kHaveRecord | kReceived) & ~kLoss);
  if (was_emitted) {
    sl->flags = static_cast<std::uint16_t>((sl->flags | kLate) & ~kEmitted);
  }
  sl->rx_ns = *r.rx_ns;
  sl->rtt_ns = r.rtt_ns;
  sl->has_reflector = r.reflector_seq.has_value();
  sl->reflector_seq = r.reflector_seq.value_or(0);
  sl->reflector_rx_ns = r.reflector_rx_ns.value_or(0);
  sl->reflector_tx_ns = r.reflector_tx_ns.value_or(0);
  sl->reflector_synced = r.reflector_clock_synced;
  LogEntry e;
  e.anchor_ns = *r.rx_ns;
  e.session = si;
  e.seq = r.seq;
  e.wire = s.spec.reply_wire_bytes != 0 ? s.spec.reply_wire_bytes : sl->wire;
  recv_log.push_back(e);
  if (r.reflector_seq) apply_reflector(si, s, r.seq, *r.reflector_seq);
  // A forward sample seen leaving waited for this answer.
  if (sl->has(kFwdDecided) && !sl->has(kFwdSampled)) ready.emplace_back(si, r.seq);
  advance_lowest(s);
  if (*r.rx_ns - s.rtt_window_start > kRttWindowNs) {
    s.rtt_max_prev = *r.rx_ns - s.rtt_window_start > 2 * kRttWindowNs ? 0 : s.rtt_max_cur;
    s.rtt_max_cur = 0;
    s.rtt_window_start = *r.rx_ns;
  }
  s.rtt_max_cur = std::max(s.rtt_max_cur, r.rtt_ns);
  if (cfg.reorder_grace_ns > 0 && s.lowest_unresolved < r.seq &&
      (s.overtakes.empty() || s.overtakes.back().seq < r.seq)) {
    // A reply overtaken by a later one is lost only after twice the recent RTT too: when a
    // slow path (a backlogged userspace tunnel) hands over to a fast one, the fast replies
    // overtake slow ones still on their way.
    const std::int64_t grace =
        std::max(cfg.reorder_grace_ns, 2 * std::max(s.rtt_max_cur, s.rtt_max_prev));
    s.overtakes.push_back({r.seq, *r.rx_ns + grace});
  }
}

void Attributor::Impl::on_clear(std::size_t tap, const Observation& o) {
  Session* s = nullptr;
  std::uint64_t seq = o.seq;
  if (o.kind == ObsKind::Icmp) {
    s = find_session(o.session_id);
    if (s != nullptr && (s->spec.proto != Proto::Icmp || !(s->spec.target == o.target))) {
      s = nullptr;
    }
  } else {
    const auto it = by_stamp.find(StampKey{o.target, o.ssid});
    if (it != by_stamp.end()) s = &sessions[it->second];
    if (s != nullptr) seq = unwrap_nearest(static_cast<std::uint32_t>(o.seq), 32, s->max_seq);
  }
  if (s == nullptr) {
    ++stats.unknown_session;
    ++stats.taps[tap].unmatched;
    return;
  }
  Slot* sl = lookup(*s, seq);
  if (sl == nullptr) {
    // The capture may beat the sender's announcement: take the slot early then, but only
    // for a sequence just ahead of what was sent and a slot no unfinished probe holds.
    Slot& cand = s->slots[seq & s->mask];
    const bool plausible = !s->any || (seq > s->max_seq && seq - s->max_seq <= kMinRing);
    const bool free =
        cand.seq == kNoSeq ||
        (cand.seq < seq && (cand.has(kEmitted) || !cand.has(kAnnounced | kHaveRecord)));
    if (!plausible || !free) {
      ++stats.taps[tap].unmatched;
      return;
    }
    cand = Slot{};
    cand.seq = seq;
    sl = &cand;
  }
  if (sl->has(kEmitted)) {
    ++stats.taps[tap].unmatched;
    ++stats.taps[tap].late;
    return;
  }
  const std::uint32_t bit = std::uint32_t{1} << tap_path[tap];
  if (o.dir == Direction::Forward) {
    sl->fwd_clear |= bit;
  } else {
    sl->rev_clear |= bit;
  }
  ++stats.taps[tap].matched;
}

void Attributor::Impl::poll(std::int64_t now, Out& out) {
  last_now = std::max(last_now, now);
  // Learning first: the learners see every window as soon as it is complete, and the claims
  // wait (learn_hold) while a transform is still being learned.
  process_log(sent_log, sent_claimed, sent_learned, Direction::Forward, now, 0, out,
              /*learn_only=*/true);
  process_log(recv_log, recv_claimed, recv_learned, Direction::Reverse, now, 0, out, true);
  evaluate_learners();
  const std::int64_t hold = learn_hold(now);
  process_log(sent_log, sent_claimed, sent_learned, Direction::Forward, now, hold, out);
  process_log(recv_log, recv_claimed, recv_learned, Direction::Reverse, now, hold, out);
  if (now < std::numeric_limits<std::int64_t>::max() / 4) check_silent(now);  // not in flush
  for (const auto& [si, seq] : ready) {
    Session& s = sessions[si];
    if (Slot* sl = lookup(s, seq)) {
      try_sample_fwd(si, s, *sl, now, out);
      try_finish(s, *sl, now, out);
    }
  }
  ready.clear();
  for (Ring<Unseen>* q : {&unseen, &held}) {
    while (!q->empty() && q->front().due_ns <= now) {
      const Unseen u = q->front();
      q->pop_front();
      if (Slot* sl = lookup(sessions[u.session], u.seq)) {
        try_sample_fwd(u.session, sessions[u.session], *sl, now, out);
        try_finish(sessions[u.session], *sl, now, out);
      }
    }
  }
  for (std::uint32_t si = 0; si < sessions.size(); ++si) {
    Session& s = sessions[si];
    // Early loss: a later probe was answered and this one still is not, past the grace.
    while (!s.overtakes.empty() && s.overtakes.front().due_ns <= now) {
      const std::uint64_t upto = s.overtakes.front().seq;
      s.overtakes.pop_front();
      for (std::uint64_t q = s.lowest_unresolved; q < upto && q <= s.max_seq; ++q) {
        Slot* sl = lookup(s, q);
        if (sl != nullptr && sl->has(kAnnounced) && !resolved(*sl)) {
          ++stats.early_losses;
          declare_loss(si, s, *sl, now, out);
        }
      }
      advance_lowest(s);
    }
    // No record at all long after the sender's own timeout.
    while (s.any && s.lowest_unresolved <= s.max_seq) {
      Slot* sl = lookup(s, s.lowest_unresolved);
      if (sl == nullptr || !sl->has(kAnnounced) || resolved(*sl)) {
        advance_lowest(s);  // moves to the next announced, unresolved probe (or past the end)
        continue;
      }
      if (sl->anchor_ns + s.spec.timeout_ns + cfg.record_grace_ns > now) break;
      ++stats.no_record;
      declare_loss(si, s, *sl, now, out);
      advance_lowest(s);
    }
  }
  prune_down_spans();
  // Observations no window can still claim.
  for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
    for (auto& ln : lanes[lane]) {
      while (!ln.obs.empty() && ln.obs.front().ts_ns < now - retention) {
        evict_front(lane_tap[lane], ln, false);
      }
    }
  }
}

Attributor::Attributor(AttributorConfig config)
    : impl_(std::make_unique<Impl>(std::move(config))) {}
Attributor::~Attributor() = default;

void Attributor::add_session(const SessionSpec& spec) {
  Impl& m = *impl_;
  const std::string key = "session " + std::to_string(spec.session_id);
  if (m.by_id.count(spec.session_id) != 0) {
    throw ConfigError("", key, std::to_string(spec.session_id), "duplicate session id");
  }
  const auto idx = static_cast<std::uint32_t>(m.sessions.size());
  if (spec.proto == Proto::Stamp) {
    const StampKey k{spec.target, static_cast<std::uint16_t>(spec.session_id & 0xFFFF)};
    if (m.by_stamp.count(k) != 0) {
      throw ConfigError("", key, spec.target.to_string(),
                        "another STAMP session to this target has the same SSID (low 16 bits)");
    }
    m.by_stamp.emplace(k, idx);
  }
  m.by_id.emplace(spec.session_id, idx);
  Session s;
  s.spec = spec;
  s.target_text = spec.target.to_string();
  s.slots.resize(ring_size_for(spec, m.cfg.record_grace_ns));
  s.mask = s.slots.size() - 1;
  m.sessions.push_back(std::move(s));
}

void Attributor::on_sent(const ProbeSent& p) {
  Impl& m = *impl_;
  const auto it = m.by_id.find(p.session_id);
  if (it == m.by_id.end()) {
    ++m.stats.unknown_session;
    return;
  }
  Session& s = m.sessions[it->second];
  Slot* sl = m.acquire(s, p.seq, m.stats.state_overruns);
  if (sl == nullptr) {
    ++m.stats.state_overruns;
    return;
  }
  if (sl->has(kAnnounced)) return;
  m.announce(it->second, s, *sl, p.tx_ns, p.wire_bytes);
}

void Attributor::on_record(const ProbeRecord& record) {
  impl_->on_record(record);
}

void Attributor::on_observation(std::size_t tap, const Observation& obs) {
  Impl& m = *impl_;
  if (tap >= m.cfg.taps.size()) return;
  if (obs.kind == ObsKind::Esp) {
    if (m.tap_lane[tap] >= 0) m.add_esp(tap, obs);
    return;
  }
  if (m.tap_lane[tap] < 0) m.on_clear(tap, obs);
}

void Attributor::take_notes(std::vector<std::string>& out) {
  out.insert(out.end(), impl_->notes.begin(), impl_->notes.end());
  impl_->notes.clear();
}

void Attributor::poll(std::int64_t now_ns, std::vector<ProbeRecord>& records,
                      std::vector<PathSample>* samples) {
  Out out{records, samples};
  impl_->poll(now_ns, out);
}

void Attributor::flush(std::vector<ProbeRecord>& records, std::vector<PathSample>* samples) {
  Out out{records, samples};
  impl_->poll(std::numeric_limits<std::int64_t>::max() / 2, out);
}

void Attributor::tap_down(std::size_t tap, std::int64_t from_ns) {
  Impl& m = *impl_;
  if (tap >= m.down_spans.size()) return;
  auto& spans = m.down_spans[tap];
  if (!spans.empty() && spans.back().to_ns == Impl::kOpen) return;
  spans.push_back({from_ns, Impl::kOpen});
}

void Attributor::tap_up(std::size_t tap, std::int64_t at_ns) {
  Impl& m = *impl_;
  if (tap >= m.down_spans.size()) return;
  auto& spans = m.down_spans[tap];
  if (spans.empty() || spans.back().to_ns != Impl::kOpen) return;
  spans.back().to_ns = std::max(at_ns, spans.back().from_ns);
}

bool Attributor::any_tap_down(std::int64_t from_ns, std::int64_t to_ns) const {
  for (std::size_t t = 0; t < impl_->down_spans.size(); ++t) {
    if (impl_->tap_down_during(t, from_ns, to_ns)) return true;
  }
  return false;
}

const std::vector<std::string>& Attributor::path_labels() const {
  return impl_->labels;
}

const AttributorStats& Attributor::stats() const {
  return impl_->stats;
}

std::optional<std::array<std::uint64_t, 3>> Attributor::session_losses(
    std::uint32_t session_id) const {
  const auto it = impl_->by_id.find(session_id);
  if (it == impl_->by_id.end()) return std::nullopt;
  return impl_->sessions[it->second].losses;
}

std::optional<std::uint32_t> Attributor::learned_length(std::size_t tap, Direction dir,
                                                        std::uint32_t wire_bytes) const {
  if (tap >= impl_->tap_lane.size() || impl_->tap_lane[tap] < 0) return std::nullopt;
  const auto& ln =
      impl_->lanes[static_cast<std::size_t>(impl_->tap_lane[tap])][static_cast<std::size_t>(dir)];
  if (ln.learner.model()) return ln.learner.model()->transform.esp_length(wire_bytes);
  for (const auto& l : ln.learned) {
    if (l.wire == wire_bytes && l.learned) return l.len;
  }
  return std::nullopt;
}

}  // namespace pathsentry::probe
