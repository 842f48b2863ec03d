#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "pathsentry/common/ip.h"

namespace pathsentry::probe {

/// A keyed 64-bit hash of a fixed-size, padding-free object's bytes. Not cryptographic: the
/// per-process random `seed` keeps an outsider who does not know it from aiming many keys at
/// one set of a BoundedMap. Pure, thread-safe.
[[nodiscard]] std::uint64_t keyed_hash(const void* data, std::size_t size, std::uint64_t seed);

/// A fixed-capacity hash map for state kept per remote peer (rate-limit buckets, reflector
/// sessions), built so that no input can make it allocate or grow: all memory is allocated by
/// the constructor. It is set-associative: a key can only live in the `kWays` slots of the set
/// its hash selects. Every slot remembers when it was last used; a slot unused for longer than
/// `stale_after_ns` holds state equivalent to none (a refilled bucket, an expired session), so
/// a new key takes such a slot first and otherwise evicts the least recently used slot of its
/// set (counted in evictions()). A stale entry found again is reset to `Value{}`.
///
/// `Key` must be trivially copyable, without padding, and equality comparable; `Value` default
/// constructible. Not thread-safe. Never allocates after construction, never throws.
template <class Key, class Value, std::size_t kWays = 8>
class BoundedMap {
  static_assert(std::has_unique_object_representations_v<Key>,
                "BoundedMap hashes the key's bytes: it must have no padding");

 public:
  /// A slot found or claimed by find_or_insert().
  struct Lookup {
    Value* value = nullptr;  ///< never null
    bool fresh = false;      ///< true when the value was just reset to Value{} (new or stale)
  };

  /// Allocates room for at least `capacity` entries (rounded up to a power-of-two number of
  /// sets of kWays slots). `stale_after_ns` > 0; `seed` keys the hash.
  BoundedMap(std::size_t capacity, std::int64_t stale_after_ns, std::uint64_t seed)
      : stale_after_ns_(stale_after_ns), seed_(seed) {
    std::size_t sets = std::bit_ceil((capacity + kWays - 1) / kWays);
    if (sets == 0) sets = 1;
    set_mask_ = sets - 1;
    slots_.resize(sets * kWays);
  }

  /// Finds `key`, or claims a slot for it (a free or stale one first, else its set's least
  /// recently used); marks it used at `now_ns`. See Lookup::fresh.
  Lookup find_or_insert(const Key& key, std::int64_t now_ns) {
    Slot* set = &slots_[(keyed_hash(&key, sizeof key, seed_) & set_mask_) * kWays];
    Slot* victim = nullptr;
    for (std::size_t i = 0; i < kWays; ++i) {
      Slot& s = set[i];
      if (s.used && s.key == key) {
        const bool stale = now_ns - s.last_ns > stale_after_ns_;
        if (stale) s.value = Value{};
        s.last_ns = now_ns;
        s.last_use = ++uses_;
        return {&s.value, stale};
      }
      if (victim == nullptr || rank(s, now_ns) < rank(*victim, now_ns)) victim = &s;
    }
    if (victim->used && now_ns - victim->last_ns <= stale_after_ns_) ++evictions_;
    if (!victim->used) ++size_;
    victim->used = true;
    victim->key = key;
    victim->value = Value{};
    victim->last_ns = now_ns;
    victim->last_use = ++uses_;
    return {&victim->value, true};
  }

  /// A slot claimed by find_or_claim().
  struct Claim {
    Value* value = nullptr;  ///< null when the key's set holds only live entries of other keys
    bool fresh = false;      ///< the value was just reset to Value{}
    bool replaced = false;   ///< a stale entry was reused: old_* tell which
    Key old_key{};
    Value old_value{};
    std::int64_t old_last_ns = 0;
  };

  /// Like find_or_insert(), but never evicts a live entry: when the key is absent and its set
  /// has no free or stale slot, returns a null value and changes nothing.
  Claim find_or_claim(const Key& key, std::int64_t now_ns) {
    Slot* set = &slots_[(keyed_hash(&key, sizeof key, seed_) & set_mask_) * kWays];
    Slot* victim = nullptr;
    for (std::size_t i = 0; i < kWays; ++i) {
      Slot& s = set[i];
      if (s.used && s.key == key) {
        victim = &s;
        break;
      }
      if (victim == nullptr || rank(s, now_ns) < rank(*victim, now_ns)) victim = &s;
    }
    const bool live = victim->used && now_ns - victim->last_ns <= stale_after_ns_;
    Claim c;
    if (live && !(victim->key == key)) return c;  // full of live entries of other keys
    if (live) {
      victim->last_ns = now_ns;
      victim->last_use = ++uses_;
      c.value = &victim->value;
      return c;
    }
    if (victim->used) {
      c.replaced = true;
      c.old_key = victim->key;
      c.old_value = victim->value;
      c.old_last_ns = victim->last_ns;
    } else {
      ++size_;
    }
    victim->used = true;
    victim->key = key;
    victim->value = Value{};
    victim->last_ns = now_ns;
    victim->last_use = ++uses_;
    c.value = &victim->value;
    c.fresh = true;
    return c;
  }

