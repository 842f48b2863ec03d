#include "pathsentry/probe/attribution/detector.h"

#include <algorithm>
#include <bit>
#include <deque>
#include <limits>
#include <unordered_map>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/ring.h"

namespace pathsentry::probe {
namespace {

constexpr std::int16_t kNone = -2;     // lost in this direction
constexpr std::int16_t kUnknown = -3;  // through, path not attributable
constexpr std::int16_t kNoPath = -1;   // no confirmed path (yet)
constexpr std::int16_t kMaybe = -4;    // unknown whether it got through: no evidence at all
constexpr std::int16_t kUndet = -5;    // lost, direction undetermined (counts in both)
constexpr std::int16_t kNotApp = -6;   // reverse of a forward loss: no reply was ever sent

/// A sample code that says the probe got through this way (on a path label or "unknown").
constexpr bool is_through(std::int16_t code) {
  return code >= 0 || code == kUnknown;
}

struct Entry {
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;
  std::int64_t arrived_ns = 0;  // when the detector got it (for the reorder hold)
  std::int16_t path = kUnknown;
  bool valid = false;
};

/// A direction's state right after one probe, for judging asymmetry probe by probe.
struct Snap {
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;
  std::int16_t current = kNoPath;
  bool settled = true;  // this probe was on the confirmed path, no new path in sight
  bool outage = false;
};

/// A sample processed in order since the direction's last probe through that was not through
/// (a loss, a maybe-lost, a not-applicable), kept so that a late answer can revise it.
struct Pending {
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;
  std::int16_t path = kNone;       // its code when processed
  std::int16_t revised = kNoPath;  // kNoPath, or the code of the late answer's path
  [[nodiscard]] bool loss() const {
    return revised == kNoPath && (path == kNone || path == kUndet);
  }
  [[nodiscard]] bool through() const { return revised != kNoPath; }
};

/// At most this many Pending per direction (the newest): a late answer revises a probe at most
/// a few timeouts old, at the end of an outage.
constexpr std::size_t kMaxPending = 1 << 16;

/// Processed snaps not yet paired with the other direction (no allocation in steady state).
using SnapQueue = Ring<Snap, 64>;

struct DirState {
  SnapQueue snaps;  // processed, not yet paired with the other direction
  // Sequence ordering of this direction's samples.
  bool started = false;
  std::uint64_t next = 0;
  std::vector<Entry> ring;
  std::size_t held = 0;
  // The path state machine.
  std::int16_t current = kNoPath;
  std::int16_t home = kNoPath;  // the first path established: a switch back to it is a failback
  bool has_ok = false;
  std::int64_t last_ok_tx = 0;
  // Probes through this way on any path ("unknown" included): the outage of a switchover is
  // the longest time nothing got through between the last probe on the old path and the
  // first on the new one, not the time without attributed probes.
  bool has_through = false;
  std::int64_t last_through_tx = 0;
  std::int64_t max_gap_since_ok = 0;  // longest gap between probes through since last_ok_tx
  std::int64_t max_gap_res = 0;       // its resolution (probe spacing at its ends)
  std::int64_t gap_before_cand = 0;   // max_gap_since_ok up to the candidate's first probe
  std::int64_t res_before_cand = 0;
  // Resolution: the first sample after the last probe through, and the last sample processed.
  bool has_after = false;
  std::int64_t after_through_tx = 0;
  bool has_sample = false;
  std::int64_t last_sample_tx = 0;
  std::int16_t cand = kNoPath;
  std::uint32_t cand_run = 0;
  std::int64_t cand_first_tx = 0;
  std::uint64_t lost_before_cand = 0;  // proven losses
  std::uint64_t und_before_cand = 0;   // losses of undetermined direction
  std::uint64_t lost_since_ok = 0;
  std::uint64_t und_since_ok = 0;
  std::uint32_t loss_run = 0;  // consecutive losses, undetermined ones included
  std::uint32_t run_proven = 0;
  bool outage = false;
  // Samples since the last probe through, in sequence order (newest kMaxPending), and how many
  // of them a late answer revised to through.
  std::deque<Pending> pending;
  std::size_t revised = 0;
  // Until then a sample not through waits up to late_hold_ns for a late answer (0: never yet).
  std::int64_t late_seen_until = 0;
};

struct Stream {
  std::string target;
  Proto proto = Proto::Icmp;
  std::uint32_t session_id = 0;
  DirState dir[2];
  bool asym = false;
  std::int64_t asym_since_tx = 0;
};

}  // namespace

struct Detector::Impl {
  DetectorConfig cfg;
  std::vector<std::string> labels;  // interned path labels
  // The attributor's path ids → codes (kNoCode: not seen yet). Ids and labels are fixed for an
  // attributor's life; one detector serves one attributor.
  static constexpr std::int16_t kNoCode = std::numeric_limits<std::int16_t>::min();
  std::vector<std::int16_t> by_path_id;
  std::unordered_map<std::uint32_t, Stream> streams;
  DetectorStats stats;

