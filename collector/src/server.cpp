#include "pathsentry/collector/server.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <tl/expected.hpp>

#include "listen.h"
#include "pathsentry/common/config_error.h"

namespace pathsentry::collector {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using unix_proto = net::local::stream_protocol;

namespace {

struct AtomicCounters {
  std::atomic<std::uint64_t> accepted{0}, refused{0}, timeouts{0}, too_large{0}, bad{0},
      refused_source{0}, tls_failed{0};
};

std::string endpoint_text(const tcp::endpoint& e) {
  const auto a = e.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(e.port());
}

}  // namespace

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  /// On the session's executor: close it if idle or streaming; an in-flight request is
  /// answered first and then the connection closes.
  virtual void shutdown() = 0;
};

struct Server::Impl {
  Handler& handler;
  ServerConfig cfg;
  net::io_context ioc{1};
  net::thread_pool pool;
  std::optional<tcp::acceptor> tcp_acceptor;
  std::optional<unix_proto::acceptor> unix_acceptor;
  std::vector<std::string> endpoints;
  net::signal_set signals{ioc};
  net::steady_timer accept_retry{ioc};
  net::steady_timer stop_deadline{ioc};
  // every(): a timer and its job (run on the pool, skipped while the previous one runs).
  struct Periodic {
    Periodic(net::io_context& io, std::chrono::milliseconds p, std::function<void()> j)
        : timer(io), period(p), job(std::move(j)) {}
    net::steady_timer timer;
    std::chrono::milliseconds period;
    std::function<void()> job;
    std::atomic<bool> running{false};
  };
  std::vector<std::unique_ptr<Periodic>> periodics;
  std::atomic<std::size_t> connections{0};
  // Open connections per source address (TCP only; on the I/O thread and the sessions'
  // destructors, hence the lock).
  std::mutex per_source_mutex;
  std::map<net::ip::address, std::size_t> per_source;
  std::optional<net::ssl::context> tls;  // set when tls_cert/tls_key are: the TCP listener is TLS
  std::atomic<bool> stopping{false};
  AtomicCounters counters;
  std::mutex sessions_mutex;
  std::vector<std::weak_ptr<SessionBase>> sessions;

  Impl(Handler& h, ServerConfig c)
      : handler(h), cfg(std::move(c)), pool(std::max(1u, cfg.worker_threads)) {}

  void track(const std::shared_ptr<SessionBase>& s) {
    const std::lock_guard lock(sessions_mutex);
    std::erase_if(sessions, [](const auto& w) { return w.expired(); });
    sessions.push_back(s);
  }

  // Counts a new TCP connection from `a`; false when that source already holds its cap.
  bool source_admit(const net::ip::address& a) {
    if (cfg.max_connections_per_source == 0) return true;
    const std::lock_guard lock(per_source_mutex);
    auto& n = per_source[a];
    if (n >= cfg.max_connections_per_source) return false;
    ++n;
    return true;
  }

  void source_gone(const net::ip::address& a) {
    if (cfg.max_connections_per_source == 0) return;
    const std::lock_guard lock(per_source_mutex);
    const auto it = per_source.find(a);
    if (it != per_source.end() && --it->second == 0) per_source.erase(it);
  }

  void session_gone() {
    if (--connections == 0 && stopping.load()) {
      net::post(ioc, [this] { stop_deadline.cancel(); });
    }
  }

  void arm(Periodic& p) {
    p.timer.expires_after(p.period);
    p.timer.async_wait([this, &p](boost::system::error_code ec) {
      if (ec || stopping.load()) return;
      if (!p.running.exchange(true)) {
        // `p` outlives the pool's jobs: ~Server joins the pool before Impl goes.
        net::post(pool, [&p] {
          try {
            p.job();
          } catch (const std::exception& e) {
            spdlog::error("periodic job: {}", e.what());
          }
          p.running.store(false);
        });
      }
      arm(p);
    });
  }

