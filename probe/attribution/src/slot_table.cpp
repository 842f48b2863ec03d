#include "slot_table.h"

// The slot table: sessions and their per-probe slots.

namespace pathsentry::probe::attr {

void SlotTable::grow(Session& s) {
  std::vector<Slot> ns(s.slots.size() * 2);
  std::vector<ReflectorFields> nr(s.reflector.empty() ? 0 : ns.size());
  const std::uint64_t nmask = ns.size() - 1;
  for (std::size_t i = 0; i < s.slots.size(); ++i) {
    const Slot& sl = s.slots[i];
    if (sl.seq == kNoSeq) continue;
    Slot& d = ns[sl.seq & nmask];
    if (d.seq == kNoSeq || d.seq < sl.seq) {
      d = sl;
      if (!nr.empty()) nr[sl.seq & nmask] = s.reflector[i];
    }
  }
  s.slots = std::move(ns);
  s.reflector = std::move(nr);
  s.mask = nmask;
}

namespace {

// The slot for `seq`: its own, or one an older probe left. An older unfinished probe there makes
// the table grow; at its largest, that probe's state is dropped (counted in *overruns) or, with
// no counter, nothing is taken. nullptr when a newer probe holds the place.
Slot* place(Session& s, std::uint64_t seq, std::uint64_t* overruns) {
  for (;;) {
    Slot& sl = s.slots[seq & s.mask];
    if (sl.seq == seq) return &sl;
    if (sl.seq != kNoSeq && sl.seq > seq) return nullptr;
    const bool live = sl.seq != kNoSeq && !sl.has(kEmitted) && sl.has(kAnnounced | kHaveRecord);
    if (live) {
      if (s.slots.size() < kMaxRing) {
        SlotTable::grow(s);
        continue;
      }
      if (overruns == nullptr) return nullptr;
      ++*overruns;  // the older probe's state is dropped: it is never emitted
    }
    sl = Slot{};
    sl.seq = seq;
    return &sl;
  }
}

}  // namespace

Slot* SlotTable::acquire(Session& s, std::uint64_t seq, std::uint64_t& overruns) {
  return place(s, seq, &overruns);
}

Slot* SlotTable::take_early(Session& s, std::uint64_t seq) {
  return place(s, seq, nullptr);
}

void SlotTable::advance_lowest(Session& s) {
  while (s.lowest_unresolved <= s.max_seq) {
    const Slot& sl = s.slots[s.lowest_unresolved & s.mask];
    if (sl.seq == s.lowest_unresolved && sl.has(kAnnounced) && !resolved(sl)) break;
    ++s.lowest_unresolved;
  }
}

}  // namespace pathsentry::probe::attr
