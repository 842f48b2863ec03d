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

using namespace attr;  // NOLINT(google-build-using-namespace): the parts' private types

Attributor::Impl::Impl(AttributorConfig c)
    : setup(std::move(c)),
      esp(setup, stats, notes),
      logs(setup, esp, table, stats, notes),
      loss(setup, esp, stats, last_now),
      emission(setup, loss, stats) {
  stats.path_counts.assign(setup.labels.size(), {0, 0});
  stats.taps.assign(setup.cfg.taps.size(), {});
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
  logs.push(Direction::Forward, e);
}

void Attributor::Impl::on_sent(const ProbeSent& p) {
  const std::uint32_t si = table.index_of(p.session_id);
  if (si == SlotTable::kNoSession) {
    ++stats.unknown_session;
    return;
  }
  Session& s = table.sessions[si];
  Slot* sl = SlotTable::acquire(s, p.seq, stats.state_overruns);
  if (sl == nullptr) {
    ++stats.superseded_inputs;
    return;
  }
  // The slot the session's probe 8 sequences on takes was last used a whole ring ago (seconds:
  // out of the caches by now); start fetching it (64 bytes, up to two cache lines).
  const char* ahead = reinterpret_cast<const char*>(&s.slots[(p.seq + 8) & s.mask]);
  __builtin_prefetch(ahead, 1, 3);
  __builtin_prefetch(ahead + sizeof(Slot) - 1, 1, 3);
  if (sl->has(kAnnounced)) return;
  announce(si, s, *sl, p.tx_ns, p.wire_bytes);
}

void Attributor::Impl::on_record(const ProbeRecord& r) {
  const std::uint32_t si = table.index_of(r.session_id);
  if (si == SlotTable::kNoSession) {
    ++stats.unknown_session;
    return;
  }
  Session& s = table.sessions[si];
  if (r.late && r.rx_ns && SlotTable::lookup(s, r.seq) == nullptr) {
    // The sender's late answer to a probe it declared lost long ago: its slot was taken by a
    // newer probe or emptied when the table grew. Not a new probe (acquire() would make one,
    // and a second, on-time record for it), not dropped: a late record, paths unknown.
    ProbeRecord& f = forgotten.emplace_back(r);
    f.fwd_path = setup.labels[static_cast<std::size_t>(setup.unknown_id)];
    f.rev_path = f.fwd_path;
    f.loss = LossDirection::None;
    f.late = true;
    ++stats.late_forgotten;
    return;
  }
  Slot* sl = SlotTable::acquire(s, r.seq, stats.state_overruns);
  if (sl == nullptr) {
    ++stats.superseded_inputs;
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
      loss.mark_lost(si, s, *sl, std::max(last_now, r.tx_ns));
      ready.emplace_back(si, r.seq);
    }
    SlotTable::advance_lowest(s);
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
  if (sl->has_reflector) {
    ReflectorFields& rf = SlotTable::reflector_of(s, *sl);
    rf.seq = *r.reflector_seq;
    rf.rx_ns = r.reflector_rx_ns.value_or(0);
    rf.tx_ns = r.reflector_tx_ns.value_or(0);
    rf.synced = r.reflector_clock_synced;
  }
  LogEntry e;
  e.anchor_ns = *r.rx_ns;
  e.session = si;
  e.seq = r.seq;
  e.wire = s.spec.reply_wire_bytes != 0 ? s.spec.reply_wire_bytes : sl->wire;
  logs.push(Direction::Reverse, e);
  if (r.reflector_seq) loss.apply_reflector(si, s, r.seq, *r.reflector_seq, last_now, ready);
  // A forward sample seen leaving waited for this answer.
  if (sl->has(kFwdDecided) && !sl->has(kFwdSampled)) ready.emplace_back(si, r.seq);
  SlotTable::advance_lowest(s);
  if (*r.rx_ns - s.rtt_window_start > kRttWindowNs) {
    s.rtt_max_prev = *r.rx_ns - s.rtt_window_start > 2 * kRttWindowNs ? 0 : s.rtt_max_cur;
    s.rtt_max_cur = 0;
    s.rtt_window_start = *r.rx_ns;
  }
  s.rtt_max_cur = std::max(s.rtt_max_cur, r.rtt_ns);
  if (setup.cfg.reorder_grace_ns > 0 && s.lowest_unresolved < r.seq &&
      (s.overtakes.empty() || s.overtakes.back().seq < r.seq)) {
    // A reply overtaken by a later one is lost only after twice the recent RTT too: when a
    // slow path (a backlogged userspace tunnel) hands over to a fast one, the fast replies
    // overtake slow ones still on their way.
    const std::int64_t grace =
        std::max(setup.cfg.reorder_grace_ns, 2 * std::max(s.rtt_max_cur, s.rtt_max_prev));
    s.overtakes.push_back({r.seq, *r.rx_ns + grace});
  }
}