  template <class Acceptor>
  void accept(Acceptor& acceptor);
  void do_stop();
};

namespace {

// One connection: reads requests under the limits, hands them to the worker pool, writes the
// answers; or, for /api/v1/stream, writes what its subscription receives. Templated on the
// protocol (TCP or a Unix socket) and on TLS (over TCP: the handshake first, then the same
// HTTP through the TLS stream); all its handlers run on its strand.
template <class Protocol, bool Tls = false>
class Session final : public SessionBase,
                      public std::enable_shared_from_this<Session<Protocol, Tls>> {
 public:
  using Plain = beast::basic_stream<Protocol>;
  using Stream = std::conditional_t<Tls, beast::ssl_stream<Plain>, Plain>;
  using Socket = typename Protocol::socket;

  // `source`: the peer's address when a per-source count was taken for it (TCP).
  Session(Server::Impl& server, Socket&& socket,
          std::optional<net::ip::address> source) requires(!Tls)
      : server_(server),
        stream_(std::move(socket)),
        write_timer_(stream_.get_executor()),
        keepalive_timer_(stream_.get_executor()),
        source_(std::move(source)) {}
  Session(Server::Impl& server, Socket&& socket,
          std::optional<net::ip::address> source) requires Tls
      : server_(server),
        stream_(std::move(socket), *server.tls),
        write_timer_(stream_.get_executor()),
        keepalive_timer_(stream_.get_executor()),
        source_(std::move(source)) {}
  ~Session() override {
    if (source_) server_.source_gone(*source_);
    server_.session_gone();
  }

  void start() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (Tls) {
        // The handshake counts against the head's time: a client stalling it is cut off too.
        self->lowest().expires_after(self->server_.cfg.header_timeout);
        self->stream_.async_handshake(net::ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) {
            ++self->server_.counters.tls_failed;
            spdlog::debug("TLS handshake: {}", ec.message());
            return self->close();
          }
          self->wait_request();
        });
      } else {
        self->wait_request();
      }
    });
  }

  Plain& lowest() { return beast::get_lowest_layer(stream_); }
  // What the live stream reads and writes directly: the socket, or the TLS stream over it.
  auto& raw() {
    if constexpr (Tls) {
      return stream_;
    } else {
      return stream_.socket();
    }
  }

  void shutdown() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      self->closing_ = true;
      if (!self->busy_) self->close();
    });
  }

 private:
  // Waits for a request's first byte: the idle (keep-alive) timeout between requests, the
  // header timeout before the first one. Then the head must be complete in header_timeout.
  void wait_request() {
    if (closing_) return close();
    busy_ = false;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.cfg.max_header_bytes));
    parser_->body_limit(server_.cfg.max_body_bytes);
    if (buffer_.size() > 0) return read_header();  // pipelined: already here
    lowest().expires_after(first_ ? server_.cfg.header_timeout : server_.cfg.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                              if (ec) return self->fail(ec, "waiting for a request");
                              self->buffer_.commit(n);
                              self->read_header();
                            });
  }

  void read_header() {
    first_ = false;
    lowest().expires_after(server_.cfg.header_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->on_header(ec);
                            });
  }

  void on_header(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      ++server_.counters.too_large;
      return answer_error(
          431, "request head over " + std::to_string(server_.cfg.max_header_bytes) + " bytes");
    }
    if (ec == http::error::body_limit) {
      // The parser refuses a Content-Length over the limit with the head: the body is unread.
      ++server_.counters.too_large;
      return answer_error(
          413, "body of " + std::string(parser_->get()[http::field::content_length]) +
                   " bytes is over max_body_bytes " + std::to_string(server_.cfg.max_body_bytes));
    }
    if (ec) return fail(ec, "reading a request head");
    busy_ = true;  // from here the request is answered, even while stopping
    const auto& req = parser_->get();
    if (const auto cl = parser_->content_length(); cl && *cl > server_.cfg.max_body_bytes) {
      // Refused from its head: the body is never read.
      ++server_.counters.too_large;
      return answer_error(413, "body of " + std::to_string(*cl) + " bytes is over max_body_bytes " +
                                   std::to_string(server_.cfg.max_body_bytes));
    }
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      lowest().expires_after(server_.cfg.write_timeout);
      net::async_write(stream_, net::buffer(kContinue),
                       [self = this->shared_from_this()](beast::error_code wec, std::size_t) {
                         if (wec) return self->fail(wec, "writing 100 Continue");
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    lowest().expires_after(server_.cfg.body_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_body(ec);
                     });
  }

  void on_body(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      ++server_.counters.too_large;
      return answer_error(413,
                          "body over max_body_bytes " + std::to_string(server_.cfg.max_body_bytes));
    }
    if (ec) return fail(ec, "reading a request body");
    auto msg = parser_->release();
    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.authorization = std::string(msg[http::field::authorization]);
    req.last_event_id = std::string(msg["Last-Event-ID"]);
    req.content_type = std::string(msg[http::field::content_type]);
    req.body = std::move(msg.body());
    if (source_) req.source = source_->to_string();
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    lowest().expires_never();  // the handler may wait for the store; no socket I/O meanwhile
    // The worker runs the handler; the answer comes back to this connection's strand. The work
    // guard keeps run() going while a request is in flight, also while stopping.
    net::post(server_.pool, [self = this->shared_from_this(), req = std::move(req),
                             guard = net::make_work_guard(server_.ioc)]() mutable {
      Response r = self->server_.handler.handle(req);
      net::post(self->stream_.get_executor(),
                [self, r = std::move(r)]() mutable { self->answer(std::move(r)); });
    });
  }

  void answer(Response r) {
    if (r.stream) return start_stream(std::move(r));
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), version_);
    res->set(http::field::server, "pathsentry-collector");
    res->set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res->set(k, v);
    res->body() = std::move(r.body);
    res->keep_alive(keep_alive_ && !closing_ && !server_.stopping.load());
    res->prepare_payload();
    write(res);
  }

  // An error found by the session itself (limits, unparsable HTTP): answered, then closed.
  void answer_error(unsigned status, const std::string& why) {
    busy_ = true;
    keep_alive_ = false;
    Response r = Response::error(status, why);
    auto res =
        std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), 11);
    res->set(http::field::server, "pathsentry-collector");
    res->set(http::field::content_type, r.content_type);
    res->body() = std::move(r.body);
    res->keep_alive(false);
    res->prepare_payload();
    write(res);
  }

  void write(const std::shared_ptr<http::response<http::string_body>>& res) {
    const bool keep = res->keep_alive();
    lowest().expires_after(server_.cfg.write_timeout);
    http::async_write(
        stream_, *res,
        [self = this->shared_from_this(), res, keep](beast::error_code ec, std::size_t) {
          if (ec) return self->fail(ec, "writing an answer");
          if (!keep) return self->close();
          self->wait_request();
        });
  }

  // --- the live stream --------------------------------------------------------------------

  void start_stream(Response r) {
    streaming_ = true;
    busy_ = false;
    lowest().expires_never();  // the stream's own timers from here
    sub_ = std::move(r.stream);
    std::weak_ptr<Session> weak = this->shared_from_this();
    auto exec = stream_.get_executor();
    // Called on an ingest thread: one post per burst of messages, never a wait.
    sub_->set_wake([weak, exec, pending = wake_pending_] {
      if (pending->exchange(true)) return;
      net::post(exec, [weak, pending] {
        pending->store(false);
        if (auto s = weak.lock()) s->pump();
      });
    });
    out_ =
        "HTTP/1.1 200 OK\r\nServer: pathsentry-collector\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\nConnection: close\r\n";
    for (const auto& [k, v] : r.headers) {
      if (beast::iequals(k, "Cache-Control")) continue;
      out_.append(k).append(": ").append(v).append("\r\n");
    }
    out_.append("\r\n").append(r.body);
    if (closing_ || server_.stopping.load()) closing_ = true;
    watch_client();
    arm_keepalive();
    flush();
  }

  // A stream's client sends nothing; a read ends when it goes (EOF) or sends junk.
  void watch_client() {
    raw().async_read_some(net::buffer(discard_),
                          [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                            if (ec) return self->close();
                            self->watch_client();
                          });
  }

  void arm_keepalive() {
    keepalive_timer_.expires_after(server_.cfg.stream_keepalive);
    keepalive_timer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (ec || self->closed_) return;
      self->extra_ += Handler::keepalive_message();
      self->pump();
      self->arm_keepalive();
    });
  }

  void pump() {
    if (closed_ || writing_) return;
    auto taken = sub_->take();
    if (taken.dropped) {
      spdlog::warn(
          "live stream client too slow: its queue of {} messages overflowed, closing it "
          "(it resumes with Last-Event-ID)",
          sub_->capacity());
      return close();
    }
    for (auto& m : taken.messages) out_ += m.text;
    out_ += extra_;
    extra_.clear();
    flush();
  }

  void flush() {
    if (closed_ || writing_ || out_.empty()) {
      if (closing_ && !writing_) close();
      return;
    }
    writing_ = true;
    sending_.swap(out_);
    out_.clear();
    write_timer_.expires_after(server_.cfg.write_timeout);
    write_timer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return;  // the write finished first
      ++self->server_.counters.timeouts;
      self->close();
    });
    net::async_write(raw(), net::buffer(sending_),
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                       self->writing_ = false;
                       self->write_timer_.cancel();
                       if (ec) return self->close();
                       self->sending_.clear();
                       self->pump();
                     });
  }

  // --- endings ----------------------------------------------------------------------------

  void fail(beast::error_code ec, const char* what) {
    if (ec == beast::error::timeout) {
      ++server_.counters.timeouts;
      spdlog::debug("connection timed out {}", what);
    } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      // Unparsable HTTP: say so, then close.
      ++server_.counters.bad;
      if (!busy_) return answer_error(400, std::string("bad HTTP request: ") + ec.message());
    } else if (ec != net::error::eof && ec != net::error::operation_aborted &&
               ec != net::error::connection_reset && ec != net::error::bad_descriptor &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      spdlog::debug("connection error {}: {}", what, ec.message());
    }
    close();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    keepalive_timer_.cancel();
    write_timer_.cancel();
    lowest().socket().shutdown(Socket::shutdown_both, ignored);
    lowest().socket().close(ignored);
    if (sub_) sub_->set_wake({});
  }

  Server::Impl& server_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  net::steady_timer write_timer_;
  net::steady_timer keepalive_timer_;
  bool first_ = true;
  bool busy_ = false;     // a request is being handled or answered
  bool closing_ = false;  // close once the current answer is written
  bool closed_ = false;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  // The stream.
  bool streaming_ = false;
  bool writing_ = false;
  std::shared_ptr<std::atomic<bool>> wake_pending_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<Subscription> sub_;
  std::string out_, sending_, extra_;
  char discard_[512]{};
  std::optional<net::ip::address> source_;
};

}  // namespace

