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
#include <bit>
#include <cstdlib>
#include <deque>
#include <limits>
#include <unordered_map>

#include "esp_learner.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/common/ring.h"
#include "pathsentry/probe/wire/seq.h"

namespace pathsentry::probe {
namespace {

constexpr std::uint64_t kNoSeq = ~std::uint64_t{0};
constexpr std::size_t kMaxEspTaps = 4;
constexpr std::size_t kMaxPaths = 30;  // path ids index a 32-bit mask
constexpr std::int8_t kNoEvidence = -1;
constexpr std::int8_t kAmbiguous = -2;
constexpr std::size_t kMinRing = 1024;
constexpr std::size_t kMaxRing = std::size_t{1} << 23;
constexpr std::int64_t kRetentionMarginNs = 10'000'000;
constexpr std::int64_t kRttWindowNs = 1'000'000'000;  // recent-RTT window for early losses

enum Flag : std::uint16_t {
  kAnnounced = 1 << 0,   // in the sent log (on_sent, or its record stood in)
  kHaveRecord = 1 << 1,  // the sender reported it (answered or lost)
  kReceived = 1 << 2,    // answered
  kFwdDecided = 1 << 3,
  kRevDecided = 1 << 4,
  kLoss = 1 << 5,        // declared lost (by the sender, early, or for want of a record)
  kEmitted = 1 << 6,     // its record went out
  kLate = 1 << 7,        // answered after its loss was emitted: re-emit as late
  kFwdSampled = 1 << 8,  // its forward PathSample went out
  kRevSampled = 1 << 9,
  kLateEsp = 1 << 10,        // seen nowhere, but a late ESP packet may be its own (counted once)
  kTapDownUnseen = 1 << 11,  // seen nowhere while a tap was down: "unknown" (counted once)
};

enum class LossHint : std::uint8_t { None, FwdLost, RevLost, Mixed };

/// Per-probe state, in a per-session ring indexed by seq.
struct Slot {
  std::uint64_t seq = kNoSeq;
  std::int64_t anchor_ns = 0;  // forward window anchor (announced tx)
  std::int64_t tx_ns = 0;      // the record's tx (kernel when available)
  std::int64_t rx_ns = 0;
  std::int64_t rtt_ns = 0;
  std::int64_t reflector_rx_ns = 0;
  std::int64_t reflector_tx_ns = 0;
  std::int64_t lost_ns = 0;  // when it was declared lost (the reflector's evidence waits from it)
  std::uint32_t reflector_seq = 0;
  std::uint32_t wire = 0;
  std::uint32_t fwd_clear = 0;  // bit per path id seen exactly
  std::uint32_t rev_clear = 0;
  std::uint16_t flags = 0;
  std::int8_t fwd_esp = kNoEvidence;  // path id, kAmbiguous or kNoEvidence
  std::int8_t rev_esp = kNoEvidence;
  std::int8_t fwd_sampled = kNoEvidence;             // the path its forward sample said
  LossDirection emitted_loss = LossDirection::None;  // what its last record said
  LossHint hint = LossHint::None;
  bool has_reflector = false;
  bool reflector_synced = false;
  bool tx_kernel = false;
  [[nodiscard]] bool has(std::uint16_t f) const { return (flags & f) != 0; }
};

struct EspObs {
  std::int64_t ts_ns = 0;
  std::uint32_t len = 0;
  std::uint16_t claims = 0;      // probes with this length whose window holds it
  std::uint16_t any_claims = 0;  // probes of any length whose window holds it (learning)
  bool attributed = false;
  std::uint32_t spi = 0;
  std::uint32_t seq = 0;  // the ESP sequence number: the order the gateway sent it in
};

/// One ESP tap in one direction: its observations and what was learned about lengths.
struct EspLane {
  Ring<EspObs> obs;
  std::int64_t evicted_through_ns = std::numeric_limits<std::int64_t>::min();
  struct Sa {
    std::uint32_t spi = 0;
    std::uint32_t last_seq = 0;
    bool used = false;
  };
  std::array<Sa, 8> sas{};
  std::size_t next_sa = 0;
  struct Learned {
    std::uint32_t wire = 0;
    std::uint32_t len = 0;
    std::uint32_t count = 0;
    bool learned = false;
  };
  std::vector<Learned> learned;
  // The transform learned from the lengths seen (docs/attribution.md §2).
  EspLearner learner;
  std::int64_t first_esp_ns = 0;  // capture time of the first ESP packet (0: none yet)
  bool mismatch_counted = false;  // the learned transform disagreed with the configured one
  std::uint64_t windows_learned = 0;
  // Order (see order_rescue): the packet of the last probe attributed here, and the expected
  // lengths of the probes decided since without one.
  bool has_last = false;
  EspObs last{};
  std::array<std::uint32_t, 64> pending{};
  std::size_t npending = 0;
  bool pending_overflow = false;
};

/// Per ESP tap, what happened since the last silent-tap check (the warning's evidence).
struct SilentPeriod {
  std::int64_t start_ns = 0;
  std::uint64_t esp = 0;        // ESP packets seen
  std::uint64_t matched = 0;    // attributed
  std::uint64_t ambiguous = 0;  // probe-directions with no clear sighting: several candidates
  std::uint64_t no_cand = 0;    // ESP in the window, none of the expected length
  std::uint64_t unlearned = 0;  // ESP in the window, no expected length known
  std::uint64_t collapsed = 0;  // ambiguous under a learned TFC padding
  bool warned = false;          // the last period warned (the next says "still")
};

struct Claim {
  std::uint16_t cand = 0;
  std::uint16_t any = 0;
  std::uint64_t cand_idx = 0;
  std::uint64_t any_idx = 0;
  bool incomplete = false;
};

/// A probe waiting for its window to be claimed and decided (forward: by tx; reverse: by rx).
struct LogEntry {
  std::int64_t anchor_ns = 0;
  std::uint32_t session = 0;
  std::uint64_t seq = 0;
  std::uint32_t wire = 0;
  std::array<Claim, kMaxEspTaps> claims{};
};

/// A probe seen by no tap whose forward sample waits for fwd_unseen_wait_ns.
struct Unseen {
  std::int64_t due_ns = 0;
  std::uint32_t session = 0;
  std::uint64_t seq = 0;
};

struct Overtake {
  std::uint64_t seq = 0;  // a later probe that was answered
  std::int64_t due_ns = 0;
};

struct Session {
  SessionSpec spec;
  std::string target_text;
  std::vector<Slot> slots;
  std::uint64_t mask = 0;
  bool any = false;
  std::uint64_t max_seq = 0;
  std::uint64_t lowest_unresolved = 0;
  Ring<Overtake> overtakes;
  bool has_last_rx = false;
  std::uint64_t last_rx_seq = 0;
  std::uint32_t last_reflector_seq = 0;
  // The largest RTT of the current and the previous second of answers (early-loss grace).
  std::int64_t rtt_window_start = 0;
  std::int64_t rtt_max_cur = 0;
  std::int64_t rtt_max_prev = 0;
  std::array<std::uint64_t, 3> losses{};  // records by loss direction, net of late answers
};

struct StampKey {
  IpAddress target;
  std::uint16_t ssid = 0;
  friend bool operator==(const StampKey&, const StampKey&) = default;
};
struct StampKeyHash {
  std::size_t operator()(const StampKey& k) const {
    std::uint64_t h = 1469598103934665603ull ^ k.ssid;
    for (std::size_t i = 0; i < k.target.length(); ++i)
      h = (h ^ k.target.bytes[i]) * 1099511628211ull;
    return static_cast<std::size_t>(h);
  }
};

std::size_t ring_size_for(const SessionSpec& s, std::int64_t extra_ns) {
  const double horizon_s =
      static_cast<double>(s.timeout_ns + extra_ns) / 1e9 + 0.25;  // + decide delays
  const double want = std::max(1.0, s.rate_pps) * horizon_s * 1.25;
  return std::bit_ceil(std::clamp<std::size_t>(static_cast<std::size_t>(want), kMinRing, kMaxRing));
}

}  // namespace

struct Attributor::Impl {
  AttributorConfig cfg;
  std::vector<std::string> labels;            // path ids → label, then unknown, none
  std::vector<std::int8_t> tap_path;          // tap → path id
  std::vector<int> tap_lane;                  // tap → ESP lane index, -1 for clear taps
  std::vector<std::size_t> lane_tap;          // ESP lane → tap
  std::vector<std::array<EspLane, 2>> lanes;  // [lane][direction]
  std::int8_t unknown_id = 0;
  std::int8_t none_id = 0;
  std::int64_t fwd_claim_delay = 0;
  std::int64_t fwd_decide_delay = 0;
  std::int64_t rev_claim_delay = 0;
  std::int64_t rev_decide_delay = 0;
  std::int64_t retention = 0;
  std::int64_t fwd_none_delay = 0;  // a probe seen nowhere is "none" this long after it left
  std::uint64_t sent_learned = 0;   // learn cursors: windows given to the learners
  std::uint64_t recv_learned = 0;
  std::vector<SilentPeriod> silent;  // per ESP lane
  std::vector<std::string> notes;
  // PATHSENTRY_EXPLAIN_UNKNOWN=1: a note per probe-direction an ESP tap leaves unexplained,
  // saying why (issue 8 item 3: where each unknown comes from).
  bool explain = false;
  Ring<LogEntry>* cur_log = nullptr;
  const std::uint64_t* cur_claimed = nullptr;

