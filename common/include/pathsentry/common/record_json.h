#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tl/expected.hpp>
#include <variant>

#include "pathsentry/common/record.h"
#include "pathsentry/common/rollup.h"

namespace pathsentry::probe {

/// JSON lines for probe records and path events: the agent's file/stdout output and the
/// model the collector ingests. One object per line, keys in snake_case, times in
/// CLOCK_REALTIME ns, absent values as null. docs/attribution.md lists the fields.
///
///   {"type":"probe","agent":"dc1","target":"192.168.20.161","proto":"stamp","session_id":2,
///    "seq":17,"tx_ns":…,"rx_ns":…|null,"rtt_ns":…|null,"tx_kernel_ts":true,
///    "fwd_path":"ipsec","rev_path":"none","loss":null|"forward"|"reverse"|"undetermined",
///    "late":false,["taps_down":["tap-inet"],]
///    "reflector":{"seq":3,"rx_ns":…,"tx_ns":…,"clock_synced":false}|null}
///   {"type":"event","agent":"dc1","event":"switchover","target":…,"proto":…,"session_id":…,
///    "direction":"forward","ts_ns":…,"seq":…,"detected_ns":…,"from":"express-connect",
///    "to":"ipsec","last_ok_on_old_ns":…,"first_ok_on_new_ns":…,"outage_ns":…,
///    "probes_lost":…,"probes_lost_undetermined":…,"outage_kind":"bound"|"measured"|
///    "undetermined","resolution_ns":…,"failback":false}
///
/// Events carry the fields of their type: switchover (above), outage_begin (from, to,
/// last_ok_on_old_ns, probes_lost, probes_lost_undetermined, outage_kind, resolution_ns),
/// outage_end (+ first_ok_on_new_ns, outage_ns),
/// asymmetric_begin/asymmetric_end (fwd_path, rev_path; end adds duration_ns; no direction).
/// Tap events carry no target, proto, session, direction or seq:
///   {"type":"event","agent":"dc1","event":"tap_down","tap":"tap-inet","path":"ipsec",
///    "reason":"pcap read: The interface disappeared","ts_ns":…,"detected_ns":…}
///   tap_up: the same keys plus "duration_ns" (how long the tap was down).
/// Health-check events (the cloud's health check of a line, seen on its clear tap; no proto,
/// session, direction or seq; target = the gateway's line address probed):
///   {"type":"event","agent":"dc1","event":"healthcheck_degraded","tap":"tap-ec",
///    "path":"express-connect","target":"10.1.0.2","prober":"100.96.0.5","ts_ns":…,
///    "detected_ns":…,"unanswered":3,"fall":8,"interval_ns":2000000000,"duration_ns":…,
///    "eta_ns":10000000000}
///   healthcheck_failed, healthcheck_absent: the same keys without "eta_ns" (absent: "prober"
///   ""); healthcheck_recovered: plus "reason" ("answered" | "probes_resumed");
///   healthcheck_blocked: the degraded keys plus "reason" (the evidence that the line works, e.g.
///   "12 agent probes through on express-connect since the first unanswered").
/// "taps_down" (probe records) is omitted when no tap was down during the probe's windows.
/// Events carry "event_id" when it is set (non-zero: the agent's shipper numbers them).
///
/// The collector's ingest body (and the agent's spool files) add two line types:
///   {"type":"batch","agent":"dc1","run":"9f1c0a2b3d4e5f60","batch":17,"created_ns":…,
///    "version":"0.1.0"}                              (first line of every body)
///   {"type":"rollup","target":…,"proto":"stamp","session_id":2,"second_ns":…,
///    "direction":"forward","path":"express-connect","sent":1000,"received":998,
///    "lost_forward":1,"lost_reverse":0,"lost_undetermined":1,"rtt_min_ns":…,
///    "rtt_mean_ns":…,"rtt_p50_ns":…,"rtt_p99_ns":…,"rtt_max_ns":…,"jitter_ns":…}

/// Appends `s` as a JSON string: quoted, `"` and `\\` escaped, control characters as \\u00XX
/// (the one JSON string writer of the agent and the collector).
void append_json_string(std::string& out, std::string_view s);

/// Stable names used on the wire.
[[nodiscard]] const char* to_string(Proto p);
[[nodiscard]] const char* to_string(Direction d);
[[nodiscard]] const char* to_string(EventType t);
/// "forward", "reverse", "undetermined" ("none" for None, which the JSON writes as null).
[[nodiscard]] const char* to_string(LossDirection l);
/// "bound", "measured", "undetermined".
[[nodiscard]] const char* to_string(OutageKind k);

/// Appends one JSON line (ending in '\n') to `out`. `agent`, when not empty, is added as
/// "agent". Allocation-free beyond `out`'s growth, so a reused buffer costs nothing per record.
void append_json(const ProbeRecord& r, std::string& out, std::string_view agent = {});
void append_json(const PathEvent& e, std::string& out, std::string_view agent = {});
void append_json(const Rollup& r, std::string& out);
void append_json(const BatchHeader& h, std::string& out);

/// One parsed line.
using JsonLine = std::variant<ProbeRecord, PathEvent, Rollup, BatchHeader>;
/// Parses one line (with or without its '\n'). Untrusted input: never throws; the error says
/// what is wrong (not JSON, unknown type, a missing or mistyped field).
[[nodiscard]] tl::expected<JsonLine, std::string> parse_json_line(std::string_view line);

/// A one-line human summary of an event for the agent's log, saying what its outage figure is:
/// "switchover forward 192.168.20.161 stamp: express-connect -> ipsec, outage 60.123 ms
///  (resolution 1.000 ms), 59 probes lost (last ok 2026-01-01T00:00:00.000000000Z, first ok …)",
/// "…: express-connect -> ipsec, no loss seen, outage at most 1.000 ms (last ok …)",
/// "…: 272 probes lost beyond the tap, direction undetermined, outage at most 273.000 ms …".
[[nodiscard]] std::string describe(const PathEvent& e);

/// Writes JSON lines to stdout or a file. Records are buffered and leave on flush() or when
/// 64 KiB are pending; events leave at once (they are meant to be seen within 100 ms).
/// A failed write keeps the data buffered for the next flush (up to max_buffer_bytes, beyond
/// which whole lines are dropped and counted). Not thread-safe.
class JsonLinesWriter {
 public:
  /// `target` "-" is stdout; anything else is a file opened for appending (created 0644).
  /// Throws ConfigError naming the file when it cannot be opened.
  explicit JsonLinesWriter(const std::string& target, std::string agent = {});
  /// Writes to `fd`, which the writer does not close.
  JsonLinesWriter(int fd, std::string agent);
  ~JsonLinesWriter();
  JsonLinesWriter(const JsonLinesWriter&) = delete;
  JsonLinesWriter& operator=(const JsonLinesWriter&) = delete;

  void write(const ProbeRecord& r);
  void write(const PathEvent& e);
  /// Writes everything pending. The error is the write(2) errno; the data stays pending.
  tl::expected<void, std::error_code> flush();

  [[nodiscard]] std::uint64_t lines() const { return lines_; }
  [[nodiscard]] std::uint64_t write_errors() const { return write_errors_; }
  [[nodiscard]] std::uint64_t dropped_lines() const { return dropped_; }
  [[nodiscard]] std::size_t pending_bytes() const { return buf_.size() - sent_; }
  /// The descriptor written to.
  [[nodiscard]] int fd() const { return fd_; }
  /// Pending data beyond which new lines are dropped (default 16 MiB).
  void set_max_buffer_bytes(std::size_t n) { max_buffer_ = n; }

 private:
  void commit(std::size_t line_start, bool urgent);

  int fd_ = -1;
  bool owns_ = false;
  std::string agent_;
  std::string buf_;
  std::size_t sent_ = 0;  // bytes of buf_ already written
  std::size_t max_buffer_ = std::size_t{16} << 20;
  std::uint64_t lines_ = 0;
  std::uint64_t write_errors_ = 0;
  std::uint64_t dropped_ = 0;
};

}  // namespace pathsentry::probe
