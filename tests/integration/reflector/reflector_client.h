#pragma once
// A minimal STAMP Session-Sender for the reflector's integration tests: one UDP socket with
// kernel RX timestamps, TTL/TOS on receive, sending sender packets and reading replies.

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/ip.h"
#include "pathsentry/probe/io/timestamping.h"
#include "pathsentry/probe/wire/stamp.h"
#include "pathsentry/reflector/reflector.h"

namespace pathsentry::test {

inline std::int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

/// One reply as the client received it.
struct StampReply {
  std::vector<std::uint8_t> bytes;
  probe::stamp::ReflectorPacket packet;
  std::int64_t rx_ns = 0;  ///< kernel RX timestamp at the client
  std::optional<int> tos;  ///< TOS / Traffic Class of the reply
  IpAddress from;
  std::uint16_t from_port = 0;
};

/// A UDP socket in the namespace of the thread that constructs it, sending to `target:port`.
class StampClient {
 public:
  StampClient(const std::string& target, std::uint16_t port)
      : target_(*IpAddress::parse(target)), port_(port) {
    fd_ = socket(target_.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
    if (!probe::io::enable_timestamping(fd_, {true, false})) throw std::runtime_error("ts");
    const int one = 1;
    if (target_.family == AF_INET) {
      setsockopt(fd_, IPPROTO_IP, IP_RECVTOS, &one, sizeof one);
    } else {
      setsockopt(fd_, IPPROTO_IPV6, IPV6_RECVTCLASS, &one, sizeof one);
    }
    const int big = 4 << 20;
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    dest_len_ = target_.to_sockaddr(port_, dest_);
  }
  ~StampClient() { close(fd_); }
  StampClient(const StampClient&) = delete;
  StampClient& operator=(const StampClient&) = delete;

  [[nodiscard]] int fd() const { return fd_; }

  /// Sets the TTL / Hop Limit and the TOS / Traffic Class of what this client sends.
  void set_ttl_tos(int ttl, int tos) {
    if (target_.family == AF_INET) {
      setsockopt(fd_, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
      setsockopt(fd_, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
    } else {
      setsockopt(fd_, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof ttl);
      setsockopt(fd_, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos);
    }
  }

  /// Sends a Session-Sender packet of `size` bytes (padding 0x5A); returns bytes sent.
  ssize_t send(std::uint32_t seq, std::uint16_t ssid = 0, std::size_t size = 44,
               std::int64_t tx_ns = realtime_ns()) {
    std::vector<std::uint8_t> b(size, 0x5A);
    probe::stamp::SenderPacket p;
    p.sequence = seq;
    p.timestamp = probe::stamp::ns_to_ntp(tx_ns);
    p.ssid = ssid;
    if (size >= probe::stamp::kBasePacketSize) probe::stamp::encode(p, b);
    return sendto(fd_, b.data(), b.size(), 0, reinterpret_cast<const sockaddr*>(&dest_), dest_len_);
  }

  /// Waits up to `timeout_ms` for one reply.
  std::optional<StampReply> receive(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    std::vector<std::uint8_t> buf(65'536);
    alignas(cmsghdr) char control[probe::io::kControlSize];
    sockaddr_storage from{};
    iovec iov{buf.data(), buf.size()};
    msghdr mh{};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    const ssize_t n = recvmsg(fd_, &mh, MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    StampReply r;
    r.bytes.assign(buf.begin(), buf.begin() + n);
    if (const auto d = probe::stamp::decode_reflector(r.bytes)) r.packet = *d;
    // The kernel enables RX timestamping asynchronously the first time any socket asks for it,
    // so the first replies may come unstamped: then take the clock right after the receive,
    // which is still no earlier than the reflector's t3 on this host.
    r.rx_ns = probe::io::rx_timestamp_ns(mh).value_or(0);
    if (r.rx_ns == 0) {
      timespec now{};
      clock_gettime(CLOCK_REALTIME, &now);
      r.rx_ns = static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) {
        r.tos = *CMSG_DATA(c);
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS) {
        int v = 0;
        std::memcpy(&v, CMSG_DATA(c), sizeof v);
        r.tos = v;
      }
    }
    r.from = IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&from)).value_or(IpAddress{});
    r.from_port = ntohs(reinterpret_cast<sockaddr_in*>(&from)->sin_port);
    return r;
  }

 private:
  IpAddress target_;
  std::uint16_t port_;
  int fd_ = -1;
  sockaddr_storage dest_{};
  socklen_t dest_len_ = 0;
};

/// A ReflectorServer serving on its own thread until destroyed. Construct it on a thread in
/// the namespace the sockets should live in.
struct RunningReflector {
  explicit RunningReflector(const probe::ReflectorConfig& config)
      : server(config, clock), thread([this] { server.run(); }) {}
  ~RunningReflector() {
    server.stop();
    thread.join();
  }
  RunningReflector(const RunningReflector&) = delete;
  RunningReflector& operator=(const RunningReflector&) = delete;
  SystemClock clock;
  probe::ReflectorServer server;
  std::thread thread;
};

/// Waits (polling, up to `timeout_ms`) until `pred()` holds; returns whether it did.
template <class Pred>
bool eventually(Pred pred, int timeout_ms = 3000) {
  for (int waited = 0; waited < timeout_ms; waited += 5) {
    if (pred()) return true;
    poll(nullptr, 0, 5);
  }
  return pred();
}

/// The pathsentry-reflector binary of this build tree (next to this test executable's
/// directory: <build>/tests/probe_test -> <build>/probe/pathsentry-reflector).
inline std::string reflector_binary() {
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path() / "probe" /
          "pathsentry-reflector")
      .string();
}

/// A child process with its stdout on a pipe (stderr to `stderr_path`, or inherited).
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv, const std::string& stderr_path = "") {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      dup2(fds[1], 1);
      if (!stderr_path.empty()) {
        const int e = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (e >= 0) dup2(e, 2);
      }
      std::vector<char*> args;
      std::vector<std::string> copy = argv;
      for (auto& a : copy) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0) (void)stop();
    close(out_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /// Reads stdout until a line starting with `prefix` (returned) or EOF/timeout (nullopt).
  std::optional<std::string> wait_line(const std::string& prefix, int timeout_ms = 5000) {
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
      for (auto nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        if (line.rfind(prefix, 0) == 0) return line;
      }
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 10) == 1) {
        char buf[4096];
        const ssize_t n = read(out_, buf, sizeof buf);
        if (n <= 0) return std::nullopt;
        buffer_.append(buf, static_cast<std::size_t>(n));
      }
    }
    return std::nullopt;
  }
  /// The rest of stdout until EOF.
  std::string rest() {
    char buf[4096];
    for (ssize_t n; (n = read(out_, buf, sizeof buf)) > 0;) {
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
    std::string r;
    r.swap(buffer_);
    return r;
  }
  /// Waits for the exit; returns the exit status, or -signal.
  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? -WTERMSIG(status) : -1;
  }
  /// SIGTERM, then wait.
  int stop() {
    kill(pid_, SIGTERM);
    return wait();
  }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
};

/// The port of a "reflector listening on A:P [B:P]" line.
inline std::uint16_t port_of_ready_line(const std::string& line) {
  return static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
}

}  // namespace pathsentry::test