template <class Acceptor>
void Server::Impl::accept(Acceptor& acceptor) {
  using Protocol = typename Acceptor::protocol_type;
  acceptor.async_accept(net::make_strand(ioc), [this, &acceptor](beast::error_code ec,
                                                                 typename Protocol::socket socket) {
    if (ec == net::error::operation_aborted || stopping.load()) return;
    if (ec) {
      // Out of descriptors or the like: wait a little instead of spinning.
      spdlog::warn("accept: {}", ec.message());
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this, &acceptor](beast::error_code tec) {
        if (!tec) accept(acceptor);
      });
      return;
    }
    std::optional<net::ip::address> source;
    if constexpr (std::is_same_v<Protocol, tcp>) {
      beast::error_code pec;
      const auto peer = socket.remote_endpoint(pec);
      if (!pec) source = peer.address();
    }
    beast::error_code ignored;
    if (connections.load() >= cfg.max_connections) {
      const auto n = ++counters.refused;
      if (n == 1 || n % 1000 == 0) {
        spdlog::warn("connection cap of {} reached: new connections are closed at once ({} so far)",
                     cfg.max_connections, n);
      }
      socket.close(ignored);
    } else if (source && !source_admit(*source)) {
      // One source may not take the whole cap (slowloris or a flood from one address).
      const auto n = ++counters.refused_source;
      if (n == 1 || n % 1000 == 0) {
        spdlog::warn(
            "{} holds max_connections_per_source ({}) connections: its new ones are closed at "
            "once ({} so far)",
            source->to_string(), cfg.max_connections_per_source, n);
      }
      socket.close(ignored);
    } else {
      ++connections;
      ++counters.accepted;
      if constexpr (std::is_same_v<Protocol, tcp>) {
        if (tls) {
          auto t = std::make_shared<Session<Protocol, true>>(*this, std::move(socket), source);
          track(t);
          t->start();
        } else {
          auto p = std::make_shared<Session<Protocol, false>>(*this, std::move(socket), source);
          track(p);
          p->start();
        }
      } else {
        auto p = std::make_shared<Session<Protocol, false>>(*this, std::move(socket), source);
        track(p);
        p->start();
      }
    }
    accept(acceptor);
  });
}

