#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pathsentry/collector/handler.h"

namespace pathsentry::collector {

/// The socket side's limits (docs/collector.md "Limits").
struct ServerConfig {
  std::string listen = "127.0.0.1:9780";  ///< "ADDR:PORT" or "[V6]:PORT"; "" = no TCP listener
  std::string listen_unix;                ///< a Unix socket path; "" = none
  std::size_t max_body_bytes = std::size_t{16} << 20;  ///< larger bodies: 413, unread
  std::size_t max_header_bytes = 16 * 1024;            ///< larger heads: 431
  std::size_t max_connections = 256;  ///< beyond it a new connection is closed at once
  /// Open TCP connections one source address may hold (0 = no cap): beyond it that source's
  /// new connections are closed at once, so one address cannot take max_connections alone.
  std::size_t max_connections_per_source = 64;
  /// PEM certificate chain and private key: when both are set the TCP listener speaks TLS only
  /// (the Unix socket stays plain HTTP). docs/collector.md "TLS".
  std::string tls_cert;
  std::string tls_key;
  /// From a connection's first byte (or its opening) to the end of the request's head: a
  /// client trickling its head (slowloris) is cut off when it runs out.
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{60'000};      ///< to read the whole body
  std::chrono::milliseconds idle_timeout{60'000};      ///< keep-alive: wait for the next request
  std::chrono::milliseconds write_timeout{30'000};     ///< to write an answer or a stream's data
  std::chrono::milliseconds stream_keepalive{15'000};  ///< SSE comment interval
  std::chrono::milliseconds stop_timeout{30'000};      ///< stop(): in-flight requests get this long
  unsigned worker_threads = 4;  ///< run the handler (and so wait for the store)
};

/// Why `listen` is not a listener address ("ADDR:PORT", "[V6]:PORT", IP literals only), or
/// nullopt when it is one.
[[nodiscard]] std::optional<std::string> listen_error(const std::string& listen);

/// Counters of the socket side, monotonic since start.
struct ServerCounters {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_refused = 0;             ///< over max_connections
  std::uint64_t timeouts = 0;                        ///< head, body, idle or write timeouts
  std::uint64_t too_large = 0;                       ///< 413 and 431
  std::uint64_t bad_requests = 0;                    ///< unparsable HTTP
  std::uint64_t connections_refused_per_source = 0;  ///< over max_connections_per_source
  std::uint64_t tls_handshakes_failed = 0;
};

/// HTTP/1.1 on Asio (Boost.Beast): accepts on TCP and/or a Unix socket, reads each request
/// under the limits above, runs Handler::handle() on a pool of `worker_threads` threads (so
/// an ingest waiting for the store's commit never blocks the socket thread) and writes the
/// answer; keep-alive; the SSE stream. The I/O runs on the thread that calls run().
class Server {
 public:
  /// Binds the listeners. Throws ConfigError naming the address when it cannot.
  Server(Handler& handler, ServerConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// The bound endpoints ("127.0.0.1:9780", "unix:/run/pathsentry/collector.sock").
  [[nodiscard]] std::vector<std::string> endpoints() const;
  /// The TCP port bound (0 when no TCP listener): listen on port 0 picks a free one.
  [[nodiscard]] std::uint16_t tcp_port() const;

  /// Runs `job` on a worker thread every `period` (skipped while the previous one runs).
  /// Call before run().
  void every(std::chrono::milliseconds period, std::function<void()> job);
  /// stop() when one of these signals arrives (SIGINT, SIGTERM). Call before run().
  void stop_on_signals(std::initializer_list<int> signals);

  /// Serves until stop(); returns when the last in-flight request is answered (or
  /// stop_timeout has passed).
  void run();
  /// Stops accepting, closes idle connections and streams, lets in-flight requests finish.
  /// Thread-safe; not async-signal-safe (use stop_on_signals).
  void stop();

  [[nodiscard]] std::size_t connections() const;
  [[nodiscard]] ServerCounters counters() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pathsentry::collector
