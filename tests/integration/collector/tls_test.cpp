// TLS on the collector's TCP listener (collector.tls_cert/tls_key) and the agent's https://
// HttpClient, on loopback with certificates made by the openssl command for the test: a batch
// goes through when the client trusts the CA, is refused (nothing stored) with a wrong CA or
// plain HTTP, and the read API answers over TLS too. docs/collector.md "TLS".
// clang-format off
#include <utility>  // first: Boost 1.74's asio/awaitable.hpp uses std::exchange without it
// clang-format on
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <thread>

#include "collector/fake_store.h"
#include "collector/ingest_bodies.h"
#include "pathsentry/collector/server.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/ship/http_client.h"

namespace pathsentry::collector {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using test::Body;
using test::FakeStore;
using test::kT0;
using test::kToken;

// A CA, a server certificate it signs (CN and SAN localhost + 127.0.0.1) and a second CA that
// signed nothing of ours, as docs/collector.md "TLS" makes them.
struct Certs {
  test::TempDir dir{"pathsentry-tls-"};
  bool ok = false;
  Certs() {
    const std::string d = dir.path;
    const std::string cmd =
        "cd '" + d +
        "' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        "-subj /CN=test-ca "
        "-keyout ca.key -out ca.pem && "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost "
        "-keyout server.key "
        "-out server.csr && "
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile san.ext -out server.pem && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "
        "/CN=other-ca "
        "-keyout other.key -out other.pem";
    ok = std::system(("(" + cmd + ") >/dev/null 2>&1").c_str()) == 0;
  }
  [[nodiscard]] std::string file(const std::string& n) const { return dir.file(n); }
};

// Made once for every test case (EC keys: quick to make).
const Certs& certs() {
  static const Certs c;
  return c;
}

struct Running {
  FakeStore store;
  SystemClock clock;
  Handler handler;
  Server server;
  std::thread thread;

  explicit Running(ServerConfig cfg)
      : handler(store, clock, handler_config()),
        server(handler, std::move(cfg)),
        thread([this] { server.run(); }) {}
  ~Running() {
    server.stop();
    thread.join();
  }
  static HandlerConfig handler_config() {
    HandlerConfig h;
    h.tokens = {kToken};
    return h;
  }
};

ServerConfig tls_config(const Certs& c) {
  ServerConfig s;
  s.listen = "127.0.0.1:0";
  s.tls_cert = c.file("server.pem");
  s.tls_key = c.file("server.key");
  s.header_timeout = 2s;
  s.worker_threads = 1;
  return s;
}

probe::PostResult post(const std::string& url, const std::string& ca_file) {
  auto u = probe::parse_collector_url(url);
  REQUIRE(u);
  u->ca_file = ca_file;
  probe::HttpClient client(*u, kToken, "tls-test");
  Body b;
  b.add(test::probe_at(1, kT0));
  return client.post(b.text, 5'000'000'000);
}

std::string url_of(const Running& r, const std::string& host) {
  return "https://" + host + ":" + std::to_string(r.server.tcp_port()) + "/api/v1/ingest";
}

}  // namespace

TEST_CASE("tls: the agent's client ships over TLS to a collector it can verify", "[integration]") {
  const Certs& c = certs();
  REQUIRE(c.ok);
  Running r(tls_config(c));
  REQUIRE(r.server.endpoints().at(0).starts_with("https://127.0.0.1:"));
  const auto res = post(url_of(r, "127.0.0.1"), c.file("ca.pem"));
  INFO(res.error << res.body);
  CHECK(res.status == 200);
  CHECK(r.store.probe_rows() == 1);
  // By name too: the certificate's DNS name is checked.
  CHECK(post(url_of(r, "localhost"), c.file("ca.pem")).status == 200);
}

TEST_CASE("tls: a certificate from another CA is refused, nothing is sent", "[integration]") {
  const Certs& c = certs();
  REQUIRE(c.ok);
  Running r(tls_config(c));
  const auto res = post(url_of(r, "127.0.0.1"), c.file("other.pem"));
  CHECK(res.status == 0);
  CHECK_THAT(res.error, Contains("TLS handshake with 127.0.0.1:"));
  CHECK_THAT(res.error, Contains("certificate verify failed"));
  CHECK_THAT(res.error, Contains("verified against " + c.file("other.pem")));
  CHECK(r.store.probe_rows() == 0);
  CHECK(r.store.ingest_calls() == 0);
}

TEST_CASE("tls: the system's CAs do not vouch for a private CA's certificate", "[integration]") {
  const Certs& c = certs();
  REQUIRE(c.ok);
  Running r(tls_config(c));
  const auto res = post(url_of(r, "127.0.0.1"), "");
  CHECK(res.status == 0);
  CHECK_THAT(res.error, Contains("certificate verify failed"));
  CHECK(r.store.ingest_calls() == 0);
}

TEST_CASE("tls: plain HTTP to the TLS listener gets no answer and stores nothing",
          "[integration]") {
  const Certs& c = certs();
  REQUIRE(c.ok);
  Running r(tls_config(c));
  auto u = probe::parse_collector_url("http://127.0.0.1:" + std::to_string(r.server.tcp_port()));
  REQUIRE(u);
  probe::HttpClient client(*u, kToken, "tls-test");
  Body b;
  b.add(test::probe_at(1, kT0));
  const auto res = client.post(b.text, 3'000'000'000);
  CHECK(res.status == 0);
  CHECK(r.store.ingest_calls() == 0);
  CHECK(r.server.counters().tls_handshakes_failed >= 1);
}

TEST_CASE("tls: the read API answers over TLS", "[integration]") {
  const Certs& c = certs();
  REQUIRE(c.ok);
  Running r(tls_config(c));
  net::io_context io;
  net::ssl::context ctx(net::ssl::context::tls_client);
  ctx.load_verify_file(c.file("ca.pem"));
  beast::ssl_stream<beast::tcp_stream> s(io, ctx);
  s.set_verify_mode(net::ssl::verify_peer);
  beast::get_lowest_layer(s).connect(
      net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), r.server.tcp_port()));
  s.handshake(net::ssl::stream_base::client);
  http::request<http::string_body> req{http::verb::get, "/api/v1/targets", 11};
  req.set(http::field::host, "127.0.0.1");
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  CHECK(res.result_int() == 200);
  CHECK_THAT(res.body(), Contains("\"targets\""));
}

TEST_CASE("tls: a key that does not match the certificate is a config error", "[integration]") {
  const Certs& c = certs();
  REQUIRE(c.ok);
  FakeStore store;
  SystemClock clock;
  Handler handler(store, clock, Running::handler_config());
  auto cfg = tls_config(c);
  cfg.tls_key = c.file("other.key");
  CHECK_THROWS_WITH(Server(handler, cfg), Contains("collector.tls_key = '" + c.file("other.key") +
                                                   "': cannot load the private key (PEM): key "
                                                   "values mismatch"));
  cfg.tls_key.clear();
  CHECK_THROWS_WITH(Server(handler, cfg), Contains("TLS needs both tls_cert and tls_key"));
}

}  // namespace pathsentry::collector
