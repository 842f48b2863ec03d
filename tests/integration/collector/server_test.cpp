// The collector's Server on real loopback sockets (ephemeral port) with a Beast client:
// keep-alive, the limits (413 before the body, head timeout against a slowloris client,
// the connection cap), the live stream over the wire, the Unix socket, a graceful stop.
#include "pathsentry/collector/server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "collector/fake_store.h"
#include "collector/ingest_bodies.h"

namespace pathsentry::collector {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
using test::Body;
using test::FakeStore;
using test::kT0;
using test::kToken;

// A server on 127.0.0.1:0 running on its own thread; stopped and joined at the end.
struct Running {
  FakeStore store;
  SystemClock clock;
  Handler handler;
  Server server;
  std::thread thread;

  explicit Running(ServerConfig cfg = small())
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
    h.max_body_bytes = 64 * 1024;
    return h;
  }
  static ServerConfig small() {
    ServerConfig c;
    c.listen = "127.0.0.1:0";
    c.max_body_bytes = 64 * 1024;
    c.header_timeout = 400ms;
    c.body_timeout = 2s;
    c.idle_timeout = 2s;
    c.max_connections = 4;
    c.worker_threads = 2;
    return c;
  }
  tcp::endpoint endpoint() const { return {net::ip::make_address("127.0.0.1"), server.tcp_port()}; }
};

http::response<http::string_body> roundtrip(tcp::socket& s, http::request<http::string_body> req) {
  req.prepare_payload();
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  return res;
}

http::request<http::string_body> ingest_request(const std::string& body) {
  http::request<http::string_body> req{http::verb::post, "/api/v1/ingest", 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::authorization, std::string("Bearer ") + kToken);
  req.set(http::field::content_type, "application/x-ndjson");
  req.body() = body;
  return req;
}

// Reads until the peer closes or `limit` passes; true when it closed.
bool closed_within(tcp::socket& s, std::chrono::milliseconds limit) {
  s.non_blocking(true);
  const auto end = std::chrono::steady_clock::now() + limit;
  char b[256];
  while (std::chrono::steady_clock::now() < end) {
    beast::error_code ec;
    s.read_some(net::buffer(b), ec);
    if (ec == net::error::would_block) {
      std::this_thread::sleep_for(10ms);
      continue;
    }
    if (ec) return true;  // EOF or reset
  }
  return false;
}

}  // namespace

TEST_CASE("server: ingest and reads on one kept-alive connection", "[integration]") {
  Running r;
  net::io_context io;
  tcp::socket s(io);
  s.connect(r.endpoint());
  Body b;
  b.add(test::probe_at(1, kT0)).add(test::rollup(kT0, Direction::Forward, "ipsec", 1, 1));
  const auto res = roundtrip(s, ingest_request(b.text));
  CHECK(res.result_int() == 200);
  CHECK(res[http::field::content_type] == "application/json");
  CHECK(res.keep_alive());
  const auto j = nlohmann::json::parse(res.body());
  CHECK(j.at("accepted").at("probes") == 1);
  CHECK(j.at("accepted").at("rollups") == 1);

  // The same connection serves the next requests.
  http::request<http::string_body> get{http::verb::get, "/api/v1/targets", 11};
  get.set(http::field::host, "127.0.0.1");
  const auto t = roundtrip(s, get);
  CHECK(t.result_int() == 200);
  CHECK(nlohmann::json::parse(t.body()).at("targets").at(0).at("state").at("forward").at("path") ==
        "ipsec");
  http::request<http::string_body> bad{http::verb::get, "/api/v1/events?x=1", 11};
  bad.set(http::field::host, "127.0.0.1");
  const auto e = roundtrip(s, bad);
  CHECK(e.result_int() == 400);
  CHECK(r.server.counters().connections_accepted == 1);
  CHECK(r.store.probe_rows() == 1);
}

TEST_CASE("server: a body over the limit is refused from its head, unread", "[integration]") {
  Running r;
  net::io_context io;
  tcp::socket s(io);
  s.connect(r.endpoint());
  // Only the head is sent, announcing 1 MiB: the answer comes without the body.
  const std::string head = std::string("POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n") +
                           "Authorization: Bearer " + kToken +
                           "\r\nContent-Length: 1048576\r\n\r\n";
  net::write(s, net::buffer(head));
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  CHECK(res.result_int() == 413);
  CHECK(res.body().find("over max_body_bytes 65536") != std::string::npos);
  CHECK_FALSE(res.keep_alive());
  CHECK(closed_within(s, 2s));
  CHECK(r.store.ingest_calls() == 0);
  CHECK(r.server.counters().too_large == 1);
}

