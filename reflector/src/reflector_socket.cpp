// The reflector's I/O loop: sockets, recvmmsg/sendmmsg batches and control messages around
// the socket-free Reflector. Everything is allocated by the constructor; the loop allocates
// nothing per packet.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <system_error>

#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/io/timestamping.h"
#include "pathsentry/reflector/reflector.h"
#include "rx_control.h"

namespace pathsentry::probe {
namespace {

constexpr std::size_t kBatch = 64;
constexpr std::size_t kMaxDatagram = 65'536;  // any UDP payload fits: never truncated
constexpr std::size_t kRxControl = 256;
constexpr std::size_t kTxControl = 128;
constexpr int kSocketBuffer = 8 << 20;
// recvmmsg rounds per socket before looking at the others and at stop().
constexpr int kRoundsPerWake = 32;

std::string errno_text(int e) {
  return std::error_code(e, std::system_category()).message();
}

std::string endpoint_text(const IpAddress& a, std::uint16_t port) {
  // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false positive) on
  // `"[" + std::string`.
  std::string s;
  if (a.family == AF_INET6) s += '[';
  s += a.to_string();
  if (a.family == AF_INET6) s += ']';
  s += ':';
  s += std::to_string(port);
  return s;
}

void set_int(int fd, int level, int name, int value, const char* what) {
  if (setsockopt(fd, level, name, &value, sizeof value) != 0) {
    throw std::system_error(errno, std::system_category(), what);
  }
}

struct Socket {
  int fd = -1;
  int family = AF_INET;
  IpAddress address;
};

// Opens, configures and binds one socket; returns errno on bind failure (so the caller can
// retry a shared ephemeral port), throws on anything else.
int open_socket(const IpAddress& addr, std::uint16_t port, bool want_tos, Socket& out) {
  // Only a wildcard socket needs the destination address (to answer from it and to spot
  // broadcasts); a socket bound to one unicast address receives and answers only on it.
  const bool wildcard =
      std::all_of(addr.bytes.begin(), addr.bytes.end(), [](std::uint8_t b) { return b == 0; });
  const int fd = socket(addr.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  try {
    if (addr.family == AF_INET6) {
      set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
      if (wildcard) set_int(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO");
      set_int(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1, "IPV6_RECVHOPLIMIT");
      if (want_tos) set_int(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, 1, "IPV6_RECVTCLASS");
    } else {
      if (wildcard) set_int(fd, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO");
      set_int(fd, IPPROTO_IP, IP_RECVTTL, 1, "IP_RECVTTL");
      if (want_tos) set_int(fd, IPPROTO_IP, IP_RECVTOS, 1, "IP_RECVTOS");
    }
    if (auto r = io::enable_timestamping(fd, {.rx = true, .tx = false}); !r) {
      throw std::system_error(r.error(), "SO_TIMESTAMPING");
    }
    // Room for bursts; FORCE needs CAP_NET_ADMIN, else the kernel caps at rmem_max/wmem_max.
    const int big = kSocketBuffer;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0) {
      (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    }
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0) {
      (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    }
  } catch (...) {
    close(fd);
    throw;
  }
  sockaddr_storage ss{};
  const socklen_t len = addr.to_sockaddr(port, ss);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    const int e = errno;
    close(fd);
    return e;
  }
  out = Socket{fd, addr.family, addr};
  return 0;
}

std::uint16_t bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// Fills the control data of a reply: the source address the request was sent to, when the
// socket is bound to a wildcard (so a multi-homed host answers from the right address; the
// interface is left to routing), and the TOS / Traffic Class when it is not the socket's
// default 0. Returns the control length (0: none). Fewer cmsgs, less kernel work per packet.
std::size_t build_tx_control(std::uint8_t* buf, int family, const RxInfo& info, std::uint8_t tos) {
  std::memset(buf, 0, kTxControl);  // CMSG_NXTHDR reads the next header's length
  msghdr m{};
  m.msg_control = buf;
  m.msg_controllen = kTxControl;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  std::size_t used = 0;
  auto add = [&](int level, int type, const void* data, std::size_t size) {
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(size);
    std::memcpy(CMSG_DATA(c), data, size);
    used += CMSG_SPACE(size);
    c = CMSG_NXTHDR(&m, c);
  };
  const int tos_int = tos;
  if (family == AF_INET) {
    if (info.have_v4_dst) {
      in_pktinfo pi{};
      pi.ipi_spec_dst = info.v4.ipi_spec_dst;
      add(IPPROTO_IP, IP_PKTINFO, &pi, sizeof pi);
    }
    if (tos != 0) add(IPPROTO_IP, IP_TOS, &tos_int, sizeof tos_int);
  } else {
    if (info.have_v6_dst) {
      in6_pktinfo pi{};
      pi.ipi6_addr = info.v6.ipi6_addr;
      add(IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof pi);
    }
    if (tos != 0) add(IPPROTO_IPV6, IPV6_TCLASS, &tos_int, sizeof tos_int);
  }
  return used;
}

// Whether the request was addressed to one of our unicast addresses. For IPv4 the kernel
// reports the header's destination (ipi_addr) and the local address it belongs to
// (ipi_spec_dst): they differ for broadcasts. IPv6 has no broadcast; reject multicast.
bool unicast_destination(const RxInfo& info) {
  if (info.have_v4_dst) {
    return info.v4.ipi_addr.s_addr == info.v4.ipi_spec_dst.s_addr &&
           !IN_MULTICAST(ntohl(info.v4.ipi_addr.s_addr));
  }
  if (info.have_v6_dst) return !IN6_IS_ADDR_MULTICAST(&info.v6.ipi6_addr);
  return true;
}

std::uint64_t random_seed() {
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

struct ReflectorServer::Impl {
  Impl(const ReflectorConfig& c, const Clock& clk)
      : config(c), clock(clk), reflector(c, random_seed()) {}
  ~Impl() {
    for (auto& s : sockets) close(s.fd);
    if (wake_fd >= 0) close(wake_fd);
  }

  void open_all();
  void serve(const Socket& s);
  void send_batch(const Socket& s, std::size_t n);
  void log_stats(std::int64_t now_ns);

  ReflectorConfig config;
  const Clock& clock;
  Reflector reflector;
  std::vector<Socket> sockets;
  std::uint16_t port = 0;
  int wake_fd = -1;
  std::atomic<std::size_t> active_sessions{0};  // counted by run() about once a second

  // Batch buffers, allocated once.
  std::vector<std::uint8_t> rx_data = std::vector<std::uint8_t>(kBatch * kMaxDatagram);
  std::vector<std::uint8_t> tx_data = std::vector<std::uint8_t>(kBatch * kMaxDatagram);
  std::array<std::array<std::uint8_t, kRxControl>, kBatch> rx_control{};
  std::array<std::array<std::uint8_t, kTxControl>, kBatch> tx_control{};
  std::array<sockaddr_storage, kBatch> rx_names{};
  std::array<sockaddr_storage, kBatch> tx_names{};
  std::array<iovec, kBatch> rx_iov{};
  std::array<iovec, kBatch> tx_iov{};
  std::array<mmsghdr, kBatch> rx_msgs{};
  std::array<mmsghdr, kBatch> tx_msgs{};

  std::int64_t last_error_log_ns = INT64_MIN;
  std::uint64_t io_errors = 0;
};

void ReflectorServer::Impl::open_all() {
  std::vector<IpAddress> addrs = config.bind;
  const bool defaults = addrs.empty();
  if (defaults) addrs = {*IpAddress::parse("0.0.0.0"), *IpAddress::parse("::")};
  // With port 0 all sockets share the port the first one got; if another socket already has
  // it in the other family, start over with a new one.
  for (int attempt = 0;; ++attempt) {
    std::uint16_t p = config.port;
    int failed_errno = 0;
    IpAddress failed_addr;
    for (const auto& a : addrs) {
      Socket s;
      const int e = open_socket(a, p, !config.reply_tos.has_value(), s);
      if (e == 0) {
        if (p == 0) p = bound_port(s.fd);
        sockets.push_back(s);
        continue;
      }
      if (defaults && a.family == AF_INET6 && (e == EAFNOSUPPORT || e == EADDRNOTAVAIL)) {
        spdlog::warn("IPv6 unavailable ({}): listening on IPv4 only", errno_text(e));
        continue;
      }
      failed_errno = e;
      failed_addr = a;
      break;
    }
    if (failed_errno == 0) {
      port = p;
      break;
    }
    for (auto& s : sockets) close(s.fd);
    sockets.clear();
    if (config.port == 0 && failed_errno == EADDRINUSE && attempt < 16) continue;
    std::string why =
        "cannot listen on " + endpoint_text(failed_addr, p) + ": " + errno_text(failed_errno);
    if (failed_errno == EACCES && p < 1024) {
      why += " (a port below 1024 needs CAP_NET_BIND_SERVICE; the systemd unit grants it)";
    } else if (failed_errno == EADDRNOTAVAIL) {
      why += " (not an address of this host: check bind)";
    }
    // A port below 1024 without the capability is the deployment's error; anything else (the
    // address not yet on the host at boot, the port taken) may pass: worth retrying.
    if (failed_errno == EACCES) throw ConfigError(why);
    throw EnvironmentError(why);
  }
  if (sockets.empty()) {
    throw EnvironmentError("no socket could be opened (IPv4 and IPv6 both failed)");
  }
  wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) throw std::system_error(errno, std::system_category(), "eventfd");

  for (std::size_t i = 0; i < kBatch; ++i) {
    rx_iov[i] = {rx_data.data() + i * kMaxDatagram, kMaxDatagram};
  }
}

void ReflectorServer::Impl::serve(const Socket& s) {
  for (int round = 0; round < kRoundsPerWake; ++round) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      msghdr& h = rx_msgs[i].msg_hdr;
      h = msghdr{};
      h.msg_name = &rx_names[i];
      h.msg_namelen = sizeof rx_names[i];
      h.msg_iov = &rx_iov[i];
      h.msg_iovlen = 1;
      h.msg_control = rx_control[i].data();
      h.msg_controllen = kRxControl;
      rx_msgs[i].msg_len = 0;
    }
    const int got = recvmmsg(s.fd, rx_msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (got < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        ++io_errors;
        const auto now = clock.monotonic_ns();
        if (now - last_error_log_ns > config.stats_interval_ns) {
          last_error_log_ns = now;
          spdlog::warn("recvmmsg on {}: {}", endpoint_text(s.address, port), errno_text(errno));
        }
      }
      return;
    }
    const std::int64_t now_ns = clock.monotonic_ns();
    std::size_t n = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(got); ++i) {
      msghdr& h = rx_msgs[i].msg_hdr;
      const auto source = IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&rx_names[i]));
      const RxInfo info = parse_rx_control(h);
      Request req;
      req.bytes = {rx_data.data() + i * kMaxDatagram,
                   std::min<std::size_t>(rx_msgs[i].msg_len, kMaxDatagram)};
      if (source) req.source = *source;
      req.source_port = source ? ntohs(reinterpret_cast<sockaddr_in*>(&rx_names[i])->sin_port)
                               : 0;  // sin_port and sin6_port share their offset
      const auto rx_ns = io::rx_timestamp_ns(h);
      req.rx_ns = rx_ns ? *rx_ns : clock.system_ns();  // no kernel stamp: the next best
      req.ttl = info.ttl;
      req.tos = info.tos;
      req.truncated = (h.msg_flags & MSG_TRUNC) != 0;
      req.to_unicast = unicast_destination(info);
      const std::span<std::uint8_t> out{tx_data.data() + n * kMaxDatagram, kMaxDatagram};
      const auto reply = reflector.handle(req, now_ns, out);
      if (!reply) continue;
      tx_names[n] = rx_names[i];
      tx_iov[n] = {out.data(), reply->size};
      msghdr& t = tx_msgs[n].msg_hdr;
      t = msghdr{};
      t.msg_name = &tx_names[n];
      t.msg_namelen = h.msg_namelen;
      t.msg_iov = &tx_iov[n];
      t.msg_iovlen = 1;
      t.msg_control = tx_control[n].data();
      t.msg_controllen = build_tx_control(tx_control[n].data(), s.family, info, reply->tos);
      if (t.msg_controllen == 0) t.msg_control = nullptr;
      ++n;
    }
    if (n > 0) send_batch(s, n);
    if (static_cast<std::size_t>(got) < kBatch) return;
  }
}