void Attributor::Impl::on_clear(std::size_t tap, const Observation& o) {
  Session* s = nullptr;
  std::uint64_t seq = o.seq;
  if (o.kind == ObsKind::Icmp) {
    s = table.find_session(o.session_id);
    if (s != nullptr && (s->spec.proto != Proto::Icmp || !(s->spec.target == o.target))) {
      s = nullptr;
    }
  } else {
    const auto it = table.by_stamp.find(StampKey{o.target, o.ssid});
    if (it != table.by_stamp.end()) s = &table.sessions[it->second];
    if (s != nullptr) seq = unwrap_nearest(static_cast<std::uint32_t>(o.seq), 32, s->max_seq);
  }
  if (s == nullptr) {
    ++stats.unknown_session;
    ++stats.taps[tap].unmatched;
    return;
  }
  Slot* sl = SlotTable::lookup(*s, seq);
  if (sl == nullptr) {
    // The capture may beat the sender's announcement: take the slot early then, but only
    // for a sequence just ahead of what was sent.
    const bool plausible = !s->any || (seq > s->max_seq && seq - s->max_seq <= kMinRing);
    sl = plausible ? SlotTable::take_early(*s, seq) : nullptr;
    if (sl == nullptr) {
      ++stats.taps[tap].unmatched;
      return;
    }
  }
  if (sl->has(kEmitted)) {
    ++stats.taps[tap].unmatched;
    ++stats.taps[tap].late;
    return;
  }
  const std::uint32_t bit = std::uint32_t{1} << setup.tap_path[tap];
  if (o.dir == Direction::Forward) {
    sl->fwd_clear |= bit;
  } else {
    sl->rev_clear |= bit;
  }
  ++stats.taps[tap].matched;
}

void Attributor::Impl::poll(std::int64_t now, Out& out) {
  last_now = std::max(last_now, now);
  for (ProbeRecord& f : forgotten) {
    out.records.push_back(std::move(f));
    ++stats.records;
    ++stats.late_records;
  }
  forgotten.clear();
  // Learning first: the learners see every window as soon as it is complete, and the claims
  // wait (learn_hold) while a transform is still being learned.
  logs.learn_due(Direction::Forward, now);
  logs.learn_due(Direction::Reverse, now);
  esp.evaluate_learners();
  const std::int64_t hold = esp.learn_hold(now);
  decide_due(Direction::Forward, now, hold, out);
  decide_due(Direction::Reverse, now, hold, out);
  if (now < std::numeric_limits<std::int64_t>::max() / 4) esp.check_silent(now);  // not in flush
  recheck(now, out);
  declare_losses(now, out);
  loss.prune_down_spans(last_now);
  esp.evict_older(now - setup.retention);  // packets no window can still claim
}

void Attributor::Impl::decide_due(Direction d, std::int64_t now, std::int64_t hold, Out& out) {
  logs.learn_due(d, now);
  logs.claim_due(d, now, hold);
  while (logs.decide_due(d, now)) {
    const LogEntry& e = logs.front(d);
    Session& s = table.sessions[e.session];
    Slot* sl = SlotTable::lookup(s, e.seq);
    if (logs.front_waits(d, now, sl)) break;
    const std::int8_t v = logs.decide_front(d);
    // A late answer re-opens an emitted probe (kEmitted cleared) for its reverse decision.
    if (sl != nullptr && !sl->has(kEmitted)) {
      if (d == Direction::Forward) {
        sl->fwd_esp = v;
        sl->flags |= kFwdDecided;
        if (!esp.empty() && evidence(sl->fwd_clear, v) == kNoEvidence && !sl->has(kReceived)) {
          // Seen nowhere: judged from the unseen queue, after every later window this pass
          // may still decide (a flush decides them all at once).
          emission.defer_unseen(e.session, *sl);
          logs.pop_front(d);
          continue;
        }
        emission.try_sample_fwd(e.session, s, *sl, now, out);
      } else if (sl->has(kReceived)) {
        sl->rev_esp = v;
        sl->flags |= kRevDecided;
      }
      emission.try_finish(e.session, s, *sl, now, out);
    }
    logs.pop_front(d);
  }
}

void Attributor::Impl::recheck(std::int64_t now, Out& out) {
  for (const auto& [si, seq] : ready) {
    Session& s = table.sessions[si];
    if (Slot* sl = SlotTable::lookup(s, seq)) {
      emission.try_sample_fwd(si, s, *sl, now, out);
      emission.try_finish(si, s, *sl, now, out);
    }
  }
  ready.clear();
  for (Ring<Recheck>* q : {&emission.unseen(), &loss.held()}) {
    while (!q->empty() && q->front().due_ns <= now) {
      const Recheck u = q->front();
      q->pop_front();
      Session& s = table.sessions[u.session];
      if (Slot* sl = SlotTable::lookup(s, u.seq)) {
        emission.try_sample_fwd(u.session, s, *sl, now, out);
        emission.try_finish(u.session, s, *sl, now, out);
      }
    }
  }
}

