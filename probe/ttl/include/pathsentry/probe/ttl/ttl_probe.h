#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <tl/expected.hpp>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/ip.h"
#include "pathsentry/common/waiter.h"
#include "pathsentry/probe/ttl/ttl_config.h"
#include "pathsentry/probe/wire/icmp_payload.h"

namespace pathsentry::probe {

// --- wire ---------------------------------------------------------------------------------------

/// The UDP payload of a TTL probe, big endian: magic "PSTL", agent id, session id, 64-bit
/// sequence, send time (CLOCK_REALTIME ns). An ICMP error quotes it back (Linux routers quote
/// up to 576 bytes, RFC 1812 routers as much as fits; RFC 792 ones only the UDP header).
inline constexpr std::size_t kTtlPayloadSize = 28;
inline constexpr std::uint32_t kTtlMagic = 0x5053544C;  // "PSTL"

/// The identity and send time a TTL probe carries: the same as an ICMP probe's.
using TtlPayload = icmp::Payload;
void encode_ttl_payload(const TtlPayload& p, std::span<std::uint8_t, kTtlPayloadSize> out);
/// nullopt when `in` is shorter than the payload or its magic is not ours.
[[nodiscard]] std::optional<TtlPayload> decode_ttl_payload(std::span<const std::uint8_t> in);

// --- socket seam --------------------------------------------------------------------------------

/// An ICMP error the kernel queued for a TTL probe (IP_RECVERR's sock_extended_err).
struct TtlIcmpError {
  IpAddress offender{};        ///< the ICMP message's source (SO_EE_OFFENDER)
  std::uint8_t icmp_type = 0;  ///< 11 time exceeded, 3 unreachable (v6: 3 / 1)
  std::uint8_t icmp_code = 0;
  bool icmp6 = false;                                  ///< origin ICMPv6 (types differ)
  std::array<std::uint8_t, kTtlPayloadSize> quoted{};  ///< start of the quoted payload
  std::size_t quoted_size = 0;  ///< bytes of our payload the ICMP quoted (0..kTtlPayloadSize)
  std::int64_t rx_ns = 0;       ///< kernel RX timestamp of the ICMP message; 0 if none
};

/// The socket of one TTL session: a UDP socket connected to target:port with IP_TTL /
/// IPV6_UNICAST_HOPS set and IP(V6)_RECVERR on (no capability needed). Real: io/ttl_socket.cpp;
/// tests: a fake. Never blocks, never throws.
class TtlSocket {
 public:
  virtual ~TtlSocket() = default;
  /// Sends one probe datagram.
  [[nodiscard]] virtual tl::expected<void, std::error_code> send(
      std::span<const std::uint8_t> payload) = 0;
  /// Reads up to out.size() queued ICMP errors; 0 when none are pending.
  [[nodiscard]] virtual tl::expected<std::size_t, std::error_code> receive_errors(
      std::span<TtlIcmpError> out) = 0;
  /// Descriptor to poll for queued ICMP errors.
  [[nodiscard]] virtual int native_handle() const = 0;
  /// The poll(2) events that say errors are queued on native_handle(), besides POLLERR (always
  /// reported): the real socket shows its error queue as POLLERR only, so none (0); a
  /// descriptor that signals by becoming readable (an eventfd) says POLLIN.
  [[nodiscard]] virtual short poll_events() const { return 0; }
};

struct TtlSocketOptions {
  IpAddress target{};
  std::uint16_t port = 33434;
  std::uint8_t ttl = 2;
  std::optional<IpAddress> source;
  std::string interface;
};
/// Opens the real socket; the error says which step failed.
[[nodiscard]] tl::expected<std::unique_ptr<TtlSocket>, std::string> open_ttl_socket(
    const TtlSocketOptions& o);

// --- classification -----------------------------------------------------------------------------

/// What answered a TTL probe.
enum class TtlOutcome : std::uint8_t {
  Hop,       ///< time exceeded from a configured hop: the path is its label
  Unmapped,  ///< time exceeded from an address no hop names: "unknown"
  Target,    ///< the target itself answered (port unreachable): the TTL is too high, "unknown"
  Other,     ///< another ICMP error (unreachable from a router, …): "unknown"
  None,      ///< nothing within the timeout: "none"
};
[[nodiscard]] const char* to_string(TtlOutcome o);

/// Hop address → path label.
class TtlHopMap {
 public:
  explicit TtlHopMap(const std::vector<TtlHop>& hops);
  /// The label for `a`, or nullptr.
  [[nodiscard]] const std::string* find(const IpAddress& a) const;
  [[nodiscard]] const std::vector<std::string>& labels() const { return labels_; }

