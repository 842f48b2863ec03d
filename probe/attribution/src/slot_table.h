#pragma once

// The slot table: per session, a ring of per-probe slots indexed by sequence. Every part of the
// attributor reads it; docs/attribution.md §2–3 has the rules.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pathsentry/common/ring.h"
#include "pathsentry/probe/attribution/attributor.h"

namespace pathsentry::probe::attr {

inline constexpr std::uint64_t kNoSeq = ~std::uint64_t{0};
/// A slot table's size bounds (per session, a power of two).
inline constexpr std::size_t kMinRing = 1024;
inline constexpr std::size_t kMaxRing = std::size_t{1} << 23;
/// Path-evidence codes beside the path ids (>= 0).
inline constexpr std::int8_t kNoEvidence = -1;
inline constexpr std::int8_t kAmbiguous = -2;

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
  // Answered (kReceived): the reply's rx. Unanswered and declared lost (kLoss): when it was
  // declared lost (the reflector's evidence waits from it; lost_ns()). One field for both: a
  // probe is declared lost only while unanswered, and an answer clears kLoss for good.
  std::int64_t rx_ns = 0;
  std::int64_t rtt_ns = 0;
  std::uint32_t wire = 0;
  std::uint32_t fwd_clear = 0;  // bit per path id seen exactly
  std::uint32_t rev_clear = 0;
  std::uint16_t flags = 0;
  std::int8_t fwd_esp = kNoEvidence;  // path id, kAmbiguous or kNoEvidence
  std::int8_t rev_esp = kNoEvidence;
  std::int8_t fwd_sampled = kNoEvidence;             // the path its forward sample said
  LossDirection emitted_loss = LossDirection::None;  // what its last record said
  LossHint hint = LossHint::None;
  bool has_reflector = false;  // its Session::reflector entry is this probe's
  bool tx_kernel = false;
  [[nodiscard]] bool has(std::uint16_t f) const { return (flags & f) != 0; }
  /// The paths a clear tap saw it take in direction `d` (bit per path id).
  [[nodiscard]] std::uint32_t clear(Direction d) const {
    return d == Direction::Forward ? fwd_clear : rev_clear;
  }
  [[nodiscard]] std::int64_t lost_ns() const { return rx_ns; }
  void set_lost_ns(std::int64_t ns) { rx_ns = ns; }
};
// 2 sessions x 65 536 slots at 100 000 probes/s: this is most of the attributor's memory (it
// was 96 bytes before the reflector's fields moved out and the loss time shared rx_ns).
static_assert(sizeof(Slot) <= 64, "a slot grew: see docs/bench.md, issue 14 session 10");

/// A STAMP reply's reflector fields, beside its slot (Session::reflector, indexed like
/// Session::slots), valid while that slot says has_reflector: sessions whose records carry none
/// (ICMP) do not pay for them.
struct ReflectorFields {
  std::int64_t rx_ns = 0;
  std::int64_t tx_ns = 0;
  std::uint32_t seq = 0;
  bool synced = false;
};
static_assert(sizeof(ReflectorFields) <= 24, "see Slot");

/// A probe to look at again once `due_ns` has passed (a forward sample waiting for the late
/// horizon, a lost STAMP probe waiting for the reflector's counter).
struct Recheck {
  std::int64_t due_ns = 0;
  std::uint32_t session = 0;
  std::uint64_t seq = 0;
};

/// Probes whose fate may have become known, to look at in the next poll (session index, seq).
using ReadyList = std::vector<std::pair<std::uint32_t, std::uint64_t>>;

struct Overtake {
  std::uint64_t seq = 0;  // a later probe that was answered
  std::int64_t due_ns = 0;
};