void Server::Impl::do_stop() {
  if (stopping.exchange(true)) return;
  beast::error_code ignored;
  if (tcp_acceptor) tcp_acceptor->close(ignored);
  if (unix_acceptor) {
    unix_acceptor->close(ignored);
    ::unlink(cfg.listen_unix.c_str());
  }
  signals.cancel(ignored);
  accept_retry.cancel();
  for (auto& p : periodics) p->timer.cancel();
  std::vector<std::shared_ptr<SessionBase>> live;
  {
    const std::lock_guard lock(sessions_mutex);
    for (auto& w : sessions) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->shutdown();
  if (connections.load() > 0) {
    stop_deadline.expires_after(cfg.stop_timeout);
    stop_deadline.async_wait([this](beast::error_code ec) {
      if (ec) return;
      spdlog::warn("stop: {} connection(s) still busy after {} ms, closing them",
                   connections.load(), cfg.stop_timeout.count());
      ioc.stop();
    });
  }
}

Server::Server(Handler& handler, ServerConfig config)
    : impl_(std::make_unique<Impl>(handler, std::move(config))) {
  auto& im = *impl_;
  if (im.cfg.listen.empty() && im.cfg.listen_unix.empty()) {
    throw ConfigError("", "collector.listen", "",
                      "no listener: give listen (ADDR:PORT) or listen_unix (a socket path)");
  }
  if (im.cfg.tls_cert.empty() != im.cfg.tls_key.empty()) {
    throw ConfigError("", im.cfg.tls_cert.empty() ? "collector.tls_cert" : "collector.tls_key", "",
                      "TLS needs both tls_cert and tls_key");
  }
  if (!im.cfg.tls_cert.empty()) {
    if (im.cfg.listen.empty()) {
      throw ConfigError("", "collector.tls_cert", im.cfg.tls_cert,
                        "TLS is for the TCP listener and listen is off");
    }
    im.tls.emplace(net::ssl::context::tls_server);
    auto& ctx = *im.tls;
    ::SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    ctx.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                    net::ssl::context::no_sslv3 | net::ssl::context::single_dh_use);
    beast::error_code ec;
    ctx.use_certificate_chain_file(im.cfg.tls_cert, ec);
    if (ec) {
      throw ConfigError("", "collector.tls_cert", im.cfg.tls_cert,
                        "cannot load the certificate chain (PEM): " + ec.message());
    }
    ctx.use_private_key_file(im.cfg.tls_key, net::ssl::context::pem, ec);
    if (ec) {
      throw ConfigError("", "collector.tls_key", im.cfg.tls_key,
                        "cannot load the private key (PEM): " + ec.message());
    }
    if (::SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
      throw ConfigError("", "collector.tls_key", im.cfg.tls_key,
                        "does not match the certificate " + im.cfg.tls_cert);
    }
  }
  if (!im.cfg.listen.empty()) {
    const auto parsed = parse_listen(im.cfg.listen);
    if (!parsed) throw ConfigError("", "collector.listen", im.cfg.listen, parsed.error());
    const tcp::endpoint& ep = *parsed;
    beast::error_code ec;
    im.tcp_acceptor.emplace(im.ioc);
    im.tcp_acceptor->open(ep.protocol(), ec);
    if (!ec) im.tcp_acceptor->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) im.tcp_acceptor->bind(ep, ec);
    if (!ec) im.tcp_acceptor->listen(net::socket_base::max_listen_connections, ec);
    if (ec)
      throw EnvironmentError("", "collector.listen", im.cfg.listen,
                             "cannot listen: " + ec.message());
    im.endpoints.push_back((im.tls ? "https://" : "") +
                           endpoint_text(im.tcp_acceptor->local_endpoint()));
  }
  if (!im.cfg.listen_unix.empty()) {
    const std::string& path = im.cfg.listen_unix;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      // A socket left by an earlier run is replaced; anything else is not ours to remove.
      if (!S_ISSOCK(st.st_mode)) {
        throw ConfigError("", "collector.listen_unix", path, "exists and is not a socket");
      }
      ::unlink(path.c_str());
    }
    beast::error_code ec;
    im.unix_acceptor.emplace(im.ioc);
    im.unix_acceptor->open(unix_proto(), ec);
    if (!ec) im.unix_acceptor->bind(unix_proto::endpoint(path), ec);
    if (!ec) im.unix_acceptor->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      throw EnvironmentError("", "collector.listen_unix", path, "cannot listen: " + ec.message());
    }
    im.endpoints.push_back("unix:" + path);
  }
}