 private:
  std::vector<std::pair<IpAddress, std::string>> hops_;
  std::vector<std::string> labels_;  // distinct, in configuration order
};

/// One TTL probe's outcome.
struct TtlResult {
  std::uint32_t session_id = 0;
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;
  std::optional<std::int64_t> rx_ns;  ///< arrival of the ICMP error
  TtlOutcome outcome = TtlOutcome::None;
  std::optional<IpAddress> from;  ///< the ICMP error's source
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
  std::string path;  ///< the forward path: a hop's label, "unknown" or "none"
};

/// A TTL session as configured.
struct TtlSessionConfig {
  std::uint32_t agent_id = 1;
  std::uint32_t session_id = 0;
  IpAddress target{};
  std::uint8_t ttl = 2;
  std::uint16_t port = 33434;
  double rate_pps = 1;
  std::int64_t timeout_ns = 1'000'000'000;
  /// At stop, the longest wait for the last answers when shorter than the timeout (the agent's
  /// drain cap, --drain-ms); 0 = the timeout.
  std::int64_t drain_ns = 0;
  /// When > 0: a probe still unanswered when one sent this much later is answered is "none" at
  /// once, so the detector need not wait for the timeout. Off by default: across a switchover
  /// the new path may answer sooner than the old one (measured in the lab: IPsec probes
  /// overtaken by Express Connect ones by more than 50 ms under load).
  std::int64_t reorder_grace_ns = 0;
  std::int64_t max_lag_ns = 10'000'000;
  std::optional<IpAddress> source;
  std::string interface;
  std::vector<TtlHop> hops;
};

/// The most distinct addresses a TTL session counts (or logs) one by one, per kind (unmapped
/// time-exceeded, other ICMP errors): any router on the way, or a spoofer, can name new ones,
/// and each would otherwise be kept (and become a metric label) for the whole run.
inline constexpr std::size_t kTtlMaxAddresses = 64;

/// Counters of a TTL session.
struct TtlStats {
  std::uint64_t sent = 0;
  std::uint64_t send_errors = 0;
  std::uint64_t missed = 0;                       ///< pacing slots skipped (the sender fell behind)
  std::uint64_t hop_answers = 0;                  ///< time exceeded from a configured hop
  std::map<std::string, std::uint64_t> per_path;  ///< hop answers per path label
  std::map<std::string, std::uint64_t> unmapped;  ///< time exceeded per unmapped address
  std::uint64_t target_answers = 0;               ///< the target answered (TTL too high)
  std::map<std::string, std::uint64_t> other;     ///< other ICMP errors, "addr type/code"
  std::uint64_t no_answer = 0;                    ///< timed out
  std::uint64_t by_order = 0;  ///< matched to the only outstanding probe (short quote)
  /// Short quotes refused (issue 13): the offender is a hop that has quoted our payload before,
  /// or the error came before the probe left. A real router quotes alike every time; a forged
  /// time exceeded that only knows the 4-tuple cannot carry our payload.
  std::uint64_t short_quote_refused = 0;
  std::uint64_t late = 0;       ///< answers for probes already declared "none"
  std::uint64_t unmatched = 0;  ///< errors naming no probe of this session in flight
  /// Unmapped time exceeded / other errors from addresses beyond the first kTtlMaxAddresses
  /// (counted here, not per address).
  std::uint64_t unmapped_overflow = 0;
  std::uint64_t other_overflow = 0;
};

/// At most `max` distinct addresses, in arrival order: a new one beyond is refused and counted.
class BoundedAddressSet {
 public:
  enum class Insert { New, Known, Full };
  explicit BoundedAddressSet(std::size_t max) : max_(max) {}
  Insert insert(const IpAddress& a);
  [[nodiscard]] std::size_t size() const { return addrs_.size(); }
  [[nodiscard]] std::uint64_t refused() const { return refused_; }