  std::int16_t intern(std::string_view p) {
    if (p == kPathNone) return kNone;
    if (p == kPathUnknown || p.empty()) return kUnknown;
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] == p) return static_cast<std::int16_t>(i);
    }
    if (labels.size() >= 1000) return kUnknown;  // path labels come from a handful of taps
    labels.emplace_back(p);
    return static_cast<std::int16_t>(labels.size() - 1);
  }

  [[nodiscard]] std::string label(std::int16_t id) const {
    if (id >= 0) return labels[static_cast<std::size_t>(id)];
    if (id == kUnknown || id == kMaybe || id == kUndet || id == kNotApp) return kPathUnknown;
    return kPathNone;
  }

  PathEvent& event(Stream& s, EventType type, Direction d, std::uint64_t seq, std::int64_t tx,
                   std::int64_t now, std::vector<PathEvent>& out) {
    PathEvent& e = out.emplace_back();
    e.type = type;
    e.target = s.target;
    e.proto = s.proto;
    e.session_id = s.session_id;
    e.direction = d;
    e.ts_ns = tx;
    e.seq = seq;
    e.detected_ns = now;
    ++stats.events;
    return e;
  }

  static OutageKind kind(std::uint64_t proven, std::uint64_t undetermined) {
    if (proven > 0) return OutageKind::Measured;
    return undetermined > 0 ? OutageKind::Undetermined : OutageKind::Bound;
  }

  /// A probe through at `tx`: the gap since the last one and
  /// its resolution, the larger probe spacing at its two ends.
  static std::pair<std::int64_t, std::int64_t> gap_to(const DirState& s, std::int64_t tx) {
    if (!s.has_through) return {0, 0};
    const std::int64_t after = s.has_after ? s.after_through_tx : tx;
    const std::int64_t before = s.has_sample ? s.last_sample_tx : s.last_through_tx;
    return {tx - s.last_through_tx, std::max(after - s.last_through_tx, tx - before)};
  }

  /// Marks `tx` as the latest probe through for the gap measure.
  static void through_at(DirState& s, std::int64_t tx, std::int64_t gap, std::int64_t res) {
    s.has_through = true;
    s.last_through_tx = tx;
    s.has_after = false;
    if (gap > s.max_gap_since_ok) {
      s.max_gap_since_ok = gap;
      s.max_gap_res = res;
    }
  }

  void step(Stream& st, Direction d, std::int16_t v, std::uint64_t seq, std::int64_t tx,
            std::int64_t now, std::vector<PathEvent>& out) {
    DirState& s = st.dir[static_cast<std::size_t>(d)];
    // MaybeLost: neither lost nor through. NotApplicable: no reply was sent (the request was
    // lost forward), so the return path was not exercised: not a loss, not a probe through,
    // and not a checkpoint either — a reverse figure over a forward black hole says "no loss
    // seen, at most" the whole gap between the replies around it, never less.
    if (!is_through(v)) {
      if (s.pending.size() >= kMaxPending) {
        if (s.pending.front().through()) --s.revised;
        s.pending.pop_front();
      }
      s.pending.push_back(Pending{seq, tx, v});
    }
    if (v == kMaybe || v == kNotApp) return;
    if (s.has_through && !s.has_after) {
      s.has_after = true;
      s.after_through_tx = tx;
    }
    step_sample(st, s, d, v, seq, tx, now, out);
    s.has_sample = true;
    s.last_sample_tx = tx;
  }

  void step_sample(Stream& st, DirState& s, Direction d, std::int16_t v, std::uint64_t seq,
                   std::int64_t tx, std::int64_t now, std::vector<PathEvent>& out) {
    if (v == kNone || v == kUndet) {
      ++s.loss_run;
      if (v == kNone) {
        ++s.lost_since_ok;
        ++s.run_proven;
      } else {
        ++s.und_since_ok;
      }
      if (!s.outage && s.loss_run >= cfg.outage_losses) {
        s.outage = true;
        // A candidate path seen before the outage is not evidence of where traffic goes after
        // it: after the outage the new path is confirmed afresh (and its outage spans this one).
        s.cand = kNoPath;
        s.cand_run = 0;
        PathEvent& e = event(st, EventType::OutageBegin, d, seq, tx, now, out);
        e.from = label(s.current);
        e.to = kPathNone;
        e.last_ok_on_old_ns = s.has_ok ? s.last_ok_tx : 0;
        e.probes_lost = s.run_proven;
        e.probes_lost_undetermined = s.loss_run - s.run_proven;
        e.outage_kind = kind(e.probes_lost, e.probes_lost_undetermined);
        e.resolution_ns = s.has_through ? s.after_through_tx - s.last_through_tx : 0;
      }
      return;
    }
    // The probe got through this way (on a known path or not).
    s.loss_run = 0;
    s.run_proven = 0;
    auto [gap, res] = gap_to(s, tx);
    // Late answers may have shown that probes counted lost got through: the outage ended at
    // the first of them after the last loss not revised (revised_gap).
    Pending first{seq, tx, kNone, v};
    if (s.revised > 0) {
      const std::int64_t plain = gap;
      revised_gap(s, first, gap, res);
      if (gap != plain || first.seq != seq) ++stats.revised_gaps;
    }
    s.pending.clear();
    s.revised = 0;
    if (s.outage) {
      s.outage = false;
      PathEvent& e = event(st, EventType::OutageEnd, d, first.seq, first.tx_ns, now, out);
      e.from = kPathNone;
      e.to = label(first.revised);
      e.last_ok_on_old_ns = s.has_ok ? s.last_ok_tx : 0;
      e.first_ok_on_new_ns = first.tx_ns;
      e.outage_ns = gap;  // since the last probe through, whatever its label
      e.resolution_ns = res;
      e.probes_lost = s.lost_since_ok;
      e.probes_lost_undetermined = s.und_since_ok;
      e.outage_kind = kind(e.probes_lost, e.probes_lost_undetermined);
    }
    through_at(s, tx, gap, res);
    if (v == kUnknown) return;  // neither confirms nor breaks a path
    if (v == s.current) {
      s.has_ok = true;
      s.last_ok_tx = tx;
      reset_since_ok(s);
      return;
    }
    if (v == s.cand) {
      ++s.cand_run;
    } else {
      s.cand = v;
      s.cand_run = 1;
      s.cand_first_tx = tx;
      s.lost_before_cand = s.lost_since_ok;
      s.und_before_cand = s.und_since_ok;
      s.gap_before_cand = s.max_gap_since_ok;
      s.res_before_cand = s.max_gap_res;
    }
    if (s.cand_run < cfg.confirm_probes) return;
    if (s.current != kNoPath) {
      PathEvent& e = event(st, EventType::Switchover, d, seq, tx, now, out);
      e.from = label(s.current);
      e.to = label(v);
      e.last_ok_on_old_ns = s.has_ok ? s.last_ok_tx : 0;
      e.first_ok_on_new_ns = s.cand_first_tx;
      e.outage_ns = s.has_ok ? s.gap_before_cand : 0;
      e.resolution_ns = s.has_ok ? s.res_before_cand : 0;
      e.probes_lost = s.lost_before_cand;
      e.probes_lost_undetermined = s.und_before_cand;
      e.outage_kind = kind(e.probes_lost, e.probes_lost_undetermined);
      e.failback = v == s.home;
    } else if (s.home == kNoPath) {
      s.home = v;
    }
    s.current = v;
    s.has_ok = true;
    s.last_ok_tx = tx;
    reset_since_ok(s);
  }

  /// The gap and resolution an in-order probe through at `end` (seq, tx, revised = its code)
  /// ends, given the late answers that revised pending samples: the gap ends at the first
  /// probe through after the last loss not revised (a revised one, else `end`, which is then
  /// updated to it). Its start stays the last probe through in order: a revised probe before
  /// losses that are not revised (yet) does not move it, since those may be answered late too
  /// (then the gap before the revised probe was the outage, not the one after it), so the
  /// figure only ever moves towards what a later answer would show.
  void revised_gap(const DirState& s, Pending& end, std::int64_t& gap, std::int64_t& res) {
    const std::deque<Pending>& p = s.pending;
    std::size_t last_loss = p.size();  // the last loss not revised
    for (std::size_t i = p.size(); i-- > 0;) {
      if (p[i].loss()) {
        last_loss = i;
        break;
      }
    }
    for (std::size_t j = last_loss == p.size() ? 0 : last_loss + 1; j < p.size(); ++j) {
      if (p[j].through()) {
        end = p[j];
        break;
      }
    }
    if (!s.has_through) {
      gap = res = 0;
      return;
    }
    if (last_loss == p.size()) {  // every loss was answered late: no gap beyond the spacing
      gap = res = end.tx_ns - s.last_through_tx;
      return;
    }
    const std::int64_t after = s.has_after ? s.after_through_tx : p[last_loss].tx_ns;
    gap = end.tx_ns - s.last_through_tx;
    res = std::max(after - s.last_through_tx, end.tx_ns - p[last_loss].tx_ns);
  }

  /// A late answer for a probe this direction already processed as not through: revises its
  /// pending sample (the loss counts drop, the current run of losses is recounted). A sample
  /// still held for reordering takes the new code instead. Anything else is late.
  void revise(Stream& st, const PathSample& smp, std::int16_t code, std::int64_t now,
              std::vector<PathEvent>& out) {
    DirState& ds = st.dir[static_cast<std::size_t>(smp.dir)];
    ds.late_seen_until = now + cfg.late_hold_for_ns;
    if (!is_through(code)) {  // nothing to revise with
      ++stats.late;
      return;
    }
    if (ds.started && smp.seq >= ds.next) {
      Entry& e = ds.ring[smp.seq & (ds.ring.size() - 1)];
      if (smp.seq - ds.next < ds.ring.size() && e.valid && e.seq == smp.seq) {
        e.path = code;
        ++stats.revisions;
        release(st, smp.dir, now, out);  // it may have been waiting for this answer
      } else {
        ++stats.late;
      }
      return;
    }
    auto it = std::lower_bound(ds.pending.begin(), ds.pending.end(), smp.seq,
                               [](const Pending& p, std::uint64_t q) { return p.seq < q; });
    if (it == ds.pending.end() || it->seq != smp.seq || it->through()) {
      ++stats.late;
      return;
    }
    if (it->path == kNone && ds.lost_since_ok > 0) --ds.lost_since_ok;
    if (it->path == kUndet && ds.und_since_ok > 0) --ds.und_since_ok;
    it->revised = code;
    ++ds.revised;
    ++stats.revisions;
    ds.loss_run = 0;
    ds.run_proven = 0;
    for (auto r = ds.pending.rbegin(); r != ds.pending.rend() && !r->through(); ++r) {
      if (!r->loss()) continue;
      ++ds.loss_run;
      if (r->path == kNone) ++ds.run_proven;
    }
  }

  static void reset_since_ok(DirState& s) {
    s.lost_since_ok = 0;
    s.und_since_ok = 0;
    s.max_gap_since_ok = 0;
    s.max_gap_res = 0;
    s.cand = kNoPath;
    s.cand_run = 0;
  }

  /// A sample's path code: by the attributor's id when it has one (its text is interned once
  /// per id, not per sample), else by its text.
  std::int16_t code_of_path(const PathSample& smp) {
    if (smp.path_id < 0) return intern(smp.path);
    const auto id = static_cast<std::size_t>(smp.path_id);
    if (id >= by_path_id.size()) by_path_id.resize(id + 1, kNoCode);
    if (by_path_id[id] == kNoCode) by_path_id[id] = intern(smp.path);
    return by_path_id[id];
  }

  std::int16_t code_of(const PathSample& smp) {
    switch (smp.fate) {
      case PathSample::Fate::Through:
        return code_of_path(smp);  // "none" here: a caller without fates, a loss
      case PathSample::Fate::Lost:
        return kNone;
      case PathSample::Fate::Undetermined:
        return kUndet;
      case PathSample::Fate::MaybeLost:
        return kMaybe;
      case PathSample::Fate::NotApplicable:
        return kNotApp;
    }
    return kUnknown;
  }

  void process(Stream& st, Direction d, const Entry& e, std::int64_t now,
               std::vector<PathEvent>& out) {
    ++stats.samples;
    step(st, d, e.path, e.seq, e.tx_ns, now, out);
    DirState& ds = st.dir[static_cast<std::size_t>(d)];
    if (ds.snaps.size() >= max_ring()) ds.snaps.pop_front();  // the other side stalled: bound it
    // Settled: this very probe was seen on the direction's confirmed path, with no new path in
    // sight. A loss or an "unknown" says nothing about where the direction is now.
    const bool settled = ds.cand == kNoPath && e.path >= 0 && e.path == ds.current;
    ds.snaps.push_back(Snap{e.seq, e.tx_ns, ds.current, settled, ds.outage});
    judge_asymmetry(st, now, out);
  }

  /// Asymmetry is judged probe by probe, once both directions have processed the probe, so the
  /// result does not depend on which direction's samples arrived first.
  void judge_asymmetry(Stream& st, std::int64_t now, std::vector<PathEvent>& out) {
    SnapQueue& fq = st.dir[0].snaps;
    SnapQueue& rq = st.dir[1].snaps;
    while (!fq.empty() && !rq.empty()) {
      const Snap f = fq.front();
      const Snap r = rq.front();
      if (f.seq != r.seq) {  // a sequence one direction skipped
        (f.seq < r.seq ? fq : rq).pop_front();
        continue;
      }
      fq.pop_front();
      rq.pop_front();
      // An outage ends asymmetry; while a direction has an unconfirmed new path in sight its
      // confirmed one may be stale, so the state holds until both directions settle.
      bool asym = st.asym;
      if (f.outage || r.outage) {
        asym = false;
      } else if (f.settled && r.settled) {
        asym = f.current >= 0 && r.current >= 0 && f.current != r.current;
      }
      if (asym == st.asym) continue;
      PathEvent& ev = event(st, asym ? EventType::AsymmetricBegin : EventType::AsymmetricEnd,
                            Direction::Forward, f.seq, f.tx_ns, now, out);
      ev.fwd_path = label(f.current);
      ev.rev_path = label(r.current);
      if (!asym) ev.duration_ns = f.tx_ns - st.asym_since_tx;
      st.asym = asym;
      st.asym_since_tx = f.tx_ns;
    }
  }

  /// True when `e` must wait for a late answer: the direction saw one recently (late answers
  /// come in runs: a slow tunnel's backlog), and `e` is not through and came less than
  /// late_hold_ns ago (never longer than the reorder hold).
  [[nodiscard]] bool late_held(const DirState& ds, const Entry& e, std::int64_t now) const {
    if (now >= ds.late_seen_until || is_through(e.path)) return false;
    return now < e.arrived_ns + std::min(cfg.late_hold_ns, cfg.reorder_hold_ns);
  }

  /// Processes this direction's samples in order from `next` on; `force`: even those waiting
  /// for a late answer (the ring is full).
  void release(Stream& st, Direction d, std::int64_t now, std::vector<PathEvent>& out,
               bool force = false) {
    DirState& ds = st.dir[static_cast<std::size_t>(d)];
    const std::size_t mask = ds.ring.size() - 1;
    while (ds.held > 0) {
      Entry& e = ds.ring[ds.next & mask];
      if (!e.valid || e.seq != ds.next) break;
      if (!force && late_held(ds, e, now)) {
        ++stats.late_holds;
        break;
      }
      const Entry copy = e;
      e.valid = false;
      --ds.held;
      ++ds.next;
      process(st, d, copy, now, out);
    }
  }

  /// The oldest held sample (requires held > 0).
  static Entry& oldest_held(DirState& ds) {
    const std::size_t mask = ds.ring.size() - 1;
    std::uint64_t s = ds.next;
    while (!(ds.ring[s & mask].valid && ds.ring[s & mask].seq == s)) ++s;
    return ds.ring[s & mask];
  }

  /// Gives up on the missing sequence(s) at `next`: jumps to the oldest held sample.
  void skip_gap(DirState& ds) {
    const std::uint64_t s = oldest_held(ds).seq;
    stats.skipped += s - ds.next;
    ds.next = s;
  }

  [[nodiscard]] std::size_t max_ring() const {
    return std::bit_ceil(std::max<std::size_t>(cfg.reorder_window, 2));
  }

  /// Doubles a direction's reorder ring (it starts small: most streams never need much).
  static void grow(DirState& ds) {
    std::vector<Entry> nr(ds.ring.size() * 2);
    const std::size_t mask = nr.size() - 1;
    for (const Entry& e : ds.ring) {
      if (e.valid) nr[e.seq & mask] = e;
    }
    ds.ring = std::move(nr);
  }

  void on_sample(const PathSample& smp, std::int64_t now, std::vector<PathEvent>& out) {
    auto [it, fresh] = streams.try_emplace(smp.session_id);
    Stream& st = it->second;
    if (fresh) {
      st.target = smp.target;
      st.proto = smp.proto;
      st.session_id = smp.session_id;
      for (auto& ds : st.dir) ds.ring.resize(std::min<std::size_t>(64, max_ring()));
    }
    DirState& ds = st.dir[static_cast<std::size_t>(smp.dir)];
    if (!ds.started) {
      ds.started = true;
      ds.next = smp.seq;
    }
    if (smp.revision) {
      revise(st, smp, code_of(smp), now, out);
      return;
    }
    if (smp.seq < ds.next) {
      ++stats.late;
      return;
    }
    while (smp.seq - ds.next >= ds.ring.size() && ds.ring.size() < max_ring()) grow(ds);
    const std::size_t mask = ds.ring.size() - 1;
    // Too far ahead to hold: give up on the oldest gaps until it fits.
    while (smp.seq - ds.next > mask) {
      if (ds.held == 0) {
        stats.skipped += smp.seq - mask - ds.next;
        ds.next = smp.seq - mask;
        break;
      }
      if (ds.ring[ds.next & mask].valid) {
        release(st, smp.dir, now, out, true);  // held for a late answer: no room to wait
        continue;
      }
      skip_gap(ds);
      release(st, smp.dir, now, out);
    }
    Entry& slot = ds.ring[smp.seq & mask];
    if (slot.valid) {
      ++stats.duplicates;
      return;
    }
    slot = Entry{smp.seq, smp.tx_ns, now, code_of(smp), true};
    ++ds.held;
    release(st, smp.dir, now, out);
  }

  void poll(std::int64_t now, std::vector<PathEvent>& out) {
    // A sample that waited reorder_hold_ns for its predecessors stops waiting for them; one
    // that waited late_hold_ns for a late answer is processed.
    for (auto& [id, st] : streams) {
      for (auto d : {Direction::Forward, Direction::Reverse}) {
        DirState& ds = st.dir[static_cast<std::size_t>(d)];
        if (ds.held > 0) release(st, d, now, out);
        while (ds.held > 0 && oldest_held(ds).arrived_ns + cfg.reorder_hold_ns <= now) {
          skip_gap(ds);
          release(st, d, now, out);
        }
      }
    }
  }

  const DirState* dir(std::uint32_t session, Direction d) const {
    const auto it = streams.find(session);
    return it == streams.end() ? nullptr : &it->second.dir[static_cast<std::size_t>(d)];
  }
};

