#include "pathsentry/probe/ship/http_client.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <optional>

namespace pathsentry::probe {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Deadline = std::chrono::steady_clock::time_point;

tl::expected<CollectorUrl, std::string> parse_collector_url(std::string_view url) {
  CollectorUrl u;
  if (url.starts_with("unix:")) {
    u.unix_socket = true;
    u.socket_path = std::string(url.substr(5));
    u.host_header = "localhost";
    if (u.socket_path.empty() || u.socket_path.front() != '/') {
      return tl::unexpected(std::string("must be unix:/absolute/path/to.sock"));
    }
    if (u.socket_path.size() >= 108) {
      return tl::unexpected(std::string("the socket path is longer than a Unix socket allows"));
    }
    return u;
  }
  if (url.starts_with("https://")) {
    u.tls = true;
    u.port = "443";
  } else if (!url.starts_with("http://")) {
    return tl::unexpected(std::string(
        "must be http://HOST[:PORT][/PATH], https://HOST[:PORT][/PATH] or unix:/path/to.sock"));
  }
  std::string_view rest = url.substr(u.tls ? 8 : 7);
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) u.path = std::string(rest.substr(slash));
  if (u.path.find_first_of(" \r\n\t?#") != std::string::npos) {
    return tl::unexpected(std::string("the path must not hold spaces, '?' or '#'"));
  }
  std::string_view port;
  if (authority.starts_with("[")) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return tl::unexpected(std::string("unclosed '[' in host"));
    u.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return tl::unexpected(std::string("junk after ']'"));
      port = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    if (u.host.find(':') != std::string::npos) {
      return tl::unexpected(std::string("an IPv6 address must be in brackets: http://[::1]:9780"));
    }
  }
  if (u.host.empty()) return tl::unexpected(std::string("has no host"));
  if (u.host.find_first_of(" @/\r\n\t") != std::string::npos) {
    return tl::unexpected(std::string("the host is not a name or an address"));
  }
  if (!port.empty() || authority.ends_with(":")) {
    unsigned p = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p == 0 || p > 65535) {
      return tl::unexpected("the port '" + std::string(port) + "' is not 1..65535");
    }
    u.port = std::to_string(p);
  }
  const bool v6 = authority.starts_with("[");
  const bool default_port = u.port == (u.tls ? "443" : "80");
  u.host_header = (v6 ? "[" + u.host + "]" : u.host) + (default_port ? "" : ":" + u.port);
  return u;
}

tl::expected<void, std::string> check_token(std::string_view token) {
  if (token.empty()) return tl::unexpected(std::string("is empty"));
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return tl::unexpected(std::string("may hold only printable ASCII without spaces"));
    }
  }
  return {};
}

struct HttpClient::Impl {
  CollectorUrl url;
  std::string token;
  std::string user_agent;
  asio::io_context ioc;
  asio::ip::tcp::socket tcp{ioc};
  asio::local::stream_protocol::socket local{ioc};
  std::optional<asio::ssl::context> tls_ctx;  // https://
  std::string tls_setup_error;                // the CA file could not be loaded
  std::optional<asio::ssl::stream<asio::ip::tcp::socket&>> tls;
  beast::flat_buffer buffer;
  bool connected = false;
  const std::atomic<bool>* abort = nullptr;  // during post()

  // How a run() that did not finish ended.
  std::string unfinished() const {
    return abort != nullptr && abort->load() ? "aborted (stopping)" : "timed out";
  }

  std::string where() const {
    return url.unix_socket ? "unix:" + url.socket_path : url.host_header;
  }

  void close_sockets() {
    beast::error_code ignored;
    tls.reset();
    if (tcp.is_open()) tcp.close(ignored);
    if (local.is_open()) local.close(ignored);
    connected = false;
    buffer.clear();
  }

  // Runs the I/O until `done` or the deadline; at the deadline closes the sockets (aborting the
  // operation, whose handler then runs) and returns false.
  bool run(const bool& done, Deadline d) {
    ioc.restart();
    while (!done) {
      if (abort != nullptr && abort->load()) break;
      const auto now = std::chrono::steady_clock::now();
      if (now >= d) break;
      (void)ioc.run_one_until(std::min(d, now + std::chrono::milliseconds(50)));
    }
    if (done) return true;
    close_sockets();
    ioc.restart();
    ioc.run();
    return false;
  }

  std::string connect(Deadline d) {
    bool done = false;
    beast::error_code err;
    asio::ip::tcp::resolver resolver(ioc);
    if (url.unix_socket) {
      local.async_connect(asio::local::stream_protocol::endpoint(url.socket_path),
                          [&](beast::error_code ec) {
                            err = ec;
                            done = true;
                          });
    } else {
      resolver.async_resolve(
          url.host, url.port,
          [&](beast::error_code ec, const asio::ip::tcp::resolver::results_type& results) {
            if (ec) {
              err = ec;
              done = true;
              return;
            }
            asio::async_connect(tcp, results,
                                [&](beast::error_code ec2, const asio::ip::tcp::endpoint&) {
                                  err = ec2;
                                  done = true;
                                });
          });
    }
    if (!run(done, d)) {
      resolver.cancel();
      return "connect to " + where() + ": " + unfinished();
    }
    if (err) {
      close_sockets();
      return "connect to " + where() + ": " + err.message();
    }
    if (!url.unix_socket) {
      beast::error_code ignored;
      tcp.set_option(asio::ip::tcp::no_delay(true), ignored);
    }
    if (url.tls) {
      if (std::string e = handshake(d); !e.empty()) return e;
    }
    connected = true;
    return {};
  }

