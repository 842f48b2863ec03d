#include "slot_table.h"

// Slot table: sessions, their slots, the sent log.
// Part of Attributor::Impl (attributor_impl.h).

#include "attributor_impl.h"

namespace pathsentry::probe {

void Attributor::Impl::grow(Session& s) {
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
Slot* Attributor::Impl::acquire(Session& s, std::uint64_t seq) {
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

void Attributor::Impl::advance_lowest(Session& s) {
  while (s.lowest_unresolved <= s.max_seq) {
    const Slot& sl = s.slots[s.lowest_unresolved & s.mask];
    if (sl.seq == s.lowest_unresolved && sl.has(kAnnounced) && !resolved(sl)) break;
    ++s.lowest_unresolved;
  }
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

}  // namespace pathsentry::probe