TEST_CASE("server: a chunked body over the limit is cut at the limit", "[integration]") {
  Running r;
  net::io_context io;
  tcp::socket s(io);
  s.connect(r.endpoint());
  auto req = ingest_request(std::string(100 * 1024, 'x'));
  req.chunked(true);
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  CHECK(res.result_int() == 413);
  CHECK(r.store.ingest_calls() == 0);
}

TEST_CASE("server: a client trickling its head (slowloris) is cut off", "[integration]") {
  Running r;  // header_timeout 400 ms
  net::io_context io;
  tcp::socket s(io);
  s.connect(r.endpoint());
  const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa";
  const auto start = std::chrono::steady_clock::now();
  bool cut = false;
  for (const char c : head) {
    beast::error_code ec;
    net::write(s, net::buffer(&c, 1), ec);
    if (ec) {
      cut = true;
      break;
    }
    std::this_thread::sleep_for(50ms);  // 20 bytes/s: the head never completes in time
    if (std::chrono::steady_clock::now() - start > 3s) break;
  }
  cut = cut || closed_within(s, 2s);
  CHECK(cut);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  CHECK(r.server.counters().timeouts >= 1);
  // An honest client is still served.
  tcp::socket ok(io);
  ok.connect(r.endpoint());
  http::request<http::string_body> get{http::verb::get, "/healthz", 11};
  get.set(http::field::host, "x");
  CHECK(roundtrip(ok, get).result_int() == 200);
}

TEST_CASE("server: a connection that never sends is closed after the head timeout",
          "[integration]") {
  Running r;
  net::io_context io;
  tcp::socket s(io);
  s.connect(r.endpoint());
  const auto start = std::chrono::steady_clock::now();
  CHECK(closed_within(s, 3s));
  CHECK(std::chrono::steady_clock::now() - start >= 300ms);
}

TEST_CASE("server: connections over the cap are closed at once", "[integration]") {
  Running r;  // max_connections 4
  net::io_context io;
  std::vector<tcp::socket> held;
  for (int i = 0; i < 4; ++i) {
    held.emplace_back(io);
    held.back().connect(r.endpoint());
  }
  // Wait until the server has accepted the four (accepting is asynchronous).
  for (int i = 0; i < 200 && r.server.connections() < 4; ++i) std::this_thread::sleep_for(5ms);
  REQUIRE(r.server.connections() == 4);
  tcp::socket extra(io);
  extra.connect(r.endpoint());
  CHECK(closed_within(extra, 1s));
  CHECK(r.server.counters().connections_refused >= 1);
  // Once one goes, a new one is served.
  held.front().close();
  for (int i = 0; i < 200 && r.server.connections() >= 4; ++i) std::this_thread::sleep_for(5ms);
  tcp::socket next(io);
  next.connect(r.endpoint());
  http::request<http::string_body> get{http::verb::get, "/healthz", 11};
  get.set(http::field::host, "x");
  CHECK(roundtrip(next, get).result_int() == 200);
}

TEST_CASE("server: one source cannot take every slot (per-source cap)", "[integration]") {
  auto cfg = Running::small();
  cfg.max_connections = 8;
  cfg.max_connections_per_source = 3;
  Running r(cfg);
  net::io_context io;
  // 127.0.0.2 (loopback too) holds its three and is refused a fourth...
  std::vector<tcp::socket> held;
  for (int i = 0; i < 3; ++i) {
    held.emplace_back(io);
    held.back().open(tcp::v4());
    held.back().bind(tcp::endpoint(net::ip::make_address("127.0.0.2"), 0));
    held.back().connect(r.endpoint());
  }
  for (int i = 0; i < 200 && r.server.connections() < 3; ++i) std::this_thread::sleep_for(5ms);
  REQUIRE(r.server.connections() == 3);
  tcp::socket fourth(io);
  fourth.open(tcp::v4());
  fourth.bind(tcp::endpoint(net::ip::make_address("127.0.0.2"), 0));
  fourth.connect(r.endpoint());
  CHECK(closed_within(fourth, 1s));
  CHECK(r.server.counters().connections_refused_per_source >= 1);
  CHECK(r.server.counters().connections_refused == 0);
  // ... while another source is served beside it.
  tcp::socket other(io);
  other.connect(r.endpoint());
  http::request<http::string_body> get{http::verb::get, "/healthz", 11};
  get.set(http::field::host, "x");
  CHECK(roundtrip(other, get).result_int() == 200);
  // A slot it gives back is its own again.
  held.front().close();
  for (int i = 0; i < 200 && r.server.connections() > 3; ++i) std::this_thread::sleep_for(5ms);
  tcp::socket again(io);
  again.open(tcp::v4());
  again.bind(tcp::endpoint(net::ip::make_address("127.0.0.2"), 0));
  again.connect(r.endpoint());
  CHECK(roundtrip(again, get).result_int() == 200);
}