struct Session {
  SessionSpec spec;
  std::string target_text;
  std::vector<Slot> slots;
  // Empty until one of the session's records carries reflector fields, then as large as slots.
  std::vector<ReflectorFields> reflector;
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

/// A session's initial slot table size: its rate over the horizon an emitted probe's state must
/// stay findable, twice the sender's timeout (the sender keeps a probe that long for a late
/// answer: its ring holds 2 x rate x timeout) plus the decide delays. Probes still unresolved
/// (no record yet, up to timeout + record_grace_ns) are never overwritten: the table grows
/// when one would be (SlotTable::acquire). The slots dominate the attributor's memory (64 bytes
/// each, 4 MiB per 65536; 24 more for a STAMP session's reflector fields), so the table starts
/// no larger than that.
inline std::size_t ring_size_for(const SessionSpec& s) {
  const double horizon_s = 2.0 * static_cast<double>(s.timeout_ns) / 1e9 + 0.25;
  const double want = std::max(1.0, s.rate_pps) * horizon_s;
  return std::bit_ceil(std::clamp<std::size_t>(static_cast<std::size_t>(want), kMinRing, kMaxRing));
}

/// The slot table: the sessions, found by id (and STAMP ones by target and SSID), and per
/// session its probes' slots in a ring indexed by sequence. Not thread-safe.
struct SlotTable {
  std::deque<Session> sessions;  // a deque: samples point at target_text
  std::unordered_map<std::uint32_t, std::uint32_t> by_id;
  std::unordered_map<StampKey, std::uint32_t, StampKeyHash> by_stamp;

  /// by_id for ids below kDenseIds, as a flat array (kNoSession: none): three lookups per probe.
  static constexpr std::uint32_t kDenseIds = 1u << 16;
  static constexpr std::uint32_t kNoSession = ~std::uint32_t{0};
  std::vector<std::uint32_t> dense_id;

  void add_id(std::uint32_t id, std::uint32_t index) {
    by_id.emplace(id, index);
    if (id < kDenseIds) {
      if (dense_id.size() <= id) dense_id.resize(std::size_t{id} + 1, kNoSession);
      dense_id[id] = index;
    }
  }
  /// The session's index, or kNoSession.
  [[nodiscard]] std::uint32_t index_of(std::uint32_t id) const {
    if (id < kDenseIds) return id < dense_id.size() ? dense_id[id] : kNoSession;
    const auto it = by_id.find(id);
    return it == by_id.end() ? kNoSession : it->second;
  }
  Session* find_session(std::uint32_t id) {
    const std::uint32_t i = index_of(id);
    return i == kNoSession ? nullptr : &sessions[i];
  }
  /// The slot for `seq`, taking over a finished or empty one; nullptr when `seq` is older than
  /// what the ring holds there (stale) or the state cannot grow. Dropping an unfinished probe's
  /// state (the ring at its largest) counts in `overruns`.
  static Slot* acquire(Session& s, std::uint64_t seq, std::uint64_t& overruns);
  /// The slot for a probe a tap saw before the sender announced it (seq just ahead of what was
  /// sent). An older unfinished probe in its place makes the table grow, as acquire() does for
  /// the announcement: under load the decisions on older probes lag (a long outage's losses
  /// wait for their evidence), and dropping the copy would make a probe that left `none`.
  /// nullptr only when a newer probe holds the place or the table cannot grow.
  static Slot* take_early(Session& s, std::uint64_t seq);
  static Slot* lookup(Session& s, std::uint64_t seq) {
    Slot& sl = s.slots[seq & s.mask];
    return sl.seq == seq ? &sl : nullptr;
  }
  static const Slot* lookup(const Session& s, std::uint64_t seq) {
    const Slot& sl = s.slots[seq & s.mask];
    return sl.seq == seq ? &sl : nullptr;
  }
  static bool resolved(const Slot& sl) { return sl.has(kHaveRecord) || sl.has(kLoss); }
  /// Moves the session's lowest unresolved sequence past resolved and unannounced slots.
  static void advance_lowest(Session& s);
  /// Doubles the session's ring, keeping the newest probe per slot.
  static void grow(Session& s);
  /// The reflector fields of `sl` (a slot of `s`), allocating the session's on first use.
  static ReflectorFields& reflector_of(Session& s, const Slot& sl) {
    if (s.reflector.empty()) s.reflector.resize(s.slots.size());
    return s.reflector[sl.seq & s.mask];
  }
  /// The reflector fields of `sl`; precondition: sl.has_reflector.
  static const ReflectorFields& reflector_of(const Session& s, const Slot& sl) {
    return s.reflector[sl.seq & s.mask];
  }
};

}  // namespace pathsentry::probe::attr