Server::~Server() {
  impl_->pool.stop();
  impl_->pool.join();
}

std::vector<std::string> Server::endpoints() const {
  return impl_->endpoints;
}

std::uint16_t Server::tcp_port() const {
  if (!impl_->tcp_acceptor) return 0;
  beast::error_code ec;
  const auto ep = impl_->tcp_acceptor->local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void Server::every(std::chrono::milliseconds period, std::function<void()> job) {
  auto& im = *impl_;
  im.periodics.push_back(std::make_unique<Impl::Periodic>(im.ioc, period, std::move(job)));
  im.arm(*im.periodics.back());
}

void Server::stop_on_signals(std::initializer_list<int> signals) {
  auto& im = *impl_;
  for (const int s : signals) im.signals.add(s);
  im.signals.async_wait([&im](beast::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: stopping (in-flight requests are answered first)", sig);
    im.do_stop();
  });
}

void Server::run() {
  auto& im = *impl_;
  if (im.tcp_acceptor) im.accept(*im.tcp_acceptor);
  if (im.unix_acceptor) im.accept(*im.unix_acceptor);
  im.ioc.run();
}

void Server::stop() {
  net::post(impl_->ioc, [im = impl_.get()] { im->do_stop(); });
}

std::size_t Server::connections() const {
  return impl_->connections.load();
}

ServerCounters Server::counters() const {
  const auto& c = impl_->counters;
  return {c.accepted.load(), c.refused.load(),        c.timeouts.load(),  c.too_large.load(),
          c.bad.load(),      c.refused_source.load(), c.tls_failed.load()};
}

}  // namespace pathsentry::collector