TEST_CASE("server: the stream delivers a new event, a state and keepalives over the wire",
          "[integration]") {
  ServerConfig c = Running::small();
  c.stream_keepalive = 200ms;
  Running r(c);
  net::io_context io;
  tcp::socket sse(io);
  sse.connect(r.endpoint());
  const std::string head =
      "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
  net::write(sse, net::buffer(head));
  std::string got;
  auto read_until = [&](const std::string& what) {
    char b[4096];
    const auto end = std::chrono::steady_clock::now() + 3s;
    while (got.find(what) == std::string::npos && std::chrono::steady_clock::now() < end) {
      beast::error_code ec;
      const auto n = sse.read_some(net::buffer(b), ec);
      if (ec) break;
      got.append(b, n);
    }
    return got.find(what) != std::string::npos;
  };
  REQUIRE(read_until("\r\n\r\n"));
  CHECK(got.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(got.find("Content-Type: text/event-stream\r\n") != std::string::npos);
  // Subscribed once the head is out: now ingest.
  tcp::socket s(io);
  s.connect(r.endpoint());
  Body b;
  b.add(test::rollup(kT0, Direction::Forward, "ipsec", 1, 1));
  b.add(test::switchover_event(7, kT0));
  REQUIRE(roundtrip(s, ingest_request(b.text)).result_int() == 200);
  REQUIRE(read_until("event: state\n"));
  CHECK(got.find("id: 1\nevent: event\ndata: {\"id\":1,\"agent\":\"dc1\"") != std::string::npos);
  CHECK(got.find("\"event_id\":7") != std::string::npos);
  CHECK(got.find("event: state\ndata: {\"agent\":\"dc1\",\"target\":\"192.0.2.10\"") !=
        std::string::npos);
  CHECK(read_until(": keepalive\n\n"));
  // The stream outlives the head timeout (400 ms): it is no idle connection.
  std::this_thread::sleep_for(600ms);
  got.clear();
  CHECK(read_until(": keepalive\n\n"));
}

TEST_CASE("server: a Unix socket listener serves the same API", "[integration]") {
  test::TempDir dir("collector-unix-");
  REQUIRE(!dir.path.empty());
  ServerConfig c = Running::small();
  c.listen = "";
  c.listen_unix = dir.file("collector.sock");
  Running r(c);
  CHECK(r.server.endpoints() == std::vector<std::string>{"unix:" + c.listen_unix});
  net::io_context io;
  net::local::stream_protocol::socket s(io);
  s.connect(net::local::stream_protocol::endpoint(c.listen_unix));
  auto req = ingest_request(Body().add(test::probe_at(1, kT0)).text);
  req.prepare_payload();
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  CHECK(res.result_int() == 200);
  CHECK(r.store.probe_rows() == 1);
}

TEST_CASE("server: stop answers the ingest in flight, closes idle ones, then returns",
          "[integration]") {
  auto r = std::make_unique<Running>();
  net::io_context io;
  tcp::socket idle(io);
  idle.connect(r->endpoint());
  tcp::socket s(io);
  s.connect(r->endpoint());
  r->store.hold_ingest(true);  // the commit takes a while
  auto req = ingest_request(Body().add(test::probe_at(1, kT0)).text);
  req.prepare_payload();
  http::write(s, req);
  for (int i = 0; i < 400 && r->store.ingest_calls() == 0; ++i) std::this_thread::sleep_for(5ms);
  REQUIRE(r->store.ingest_calls() == 1);
  r->server.stop();
  CHECK(closed_within(idle, 2s));  // the idle connection goes at once
  r->store.hold_ingest(false);     // the commit completes: the answer still goes out
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  CHECK(res.result_int() == 200);
  CHECK_FALSE(res.keep_alive());
  CHECK(r->store.probe_rows() == 1);
  r.reset();  // joins: run() returned
}

TEST_CASE("server: a bad listen address is a configuration error", "[integration]") {
  FakeStore store;
  SystemClock clock;
  Handler h(store, clock, {});
  ServerConfig c;
  c.listen = "localhost:9780";
  CHECK_THROWS_WITH(Server(h, c), Catch::Contains("collector.listen") &&
                                      Catch::Contains("is not an IPv4 or IPv6 address"));
  c.listen = "127.0.0.1:99999";
  CHECK_THROWS_WITH(Server(h, c), Catch::Contains("the port must be 0..65535"));
}

}  // namespace pathsentry::collector
