#include "pathsentry/probe/detector.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <unordered_map>

#include "pathsentry/common/config_error.h"

namespace pathsentry::probe {
namespace {

constexpr std::int16_t kNone = -2;     // lost in this direction
constexpr std::int16_t kUnknown = -3;  // through, path not attributable
constexpr std::int16_t kNoPath = -1;   // no confirmed path (yet)

struct Entry {
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;
  std::int64_t arrived_ns = 0;  // when the detector got it (for the reorder hold)
  std::int16_t fwd = kUnknown;
  std::int16_t rev = kUnknown;
  bool valid = false;
};

struct DirState {
  std::int16_t current = kNoPath;
  std::int16_t last_from = kNoPath;  // the path of the last switchover's "from"
  bool has_ok = false;
  std::int64_t last_ok_tx = 0;
  std::int16_t cand = kNoPath;
  std::uint32_t cand_run = 0;
  std::int64_t cand_first_tx = 0;
  std::uint64_t lost_before_cand = 0;
  std::uint64_t lost_since_ok = 0;
  std::uint32_t loss_run = 0;
  bool outage = false;
};

struct Stream {
  std::string target;
  Proto proto = Proto::Icmp;
  std::uint32_t session_id = 0;
  bool started = false;
  std::uint64_t next = 0;
  std::vector<Entry> ring;
  std::size_t held = 0;
  DirState dir[2];
  bool asym = false;
  std::int64_t asym_since_tx = 0;
};

}  // namespace

struct Detector::Impl {
  DetectorConfig cfg;
  std::vector<std::string> labels;  // interned path labels
  std::unordered_map<std::uint32_t, Stream> streams;
  DetectorStats stats;