void Attributor::Impl::declare_losses(std::int64_t now, Out& out) {
  for (std::uint32_t si = 0; si < table.sessions.size(); ++si) {
    Session& s = table.sessions[si];
    // Early loss: a later probe was answered and this one still is not, past the grace.
    while (!s.overtakes.empty() && s.overtakes.front().due_ns <= now) {
      const std::uint64_t upto = s.overtakes.front().seq;
      s.overtakes.pop_front();
      for (std::uint64_t q = s.lowest_unresolved; q < upto && q <= s.max_seq; ++q) {
        Slot* sl = SlotTable::lookup(s, q);
        if (sl != nullptr && sl->has(kAnnounced) && !SlotTable::resolved(*sl)) {
          ++stats.early_losses;
          emission.declare_loss(si, s, *sl, now, out);
        }
      }
      SlotTable::advance_lowest(s);
    }
    // No record at all long after the sender's own timeout.
    while (s.any && s.lowest_unresolved <= s.max_seq) {
      Slot* sl = SlotTable::lookup(s, s.lowest_unresolved);
      if (sl == nullptr || !sl->has(kAnnounced) || SlotTable::resolved(*sl)) {
        SlotTable::advance_lowest(
            s);  // moves to the next announced, unresolved probe (or past the end)
        continue;
      }
      if (sl->anchor_ns + s.spec.timeout_ns + setup.cfg.record_grace_ns > now) break;
      ++stats.no_record;
      emission.declare_loss(si, s, *sl, now, out);
      SlotTable::advance_lowest(s);
    }
  }
}

Attributor::Attributor(AttributorConfig config)
    : impl_(std::make_unique<Impl>(std::move(config))) {}
Attributor::~Attributor() = default;

void Attributor::add_session(const SessionSpec& spec) {
  Impl& m = *impl_;
  const std::string key = "session " + std::to_string(spec.session_id);
  if (m.table.by_id.count(spec.session_id) != 0) {
    throw ConfigError("", key, std::to_string(spec.session_id), "duplicate session id");
  }
  const auto idx = static_cast<std::uint32_t>(m.table.sessions.size());
  if (spec.proto == Proto::Stamp) {
    const auto ssid = spec.stamp_ssid != 0 ? spec.stamp_ssid
                                           : static_cast<std::uint16_t>(spec.session_id & 0xFFFF);
    const StampKey k{spec.target, ssid};
    if (m.table.by_stamp.count(k) != 0) {
      throw ConfigError("", key, spec.target.to_string(),
                        "another STAMP session to this target has the same SSID");
    }
    m.table.by_stamp.emplace(k, idx);
  }
  m.table.add_id(spec.session_id, idx);
  Session s;
  s.spec = spec;
  s.target_text = spec.target.to_string();
  s.slots.resize(ring_size_for(spec));
  s.mask = s.slots.size() - 1;
  m.table.sessions.push_back(std::move(s));
}

void Attributor::on_sent(const ProbeSent& p) {
  impl_->on_sent(p);
}

void Attributor::on_record(const ProbeRecord& record) {
  impl_->on_record(record);
}

void Attributor::on_observation(std::size_t tap, const Observation& obs) {
  Impl& m = *impl_;
  if (tap >= m.setup.cfg.taps.size()) return;
  if (obs.kind == ObsKind::Esp) {
    if (m.setup.tap_lane[tap] >= 0) m.esp.add_esp(tap, obs, m.last_now);
    return;
  }
  if (m.setup.tap_lane[tap] < 0) m.on_clear(tap, obs);
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
  impl_->loss.tap_down(tap, from_ns);
}

void Attributor::tap_up(std::size_t tap, std::int64_t at_ns) {
  impl_->loss.tap_up(tap, at_ns);
}

bool Attributor::any_tap_down(std::int64_t from_ns, std::int64_t to_ns) const {
  return impl_->loss.any_tap_down(from_ns, to_ns);
}

const std::vector<std::string>& Attributor::path_labels() const {
  return impl_->setup.labels;
}

const AttributorStats& Attributor::stats() const {
  return impl_->stats;
}

std::optional<std::array<std::uint64_t, 3>> Attributor::session_losses(
    std::uint32_t session_id) const {
  const auto it = impl_->table.by_id.find(session_id);
  if (it == impl_->table.by_id.end()) return std::nullopt;
  return impl_->table.sessions[it->second].losses;
}

std::optional<std::uint32_t> Attributor::learned_length(std::size_t tap, Direction dir,
                                                        std::uint32_t wire_bytes) const {
  const Impl& m = *impl_;
  if (tap >= m.setup.tap_lane.size() || m.setup.tap_lane[tap] < 0) return std::nullopt;
  const auto& ln = m.esp.lane(static_cast<std::size_t>(m.setup.tap_lane[tap]), dir);
  if (ln.learner.model()) return ln.learner.model()->transform.esp_length(wire_bytes);
  for (const auto& l : ln.learned) {
    if (l.wire == wire_bytes && l.learned) return l.len;
  }
  return std::nullopt;
}

}  // namespace pathsentry::probe
