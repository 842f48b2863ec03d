// The /metrics server on loopback: it serves the text exposition on the port it reports, a
// taken address is an error, and open_endpoint() turns that into a warning for a default
// address and an error for a configured one.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "pathsentry/metrics/metrics.h"

namespace pathsentry {
namespace {

// GET /metrics from 127.0.0.1:port; the whole answer (headers and body).
std::string http_get(std::uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  REQUIRE(write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  close(fd);
  return out;
}

std::shared_ptr<prometheus::Registry> registry_with_counter(double v) {
  auto r = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("pathsentry_test_total")
      .Help("t")
      .Register(*r)
      .Add({})
      .Increment(v);
  return r;
}

}  // namespace

// Port 0 picks a free port; the server answers GET /metrics with the registry's text.
TEST_CASE("metrics server serves the registry on the port it reports", "[integration]") {
  auto server = metrics::MetricsServer::start("127.0.0.1:0", registry_with_counter(5));
  REQUIRE(server);
  const std::uint16_t port = (*server)->port();
  REQUIRE(port != 0);
  CHECK((*server)->url() == "http://127.0.0.1:" + std::to_string(port) + "/metrics");
  const std::string answer = http_get(port);
  CHECK_THAT(answer, Catch::StartsWith("HTTP/1.1 200"));
  CHECK_THAT(answer, Catch::Contains("pathsentry_test_total 5"));
}

// The refresh hook runs on every scrape, before the registry is collected.
TEST_CASE("a refreshing collectable updates its registry when scraped", "[integration]") {
  auto r = std::make_shared<prometheus::Registry>();
  auto& g = prometheus::BuildGauge().Name("pathsentry_scrapes").Help("t").Register(*r).Add({});
  auto server =
      metrics::MetricsServer::start("127.0.0.1:0", metrics::refreshing(r, [&g] { g.Increment(); }));
  REQUIRE(server);
  CHECK_THAT(http_get((*server)->port()), Catch::Contains("pathsentry_scrapes 1"));
  CHECK_THAT(http_get((*server)->port()), Catch::Contains("pathsentry_scrapes 2"));
}

// A taken address: start() fails; open_endpoint() warns and serves nothing for a default
// address, and fails for a configured one; "off" serves nothing without a warning.
TEST_CASE("a metrics address in use: error when configured, warning by default", "[integration]") {
  auto first = metrics::MetricsServer::start("127.0.0.1:0", registry_with_counter(1));
  REQUIRE(first);
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = metrics::MetricsServer::start(taken, registry_with_counter(2));
  REQUIRE_FALSE(second);
  CHECK_THAT(second.error(), Catch::Contains("cannot listen on " + taken));

  std::vector<std::string> warnings;
  const auto warn = [&](const std::string& m) { warnings.push_back(m); };
  auto by_default = metrics::open_endpoint(taken, false, registry_with_counter(3), warn);
  REQUIRE(by_default);
  CHECK(*by_default == nullptr);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("cannot listen on " + taken));

  auto configured = metrics::open_endpoint(taken, true, registry_with_counter(4), warn);
  REQUIRE_FALSE(configured);
  CHECK_THAT(configured.error(), Catch::Contains(taken));
  CHECK(warnings.size() == 1);

  auto off = metrics::open_endpoint("off", true, registry_with_counter(5), warn);
  REQUIRE(off);
  CHECK(*off == nullptr);
  CHECK(warnings.size() == 1);
}

}  // namespace pathsentry