  std::deque<Session> sessions;  // a deque: samples point at target_text
  std::unordered_map<std::uint32_t, std::uint32_t> by_id;
  std::unordered_map<StampKey, std::uint32_t, StampKeyHash> by_stamp;

  Ring<LogEntry> sent_log;
  std::uint64_t sent_claimed = 0;  // absolute index of the first unclaimed entry
  Ring<LogEntry> recv_log;
  std::uint64_t recv_claimed = 0;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> ready;
  Ring<Unseen> unseen;
  Ring<Unseen> held;  // lost STAMP probes waiting for the reflector's counter (due: the cap)
  std::int64_t last_now = std::numeric_limits<std::int64_t>::min();
  // Per tap, the spans [from, to] during which it was down (to = kOpen while it still is).
  struct DownSpan {
    std::int64_t from_ns = 0;
    std::int64_t to_ns = 0;
  };
  static constexpr std::int64_t kOpen = std::numeric_limits<std::int64_t>::max();
  std::vector<std::deque<DownSpan>> down_spans;

  AttributorStats stats;

  explicit Impl(AttributorConfig c) : cfg(std::move(c)) {
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

  // ---- tap availability ----

  [[nodiscard]] bool tap_down_during(std::size_t tap, std::int64_t from, std::int64_t to) const {
    for (const DownSpan& d : down_spans[tap]) {
      if (d.from_ns <= to && from <= d.to_ns) return true;
    }
    return false;
  }

  /// The times a tap's silence about this probe would be evidence: its forward window (clear
  /// copies at the send, ESP ones in the window and the late horizon), and the reply's window
  /// when answered, else anything up to the sender's timeout. settle_ns of slack on each side.
  [[nodiscard]] bool probe_tap_down(const Session& s, const Slot& sl, std::size_t tap,
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

  [[nodiscard]] bool fwd_tap_down(const Session& s, const Slot& sl) const {
    for (std::size_t t = 0; t < down_spans.size(); ++t) {
      if (!down_spans[t].empty() && probe_tap_down(s, sl, t, true)) return true;
    }
    return false;
  }

  /// A probe seen on no tap while a tap that may have carried it was down: its absence is no
  /// evidence that it did not leave (counted once per probe).
  bool unseen_tap_down(const Session& s, Slot& sl) {
    if (sl.has(kTapDownUnseen)) return true;
    if (!fwd_tap_down(s, sl)) return false;
    sl.flags |= kTapDownUnseen;
    ++stats.fwd_unseen_tap_down;
    return true;
  }

  void prune_down_spans() {
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

  // ---- sessions and slots ----

  Session* find_session(std::uint32_t id) {
    const auto it = by_id.find(id);
    return it == by_id.end() ? nullptr : &sessions[it->second];
  }

  static void grow(Session& s) {
    std::vector<Slot> ns(s.slots.size() * 2);
    const std::uint64_t nmask = ns.size() - 1;
    for (const Slot& sl : s.slots) {
      if (sl.seq == kNoSeq) continue;
      Slot& d = ns[sl.seq & nmask];
      if (d.seq == kNoSeq || d.seq < sl.seq) d = sl;
    }
    s.slots = std::move(ns);
    s.mask = nmask;
  }

  /// The slot for `seq`, taking over a finished or empty one; nullptr when `seq` is older than
  /// what the ring holds there (stale) or the state cannot grow.
  Slot* acquire(Session& s, std::uint64_t seq) {
    for (;;) {
      Slot& sl = s.slots[seq & s.mask];
      if (sl.seq == seq) return &sl;
      if (sl.seq != kNoSeq && sl.seq > seq) return nullptr;
      const bool live = sl.seq != kNoSeq && !sl.has(kEmitted) && sl.has(kAnnounced | kHaveRecord);
      if (live) {
        if (s.slots.size() < kMaxRing) {
          grow(s);
          continue;
        }
        ++stats.state_overruns;  // the older probe's state is dropped: it is never emitted
      }
      sl = Slot{};
      sl.seq = seq;
      return &sl;
    }
  }

  Slot* lookup(Session& s, std::uint64_t seq) {
    Slot& sl = s.slots[seq & s.mask];
    return sl.seq == seq ? &sl : nullptr;
  }

  static bool resolved(const Slot& sl) { return sl.has(kHaveRecord) || sl.has(kLoss); }

  void advance_lowest(Session& s) {
    while (s.lowest_unresolved <= s.max_seq) {
      const Slot& sl = s.slots[s.lowest_unresolved & s.mask];
      if (sl.seq == s.lowest_unresolved && sl.has(kAnnounced) && !resolved(sl)) break;
      ++s.lowest_unresolved;
    }
  }

  void announce(std::uint32_t si, Session& s, Slot& sl, std::int64_t tx, std::uint32_t wire) {
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

  // ---- ESP lanes ----

  std::optional<std::uint32_t> expected_len(std::size_t lane, Direction d, std::uint32_t wire) {
    if (wire == 0) return std::nullopt;
    const auto& tap = cfg.taps[lane_tap[lane]];
    if (tap.transform) return tap.transform->esp_length(wire);
    const EspLane& ln = lanes[lane][static_cast<std::size_t>(d)];
    if (ln.learner.model()) return ln.learner.model()->transform.esp_length(wire);
    for (const auto& l : ln.learned) {
      if (l.wire == wire) return l.learned ? std::optional<std::uint32_t>(l.len) : std::nullopt;
    }
    return std::nullopt;
  }

  void learn(std::size_t lane, Direction d, std::uint32_t wire, std::uint32_t len) {
    if (wire == 0) return;
    auto& ln = lanes[lane][static_cast<std::size_t>(d)];
    auto it = std::find_if(ln.learned.begin(), ln.learned.end(),
                           [&](const EspLane::Learned& l) { return l.wire == wire; });
    if (it == ln.learned.end()) {
      if (ln.learned.size() >= 256) return;  // a fallback for lone probes: bounded
      ln.learned.push_back({wire, len, 1, cfg.learn_samples <= 1});
    } else if (it->len == len) {
      if (++it->count >= cfg.learn_samples) it->learned = true;
    } else {
      *it = {wire, len, 1, cfg.learn_samples <= 1};
    }
  }

  /// Gives the learner of one direction a probe window: the distinct ESP lengths it holds.
  void learn_window(const LogEntry& e, Direction d) {
    const auto di = static_cast<std::size_t>(d);
    for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
      const auto& tap = cfg.taps[lane_tap[lane]];
      EspLane& ln = lanes[lane][di];
      const std::int64_t from =
          d == Direction::Forward ? e.anchor_ns + tap.lo_ns(d) : e.anchor_ns - tap.hi_ns(d);
      const std::int64_t to =
          d == Direction::Forward ? e.anchor_ns + tap.hi_ns(d) : e.anchor_ns - tap.lo_ns(d);
      if (from <= ln.evicted_through_ns) continue;
      std::array<std::uint32_t, 64> lens{};
      std::size_t n = 0;
      for (std::uint64_t i = lower_bound(ln.obs, from); i < ln.obs.end_abs(); ++i) {
        const EspObs& o = ln.obs.at(i);
        if (o.ts_ns > to) break;
        if (n < lens.size() &&
            std::find(lens.begin(), lens.begin() + n, o.len) == lens.begin() + n) {
          lens[n++] = o.len;
        }
      }
      ln.learner.on_window(e.wire, lens.data(), n);
      ++ln.windows_learned;
    }
  }

  /// Runs the learners that have new evidence; notes what they locked in.
  void evaluate_learners() {
    for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
      const std::size_t tap = lane_tap[lane];
      const auto& spec = cfg.taps[tap];
      for (std::size_t di = 0; di < 2; ++di) {
        EspLane& ln = lanes[lane][di];
        const std::uint64_t every = ln.learner.model() ? 1024 : 8;
        if (ln.learner.windows_since_eval() < every) continue;
        const auto change = ln.learner.evaluate();
        const char* dir = di == 0 ? "forward" : "reverse";
        if (change != EspLearner::Change::None) {
          const std::string name = ln.learner.model()->name;
          if (!spec.transform) stats.taps[tap].transform[di] = name;
          if (change == EspLearner::Change::Relearned) ++stats.taps[tap].transform_changes;
          if (!spec.transform) {
            notes.push_back("tap " + spec.interface + " (" + spec.path + "): " + dir + " ESP " +
                            (change == EspLearner::Change::Learned ? "transform learned: "
                                                                   : "transform re-learned, the "
                                                                     "lengths seen changed: ") +
                            name);
          }
        }
        if (spec.transform && ln.learner.model() && !ln.mismatch_counted &&
            !ln.learner.agrees_with(*spec.transform)) {
          ln.mismatch_counted = true;
          ++stats.taps[tap].length_mismatch;
          notes.push_back("tap " + spec.interface + " (" + spec.path + "): the " + dir +
                          " ESP lengths seen fit " + ln.learner.model()->name +
                          ", not the configured transform: probes will not be attributed");
        }
      }
    }
  }

  /// How much later windows are claimed now: learn_hold_ns while a tap without a transform has
  /// seen ESP but not learned it yet (for at most learn_hold_ns after its first ESP packet).
  std::int64_t learn_hold(std::int64_t now) const {
    for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
      if (cfg.taps[lane_tap[lane]].transform) continue;
      for (const EspLane& ln : lanes[lane]) {
        if (ln.first_esp_ns != 0 && !ln.learner.model() &&
            now - ln.first_esp_ns < cfg.learn_hold_ns) {
          return cfg.learn_hold_ns;
        }
      }
    }
    return 0;
  }

  /// Warns about an ESP tap that saw ESP but attributed nothing while probes went unexplained,
  /// with the likely cause, every silent_warn_ns it lasts.
  void check_silent(std::int64_t now) {
    if (cfg.silent_warn_ns <= 0) return;
    for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
      SilentPeriod& p = silent[lane];
      if (p.start_ns == 0) p.start_ns = now;
      if (now - p.start_ns < cfg.silent_warn_ns) continue;
      const std::size_t tap = lane_tap[lane];
      const auto& spec = cfg.taps[tap];
      const std::uint64_t unexplained = p.ambiguous + p.no_cand + p.unlearned;
      const bool silent_tap = p.esp >= 10 && p.matched == 0 && unexplained >= 10;
      if (silent_tap) {
        ++stats.taps[tap].silent_warnings;
        std::string cause;
        const EspLearner& fl = lanes[lane][0].learner;
        const EspLearner& rl = lanes[lane][1].learner;
        if (p.unlearned >= p.ambiguous && p.unlearned >= p.no_cand) {
          cause = "no ESP length known for the probes: forward " + fl.diagnosis() + "; reverse " +
                  rl.diagnosis();
        } else if (p.ambiguous >= p.no_cand) {
          cause = p.collapsed * 2 >= p.ambiguous
                      ? "TFC padding gives the probes one ESP length (" +
                            (fl.model() ? fl.model()->name : rl.model()->name) +
                            "): several share every window; send probes larger than the padding "
                            "(--size) or narrow the window"
                      : "window too wide for the rate: probes of one ESP length share a window "
                        "(more sizes with --size-cycle, or a narrower window)";
        } else {
          cause =
              "no ESP packet of the expected length in the windows: the window is too "
              "narrow for the tunnel's delay, or the transform is wrong (" +
              (spec.transform ? std::string("configured") : "forward " + fl.diagnosis()) + ")";
        }
        notes.push_back(
            "WARNING tap " + spec.interface + " (" + spec.path +
            "): " + (p.warned ? "still " : "") + "attributed nothing in " +
            std::to_string((now - p.start_ns) / 1'000'000'000) + " s although it saw " +
            std::to_string(p.esp) + " ESP packets between " + spec.local_endpoint.to_string() +
            " and " + spec.remote_endpoint.to_string() + " (" + std::to_string(unexplained) +
            " probe directions unexplained: " + std::to_string(p.unlearned) +
            " without a known length, " + std::to_string(p.no_cand) + " without a candidate, " +
            std::to_string(p.ambiguous) + " ambiguous); likely cause: " + cause);
      }
      p = SilentPeriod{};
      p.start_ns = now;
      p.warned = silent_tap;
    }
  }

  void add_esp(std::size_t tap, const Observation& o) {
    const std::size_t lane = static_cast<std::size_t>(tap_lane[tap]);
    EspLane& ln = lanes[lane][static_cast<std::size_t>(o.dir)];
    auto& ts = stats.taps[tap];
    // Sequence gaps per SA: packets the gateway sent that the tap never delivered.
    auto sa = std::find_if(ln.sas.begin(), ln.sas.end(),
                           [&](const EspLane::Sa& x) { return x.used && x.spi == o.spi; });
    if (sa == ln.sas.end()) {
      ln.sas[ln.next_sa] = {o.spi, o.esp_seq, true};
      ln.next_sa = (ln.next_sa + 1) % ln.sas.size();
    } else if (o.esp_seq > sa->last_seq) {
      ts.esp_seq_gaps += o.esp_seq - sa->last_seq - 1;
      sa->last_seq = o.esp_seq;
    }
    if (o.ts_ns + cfg.settle_ns < last_now) ++ts.late;
    if (ln.first_esp_ns == 0) ln.first_esp_ns = o.ts_ns;
    ln.learner.on_packet(o.esp_len);
    ++silent[lane].esp;
    if (ln.obs.size() >= cfg.max_esp_observations) evict_front(tap, ln, true);
    ln.obs.push_back(EspObs{o.ts_ns, o.esp_len, 0, 0, false, o.spi, o.esp_seq});
    // Keep time order (capture timestamps can step back slightly across CPUs).
    for (std::uint64_t i = ln.obs.end_abs() - 1; i > ln.obs.begin_abs(); --i) {
      EspObs& cur = ln.obs.at(i);
      EspObs& prev = ln.obs.at(i - 1);
      if (prev.ts_ns <= cur.ts_ns) break;
      std::swap(prev, cur);
    }
  }

  void evict_front(std::size_t tap, EspLane& ln, bool overflow) {
    const EspObs& o = ln.obs.front();
    if (!o.attributed) ++stats.taps[tap].unmatched;
    if (overflow) ++stats.taps[tap].overflow;
    ln.evicted_through_ns = std::max(ln.evicted_through_ns, o.ts_ns);
    ln.obs.pop_front();
  }

  std::uint64_t lower_bound(Ring<EspObs>& r, std::int64_t ts) {
    std::uint64_t lo = r.begin_abs();
    std::uint64_t hi = r.end_abs();
    while (lo < hi) {
      const std::uint64_t mid = lo + (hi - lo) / 2;
      if (r.at(mid).ts_ns < ts) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  void claim(LogEntry& e, Direction d) {
    const auto di = static_cast<std::size_t>(d);
    for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
      const auto& tap = cfg.taps[lane_tap[lane]];
      EspLane& ln = lanes[lane][di];
      const std::int64_t from =
          d == Direction::Forward ? e.anchor_ns + tap.lo_ns(d) : e.anchor_ns - tap.hi_ns(d);
      const std::int64_t to =
          d == Direction::Forward ? e.anchor_ns + tap.hi_ns(d) : e.anchor_ns - tap.lo_ns(d);
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
  void note_outcome(std::size_t lane, const LogEntry& e, Direction d, const Claim& c,
                    std::int8_t v) {
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
  void explain_unknown(std::size_t lane, const LogEntry& e, Direction d, const Claim& c,
                       std::optional<std::uint32_t> want) {
    const auto& tap = cfg.taps[lane_tap[lane]];
    EspLane& ln = lanes[lane][static_cast<std::size_t>(d)];
    const bool fwd = d == Direction::Forward;
    auto off_us = [&](std::int64_t ts) {
      return (fwd ? ts - e.anchor_ns : e.anchor_ns - ts) / 1000;
    };
    const std::int64_t from = fwd ? e.anchor_ns + tap.lo_ns(d) : e.anchor_ns - tap.hi_ns(d);
    const std::int64_t to = fwd ? e.anchor_ns + tap.hi_ns(d) : e.anchor_ns - tap.lo_ns(d);
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
        t += " " + std::to_string(off_us(o.ts_ns)) + "us" + (in ? "" : "(out)") + "/c" +
             std::to_string(o.claims) + (o.attributed ? "/a" : "");
        if (!in || cur_log == nullptr) continue;
        for (std::uint64_t j = cur_log->begin_abs(); j < cur_log->end_abs(); ++j) {
          const LogEntry& x = cur_log->at(j);
          if (&x == &e || x.wire != e.wire) continue;
          const std::int64_t xf = fwd ? x.anchor_ns + tap.lo_ns(d) : x.anchor_ns - tap.hi_ns(d);
          const std::int64_t xt = fwd ? x.anchor_ns + tap.hi_ns(d) : x.anchor_ns - tap.lo_ns(d);
          if (o.ts_ns < xf || o.ts_ns > xt) continue;
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
  std::optional<std::uint64_t> order_rescue(std::size_t lane, Direction d, const LogEntry& e) {
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
  std::int8_t decide(LogEntry& e, Direction d) {
    const auto di = static_cast<std::size_t>(d);
    std::int8_t verdict = kNoEvidence;
    for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
      const std::size_t tap = lane_tap[lane];
      EspLane& ln = lanes[lane][di];
      const Claim& c = e.claims[lane];
      auto valid = [&](std::uint64_t i) { return i >= ln.obs.begin_abs() && i < ln.obs.end_abs(); };
      std::int8_t v = kNoEvidence;
      if (c.incomplete) {
        v = kAmbiguous;
      } else if (c.cand == 1 && valid(c.cand_idx) && ln.obs.at(c.cand_idx).claims == 1 &&
                 !ln.obs.at(c.cand_idx).attributed) {  // (attributed by order to a neighbour)
        v = tap_path[tap];
      } else if (c.cand > 0) {
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

  // ---- records ----

  /// What is known of a lost probe in a reflector gap before the counter is applied.
  enum class GapClass : std::uint8_t { Arrived, NotLeft, Open };
  GapClass gap_class(const Session& s, Slot& sl) {
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
  void apply_reflector(std::uint32_t si, Session& s, std::uint64_t seq, std::uint32_t rseq) {
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

  void on_record(const ProbeRecord& r) {
    const auto it = by_id.find(r.session_id);
    if (it == by_id.end()) {
      ++stats.unknown_session;
      return;
    }
    const std::uint32_t si = it->second;
    Session& s = sessions[si];
    Slot* sl = acquire(s, r.seq);
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

  void on_clear(std::size_t tap, const Observation& o) {
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

  // ---- finishing ----

  /// Where poll() puts what it finishes.
  struct Out {
    std::vector<ProbeRecord>& records;
    std::vector<PathSample>* samples;
  };

  /// Exact clear evidence first, then the ESP verdict. Pure.
  static std::int8_t evidence(std::uint32_t clear, std::int8_t esp) {
    if (clear != 0) {
      if (std::popcount(clear) > 1) return kAmbiguous;
      return static_cast<std::int8_t>(std::countr_zero(clear));
    }
    return esp;
  }

  /// A stateful STAMP reflector's counter can tell this session's losses apart.
  static bool counts(const Session& s) {
    return s.spec.proto == Proto::Stamp && s.spec.stateful_reflector;
  }

  /// Whether a lost probe's direction can be decided now (an answered probe's fate is known).
  /// A reply seen on a tap or the reflector's counter decide at once. Otherwise a probe seen
  /// nowhere waits for the ESP late horizon (it may have left late on the tunnel), and a STAMP
  /// probe waits for the next answered probe of its session, whose reflector sequence tells
  /// whether the gap's requests arrived, or stamp_evidence_wait_ns after it was declared lost.
  bool fate_known(const Session& s, const Slot& sl, std::int8_t ev, std::int64_t now) const {
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
  LossDirection loss_of(const Session& s, Slot& sl, std::int8_t ev) {
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
  std::int8_t fwd_path_of(Slot& sl, std::int8_t ev, LossDirection loss) {
    if (ev >= 0) return ev;
    if (ev == kAmbiguous || sl.has(kReceived) || loss == LossDirection::Reverse) return unknown_id;
    return loss == LossDirection::Undetermined ? unknown_id : none_id;
  }

  /// The reverse path: where the reply was seen ("none": no reply seen).
  std::int8_t rev_path_of(const Slot& sl) const {
    const std::int8_t ev = evidence(sl.rev_clear, sl.has(kReceived) ? sl.rev_esp : kNoEvidence);
    if (ev >= 0) return ev;
    return sl.has(kReceived) || ev == kAmbiguous ? unknown_id : none_id;
  }

  /// An ESP packet attributed to no probe (every window that could hold it has been decided),
  /// of this probe's expected length (any length when it is not known), on an ESP tap in the
  /// forward direction after the probe's window closed and within the late horizon: the probe
  /// may have left through the tunnel late.
  bool late_esp(Slot& sl) {
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

  void sample(const Session& s, Slot& sl, Direction d, std::int8_t path, PathSample::Fate fate,
              Out& out) {
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
    p.path = labels[static_cast<std::size_t>(path)];
    p.path_id = path;
    p.fate = fate;
  }

  /// A direction's sample of a probe whose fate is known.
  void sample_fate(const Session& s, Slot& sl, Direction d, std::int8_t ev, Out& out) {
    using Fate = PathSample::Fate;
    const bool fwd = d == Direction::Forward;
    if (sl.has(kReceived)) {
      sample(s, sl, d, fwd ? fwd_path_of(sl, ev, LossDirection::None) : rev_path_of(sl),
             Fate::Through, out);
      return;
    }
    const LossDirection loss = loss_of(s, sl, ev);
    const std::int8_t path = fwd ? fwd_path_of(sl, ev, loss) : rev_path_of(sl);
    Fate fate = Fate::Undetermined;
    if (loss == LossDirection::Forward) fate = fwd ? Fate::Lost : Fate::NotApplicable;
    if (loss == LossDirection::Reverse) fate = fwd ? Fate::Through : Fate::Lost;
    sample(s, sl, d, path, fate, out);
  }

  /// The forward sample leaves as soon as it is final. A probe seen leaving on a tap is through
  /// only once its fate is known (answered, or its reply's loss proven): a mirror shows where it
  /// left, not that it arrived. A probe seen nowhere is final once the ESP late horizon has
  /// passed (or fwd_unseen_wait_ns, if larger): it did not leave (a forward loss), or, with an
  /// unexplained ESP packet of its length late, it may have (MaybeLost while its fate is open).
  void try_sample_fwd(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out) {
    if (sl.has(kFwdSampled) || !sl.has(kFwdDecided)) return;
    const std::int8_t ev = evidence(sl.fwd_clear, sl.fwd_esp);
    if (fate_known(s, sl, ev, now)) {
      sample_fate(s, sl, Direction::Forward, ev, out);
    } else if (ev == kNoEvidence && sl.anchor_ns + fwd_none_delay <= now) {
      if (late_esp(sl) || unseen_tap_down(s, sl)) {
        sample(s, sl, Direction::Forward, unknown_id, PathSample::Fate::MaybeLost, out);
      } else {
        sample(s, sl, Direction::Forward, none_id, PathSample::Fate::Lost, out);
      }
    } else if (ev == kNoEvidence &&
               (unseen.empty() || unseen.back().seq != sl.seq || unseen.back().session != si)) {
      unseen.push_back({sl.anchor_ns + fwd_none_delay, si, sl.seq});
    }
  }

  void emit(Session& s, Slot& sl, Out& out) {
    if (!sl.has(kLate)) {
      for (const auto& [clear, esp] :
           {std::pair{sl.fwd_clear, sl.fwd_esp}, std::pair{sl.rev_clear, sl.rev_esp}}) {
        if (std::popcount(clear) > 1) ++stats.clear_conflicts;
        if (std::popcount(clear) == 1 && esp >= 0 && esp != std::countr_zero(clear)) {
          ++stats.esp_conflicts;  // exact sighting beats correlation
        }
      }
    }
    const std::int8_t ev = evidence(sl.fwd_clear, sl.fwd_esp);
    const LossDirection loss = sl.has(kReceived) ? LossDirection::None : loss_of(s, sl, ev);
    const std::int8_t fwd = fwd_path_of(sl, ev, loss);
    const std::int8_t rev = rev_path_of(sl);
    if (!sl.has(kFwdSampled)) {
      sample_fate(s, sl, Direction::Forward, ev, out);
    } else if (sl.fwd_sampled != fwd && !sl.has(kLate)) {
      ++stats.fwd_samples_revised;
    }
    if (!sl.has(kRevSampled)) sample_fate(s, sl, Direction::Reverse, ev, out);
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
      r.reflector_seq = sl.reflector_seq;
      r.reflector_rx_ns = sl.reflector_rx_ns;
      r.reflector_tx_ns = sl.reflector_tx_ns;
      r.reflector_clock_synced = sl.reflector_synced;
    }
    r.fwd_path = labels[static_cast<std::size_t>(fwd)];
    r.rev_path = labels[static_cast<std::size_t>(rev)];
    r.loss = loss;
    r.late = sl.has(kLate);
    for (std::size_t t = 0; t < down_spans.size(); ++t) {
      if (down_spans[t].empty() || !probe_tap_down(s, sl, t, false)) continue;
      const std::string& name = cfg.taps[t].interface;
      if (std::find(r.taps_down.begin(), r.taps_down.end(), name) == r.taps_down.end()) {
        r.taps_down.push_back(name);
      }
    }
    if (!r.taps_down.empty()) ++stats.tap_down_records;
    sl.flags |= kEmitted;
    ++stats.records;
    if (r.late) {
      ++stats.late_records;
    } else {
      ++stats.path_counts[static_cast<std::size_t>(fwd)][0];
      ++stats.path_counts[static_cast<std::size_t>(rev)][1];
    }
    // The loss counts follow the latest record of each probe (a late answer replaces its loss).
    if (sl.emitted_loss != LossDirection::None) {
      const auto i = static_cast<std::size_t>(sl.emitted_loss) - 1;
      --stats.losses[i];
      --s.losses[i];
    }
    if (loss != LossDirection::None) {
      const auto i = static_cast<std::size_t>(loss) - 1;
      ++stats.losses[i];
      ++s.losses[i];
    }
    sl.emitted_loss = loss;
  }

  void try_finish(Session& s, Slot& sl, std::int64_t now, Out& out) {
    if (sl.has(kEmitted) || !sl.has(kFwdDecided)) return;
    if (sl.has(kReceived) ? !sl.has(kRevDecided) : !sl.has(kLoss)) return;
    // A lost probe waits until its direction can be decided (the ESP late horizon, the
    // reflector's counter), like its samples.
    if (!fate_known(s, sl, evidence(sl.fwd_clear, sl.fwd_esp), now)) return;
    emit(s, sl, out);
  }

  /// A probe is lost (declared by the sender, early, or for want of a record).
  void mark_lost(std::uint32_t si, Session& s, Slot& sl, std::int64_t now) {
    sl.flags |= kLoss;
    sl.lost_ns = now;
    if (counts(s) && sl.hint == LossHint::None && sl.rev_clear == 0) {
      held.push_back({now + cfg.stamp_evidence_wait_ns, si, sl.seq});
    }
  }

  void declare_loss(std::uint32_t si, Session& s, Slot& sl, std::int64_t now, Out& out) {
    mark_lost(si, s, sl, now);
    try_sample_fwd(si, s, sl, now, out);
    try_finish(s, sl, now, out);
  }

  void process_log(Ring<LogEntry>& log, std::uint64_t& claimed, std::uint64_t& learned, Direction d,
                   std::int64_t now, std::int64_t hold, Out& out, bool learn_only = false) {
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

  void poll(std::int64_t now, Out& out) {
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
};

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
  Slot* sl = m.acquire(s, p.seq);
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
  Impl::Out out{records, samples};
  impl_->poll(now_ns, out);
}

void Attributor::flush(std::vector<ProbeRecord>& records, std::vector<PathSample>* samples) {
  Impl::Out out{records, samples};
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