 private:
  std::size_t max_;
  std::vector<IpAddress> addrs_;
  std::uint64_t refused_ = 0;
};

/// The pure core of a TTL session: sequence numbers, outstanding probes, matching ICMP errors
/// to probes (by the sequence in the quoted payload; when a router quotes too little, by the
/// only outstanding probe) and classifying them; timeouts make "none". No clock, no I/O.
class TtlTracker {
 public:
  explicit TtlTracker(const TtlSessionConfig& config);
  /// The next probe's payload (`tx_ns`: CLOCK_REALTIME, reported); call on_sent() when it has
  /// left.
  [[nodiscard]] TtlPayload next_probe(std::int64_t tx_ns);
  /// The probe left at `tx_mono_ns` (CLOCK_MONOTONIC: its timeout runs from there, whatever
  /// realtime does). Without it, on p.tx_ns (tests on one timeline).
  void on_sent(const TtlPayload& p, std::int64_t tx_mono_ns);
  void on_sent(const TtlPayload& p) { on_sent(p, p.tx_ns); }
  /// Matches one ICMP error; a finished probe is appended to `out`.
  void on_error(const TtlIcmpError& e, std::vector<TtlResult>& out);
  /// Probes unanswered for the timeout at `now_ns` (the timeline of on_sent()'s send times:
  /// CLOCK_MONOTONIC in the prober) become "none".
  void poll(std::int64_t now_ns, std::vector<TtlResult>& out);
  /// Every outstanding probe as "none" (end of the run).
  void flush(std::vector<TtlResult>& out);
  [[nodiscard]] const TtlStats& stats() const { return stats_; }
  [[nodiscard]] TtlStats& mutable_stats() { return stats_; }
  [[nodiscard]] std::size_t outstanding() const { return pending_.size(); }

 private:
  TtlResult classify(const TtlPayload& probe, const TtlIcmpError& e);
  /// Expires the probes sent (on the on_sent() timeline) before `sent_ns`.
  void expire_before(std::int64_t sent_ns, std::vector<TtlResult>& out);
  struct Pending {
    std::int64_t tx_ns;    // reported (CLOCK_REALTIME)
    std::int64_t mono_ns;  // for the timeout
  };

  TtlSessionConfig cfg_;
  TtlHopMap hops_;
  std::uint64_t next_seq_ = 0;
  std::map<std::uint64_t, Pending> pending_;  // by seq
  // Configured hops seen quoting our payload (bounded by the hop map): a short quote claiming
  // to come from one of them is refused rather than matched by order.
  std::vector<IpAddress> full_quoters_;
  TtlStats stats_;
};

/// Runs one TTL session on its own thread ("ttl", started by start_thread(): an exception ends
/// the process): paced sends (Pacer), ICMP errors read as they come, results handed to `sink` on
/// that thread (the Pipeline's on_ttl_result).
class TtlProber {
 public:
  using Sink = std::function<void(const TtlResult&)>;
  /// `waiter` blocks the thread between sends (on the socket, see TtlSocket::poll_events()).
  TtlProber(const Clock& clock, TtlSessionConfig config, std::unique_ptr<TtlSocket> socket,
            Sink sink, std::function<void(const std::string&)> log = {},
            Waiter& waiter = system_waiter());
  ~TtlProber();
  TtlProber(const TtlProber&) = delete;
  TtlProber& operator=(const TtlProber&) = delete;

  void start();
  /// Stops sending, waits up to the timeout for the last answers, reports the rest as "none"
  /// and joins. Idempotent.
  void stop();
  [[nodiscard]] const TtlSessionConfig& config() const { return cfg_; }
  /// A copy of the counters (any thread).
  [[nodiscard]] TtlStats stats() const;
  /// "ttl TARGET ttl=N: sent S, HOP answers (PATH n, …), unmapped …" for the logs.
  [[nodiscard]] std::string stats_line() const;

 private:
  void run();
  void drain_errors(std::vector<TtlResult>& out);

  const Clock& clock_;
  TtlSessionConfig cfg_;
  std::unique_ptr<TtlSocket> socket_;
  Sink sink_;
  std::function<void(const std::string&)> log_;
  Waiter& waiter_;
  mutable std::mutex mu_;  // guards tracker_ stats copies
  TtlTracker tracker_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  bool started_ = false;
  bool stopped_ = false;
};

/// "ttl TARGET ttl=N: …" from counters.
[[nodiscard]] std::string format_ttl_stats(const TtlSessionConfig& c, const TtlStats& s);

}  // namespace pathsentry::probe