  std::int16_t intern(const std::string& p) {
    if (p == kPathNone) return kNone;
    if (p == kPathUnknown || p.empty()) return kUnknown;
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] == p) return static_cast<std::int16_t>(i);
    }
    if (labels.size() >= 1000) return kUnknown;  // path labels come from a handful of taps
    labels.push_back(p);
    return static_cast<std::int16_t>(labels.size() - 1);
  }

  [[nodiscard]] std::string label(std::int16_t id) const {
    if (id >= 0) return labels[static_cast<std::size_t>(id)];
    if (id == kUnknown) return kPathUnknown;
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

  void step(Stream& st, Direction d, std::int16_t v, std::uint64_t seq, std::int64_t tx,
            std::int64_t now, std::vector<PathEvent>& out) {
    DirState& s = st.dir[static_cast<std::size_t>(d)];
    if (v == kNone) {
      ++s.lost_since_ok;
      ++s.loss_run;
      if (!s.outage && s.loss_run >= cfg.outage_losses) {
        s.outage = true;
        PathEvent& e = event(st, EventType::OutageBegin, d, seq, tx, now, out);
        e.from = label(s.current);
        e.to = kPathNone;
        e.last_ok_on_old_ns = s.has_ok ? s.last_ok_tx : 0;
        e.probes_lost = s.loss_run;
      }
      return;
    }
    // The probe got through this way (on a known path or not).
    s.loss_run = 0;
    if (s.outage) {
      s.outage = false;
      PathEvent& e = event(st, EventType::OutageEnd, d, seq, tx, now, out);
      e.from = kPathNone;
      e.to = label(v);
      e.last_ok_on_old_ns = s.has_ok ? s.last_ok_tx : 0;
      e.first_ok_on_new_ns = tx;
      e.outage_ns = s.has_ok ? tx - s.last_ok_tx : 0;
      e.probes_lost = s.lost_since_ok;
    }
    if (v == kUnknown) return;  // neither confirms nor breaks a path
    if (v == s.current) {
      s.has_ok = true;
      s.last_ok_tx = tx;
      s.lost_since_ok = 0;
      s.cand = kNoPath;
      s.cand_run = 0;
      return;
    }
    if (v == s.cand) {
      ++s.cand_run;
    } else {
      s.cand = v;
      s.cand_run = 1;
      s.cand_first_tx = tx;
      s.lost_before_cand = s.lost_since_ok;
    }
    if (s.cand_run < cfg.confirm_probes) return;
    if (s.current != kNoPath) {
      PathEvent& e = event(st, EventType::Switchover, d, seq, tx, now, out);
      e.from = label(s.current);
      e.to = label(v);
      e.last_ok_on_old_ns = s.has_ok ? s.last_ok_tx : 0;
      e.first_ok_on_new_ns = s.cand_first_tx;
      e.outage_ns = s.has_ok ? s.cand_first_tx - s.last_ok_tx : 0;
      e.probes_lost = s.lost_before_cand;
      e.failback = v == s.last_from;
      s.last_from = s.current;
    }
    s.current = v;
    s.has_ok = true;
    s.last_ok_tx = tx;
    s.lost_since_ok = 0;
    s.cand = kNoPath;
    s.cand_run = 0;
  }

  void process(Stream& st, const Entry& e, std::int64_t now, std::vector<PathEvent>& out) {
    ++stats.records;
    step(st, Direction::Forward, e.fwd, e.seq, e.tx_ns, now, out);
    step(st, Direction::Reverse, e.rev, e.seq, e.tx_ns, now, out);
    const DirState& f = st.dir[0];
    const DirState& r = st.dir[1];
    // An outage ends asymmetry; while a direction has an unconfirmed new path in sight its
    // confirmed one may be stale, so the state holds until both directions settle.
    bool asym = st.asym;
    if (f.outage || r.outage) {
      asym = false;
    } else if (f.cand == kNoPath && r.cand == kNoPath) {
      asym = f.current >= 0 && r.current >= 0 && f.current != r.current;
    }
    if (asym == st.asym) return;
    PathEvent& ev = event(st, asym ? EventType::AsymmetricBegin : EventType::AsymmetricEnd,
                          Direction::Forward, e.seq, e.tx_ns, now, out);
    ev.fwd_path = label(f.current);
    ev.rev_path = label(r.current);
    if (!asym) ev.duration_ns = e.tx_ns - st.asym_since_tx;
    st.asym = asym;
    st.asym_since_tx = e.tx_ns;
  }

  /// Processes every record in order from `next` on.
  bool release(Stream& st, std::int64_t now, std::vector<PathEvent>& out) {
    const std::size_t mask = st.ring.size() - 1;
    bool progressed = false;
    while (st.held > 0) {
      Entry& e = st.ring[st.next & mask];
      if (!e.valid || e.seq != st.next) break;
      const Entry copy = e;
      e.valid = false;
      --st.held;
      ++st.next;
      process(st, copy, now, out);
      progressed = true;
    }
    return progressed;
  }

  /// The oldest held record (requires held > 0).
  static Entry& oldest_held(Stream& st) {
    const std::size_t mask = st.ring.size() - 1;
    std::uint64_t s = st.next;
    while (!(st.ring[s & mask].valid && st.ring[s & mask].seq == s)) ++s;
    return st.ring[s & mask];
  }

  /// Gives up on the missing sequence(s) at `next`: jumps to the oldest held record.
  void skip_gap(Stream& st) {
    const std::uint64_t s = oldest_held(st).seq;
    stats.skipped += s - st.next;
    st.next = s;
  }

  void on_record(const ProbeRecord& r, std::int64_t now, std::vector<PathEvent>& out) {
    auto [it, fresh] = streams.try_emplace(r.session_id);
    Stream& st = it->second;
    if (fresh) {
      st.target = r.target;
      st.proto = r.proto;
      st.session_id = r.session_id;
      st.ring.resize(std::bit_ceil(std::max<std::size_t>(cfg.reorder_window, 2)));
    }
    if (!st.started) {
      st.started = true;
      st.next = r.seq;
    }
    if (r.seq < st.next) {
      ++stats.late;
      return;
    }
    const std::size_t mask = st.ring.size() - 1;
    // Too far ahead to hold: give up on the oldest gaps until it fits.
    while (r.seq - st.next > mask) {
      if (st.held == 0) {
        stats.skipped += r.seq - mask - st.next;
        st.next = r.seq - mask;
        break;
      }
      skip_gap(st);
      release(st, now, out);
    }
    Entry& slot = st.ring[r.seq & mask];
    if (slot.valid) {
      ++stats.duplicates;
      return;
    }
    slot = Entry{r.seq, r.tx_ns, now, intern(r.fwd_path), intern(r.rev_path), true};
    ++st.held;
    release(st, now, out);
  }

  void poll(std::int64_t now, std::vector<PathEvent>& out) {
    // A record that waited reorder_hold_ns for its predecessors stops waiting for them.
    for (auto& [id, st] : streams) {
      while (st.held > 0 && oldest_held(st).arrived_ns + cfg.reorder_hold_ns <= now) {
        skip_gap(st);
        release(st, now, out);
      }
    }
  }

  const DirState* dir(std::uint32_t session, Direction d) const {
    const auto it = streams.find(session);
    return it == streams.end() ? nullptr : &it->second.dir[static_cast<std::size_t>(d)];
  }
};

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

void Detector::on_record(const ProbeRecord& record, std::int64_t now_ns,
                         std::vector<PathEvent>& out) {
  impl_->on_record(record, now_ns, out);
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