PathSample::Fate fate_of(const ProbeRecord& r, Direction d) {
  using Fate = PathSample::Fate;
  const bool fwd = d == Direction::Forward;
  if (r.rx_ns) return Fate::Through;
  switch (r.loss) {
    case LossDirection::Forward:
      return fwd ? Fate::Lost : Fate::NotApplicable;
    case LossDirection::Reverse:
      return fwd ? Fate::Through : Fate::Lost;
    case LossDirection::Undetermined:
      return Fate::Undetermined;
    case LossDirection::None:
      break;
  }
  return (fwd ? r.fwd_path : r.rev_path) == kPathNone ? Fate::Lost : Fate::Through;
}

PathSample sample_of(const ProbeRecord& r, Direction d) {
  PathSample s;
  s.session_id = r.session_id;
  s.target = r.target;
  s.proto = r.proto;
  s.dir = d;
  s.seq = r.seq;
  s.tx_ns = r.tx_ns;
  s.path = d == Direction::Forward ? r.fwd_path : r.rev_path;
  s.fate = fate_of(r, d);
  s.revision = r.late && r.rx_ns.has_value();
  return s;
}

Detector::Detector(DetectorConfig config) : impl_(std::make_unique<Impl>()) {
  if (config.confirm_probes == 0) {
    throw ConfigError("", "detector.confirm_probes", "0", "must be at least 1");
  }
  if (config.outage_losses == 0) {
    throw ConfigError("", "detector.outage_losses", "0", "must be at least 1");
  }
  if (config.reorder_window == 0) {
    throw ConfigError("", "detector.reorder_window", "0", "must be at least 1");
  }
  impl_->cfg = config;
}