void ReflectorServer::Impl::send_batch(const Socket& s, std::size_t n) {
  // t3 as late as possible: one clock read right before the batch goes to the kernel.
  const std::int64_t tx_ns = clock.system_ns();
  for (std::size_t i = 0; i < n; ++i) {
    Reflector::set_tx_timestamp({static_cast<std::uint8_t*>(tx_iov[i].iov_base), tx_iov[i].iov_len},
                                tx_ns);
  }
  std::size_t off = 0;
  int full_waits = 0;
  while (off < n) {
    const int sent =
        sendmmsg(s.fd, tx_msgs.data() + off, static_cast<unsigned>(n - off), MSG_DONTWAIT);
    if (sent > 0) {
      reflector.count_sent(static_cast<std::uint64_t>(sent), 0);
      off += static_cast<std::size_t>(sent);
      continue;
    }
    const int e = errno;
    const SendFailure what = classify_send_failure(e, full_waits);
    if (what == SendFailure::Retry) continue;
    if (what == SendFailure::WaitForRoom) {
      // Send buffer full: wait briefly for room rather than drop.
      ++full_waits;
      pollfd p{s.fd, POLLOUT, 0};
      (void)poll(&p, 1, 5);
      continue;
    }
    // sendmmsg fails only on its first message: drop that one (a denied one is final too:
    // the same rule would refuse it again), keep the rest.
    reflector.count_sent(0, 1, what == SendFailure::Denied ? 1 : 0);
    ++off;
    const auto now = clock.monotonic_ns();
    if (now - last_error_log_ns > config.stats_interval_ns) {
      last_error_log_ns = now;
      spdlog::warn("sendmmsg on {}: {}", endpoint_text(s.address, port), errno_text(e));
    }
  }
}

