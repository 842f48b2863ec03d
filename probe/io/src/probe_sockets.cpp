#include "pathsentry/probe/io/probe_sockets.h"

#include <linux/filter.h>
#include <linux/net_tstamp.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

namespace pathsentry::probe::io {
namespace {

// SCM_TS_OPT_ID (Linux 6.13): sets the OPT_ID of a TX timestamp per sendmsg. Older headers
// lack it; older kernels reject it with EINVAL, and then we count ids ourselves.
#ifndef SCM_TS_OPT_ID
constexpr int kScmTsOptId = 81;
#else
constexpr int kScmTsOptId = SCM_TS_OPT_ID;
#endif

constexpr std::size_t kMaxBatch = 64;
// Per datagram: the TX timestamp id and the launch time (a multiple of cmsghdr's alignment, so
// each datagram's control block in the array stays aligned).
constexpr std::size_t kTxControl =
    CMSG_SPACE(sizeof(std::uint32_t)) + CMSG_SPACE(sizeof(std::uint64_t));
static_assert(kTxControl % alignof(cmsghdr) == 0);
constexpr std::size_t kIdRing = 1 << 16;

std::error_code last_error() {
  return {errno, std::system_category()};
}

/// A connected datagram socket (UDP, raw ICMP or ping) with kernel timestamps.
class KernelSocket final : public DatagramSocket {
 public:
  explicit KernelSocket(int fd) : fd_(fd), id_ring_(kIdRing) {
    for (std::size_t i = 0; i < kMaxBatch; ++i) {
      auto& c = tx_control_[i];
      std::memset(c.data(), 0, c.size());
      auto& r = rx_msgs_[i].msg_hdr;
      r.msg_iov = &rx_iov_[i];
      r.msg_iovlen = 1;
    }
  }
  ~KernelSocket() override { close(fd_); }
  KernelSocket(const KernelSocket&) = delete;
  KernelSocket& operator=(const KernelSocket&) = delete;

  tl::expected<std::size_t, std::error_code> send(std::span<const TxDatagram> batch) override {
    const std::size_t n = std::min(batch.size(), kMaxBatch);
    const bool with_id = opt_id_cmsg_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
      tx_iov_[i] = iovec{const_cast<std::uint8_t*>(batch[i].bytes.data()), batch[i].bytes.size()};
      msghdr& h = tx_msgs_[i].msg_hdr;
      h = msghdr{};
      h.msg_iov = &tx_iov_[i];
      h.msg_iovlen = 1;
      const bool with_time = launch_time_ && batch[i].launch_mono_ns > 0;
      if (!with_id && !with_time) continue;
      h.msg_control = tx_control_[i].data();
      h.msg_controllen = (with_id ? CMSG_SPACE(sizeof(std::uint32_t)) : 0) +
                         (with_time ? CMSG_SPACE(sizeof(std::uint64_t)) : 0);
      cmsghdr* c = CMSG_FIRSTHDR(&h);
      if (with_id) {
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = kScmTsOptId;
        c->cmsg_len = CMSG_LEN(sizeof(std::uint32_t));
        std::memcpy(CMSG_DATA(c), &batch[i].ts_id, sizeof(std::uint32_t));
        // The next header by hand: CMSG_NXTHDR reads the (stale) length of the next one.
        c = reinterpret_cast<cmsghdr*>(tx_control_[i].data() + CMSG_SPACE(sizeof(std::uint32_t)));
      }
      if (with_time) {
        const auto t = static_cast<std::uint64_t>(batch[i].launch_mono_ns);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_TXTIME;
        c->cmsg_len = CMSG_LEN(sizeof(std::uint64_t));
        std::memcpy(CMSG_DATA(c), &t, sizeof t);
      }
    }
    int r;
    do {
      r = sendmmsg(fd_, tx_msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EINVAL && with_id) {
      // The kernel does not know SCM_TS_OPT_ID: fall back to its per-socket counter.
      opt_id_cmsg_.store(false);
      return send(batch);
    }
    if (r < 0) return tl::unexpected(last_error());
    if (!with_id) {
      for (int i = 0; i < r; ++i) {
        id_ring_[(kernel_next_id_++) % kIdRing].store(batch[static_cast<std::size_t>(i)].ts_id,
                                                      std::memory_order_release);
      }
    }
    return static_cast<std::size_t>(r);
  }

