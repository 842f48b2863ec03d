#pragma once

#include <span>
#include <string>
#include <vector>

#include "pathsentry/common/record.h"
#include "pathsentry/common/record_json.h"
#include "pathsentry/probe/attribution/pipeline.h"
#include "pathsentry/probe/engine/probe_session.h"
#include "pathsentry/probe/engine/record_sink.h"
#include "pathsentry/probe/ttl/ttl_probe.h"

namespace pathsentry::probe {

/// "icmp" / "stamp".
[[nodiscard]] const char* proto_name(Proto p);

/// A RecordSink that writes each record as one JSON line (record_json.h's encoding) through a
/// JsonLinesWriter (not owned). Called on the engine's receiver thread only.
class RecordJsonSink final : public RecordSink {
 public:
  explicit RecordJsonSink(JsonLinesWriter& writer) : writer_(writer) {}
  void on_record(const ProbeRecord& r) override { writer_.write(r); }

 private:
  JsonLinesWriter& writer_;
};

/// One line of the live per-second summary, e.g.
/// "16:42:07 198.18.0.2 icmp  sent 1000 recv 1000 lost 0 rtt ms min/p50/p99/max
///  0.031/0.052/0.110/0.201" (plus late/dup/reord/missed/err when non-zero).
[[nodiscard]] std::string format_interval_line(std::int64_t second_end_ns, const SessionConfig& s,
                                               const IntervalReport& r);

/// The paths part of a per-second line: "fwd=PATH rev=PATH" (TTL sessions: "fwd=PATH"), PATH
/// being the confirmed path, "none" during an outage, "-" before one is established.
[[nodiscard]] std::string format_paths(const PathState& state);

/// The per-second line's tap suffix: "" while every tap captures, else e.g.
/// "degraded: tap-inet (ipsec) down 2.310 s, tap-ec (express-connect) down 0.120 s".
[[nodiscard]] std::string format_degraded(std::span<const TapDown> down);

/// The per-second line of a TTL session, e.g. "16:42:07 192.168.20.161 ttl=2 sent 10 hop
/// ipsec:10 unmapped 0 target 0 other 0 none 0 fwd=ipsec", from its counters now and a second
/// earlier and its paths.
[[nodiscard]] std::string format_ttl_interval_line(std::int64_t second_end_ns,
                                                   const TtlSessionConfig& c, const TtlStats& now,
                                                   const TtlStats& before, const PathState& paths);

/// The final report line for a session (same shape, totals).
[[nodiscard]] std::string format_total_line(const SessionConfig& s, const SessionSummary& r);

/// The --summary-json document:
/// {"duration_s":..,"sessions":[{"target","proto","session","rate","sent","received","lost",
///  "lost_forward","lost_reverse","duplicates","reordered","late","missed_slots","send_errors",
///  "unmatched","no_tx_timestamp","rtt_ns":{"min","p50","p99","max","mean"},"jitter_ns"}]}.
/// lost_forward/lost_reverse are null where they cannot be known (ICMP, stateless reflector,
/// without taps); lost_undetermined counts the lost probes of no known direction.
[[nodiscard]] std::string summary_json(double duration_s,
                                       std::span<const SessionConfig* const> configs,
                                       std::span<const SessionSummary> summaries);

}  // namespace pathsentry::probe
