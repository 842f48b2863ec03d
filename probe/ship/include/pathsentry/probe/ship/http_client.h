#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

namespace pathsentry::probe {

/// Where the collector listens: `http://HOST[:PORT][/PATH]` (HOST a name, an IPv4 address or
/// `[IPv6]`; port 80 by default), `https://HOST[:PORT][/PATH]` (TLS, port 443 by default; the
/// collector's certificate is always verified, against `ca_file` or the system's CAs, and must
/// name HOST) or `unix:/path/to.sock` (HTTP over a Unix stream socket). The ingest path
/// defaults to /api/v1/ingest.
struct CollectorUrl {
  bool unix_socket = false;
  bool tls = false;         ///< https://
  std::string ca_file;      ///< https: PEM CA certificate(s) to verify with; "" = the system's
  std::string host;         ///< TCP: the host as written (without brackets)
  std::string port = "80";  ///< TCP
  std::string socket_path;  ///< unix
  std::string path = "/api/v1/ingest";
  std::string host_header;  ///< the Host header ("localhost" over a Unix socket)
};

/// Parses a collector URL; the error says what is wrong with it (the caller names the key).
[[nodiscard]] tl::expected<CollectorUrl, std::string> parse_collector_url(std::string_view url);

/// A bearer token may go into an HTTP header: printable ASCII, no spaces; the error says why not.
[[nodiscard]] tl::expected<void, std::string> check_token(std::string_view token);

/// What one POST came to.
struct PostResult {
  int status = 0;     ///< the HTTP status; 0 when no answer came (see error)
  std::string body;   ///< the answer's body (truncated to 64 KiB)
  std::string error;  ///< status 0: connect failure, timeout, connection dropped, bad answer
};

/// An HTTP/1.1 client that POSTs NDJSON bodies to one collector (Boost.Beast, synchronous from
/// its caller's point of view: each call runs the I/O to completion or to its deadline on the
/// calling thread). Keeps the connection alive between calls; a failure on a reused connection
/// (the server closed it meanwhile) is retried once on a fresh one. Not thread-safe.
class HttpClient {
 public:
  HttpClient(CollectorUrl url, std::string token, std::string user_agent);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// POSTs `body` (Content-Type application/x-ndjson, Authorization: Bearer) and reads the
  /// answer, giving up `timeout_ns` after the call began (connect included), or within 50 ms of
  /// `*abort` turning true (the shipper's stop: error "aborted").
  PostResult post(const std::string& body, std::int64_t timeout_ns,
                  const std::atomic<bool>* abort = nullptr);
  /// Closes the connection (the next post opens a new one).
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pathsentry::probe