  // TLS over the connected socket: SNI, then the certificate checked against the CA(s) and the
  // host name of the URL (an IP address is matched against the certificate's IP entries).
  std::string handshake(Deadline d) {
    tls.emplace(tcp, *tls_ctx);
    beast::error_code not_ip;
    (void)asio::ip::make_address(url.host, not_ip);
    if (not_ip) {  // SNI carries names only, never an IP literal (RFC 6066)
      ::SSL_ctrl(tls->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(url.host.c_str()));
    }
    tls->set_verify_mode(asio::ssl::verify_peer);
    tls->set_verify_callback(asio::ssl::host_name_verification(url.host));
    bool done = false;
    beast::error_code err;
    tls->async_handshake(asio::ssl::stream_base::client, [&](beast::error_code ec) {
      err = ec;
      done = true;
    });
    if (!run(done, d)) return "TLS handshake with " + where() + ": " + unfinished();
    if (err) {
      std::string why = err.message();
      const long v = ::SSL_get_verify_result(tls->native_handle());
      if (v != X509_V_OK) {
        why += std::string(" (certificate: ") + ::X509_verify_cert_error_string(v) + ")";
      }
      close_sockets();
      return "TLS handshake with " + where() + ": " + why +
             (url.ca_file.empty() ? " (verified against the system's CAs)"
                                  : " (verified against " + url.ca_file + ")");
    }
    return {};
  }

  template <class Socket>
  PostResult exchange(Socket& s, http::request<http::string_body>& req, Deadline d) {
    PostResult r;
    bool done = false;
    beast::error_code err;
    http::async_write(s, req, [&](beast::error_code ec, std::size_t) {
      err = ec;
      done = true;
    });
    if (!run(done, d)) {
      r.error = "sending to " + where() + ": " + unfinished();
      return r;
    }
    if (err) {
      close_sockets();
      r.error = "sending to " + where() + ": " + err.message();
      return r;
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::uint64_t{1} << 20);
    done = false;
    http::async_read(s, buffer, parser, [&](beast::error_code ec, std::size_t) {
      err = ec;
      done = true;
    });
    if (!run(done, d)) {
      r.error = "waiting for the answer of " + where() + ": " + unfinished();
      return r;
    }
    if (err) {
      close_sockets();
      r.error = "reading the answer of " + where() + ": " + err.message();
      return r;
    }
    const auto& res = parser.get();
    r.status = static_cast<int>(res.result_int());
    r.body = res.body().substr(0, 65536);
    if (!res.keep_alive()) close_sockets();
    return r;
  }

  PostResult attempt(const std::string& body, Deadline d) {
    if (!tls_setup_error.empty()) return PostResult{0, {}, tls_setup_error};
    if (!connected) {
      if (std::string e = connect(d); !e.empty()) return PostResult{0, {}, e};
    }
    http::request<http::string_body> req{http::verb::post, url.path, 11};
    req.set(http::field::host, url.host_header);
    req.set(http::field::user_agent, user_agent);
    req.set(http::field::authorization, "Bearer " + token);
    req.set(http::field::content_type, "application/x-ndjson");
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    if (url.unix_socket) return exchange(local, req, d);
    return url.tls ? exchange(*tls, req, d) : exchange(tcp, req, d);
  }
};

HttpClient::HttpClient(CollectorUrl url, std::string token, std::string user_agent)
    : impl_(std::make_unique<Impl>()) {
  impl_->url = std::move(url);
  impl_->token = std::move(token);
  impl_->user_agent = std::move(user_agent);
  if (impl_->url.tls) {
    auto& ctx = impl_->tls_ctx.emplace(asio::ssl::context::tls_client);
    ::SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    beast::error_code ec;
    if (impl_->url.ca_file.empty()) {
      ctx.set_default_verify_paths(ec);
    } else {
      ctx.load_verify_file(impl_->url.ca_file, ec);
    }
    if (ec) {
      impl_->tls_setup_error =
          "TLS: cannot load the CA certificates " +
          (impl_->url.ca_file.empty() ? std::string("of the system") : impl_->url.ca_file) + ": " +
          ec.message();
    }
  }
}

HttpClient::~HttpClient() = default;

PostResult HttpClient::post(const std::string& body, std::int64_t timeout_ns,
                            const std::atomic<bool>* abort) {
  const Deadline d = std::chrono::steady_clock::now() + std::chrono::nanoseconds(timeout_ns);
  impl_->abort = abort;
  const bool reused = impl_->connected;
  PostResult r = impl_->attempt(body, d);
  // A kept-alive connection the server has closed meanwhile fails at once: once more, afresh.
  if (r.status == 0 && reused && std::chrono::steady_clock::now() < d &&
      (abort == nullptr || !abort->load())) {
    impl_->close_sockets();
    r = impl_->attempt(body, d);
  }
  impl_->abort = nullptr;
  return r;
}

void HttpClient::close() {
  impl_->close_sockets();
}

}  // namespace pathsentry::probe