  tl::expected<std::size_t, std::error_code> receive(std::span<RxDatagram> batch) override {
    const std::size_t n = std::min(batch.size(), kMaxBatch);
    for (std::size_t i = 0; i < n; ++i) {
      rx_iov_[i] = iovec{batch[i].buffer.data(), batch[i].buffer.size()};
      msghdr& h = rx_msgs_[i].msg_hdr;
      h.msg_name = nullptr;
      h.msg_namelen = 0;
      h.msg_control = rx_control_[i].data();
      h.msg_controllen = rx_control_[i].size();
      h.msg_flags = 0;
    }
    int r;
    do {
      r = recvmmsg(fd_, rx_msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return tl::unexpected(last_error());
    }
    for (int i = 0; i < r; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const msghdr& h = rx_msgs_[k].msg_hdr;
      batch[k].size = std::min<std::size_t>(rx_msgs_[k].msg_len, batch[k].buffer.size());
      batch[k].truncated = (h.msg_flags & MSG_TRUNC) != 0;
      batch[k].rx_ns = rx_timestamp_ns(h).value_or(0);
    }
    return static_cast<std::size_t>(r);
  }

  tl::expected<std::size_t, std::error_code> read_tx_timestamps(
      std::span<TxTimestamp> out) override {
    auto n = drain_tx_timestamps(fd_, out);
    if (!n) return n;
    if (!opt_id_cmsg_.load(std::memory_order_relaxed)) {
      for (std::size_t i = 0; i < *n; ++i) {
        out[i].id = id_ring_[out[i].id % kIdRing].load(std::memory_order_acquire);
      }
    }
    return n;
  }

  tl::expected<void, std::error_code> enable_launch_time() override {
    sock_txtime cfg{};
    cfg.clockid = CLOCK_MONOTONIC;  // fq's clock; needs no privilege
    cfg.flags = 0;
    if (setsockopt(fd_, SOL_SOCKET, SO_TXTIME, &cfg, sizeof cfg) != 0) {
      return tl::unexpected(last_error());
    }
    launch_time_ = true;
    return {};
  }

  int native_handle() const override { return fd_; }

 private:
  int fd_;
  bool launch_time_ = false;  // SO_TXTIME set: launch times go into a cmsg
  std::atomic<bool> opt_id_cmsg_{true};
  // Fallback: the kernel's OPT_ID counter value -> the ts_id the caller asked for.
  std::uint64_t kernel_next_id_ = 0;
  std::vector<std::atomic<std::uint32_t>> id_ring_;
  std::array<mmsghdr, kMaxBatch> tx_msgs_{};
  std::array<iovec, kMaxBatch> tx_iov_{};
  alignas(cmsghdr) std::array<std::array<char, kTxControl>, kMaxBatch> tx_control_{};
  std::array<mmsghdr, kMaxBatch> rx_msgs_{};
  std::array<iovec, kMaxBatch> rx_iov_{};
  std::array<std::array<char, kControlSize>, kMaxBatch> rx_control_{};
};

struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

OpenError fail(const char* step, const char* option) {
  return OpenError{step, option, last_error()};
}

// Everything common to both kinds, after socket(): options, bind, timestamps, connect.
tl::expected<void, OpenError> configure(int fd, const ProbeSocketOptions& o, std::uint16_t port) {
  const int family = o.target.family;
  if (!o.interface.empty()) {
    if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o.interface.c_str(),
                   static_cast<socklen_t>(o.interface.size())) != 0) {
      return tl::unexpected(fail("SO_BINDTODEVICE", "interface"));
    }
  }
  if (o.source) {
    sockaddr_storage ss{};
    const socklen_t len = o.source->to_sockaddr(0, ss);
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      return tl::unexpected(fail("bind", "source"));
    }
  }
  const int tos = o.dscp << 2;
  if (family == AF_INET) {
    if (setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos) != 0) {
      return tl::unexpected(fail("IP_TOS", "dscp"));
    }
  } else if (setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos) != 0) {
    return tl::unexpected(fail("IPV6_TCLASS", "dscp"));
  }
  // Large buffers: a burst of replies or TX timestamps must not overflow while the receiver
  // thread is descheduled. The forced variants need CAP_NET_ADMIN; fall back to the capped ones.
  const int buf = o.buffer_bytes;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  }
  if (auto r = enable_timestamping(fd, {true, true}); !r) {
    return tl::unexpected(OpenError{"SO_TIMESTAMPING", "", r.error()});
  }
  sockaddr_storage dst{};
  const socklen_t len = o.target.to_sockaddr(port, dst);
  if (connect(fd, reinterpret_cast<sockaddr*>(&dst), len) != 0) {
    return tl::unexpected(fail("connect", "target"));
  }
  return {};
}