void ReflectorServer::Impl::log_stats(std::int64_t now_ns) {
  spdlog::info("counters: {} active_sessions={}", reflector.counters().to_string(),
               reflector.active_sessions(now_ns));
}

ReflectorServer::ReflectorServer(const ReflectorConfig& config, const Clock& clock)
    : impl_(std::make_unique<Impl>(config, clock)) {
  impl_->open_all();
}

ReflectorServer::~ReflectorServer() = default;

std::vector<std::string> ReflectorServer::endpoints() const {
  std::vector<std::string> out;
  for (const auto& s : impl_->sockets) out.push_back(endpoint_text(s.address, impl_->port));
  return out;
}

std::uint16_t ReflectorServer::port() const {
  return impl_->port;
}

ReflectorCounters ReflectorServer::counters() const {
  return impl_->reflector.counters();
}

std::size_t ReflectorServer::active_sessions() const {
  return impl_->active_sessions.load(std::memory_order_relaxed);
}

void ReflectorServer::stop() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto r = write(impl_->wake_fd, &one, sizeof one);
}

void ReflectorServer::run() {
  Impl& m = *impl_;
  std::vector<pollfd> fds;
  for (const auto& s : m.sockets) fds.push_back({s.fd, POLLIN, 0});
  fds.push_back({m.wake_fd, POLLIN, 0});
  std::int64_t next_stats = m.clock.monotonic_ns() + m.config.stats_interval_ns;
  std::int64_t next_sessions = 0;
  for (;;) {
    const std::int64_t now = m.clock.monotonic_ns();
    if (now >= next_sessions) {
      // O(max_sessions), so once a second, on this thread (the table is single-threaded).
      m.reflector.expire_sessions(now);
      m.active_sessions.store(m.reflector.active_sessions(now), std::memory_order_relaxed);
      next_sessions = now + kNsPerSec;
    }
    if (now >= next_stats) {
      m.log_stats(now);
      next_stats = std::max(next_stats + m.config.stats_interval_ns, now + 1);
    }
    const auto wait_ms =
        static_cast<int>(std::min<std::int64_t>((next_stats - now + 999'999) / 1'000'000, 1000));
    const int r = poll(fds.data(), fds.size(), wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::system_category(), "poll");
    }
    if ((fds.back().revents & POLLIN) != 0) {
      std::uint64_t v = 0;
      [[maybe_unused]] const auto n = read(m.wake_fd, &v, sizeof v);
      return;
    }
    for (std::size_t i = 0; i < m.sockets.size(); ++i) {
      if (fds[i].revents != 0) m.serve(m.sockets[i]);
    }
  }
}

}  // namespace pathsentry::probe