Detector::~Detector() = default;

void Detector::on_sample(const PathSample& sample, std::int64_t now_ns,
                         std::vector<PathEvent>& out) {
  impl_->on_sample(sample, now_ns, out);
}

void Detector::on_record(const ProbeRecord& record, std::int64_t now_ns,
                         std::vector<PathEvent>& out) {
  impl_->on_sample(sample_of(record, Direction::Forward), now_ns, out);
  impl_->on_sample(sample_of(record, Direction::Reverse), now_ns, out);
}

void Detector::poll(std::int64_t now_ns, std::vector<PathEvent>& out) {
  impl_->poll(now_ns, out);
}

std::optional<std::string> Detector::current_path(std::uint32_t session_id, Direction dir) const {
  const DirState* s = impl_->dir(session_id, dir);
  if (s == nullptr || s->current < 0) return std::nullopt;
  return impl_->label(s->current);
}

bool Detector::in_outage(std::uint32_t session_id, Direction dir) const {
  const DirState* s = impl_->dir(session_id, dir);
  return s != nullptr && s->outage;
}

bool Detector::asymmetric(std::uint32_t session_id) const {
  const auto it = impl_->streams.find(session_id);
  return it != impl_->streams.end() && it->second.asym;
}

const DetectorStats& Detector::stats() const {
  return impl_->stats;
}

}  // namespace pathsentry::probe