// Raw IPv4 ICMP sockets see every ICMP packet the host receives; keep only echo replies with
// our identifier so other traffic never reaches user space.
bool attach_echo_filter(int fd, std::uint16_t echo_id) {
  std::array<sock_filter, 7> code = {{
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),              // x = IP header length
      BPF_STMT(BPF_LD | BPF_B | BPF_IND, 0),               // a = ICMP type
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),        // echo reply?
      BPF_STMT(BPF_LD | BPF_H | BPF_IND, 4),               // a = identifier
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, echo_id, 0, 1),  // ours?
      BPF_STMT(BPF_RET | BPF_K, 0x3FFFF),                  // accept, whole packet
      BPF_STMT(BPF_RET | BPF_K, 0),                        // drop
  }};
  sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0;
}

}  // namespace

std::string OpenError::message() const {
  std::string m = step + ": " + code.message();
  return m;
}

tl::expected<OpenedSocket, OpenError> open_icmp_socket(const ProbeSocketOptions& opts,
                                                       IcmpSocketMode mode, std::uint16_t echo_id) {
  const int family = opts.target.family;
  const int proto =
      family == AF_INET ? static_cast<int>(IPPROTO_ICMP) : static_cast<int>(IPPROTO_ICMPV6);
  OpenedSocket out;
  int fd = -1;
  if (mode != IcmpSocketMode::Dgram) {
    fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd < 0 && (mode == IcmpSocketMode::Raw || (errno != EPERM && errno != EACCES))) {
      return tl::unexpected(fail("socket(SOCK_RAW)", ""));
    }
    if (fd >= 0) out.icmp_raw = true;
  }
  if (fd < 0) {
    const int raw_errno = errno;
    fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd < 0) return tl::unexpected(fail("socket(SOCK_DGRAM, ICMP) (ping socket)", ""));
    if (mode == IcmpSocketMode::Auto) {
      out.note = std::string("raw ICMP socket not permitted (") + std::strerror(raw_errno) +
                 "): using an unprivileged ping socket";
    }
  }
  FdGuard guard{fd};
  if (out.icmp_raw) {
    out.echo_id = echo_id;
    if (family == AF_INET6) {
      icmp6_filter filter{};
      ICMP6_FILTER_SETBLOCKALL(&filter);
      ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter);
      if (setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter) != 0) {
        return tl::unexpected(fail("ICMP6_FILTER", ""));
      }
    } else if (!attach_echo_filter(fd, echo_id)) {
      return tl::unexpected(fail("SO_ATTACH_FILTER", ""));
    }
  }
  if (auto r = configure(fd, opts, 0); !r) return tl::unexpected(r.error());
  out.socket = std::make_unique<KernelSocket>(guard.release());
  return out;
}

tl::expected<OpenedSocket, OpenError> open_udp_socket(const ProbeSocketOptions& opts) {
  const int fd = socket(opts.target.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return tl::unexpected(fail("socket(SOCK_DGRAM)", ""));
  FdGuard guard{fd};
  if (auto r = configure(fd, opts, opts.port); !r) return tl::unexpected(r.error());
  OpenedSocket out;
  out.socket = std::make_unique<KernelSocket>(guard.release());
  return out;
}

}  // namespace pathsentry::probe::io
