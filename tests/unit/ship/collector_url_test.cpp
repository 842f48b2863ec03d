// Collector URLs and bearer tokens as the agent's configuration checks them.
#include <catch2/catch.hpp>

#include "pathsentry/probe/ship/http_client.h"

using namespace pathsentry::probe;

TEST_CASE("collector url: http host and port, IPv6 in brackets, unix sockets, the ingest path",
          "[unit]") {
  auto u = parse_collector_url("http://127.0.0.1:9780");
  REQUIRE(u);
  CHECK_FALSE(u->unix_socket);
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == "9780");
  CHECK(u->path == "/api/v1/ingest");
  CHECK(u->host_header == "127.0.0.1:9780");

  u = parse_collector_url("http://collector.example:8080/custom/ingest");
  REQUIRE(u);
  CHECK(u->host == "collector.example");
  CHECK(u->path == "/custom/ingest");

  u = parse_collector_url("http://[::1]:9780");
  REQUIRE(u);
  CHECK(u->host == "::1");
  CHECK(u->host_header == "[::1]:9780");

  u = parse_collector_url("http://collector");
  REQUIRE(u);
  CHECK(u->port == "80");
  CHECK(u->host_header == "collector");

  u = parse_collector_url("unix:/run/pathsentry/collector.sock");
  REQUIRE(u);
  CHECK(u->unix_socket);
  CHECK(u->socket_path == "/run/pathsentry/collector.sock");
  CHECK(u->path == "/api/v1/ingest");
  CHECK(u->host_header == "localhost");
}

TEST_CASE("collector url: https:// is TLS, port 443 by default", "[unit]") {
  auto u = parse_collector_url("https://collector.example:9443/x");
  REQUIRE(u);
  CHECK(u->tls);
  CHECK(u->host == "collector.example");
  CHECK(u->port == "9443");
  CHECK(u->path == "/x");
  CHECK(u->host_header == "collector.example:9443");
  u = parse_collector_url("https://[::1]");
  REQUIRE(u);
  CHECK(u->tls);
  CHECK(u->port == "443");
  CHECK(u->host_header == "[::1]");
  u = parse_collector_url("http://c");
  REQUIRE(u);
  CHECK_FALSE(u->tls);
}

TEST_CASE("collector url: each mistake says what is wrong", "[unit]") {
  CHECK(parse_collector_url("https://:1").error() == "has no host");
  CHECK(parse_collector_url("ftp://c").error().find("must be http://") == 0);
  CHECK(parse_collector_url("http://:9780").error() == "has no host");
  CHECK(parse_collector_url("http://c:0").error().find("is not 1..65535") != std::string::npos);
  CHECK(parse_collector_url("http://c:99999").error().find("is not 1..65535") != std::string::npos);
  CHECK(parse_collector_url("http://c:x").error().find("is not 1..65535") != std::string::npos);
  CHECK(parse_collector_url("http://c:").error().find("is not 1..65535") != std::string::npos);
  CHECK(parse_collector_url("http://::1:9780").error().find("in brackets") != std::string::npos);
  CHECK(parse_collector_url("http://[::1").error().find("unclosed") != std::string::npos);
  CHECK(parse_collector_url("http://c/a?b").error().find("'?'") != std::string::npos);
  CHECK(parse_collector_url("unix:relative.sock").error().find("absolute") != std::string::npos);
  CHECK(parse_collector_url("unix:/" + std::string(200, 'a')).error().find("longer") !=
        std::string::npos);
}

TEST_CASE("bearer tokens: printable ASCII without spaces (they go into a header)", "[unit]") {
  CHECK(check_token("s3cr3t-token_+/="));
  CHECK(check_token("").error() == "is empty");
  CHECK_FALSE(check_token("two words"));
  CHECK_FALSE(check_token("line\r\nX-Injected: 1"));
  CHECK_FALSE(check_token("caf\xc3\xa9"));
}
