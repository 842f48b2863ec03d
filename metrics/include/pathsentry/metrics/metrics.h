#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

namespace pathsentry::metrics {

/// Upper bounds (seconds) of every RTT histogram's buckets: 1, 1.5, 2, 3, 5, 7 per decade from
/// 20 µs to 2 s (31 buckets, neighbours at most 5/3 apart; +Inf is implicit), so a
/// histogram_quantile resolves anything from a LAN's 20 µs to a dying tunnel's 2 s.
[[nodiscard]] const std::vector<double>& rtt_buckets_seconds();

/// The Prometheus text exposition (format 0.0.4) of everything `collectable` holds now — what
/// the collector answers on its own HTTP port at GET /metrics. Thread-safe as Collect() is.
[[nodiscard]] std::string serialize(const prometheus::Collectable& collectable);

/// A Collectable that runs `refresh` (under a mutex: one scrape at a time) and then collects
/// `registry`: for values that are cheapest read at scrape time (a reflector's counters).
[[nodiscard]] std::shared_ptr<prometheus::Collectable> refreshing(
    std::shared_ptr<prometheus::Registry> registry, std::function<void()> refresh);

/// Adds to `counter` what `total` gained since `last` and remembers it; a total that went back
/// (a late reply taking back a loss) adds nothing until it passes `last` again, so the counter
/// never decreases. Call from one thread per (counter, last) pair.
void advance(prometheus::Counter& counter, std::uint64_t& last, std::uint64_t total);

/// Where a /metrics endpoint listens: "off", or an IP literal and a port ("127.0.0.1:9781",
/// "[::1]:9781", port 0 = any free port). Returns nullopt for "off", else the address, or an
/// error text saying what is wrong.
[[nodiscard]] tl::expected<std::optional<std::string>, std::string> parse_listen(
    std::string_view text);

/// An HTTP server answering GET /metrics with a collectable's text exposition (prometheus-cpp's
/// Exposer; civetweb stays out of this header). Serves from its own threads until destroyed.
class MetricsServer {
 public:
  /// Binds `listen` (as parse_listen() accepts it, not "off"). Returns why it could not
  /// (address in use, not local, malformed).
  [[nodiscard]] static tl::expected<std::unique_ptr<MetricsServer>, std::string> start(
      const std::string& listen, std::shared_ptr<prometheus::Collectable> collectable);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  /// The TCP port it listens on (the chosen one when asked for port 0).
  [[nodiscard]] std::uint16_t port() const { return port_; }
  /// "http://127.0.0.1:9781/metrics".
  [[nodiscard]] std::string url() const;

 private:
  struct Impl;
  MetricsServer(std::unique_ptr<Impl> impl, std::string host, std::uint16_t port);
  std::unique_ptr<Impl> impl_;
  std::string host_;
  std::uint16_t port_ = 0;
};

/// Opens a program's /metrics endpoint the way every pathsentry program does (docs/metrics.md):
/// `listen` "off" → nullptr; the bind fails → an error when `configured` (the operator asked for
/// this address: the program exits 2), else a warning through `warn` and nullptr (a default
/// port that is taken must not stop a second agent on the same host).
[[nodiscard]] tl::expected<std::unique_ptr<MetricsServer>, std::string> open_endpoint(
    const std::string& listen, bool configured,
    std::shared_ptr<prometheus::Collectable> collectable,
    const std::function<void(const std::string&)>& warn);

}  // namespace pathsentry::metrics
