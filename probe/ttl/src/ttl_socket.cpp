// The real TtlSocket: UDP, connected, small TTL, ICMP errors from the error queue.
// clang-format off
#include <time.h>  // struct timespec, which linux/errqueue.h uses without including it
#include <linux/errqueue.h>
// clang-format on
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pathsentry/probe/ttl/ttl_probe.h"
#include "ttl_control.h"

namespace pathsentry::probe {
namespace {

class UdpTtlSocket final : public TtlSocket {
 public:
  explicit UdpTtlSocket(int fd) : fd_(fd) {}
  ~UdpTtlSocket() override { ::close(fd_); }
  UdpTtlSocket(const UdpTtlSocket&) = delete;
  UdpTtlSocket& operator=(const UdpTtlSocket&) = delete;

  tl::expected<void, std::error_code> send(std::span<const std::uint8_t> payload) override {
    if (::send(fd_, payload.data(), payload.size(), MSG_DONTWAIT) < 0) {
      return tl::unexpected(std::error_code(errno, std::generic_category()));
    }
    return {};
  }

  tl::expected<std::size_t, std::error_code> receive_errors(std::span<TtlIcmpError> out) override {
    std::size_t n = 0;
    while (n < out.size()) {
      std::uint8_t data[256];
      alignas(cmsghdr) char control[512];
      sockaddr_storage name{};
      iovec iov{data, sizeof data};
      msghdr msg{};
      msg.msg_name = &name;
      msg.msg_namelen = sizeof name;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t got = ::recvmsg(fd_, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        return tl::unexpected(std::error_code(errno, std::generic_category()));
      }
      auto parsed = parse_ttl_error_control(msg);
      if (!parsed) continue;  // a local error (e.g. EMSGSIZE): nothing came from the network
      TtlIcmpError& e = *parsed;
      e.quoted_size = std::min(static_cast<std::size_t>(got), kTtlPayloadSize);
      std::memcpy(e.quoted.data(), data, e.quoted_size);
      out[n++] = e;
    }
    return n;
  }

  int native_handle() const override { return fd_; }

 private:
  int fd_;
};

}  // namespace

tl::expected<std::unique_ptr<TtlSocket>, std::string> open_ttl_socket(const TtlSocketOptions& o) {
  const bool v6 = o.target.family == AF_INET6;
  const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) return tl::unexpected(std::string("socket: ") + std::strerror(errno));
  auto fail = [fd](const std::string& what) {
    const std::string m = what + ": " + std::strerror(errno);
    ::close(fd);
    return tl::unexpected(m);
  };
  const int one = 1;
  const int ttl = o.ttl;
  if (v6) {
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof ttl) != 0)
      return fail("IPV6_UNICAST_HOPS");
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof one) != 0)
      return fail("IPV6_RECVERR");
  } else {
    if (::setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl) != 0) return fail("IP_TTL");
    if (::setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof one) != 0) return fail("IP_RECVERR");
  }
  if (::setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0)
    return fail("SO_TIMESTAMPNS");
  if (!o.interface.empty() && ::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o.interface.c_str(),
                                           static_cast<socklen_t>(o.interface.size())) != 0) {
    return fail("SO_BINDTODEVICE " + o.interface);
  }
  if (o.source) {
    sockaddr_storage ss{};
    const socklen_t len = o.source->to_sockaddr(0, ss);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0)
      return fail("bind " + o.source->to_string());
  }
  sockaddr_storage ss{};
  const socklen_t len = o.target.to_sockaddr(o.port, ss);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0)
    return fail("connect " + o.target.to_string());
  return std::unique_ptr<TtlSocket>(std::make_unique<UdpTtlSocket>(fd));
}

}  // namespace pathsentry::probe