  /// The value of `key` if it is present and live at `now_ns`, else null. Does not mark it used.
  [[nodiscard]] Value* peek(const Key& key, std::int64_t now_ns) {
    Slot* set = &slots_[(keyed_hash(&key, sizeof key, seed_) & set_mask_) * kWays];
    for (std::size_t i = 0; i < kWays; ++i) {
      Slot& s = set[i];
      if (s.used && s.key == key) {
        return now_ns - s.last_ns <= stale_after_ns_ ? &s.value : nullptr;
      }
    }
    return nullptr;
  }

  /// Calls f(key, value&, last_ns) for every entry in use that is stale at `now_ns`.
  /// O(capacity).
  template <class F>
  void for_each_stale(std::int64_t now_ns, F&& f) {
    for (Slot& s : slots_) {
      if (s.used && now_ns - s.last_ns > stale_after_ns_) f(s.key, s.value, s.last_ns);
    }
  }

  /// Entries in use (live or stale). At most capacity().
  [[nodiscard]] std::size_t size() const { return size_; }
  /// Entries used within `stale_after_ns` of `now_ns`. Scans the whole table: O(capacity).
  [[nodiscard]] std::size_t live(std::int64_t now_ns) const {
    std::size_t n = 0;
    for (const Slot& s : slots_) n += (s.used && now_ns - s.last_ns <= stale_after_ns_) ? 1 : 0;
    return n;
  }
  [[nodiscard]] std::size_t capacity() const { return slots_.size(); }
  /// Live entries pushed out to make room for a new key (the table was full in that set).
  [[nodiscard]] std::uint64_t evictions() const { return evictions_; }

 private:
  struct Slot {
    Key key{};
    Value value{};
    std::int64_t last_ns = 0;
    std::uint64_t last_use = 0;  // order of use: exact LRU even when many share one now_ns
    bool used = false;
  };
  // Lower is a better victim: free slots, then stale ones, then the least recently used.
  [[nodiscard]] std::uint64_t rank(const Slot& s, std::int64_t now_ns) const {
    if (!s.used) return 0;
    if (now_ns - s.last_ns > stale_after_ns_) return 1;
    return s.last_use + 1;
  }

  std::vector<Slot> slots_;
  std::size_t set_mask_ = 0;
  std::size_t size_ = 0;
  std::uint64_t evictions_ = 0;
  std::uint64_t uses_ = 1;
  std::int64_t stale_after_ns_;
  std::uint64_t seed_;
};

/// A rate: `pps` tokens per second, at most `burst` of them saved up.
struct RateLimit {
  std::uint64_t pps = 10'000;   ///< 1 .. kMaxPps
  std::uint64_t burst = 1'000;  ///< 1 .. kMaxBurst
  static constexpr std::uint64_t kMaxPps = 100'000'000;
  static constexpr std::uint64_t kMaxBurst = 1'000'000;
};

/// One token bucket in exact integer arithmetic (tokens are counted in billionths, so a rate
/// of `pps` adds exactly `pps` billionths per ns). A default-constructed bucket is full.
/// The time is passed in (monotonic ns), so tests move it by hand. Not thread-safe.
class TokenBucket {
 public:
  /// Refills for the time since the last call, then takes one token if there is one.
  /// Time going backwards counts as no time passing.
  [[nodiscard]] bool try_take(const RateLimit& limit, std::int64_t now_ns);

 private:
  std::int64_t nano_tokens_ = -1;  // -1: never used (full)
  std::int64_t last_ns_ = 0;
};

/// Per-source rate limiting: one TokenBucket per source address in a BoundedMap of at most
/// `max_sources` entries, so a flood from many (spoofed) sources costs bounded memory. A
/// source unseen for long enough to have refilled its bucket is forgotten at no loss; when a
/// set is full of active sources, its least recently seen one is evicted (it comes back with
/// a full bucket; evictions() counts this). Not thread-safe, never allocates after construction.
class SourceRateLimiter {
 public:
  /// `limit` must be valid (see RateLimit); `seed` keys the table's hash.
  SourceRateLimiter(RateLimit limit, std::size_t max_sources, std::uint64_t seed);

  /// True when `source` may send one more packet at `now_ns` (monotonic ns).
  [[nodiscard]] bool allow(const IpAddress& source, std::int64_t now_ns);

  [[nodiscard]] std::size_t tracked() const { return table_.size(); }
  [[nodiscard]] std::size_t capacity() const { return table_.capacity(); }
  [[nodiscard]] std::uint64_t evictions() const { return table_.evictions(); }
  [[nodiscard]] const RateLimit& limit() const { return limit_; }
  /// Time for an empty bucket to refill completely, in ns (rounded up).
  [[nodiscard]] static std::int64_t refill_ns(const RateLimit& limit);

 private:
  RateLimit limit_;
  BoundedMap<IpAddress, TokenBucket> table_;
};

}  // namespace pathsentry::probe
