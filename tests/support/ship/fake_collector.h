#pragma once
// A tiny HTTP/1.1 server on loopback (TCP, ephemeral port) or a Unix socket, standing in for the
// collector in the shipping tests: it answers each POST as the test scripts (a status, a dropped
// connection, a hang), records what it got, and keeps connections alive like the real one.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pathsentry::test {

class FakeCollector {
 public:
  struct Request {
    std::string method;
    std::string target;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
    std::chrono::steady_clock::time_point at;
    int connection = 0;  // which accepted connection carried it (1, 2, …)
  };
  struct Reply {
    enum class Kind { Answer, Drop, Hang } kind = Kind::Answer;
    int status = 200;
    std::string body = R"({"accepted":{"probes":0,"rollups":0,"events":0}})";
    int hang_ms = 0;
    static Reply status_of(int s, std::string b = "{}") {
      Reply r;
      r.status = s;
      r.body = std::move(b);
      return r;
    }
    static Reply drop() {
      Reply r;
      r.kind = Kind::Drop;
      return r;
    }
    static Reply hang(int ms) {
      Reply r;
      r.kind = Kind::Hang;
      r.hang_ms = ms;
      return r;
    }
  };
  /// Decides the answer to request number `n` (0-based, all connections together).
  using Script = std::function<Reply(std::size_t n, const Request&)>;

  /// TCP on 127.0.0.1, an ephemeral port (port()).
  explicit FakeCollector(Script script = {}) : script_(std::move(script)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("bind");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    listen_and_run();
  }
  /// A Unix stream socket at `path`.
  FakeCollector(const std::string& path, Script script) : script_(std::move(script)) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    ::unlink(path.c_str());
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("bind");
    listen_and_run();
  }
  ~FakeCollector() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  FakeCollector(const FakeCollector&) = delete;
  FakeCollector& operator=(const FakeCollector&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void set_script(Script s) {
    std::lock_guard lock(mu_);
    script_ = std::move(s);
  }
  /// Every request so far (a copy).
  [[nodiscard]] std::vector<Request> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  /// The bodies of the requests answered 2xx, in order.
  [[nodiscard]] std::vector<std::string> accepted() const {
    std::lock_guard lock(mu_);
    return accepted_;
  }
  [[nodiscard]] int connections() const { return connections_.load(); }

 private:
  [[noreturn]] static void fail(const char* what) {
    throw std::runtime_error(std::string("fake collector: ") + what + ": " + std::strerror(errno));
  }

  void listen_and_run() {
    if (::listen(fd_, 16) != 0) fail("listen");
    thread_ = std::thread([this] { serve(); });
  }

  // Waits until fd is readable or the server stops; false when stopping.
  bool wait_readable(int fd) {
    while (!stop_.load()) {
      pollfd p{fd, POLLIN, 0};
      const int n = ::poll(&p, 1, 20);
      if (n > 0) return true;
    }
    return false;
  }

  void serve() {
    while (wait_readable(fd_)) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      const int conn = ++connections_;
      handle(c, conn);
      ::close(c);
    }
  }

  // Serves one connection's requests until the client closes it, a reply drops it, or stop.
  void handle(int c, int conn) {
    std::string in;
    for (;;) {
      std::size_t head_end = in.find("\r\n\r\n");
      while (head_end == std::string::npos) {
        if (!wait_readable(c)) return;
        char b[65536];
        const ssize_t n = ::read(c, b, sizeof b);
        if (n <= 0) return;
        in.append(b, static_cast<std::size_t>(n));
        head_end = in.find("\r\n\r\n");
      }
      Request req;
      req.connection = conn;
      const std::string head = in.substr(0, head_end);
      std::size_t pos = head.find("\r\n");
      const std::string line = head.substr(0, pos);
      req.method = line.substr(0, line.find(' '));
      req.target = line.substr(line.find(' ') + 1, line.rfind(' ') - line.find(' ') - 1);
      while (pos != std::string::npos && pos < head.size()) {
        const std::size_t next = head.find("\r\n", pos + 2);
        const std::string h =
            head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
        const auto colon = h.find(':');
        if (colon != std::string::npos) {
          std::string name = h.substr(0, colon);
          for (char& ch : name)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          std::string value = h.substr(colon + 1);
          while (!value.empty() && value.front() == ' ') value.erase(0, 1);
          req.headers[name] = value;
        }
        pos = next;
      }
      const std::size_t length =
          req.headers.count("content-length") ? std::stoul(req.headers["content-length"]) : 0;
      in.erase(0, head_end + 4);
      while (in.size() < length) {
        if (!wait_readable(c)) return;
        char b[65536];
        const ssize_t n = ::read(c, b, sizeof b);
        if (n <= 0) return;
        in.append(b, static_cast<std::size_t>(n));
      }
      req.body = in.substr(0, length);
      in.erase(0, length);
      req.at = std::chrono::steady_clock::now();
      Reply reply;
      {
        std::lock_guard lock(mu_);
        const std::size_t n = requests_.size();
        requests_.push_back(req);
        if (script_) reply = script_(n, req);
        if (reply.kind == Reply::Kind::Answer && reply.status >= 200 && reply.status < 300) {
          accepted_.push_back(req.body);
        }
      }
      if (reply.kind == Reply::Kind::Drop) return;
      if (reply.kind == Reply::Kind::Hang) {
        const auto until =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(reply.hang_ms);
        while (!stop_.load() && std::chrono::steady_clock::now() < until) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return;
      }
      const std::string out =
          "HTTP/1.1 " + std::to_string(reply.status) + " X\r\n" +
          "Content-Type: application/json\r\nContent-Length: " + std::to_string(reply.body.size()) +
          "\r\n\r\n" + reply.body;
      std::size_t done = 0;
      while (done < out.size()) {
        const ssize_t n = ::write(c, out.data() + done, out.size() - done);
        if (n <= 0) return;
        done += static_cast<std::size_t>(n);
      }
    }
  }

  int fd_ = -1;
  int port_ = 0;
  Script script_;
  mutable std::mutex mu_;
  std::vector<Request> requests_;
  std::vector<std::string> accepted_;
  std::atomic<int> connections_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace pathsentry::test
