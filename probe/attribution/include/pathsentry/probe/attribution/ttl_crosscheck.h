#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace pathsentry::probe {

/// One judged TTL probe.
struct CrossCheckVerdict {
  enum class Kind : std::uint8_t { Agree, Disagree, Undecided };
  Kind kind = Kind::Undecided;
  std::string target;
  std::uint64_t seq = 0;  ///< the TTL probe's sequence
  std::int64_t tx_ns = 0;
  std::string ttl_path;  ///< what the TTL probe said
  std::string tap_path;  ///< what the taps said ("" when they said nothing single)
  std::string why;       ///< Undecided: why
};

/// Counters of the cross-check.
struct CrossCheckStats {
  std::uint64_t agree = 0;
  std::uint64_t disagree = 0;
  std::uint64_t undecided = 0;    ///< taps gave no single path near the probe's send time
  std::uint64_t no_ttl_path = 0;  ///< TTL probes without a path ("none"/"unknown"): not judged
};

/// Compares each TTL probe's forward path with the forward paths the taps attributed to the
/// same target's other sessions (ICMP, STAMP) around the TTL probe's send time: within
/// ±window_ns, the taps' samples with a path label must all name one path (those saying
/// "unknown" or "none" are ignored); that path agrees or disagrees with the TTL probe's, and
/// anything else (no labelled sample, or two paths: a switchover in progress) is undecided.
/// A TTL probe is judged once the taps' samples have passed tx + window_ns, or after hold_ns.
/// With `samples_in_order` false (the agent's pipeline: a forward sample leaves when its
/// probe's fate is known, so a probe lost beyond a tap is sampled long after later ones), a
/// newer sample says nothing about older ones still to come: a TTL probe is judged only after
/// hold_ns, which must cover the latest a sample can come.
/// Pure: no clock, no I/O. Not thread-safe.
class TtlCrossCheck {
 public:
  explicit TtlCrossCheck(std::int64_t window_ns = 20'000'000, std::int64_t hold_ns = 3'000'000'000,
                         bool samples_in_order = true);
  /// A forward sample of a tapped session (any path value).
  void on_tap_sample(std::string_view target, std::int64_t tx_ns, std::string_view path);
  /// A TTL probe's forward path (a label, "unknown" or "none").
  void on_ttl(std::string_view target, std::uint64_t seq, std::int64_t tx_ns,
              std::string_view path);
  /// Judges what can be judged at `now_ns` (CLOCK_REALTIME); verdicts are appended.
  void poll(std::int64_t now_ns, std::vector<CrossCheckVerdict>& out);
  /// Judges everything pending with what is known.
  void flush(std::vector<CrossCheckVerdict>& out);
  [[nodiscard]] const CrossCheckStats& stats() const { return stats_; }

 private:
  struct Pending {
    std::uint64_t seq;
    std::int64_t tx_ns;
    std::string path;
  };
  struct Target {
    std::deque<std::pair<std::int64_t, std::string>> taps;  // (tx_ns, path), labels only
    std::int64_t newest_tap_ns = 0;                         // any sample, labels or not
    std::deque<Pending> pending;
  };
  void judge(const std::string& target, Target& t, const Pending& p,
             std::vector<CrossCheckVerdict>& out);
  void trim(Target& t);

  bool samples_in_order_ = true;
  std::int64_t window_ns_;
  std::int64_t hold_ns_;
  std::map<std::string, Target, std::less<>> targets_;
  CrossCheckStats stats_;
};

}  // namespace pathsentry::probe
