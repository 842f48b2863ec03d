#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/ip.h"
#include "pathsentry/probe/wire/stamp.h"
#include "pathsentry/reflector/rate_limiter.h"
#include "pathsentry/reflector/reflector_config.h"

namespace pathsentry::probe {

/// One received datagram, as the I/O loop hands it to Reflector::handle().
struct Request {
  std::span<const std::uint8_t> bytes;  ///< UDP payload as received
  IpAddress source;                     ///< sender address
  std::uint16_t source_port = 0;        ///< sender port (host order)
  std::int64_t rx_ns = 0;               ///< kernel RX timestamp (t2), CLOCK_REALTIME ns
  std::optional<std::uint8_t> ttl;      ///< IPv4 TTL / IPv6 Hop Limit as received
  std::optional<std::uint8_t> tos;      ///< IPv4 TOS / IPv6 Traffic Class as received
  bool truncated = false;               ///< the datagram did not fit the receive buffer
  bool to_unicast = true;  ///< sent to one of our unicast addresses (not broadcast/multicast)
};

/// A reply built by Reflector::handle() into the caller's buffer.
struct Reply {
  std::size_t size = 0;        ///< bytes written: always the request's size
  std::uint32_t sequence = 0;  ///< the reflector's sequence number in this session
  std::uint8_t tos = 0;        ///< TOS / Traffic Class to send the reply with
};

/// Counters of a reflector. received = replied + send_errors + dropped_not_allowed +
/// dropped_low_port + dropped_rate_limited + dropped_global_rate_limited + malformed +
/// refused_session_table_full + refused_sessions_per_source (once every built reply has been
/// sent or failed).
struct ReflectorCounters {
  std::uint64_t received = 0;
  std::uint64_t replied = 0;              ///< replies handed to the kernel
  std::uint64_t dropped_not_allowed = 0;  ///< source outside the allowlist
  std::uint64_t dropped_rate_limited = 0;
  /// Source port below 1024 (a system service's port: a spoofed request would aim the reply at
  /// it, e.g. another reflector's 862 or a DNS server's 53; STAMP senders use ephemeral ports).
  std::uint64_t dropped_low_port = 0;
  /// Shorter than 44 bytes, truncated, invalid source or port, not sent to a unicast address
  /// of ours, or a reflected STAMP packet (loop guard: see docs/reflector.md).
  std::uint64_t malformed = 0;
  /// Over the global reply limit (all sources together).
  std::uint64_t dropped_global_rate_limited = 0;
  /// A new session found no room: its slots in the session table (or the per-source table)
  /// hold only live sessions. A live session is never evicted for a new one, so a source
  /// cycling SSIDs or ports cannot push an established session back to sequence 0.
  std::uint64_t refused_session_table_full = 0;
  /// A new session from a source that already holds max_sessions_per_source live ones.
  std::uint64_t refused_sessions_per_source = 0;
  std::uint64_t send_errors = 0;  ///< sendmmsg refused the reply (send_denied included)
  /// Of send_errors: EPERM/EACCES (a firewall rule or policy refused it): final, not retried.
  std::uint64_t send_denied = 0;
  std::uint64_t source_evictions = 0;  ///< active sources pushed out of the full rate table
  /// "received=N replied=N ..." for logs.
  [[nodiscard]] std::string to_string() const;
};

/// The STAMP Session-Reflector logic (RFC 8762 §4.3, unauthenticated, stateful, with the
/// RFC 8972 SSID), independent of sockets: allowlist, per-source and global rate limits,
/// per-session sequence (sessions capped per source, never evicted while live), reply bytes. A
/// session is (sender address, sender port, SSID); each has its own sequence starting at 0, so the
/// sender can split loss into forward and reverse.
///
/// Single-threaded: handle() and count_sent() must be called from one thread; counters() may
/// be read from any thread. Never allocates after construction, never throws from handle().
class Reflector {
 public:
  /// Throws ConfigError when `config.allow` is empty (it would answer nobody). `hash_seed`
  /// keys the per-source and per-session tables (use a random one in production).
  Reflector(const ReflectorConfig& config, std::uint64_t hash_seed);

  /// Decides whether to answer `req` at `now_ns` (monotonic ns, for rate limit and session
  /// expiry) and, if so, writes the reply into `out` (which must hold req.bytes.size()
  /// bytes) and advances the session's sequence. The reply is exactly as long as the request
  /// (44-byte reflector packet + the request's padding length, zero-filled): never an
  /// amplifier. Its timestamp (t3) is set to req.rx_ns; the I/O loop overwrites it with
  /// set_tx_timestamp() just before sending. Counts every outcome.
  [[nodiscard]] std::optional<Reply> handle(const Request& req, std::int64_t now_ns,
                                            std::span<std::uint8_t> out);

  /// Writes the reflector's transmit timestamp t3 (CLOCK_REALTIME ns, NTP format) into a
  /// reply built by handle().
  static void set_tx_timestamp(std::span<std::uint8_t> reply, std::int64_t tx_ns);

