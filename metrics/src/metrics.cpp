#include "pathsentry/metrics/metrics.h"

#include <prometheus/exposer.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

#include <exception>
#include <mutex>
#include <sstream>
#include <utility>

#include "pathsentry/common/ip.h"
#include "pathsentry/common/parse.h"

namespace pathsentry::metrics {

const std::vector<double>& rtt_buckets_seconds() {
  static const std::vector<double> buckets = [] {
    // In ns, so every bound is an exact decimal (2e-05, not 2.0000000000000002e-05).
    constexpr std::int64_t kSteps[] = {10, 15, 20, 30, 50, 70};
    std::vector<double> out;
    for (std::int64_t decade = 1'000; decade <= 1'000'000'000; decade *= 10) {
      for (std::int64_t s : kSteps) {
        const std::int64_t ns = decade * s;
        if (ns < 20'000 || ns > 2'000'000'000) continue;
        out.push_back(static_cast<double>(ns) / 1e9);
      }
    }
    return out;
  }();
  return buckets;
}

std::string serialize(const prometheus::Collectable& collectable) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, collectable.Collect());
  return out.str();
}

namespace {

class Refreshing final : public prometheus::Collectable {
 public:
  Refreshing(std::shared_ptr<prometheus::Registry> registry, std::function<void()> refresh)
      : registry_(std::move(registry)), refresh_(std::move(refresh)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard lock(mu_);
    refresh_();
    return registry_->Collect();
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::function<void()> refresh_;
  mutable std::mutex mu_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> refreshing(std::shared_ptr<prometheus::Registry> registry,
                                                    std::function<void()> refresh) {
  return std::make_shared<Refreshing>(std::move(registry), std::move(refresh));
}

void advance(prometheus::Counter& counter, std::uint64_t& last, std::uint64_t total) {
  if (total <= last) return;
  counter.Increment(static_cast<double>(total - last));
  last = total;
}

tl::expected<std::optional<std::string>, std::string> parse_listen(std::string_view text) {
  if (text == "off") return std::optional<std::string>();
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return tl::unexpected(std::string("must be ADDRESS:PORT (127.0.0.1:9781, [::1]:9781) or off"));
  }
  std::string_view host = text.substr(0, colon);
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  const auto addr = IpAddress::parse(host);
  if (!addr) return tl::unexpected("'" + std::string(host) + "' is not an IP address");
  if ((addr->family == AF_INET6) != bracketed) {
    return tl::unexpected(std::string(bracketed ? "brackets are for IPv6 addresses only"
                                                : "an IPv6 address goes in brackets: [::1]:9781"));
  }
  const auto port = parse_number<std::uint16_t>(text.substr(colon + 1));
  if (!port) return tl::unexpected(std::string("the port must be an integer in 0..65535"));
  return std::optional<std::string>(std::string(text));
}

struct MetricsServer::Impl {
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<prometheus::Collectable> collectable;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, std::string host, std::uint16_t port)
    : impl_(std::move(impl)), host_(std::move(host)), port_(port) {}

MetricsServer::~MetricsServer() = default;

std::string MetricsServer::url() const {
  return "http://" + host_ + ":" + std::to_string(port_) + "/metrics";
}

tl::expected<std::unique_ptr<MetricsServer>, std::string> MetricsServer::start(
    const std::string& listen, std::shared_ptr<prometheus::Collectable> collectable) {
  auto parsed = parse_listen(listen);
  if (!parsed) return tl::unexpected(parsed.error());
  if (!*parsed) return tl::unexpected(std::string("metrics are off"));
  auto impl = std::make_unique<Impl>();
  try {
    // One serving thread: a scrape every few seconds needs no more.
    impl->exposer = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& e) {
    return tl::unexpected("cannot listen on " + listen +
                          " (address in use or not local): " + e.what());
  }
  impl->collectable = std::move(collectable);
  impl->exposer->RegisterCollectable(impl->collectable);
  const auto ports = impl->exposer->GetListeningPorts();
  const std::uint16_t port = ports.empty() ? 0 : static_cast<std::uint16_t>(ports.front());
  const std::string host = listen.substr(0, listen.rfind(':'));
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl), host, port));
}

tl::expected<std::unique_ptr<MetricsServer>, std::string> open_endpoint(
    const std::string& listen, bool configured,
    std::shared_ptr<prometheus::Collectable> collectable,
    const std::function<void(const std::string&)>& warn) {
  if (listen == "off") return std::unique_ptr<MetricsServer>();
  auto server = MetricsServer::start(listen, std::move(collectable));
  if (server) return server;
  if (configured) return tl::unexpected(server.error());
  if (warn) warn("metrics: " + server.error() + "; serving no /metrics (set another address)");
  return std::unique_ptr<MetricsServer>();
}

}  // namespace pathsentry::metrics
