#pragma once

#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "pathsentry/common/record.h"
#include "pathsentry/probe/probe_session.h"
#include "pathsentry/probe/record_sink.h"

namespace pathsentry::probe {

/// "icmp" / "stamp".
[[nodiscard]] const char* proto_name(Proto p);

/// One probe record as a single-line JSON object (no newline), the --records format:
/// {"target","proto","session","seq","tx_ns","rx_ns"(null if lost),"rtt_ns","late",
///  "tx_kernel_ts","reflector_seq","reflector_rx_ns","reflector_tx_ns"(null unless STAMP),
///  "reflector_clock_synced","fwd_path","rev_path"}.
/// Writes into `out` without allocating; returns the length, or 0 if `out` is too small
/// (512 bytes always suffice).
std::size_t format_record_json(const ProbeRecord& r, std::span<char> out);

/// A RecordSink writing one JSON object per line to a stdio stream (buffered; flush() at the
/// end). Not thread-safe: the engine calls it from its receiver thread only.
class JsonLinesWriter final : public RecordSink {
 public:
  /// Does not own `out`.
  explicit JsonLinesWriter(std::FILE* out) : out_(out) {}
  void on_record(const ProbeRecord& r) override;
  void flush() { std::fflush(out_); }
  /// True once a write failed (disk full, closed pipe); records after that are lost.
  [[nodiscard]] bool failed() const { return failed_; }

 private:
  std::FILE* out_;
  bool failed_ = false;
};

/// One line of the live per-second summary, e.g.
/// "16:42:07 198.18.0.2 icmp  sent 1000 recv 1000 lost 0 rtt ms min/p50/p99/max
///  0.031/0.052/0.110/0.201" (plus late/dup/reord/missed/err when non-zero).
[[nodiscard]] std::string format_interval_line(std::int64_t second_end_ns, const SessionConfig& s,
                                               const IntervalReport& r);

/// The final report line for a session (same shape, totals).
[[nodiscard]] std::string format_total_line(const SessionConfig& s, const SessionSummary& r);

/// The --summary-json document:
/// {"duration_s":..,"sessions":[{"target","proto","session","rate","sent","received","lost",
///  "lost_forward","lost_reverse","duplicates","reordered","late","missed_slots","send_errors",
///  "unmatched","no_tx_timestamp","rtt_ns":{"min","p50","p99","max","mean"},"jitter_ns"}]}.
/// lost_forward/lost_reverse are null where they cannot be known (ICMP, stateless reflector).
[[nodiscard]] std::string summary_json(double duration_s,
                                       std::span<const SessionConfig* const> configs,
                                       std::span<const SessionSummary> summaries);

}  // namespace pathsentry::probe