  /// Records the fate of built replies: `sent` handed to the kernel, `failed` refused, of
  /// which `denied` with EPERM/EACCES.
  void count_sent(std::uint64_t sent, std::uint64_t failed, std::uint64_t denied = 0);

  /// A consistent-enough snapshot (each counter is read atomically). Any thread.
  [[nodiscard]] ReflectorCounters counters() const;

  /// Sessions active within the session timeout at `now_ns`. O(max_sessions): for stats.
  [[nodiscard]] std::size_t active_sessions(std::int64_t now_ns) const;

  /// Takes the sessions idle past the timeout out of their source's live-session count (so an
  /// agent restarted with new ports gets its sessions once the old ones have expired).
  /// O(max_sessions): the I/O loop calls it about once a second, with active_sessions().
  void expire_sessions(std::int64_t now_ns);

  /// The error estimate put in replies for this configuration.
  [[nodiscard]] const stamp::ErrorEstimate& error_estimate() const { return error_; }
  /// Encodes `error_ns` as the smallest Scale/Multiplier estimate not below it.
  [[nodiscard]] static stamp::ErrorEstimate error_estimate_for(std::int64_t error_ns,
                                                               bool synchronized);

 private:
  struct SessionKey {
    IpAddress address;
    std::uint16_t port = 0;
    std::uint16_t ssid = 0;
    friend bool operator==(const SessionKey&, const SessionKey&) = default;
  };
  struct Session {
    std::uint32_t next_sequence = 0;
    bool counted = false;  // in its source's SourceSessions::count
  };
  // Live sessions of one source address. `since_ns`: when this entry was (re)started; a
  // session last used before it was counted by an earlier, expired entry.
  struct SourceSessions {
    std::uint32_t count = 0;
    std::int64_t since_ns = 0;
  };
  // The session of `key`, or null (counted) when a new one must be refused.
  Session* session_for(const SessionKey& key, std::int64_t now_ns);
  // Takes a session that is no longer live out of its source's count.
  void uncount(const SessionKey& key, Session& s, std::int64_t last_ns, std::int64_t now_ns);
  // Single writer: a relaxed load+store is enough and avoids a locked add per packet.
  struct Counter {
    std::atomic<std::uint64_t> v{0};
    void add(std::uint64_t n = 1) {
      v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t get() const { return v.load(std::memory_order_relaxed); }
  };

  std::vector<IpPrefix> allow_;
  std::optional<std::uint8_t> reply_tos_;
  stamp::ErrorEstimate error_;
  SourceRateLimiter limiter_;
  RateLimit global_limit_;
  TokenBucket global_bucket_;
  std::size_t max_sessions_per_source_;
  BoundedMap<SessionKey, Session> sessions_;
  BoundedMap<IpAddress, SourceSessions> source_sessions_;
  Counter received_, replied_, not_allowed_, rate_limited_, global_limited_, low_port_, malformed_,
      table_full_, per_source_, send_errors_, send_denied_;
  std::atomic<std::uint64_t> source_evictions_{0};
};

/// The reflector's sockets and I/O loop: one UDP socket per bind address (default 0.0.0.0
/// and ::, IPv6-only), kernel RX timestamps (SO_TIMESTAMPING), TTL/Hop Limit, TOS/Traffic
/// Class and destination address from control messages, recvmmsg/sendmmsg batches, replies
/// sent from the address the request was sent to. All buffers are allocated up front.
class ReflectorServer {
 public:
  /// Opens and binds the sockets. Throws ConfigError naming the address when one cannot be
  /// bound (port in use, no permission, address not local, IPv6 unavailable when asked).
  ReflectorServer(const ReflectorConfig& config, const Clock& clock);
  ~ReflectorServer();
  ReflectorServer(const ReflectorServer&) = delete;
  ReflectorServer& operator=(const ReflectorServer&) = delete;

  /// "addr:port" of every socket ("[v6]:port" for IPv6), in bind order.
  [[nodiscard]] std::vector<std::string> endpoints() const;
  /// The UDP port every socket listens on (the chosen one when configured as 0).
  [[nodiscard]] std::uint16_t port() const;

  /// Serves until stop() is called; logs the counters every stats interval (spdlog).
  /// Throws std::system_error only on an unrecoverable poll failure.
  void run();
  /// Makes run() return soon. Thread-safe and async-signal-safe (one write to an eventfd).
  void stop() noexcept;

  /// The reflector's counters. Any thread.
  [[nodiscard]] ReflectorCounters counters() const;
  /// Sessions active within the session timeout, as last counted by run() (about once a
  /// second). Any thread.
  [[nodiscard]] std::size_t active_sessions() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// pathsentry-reflector's whole program (flags, config, signals, readiness line, counters at
/// exit); apps/reflector_main.cpp only calls it. Returns the process exit status.
int reflector_main(int argc, char** argv);

}  // namespace pathsentry::probe
