// bench-raw-udp: the machine's UDP echo limit, measured with batched syscalls and no per-packet
// work beyond writing a sequence number and reading it back.
//
//   bench-raw-udp server --bind ADDR [--port N] [--batch N]
//       recvmmsg -> sendmmsg back to each source, until SIGTERM/SIGINT. Prints
//       "raw echo listening on ADDR:PORT" when ready and a JSON line of counters at exit.
//   bench-raw-udp client --target ADDR [--port N] [--rate PPS|0] [--duration S] [--size BYTES]
//                        [--batch N] [--timeout-ms N] [--bind ADDR] [--search]
//       Sends `size`-byte UDP datagrams at `rate` (0 = flat out) in sendmmsg batches, receives the
//       echoes with recvmmsg and prints one JSON object: achieved rates, loss, CPU, RTT. An echo
//       later than --timeout-ms (default 200) counts as lost (and as "late"), as in a prober.
//       With --search it first runs flat out, then bisects the paced rate for the highest one
//       that loses nothing ("best_clean_rate"), and confirms it over --duration, stepping down
//       10 % per lost confirmation, at most --confirm-tries times: that is the "raw limit"
//       ("limit_pps"; null when nothing was confirmed or --confirm-tries is 0).
//   --timestamps (client and server): the kernel timestamps an instrument takes, nothing else:
//       the client asks a software TX timestamp of every datagram (SO_TIMESTAMPING, OPT_ID,
//       OPT_TSONLY: the error queue drained after every batch, the RTT taken from it) and the
//       server reads the RX timestamp of every request (a STAMP reflector's t2). The echo
//       limit with them is the ceiling of any prober that timestamps in the kernel.
//   bench-raw-udp pace --target ADDR [--port N] [--rate PPS] [--duration S] [--size BYTES]
//       The floor of any prober that sends 1/rate apart without kernel pacing: one absolute
//       clock_nanosleep and one sendto per datagram, nothing else (no timestamps, replies never
//       read: its receive buffer is the smallest the kernel allows, so the echoes are dropped in
//       the sender's softirq). Prints one JSON object: sent, CPU seconds.
//
// RTT method: tx = clock_gettime(CLOCK_REALTIME) read once per sendmmsg batch, immediately
// before the call; rx = the kernel's software RX timestamp (SO_TIMESTAMPING). So the RTT of the
// k-th packet of a batch includes the time to send the k-1 before it (small at paced rates,
// where batches are short; the figure is a sanity check, not the point of this program).

#include <arpa/inet.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_util.h"

namespace {

using pathsentry::bench::distribution_json;
using pathsentry::bench::monotonic_ns;
using pathsentry::bench::realtime_ns;

constexpr std::uint32_t kMagic = 0x50534252;  // "PSBR"
constexpr std::size_t kHeaderSize = 24;       // magic(4) run(4) seq(8) tx_ns(8), host order
constexpr std::size_t kMaxSize = 9000;
constexpr int kSocketBuffer = 4 << 20;

constexpr std::size_t kControlSize = 256;

volatile sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

struct Options {
  std::string mode;
  std::string target;
  std::string bind;
  std::uint16_t port = 9000;
  double rate = 0;
  double duration_s = 2;
  std::size_t size = 44;
  unsigned batch = 32;
  int timeout_ms = 200;
  bool search = false;
  bool timestamps = false;
  int search_steps = 7;
  int confirm_tries = 4;
  double step_s = 1.0;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "bench-raw-udp: " << why << "\n"
            << "usage: bench-raw-udp server --bind ADDR [--port N] [--batch N] [--timestamps]\n"
            << "       bench-raw-udp client --target ADDR [--port N] [--rate PPS|0] "
               "[--duration S] [--size BYTES] [--batch N] [--timeout-ms N] [--bind ADDR] "
               "[--search] [--search-steps N] [--step-duration S] [--confirm-tries N] "
               "[--timestamps]\n"
            << "       bench-raw-udp pace --target ADDR [--port N] [--rate PPS] [--duration S] "
               "[--size BYTES]\n";
  std::exit(2);
}

double parse_number(const std::string& key, const std::string& value, double lo, double hi) {
  try {
    std::size_t used = 0;
    const double v = std::stod(value, &used);
    if (used != value.size() || !(v >= lo && v <= hi)) throw std::invalid_argument(value);
    return v;
  } catch (const std::exception&) {
    usage(key + ": '" + value + "' is not a number in [" + std::to_string(lo) + ", " +
          std::to_string(hi) + "]");
  }
}

Options parse(int argc, char** argv) {
  if (argc < 2) usage("missing mode");
  Options o;
  o.mode = argv[1];
  if (o.mode != "server" && o.mode != "client" && o.mode != "pace") {
    usage("unknown mode '" + o.mode + "'");
  }
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--search") {
      o.search = true;
      continue;
    }
    if (k == "--timestamps") {
      o.timestamps = true;
      continue;
    }
    if (i + 1 >= argc) usage(k + " needs a value");
    const std::string v = argv[++i];
    if (k == "--target") {
      o.target = v;
    } else if (k == "--bind") {
      o.bind = v;
    } else if (k == "--port") {
      o.port = static_cast<std::uint16_t>(parse_number(k, v, 1, 65535));
    } else if (k == "--rate") {
      o.rate = parse_number(k, v, 0, 1e8);
    } else if (k == "--duration") {
      o.duration_s = parse_number(k, v, 0.01, 3600);
    } else if (k == "--size") {
      o.size = static_cast<std::size_t>(parse_number(k, v, kHeaderSize, kMaxSize));
    } else if (k == "--batch") {
      o.batch = static_cast<unsigned>(parse_number(k, v, 1, 1024));
    } else if (k == "--timeout-ms") {
      o.timeout_ms = static_cast<int>(parse_number(k, v, 1, 60000));
    } else if (k == "--search-steps") {
      o.search_steps = static_cast<int>(parse_number(k, v, 1, 30));
    } else if (k == "--confirm-tries") {
      o.confirm_tries = static_cast<int>(parse_number(k, v, 0, 20));
    } else if (k == "--step-duration") {
      o.step_s = parse_number(k, v, 0.05, 600);
    } else {
      usage("unknown option " + k);
    }
  }
  if (o.mode != "server" && o.target.empty()) usage(o.mode + " needs --target");
  if (o.mode == "pace" && o.rate <= 0) usage("pace needs --rate > 0");
  if (o.mode == "server" && o.bind.empty()) usage("server needs --bind");
  return o;
}

struct Address {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
};

Address make_address(const std::string& ip, std::uint16_t port) {
  Address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(sockaddr_in);
    a.family = AF_INET;
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(sockaddr_in6);
    a.family = AF_INET6;
  } else {
    usage("'" + ip + "' is not an IPv4 or IPv6 address");
  }
  return a;
}

[[noreturn]] void die(const std::string& what) {
  std::cerr << "bench-raw-udp: " << what << ": " << std::strerror(errno) << "\n";
  std::exit(1);
}

void grow_buffers(int fd) {
  // FORCE variants (root) ignore net.core.{r,w}mem_max; fall back to the capped ones.
  for (auto [force, plain] : {std::pair{SO_RCVBUFFORCE, SO_RCVBUF}, {SO_SNDBUFFORCE, SO_SNDBUF}}) {
    if (setsockopt(fd, SOL_SOCKET, force, &kSocketBuffer, sizeof kSocketBuffer) != 0) {
      (void)setsockopt(fd, SOL_SOCKET, plain, &kSocketBuffer, sizeof kSocketBuffer);
    }
  }
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void install_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;  // no SA_RESTART: blocking calls return EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

// Kernel software RX timestamps, as pathsentry-probe uses them. Kept local (rather than using
// probe_io's helpers) so the raw baseline builds and runs with nothing of pathsentry in it.
// With `tx`, also the TX timestamps of --timestamps: software, numbered by the kernel from 0 per
// socket (OPT_ID; a fresh socket per run, so the id is the datagram's sequence), without the
// packet (TSONLY).
bool enable_timestamps(int fd, bool tx = false) {
  unsigned flags = SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE;
  if (tx) {
    flags |= SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY;
  }
  return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) == 0;
}

std::optional<std::int64_t> rx_timestamp_ns(msghdr& msg) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING &&
        c->cmsg_len >= CMSG_LEN(sizeof(scm_timestamping))) {
      scm_timestamping t{};
      std::memcpy(&t, CMSG_DATA(c), sizeof t);
      if (t.ts[0].tv_sec != 0 || t.ts[0].tv_nsec != 0) {
        return static_cast<std::int64_t>(t.ts[0].tv_sec) * 1'000'000'000 + t.ts[0].tv_nsec;
      }
    }
  }
  return std::nullopt;
}

/// Reads every TX timestamp waiting in fd's error queue into tx_at[id]; returns how many.
std::uint64_t drain_tx_timestamps(int fd, std::vector<std::int64_t>& tx_at) {
  constexpr unsigned kN = 64;
  std::array<mmsghdr, kN> msgs{};
  std::array<std::array<char, kControlSize>, kN> ctrl{};
  std::uint64_t n = 0;
  for (;;) {
    for (unsigned i = 0; i < kN; ++i) {
      msgs[i].msg_hdr = {};
      msgs[i].msg_hdr.msg_control = ctrl[i].data();
      msgs[i].msg_hdr.msg_controllen = ctrl[i].size();
    }
    const int got = recvmmsg(fd, msgs.data(), kN, MSG_ERRQUEUE | MSG_DONTWAIT, nullptr);
    if (got <= 0) return n;
    for (int i = 0; i < got; ++i) {
      msghdr& m = msgs[static_cast<std::size_t>(i)].msg_hdr;
      std::optional<std::uint32_t> id;
      for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
        if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
            (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
          sock_extended_err e{};
          std::memcpy(&e, CMSG_DATA(c), sizeof e);
          if (e.ee_origin == SO_EE_ORIGIN_TIMESTAMPING) id = e.ee_data;
        }
      }
      const auto ts = rx_timestamp_ns(m);  // the same SCM_TIMESTAMPING ts[0]
      if (id && ts && *id < tx_at.size()) {
        tx_at[*id] = *ts;
        ++n;
      }
    }
    if (static_cast<unsigned>(got) < kN) return n;
  }
}

// ---------------------------------------------------------------------------------------------
// Server

int run_server(const Options& o) {
  install_signals();
  const Address local = make_address(o.bind, o.port);
  const int fd = socket(local.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  grow_buffers(fd);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&local.ss), local.len) != 0) die("bind");
  // Wake regularly so a signal that lands between the stop check and recvmmsg is still seen.
  timeval tv{0, 200'000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (o.timestamps && !enable_timestamps(fd)) die("SO_TIMESTAMPING");
  std::cout << "raw echo listening on " << o.bind << ":" << o.port << std::endl;

  const unsigned n = o.batch;
  std::vector<std::array<char, kMaxSize>> bufs(n);
  std::vector<std::array<char, kControlSize>> ctrl(o.timestamps ? n : 0);
  std::uint64_t rx_stamped = 0;
  std::vector<sockaddr_storage> names(n);
  std::vector<iovec> iov(n);
  std::vector<mmsghdr> msgs(n);
  std::uint64_t received = 0;
  std::uint64_t echoed = 0;
  std::uint64_t send_errors = 0;
  std::uint64_t calls = 0;
  const double cpu0 = cpu_seconds();
  const std::int64_t t0 = monotonic_ns();
  while (g_stop == 0) {
    for (unsigned i = 0; i < n; ++i) {
      iov[i] = {bufs[i].data(), bufs[i].size()};
      msgs[i].msg_hdr = {};
      msgs[i].msg_hdr.msg_name = &names[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      if (o.timestamps) {
        msgs[i].msg_hdr.msg_control = ctrl[i].data();
        msgs[i].msg_hdr.msg_controllen = ctrl[i].size();
      }
    }
    const int got = recvmmsg(fd, msgs.data(), n, MSG_WAITFORONE, nullptr);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      die("recvmmsg");
    }
    ++calls;
    received += static_cast<std::uint64_t>(got);
    for (int i = 0; i < got; ++i) {
      auto& m = msgs[static_cast<std::size_t>(i)];
      iov[static_cast<std::size_t>(i)].iov_len = m.msg_len;
      if (o.timestamps) {
        if (rx_timestamp_ns(m.msg_hdr)) ++rx_stamped;
        m.msg_hdr.msg_control = nullptr;  // the echo goes out without control data
        m.msg_hdr.msg_controllen = 0;
      }
    }
    int done = 0;
    while (done < got) {
      const int sent = sendmmsg(fd, msgs.data() + done, static_cast<unsigned>(got - done), 0);
      if (sent < 0) {
        if (errno == EINTR) continue;
        send_errors += static_cast<std::uint64_t>(got - done);  // dropped, counted
        break;
      }
      done += sent;
      echoed += static_cast<std::uint64_t>(sent);
    }
  }
  const double wall = static_cast<double>(monotonic_ns() - t0) / 1e9;
  const double cpu = cpu_seconds() - cpu0;
  nlohmann::json j{{"mode", "server"},
                   {"received", received},
                   {"echoed", echoed},
                   {"send_errors", send_errors},
                   {"recv_calls", calls},
                   {"rx_stamped", rx_stamped},
                   {"wall_s", wall},
                   {"cpu_s", cpu},
                   {"cpu_pct", wall > 0 ? 100.0 * cpu / wall : 0.0}};
  std::cout << j.dump() << std::endl;
  close(fd);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Client

struct Header {
  std::uint32_t magic;
  std::uint32_t run;
  std::uint64_t seq;
  std::int64_t tx_ns;
};
static_assert(sizeof(Header) == kHeaderSize);

/// One client run at one target rate (0 = flat out).
nlohmann::json run_client_once(const Options& o, double rate, double duration_s,
                               std::uint32_t run_id) {
  const Address remote = make_address(o.target, o.port);
  const int fd = socket(remote.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  grow_buffers(fd);
  if (!o.bind.empty()) {
    const Address local = make_address(o.bind, 0);
    if (bind(fd, reinterpret_cast<const sockaddr*>(&local.ss), local.len) != 0) die("bind");
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&remote.ss), remote.len) != 0) die("connect");
  const bool kernel_rx = enable_timestamps(fd, o.timestamps);
  if (o.timestamps && !kernel_rx) die("SO_TIMESTAMPING (TX)");

  const unsigned batch = o.batch;
  // At low rates send smaller batches so that a batch is due at least every millisecond.
  const std::uint64_t paced_batch =
      rate > 0 ? std::clamp<std::uint64_t>(static_cast<std::uint64_t>(rate / 1000.0), 1, batch)
               : batch;
  std::vector<std::array<char, kMaxSize>> tx_bufs(batch);
  std::vector<iovec> tx_iov(batch);
  std::vector<mmsghdr> tx_msgs(batch);
  for (unsigned i = 0; i < batch; ++i) {
    std::memset(tx_bufs[i].data(), 0, o.size);
    tx_iov[i] = {tx_bufs[i].data(), o.size};
    tx_msgs[i].msg_hdr = {};
    tx_msgs[i].msg_hdr.msg_iov = &tx_iov[i];
    tx_msgs[i].msg_hdr.msg_iovlen = 1;
  }
  std::vector<std::array<char, kMaxSize>> rx_bufs(batch);
  std::vector<std::array<char, kControlSize>> rx_ctrl(batch);
  std::vector<iovec> rx_iov(batch);
  std::vector<mmsghdr> rx_msgs(batch);

  const auto expected = static_cast<std::size_t>(rate > 0 ? rate * duration_s * 1.05 + 1024 : 0);
  std::vector<std::uint8_t> seen;
  seen.reserve(expected);
  std::vector<std::int64_t> rtts;
  rtts.reserve(expected);
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t late = 0;
  const std::int64_t timeout_ns = static_cast<std::int64_t>(o.timeout_ms) * 1'000'000;
  std::uint64_t foreign = 0;
  std::uint64_t send_errors = 0;
  std::uint64_t backpressure = 0;
  // --timestamps: each datagram's kernel TX and RX times, by sequence (0 = none yet).
  std::vector<std::int64_t> tx_at;
  std::vector<std::int64_t> rx_at;
  std::uint64_t tx_stamped = 0;
  if (o.timestamps) {
    tx_at.reserve(expected);
    rx_at.reserve(expected);
  }

  const double cpu0 = cpu_seconds();
  const std::int64_t start = monotonic_ns();
  const auto duration_ns = static_cast<std::int64_t>(duration_s * 1e9);
  const std::int64_t send_end = start + duration_ns;
  std::int64_t sending_stopped = 0;
  std::int64_t drain_deadline = 0;

  auto receive_all = [&] {
    for (;;) {
      for (unsigned i = 0; i < batch; ++i) {
        rx_iov[i] = {rx_bufs[i].data(), rx_bufs[i].size()};
        rx_msgs[i].msg_hdr = {};
        rx_msgs[i].msg_hdr.msg_iov = &rx_iov[i];
        rx_msgs[i].msg_hdr.msg_iovlen = 1;
        rx_msgs[i].msg_hdr.msg_control = rx_ctrl[i].data();
        rx_msgs[i].msg_hdr.msg_controllen = rx_ctrl[i].size();
      }
      const int got = recvmmsg(fd, rx_msgs.data(), batch, MSG_DONTWAIT, nullptr);
      if (got <= 0) return;
      const std::int64_t fallback_rx = kernel_rx ? 0 : realtime_ns();
      for (int i = 0; i < got; ++i) {
        auto& m = rx_msgs[static_cast<std::size_t>(i)];
        Header h{};
        if (m.msg_len < kHeaderSize) {
          ++foreign;
          continue;
        }
        std::memcpy(&h, rx_bufs[static_cast<std::size_t>(i)].data(), sizeof h);
        if (h.magic != kMagic || h.run != run_id || h.seq >= sent) {
          ++foreign;
          continue;
        }
        if (seen[h.seq] != 0) {
          ++duplicates;
          continue;
        }
        seen[h.seq] = 1;
        const std::int64_t rx =
            kernel_rx ? rx_timestamp_ns(m.msg_hdr).value_or(realtime_ns()) : fallback_rx;
        if (rx - h.tx_ns > timeout_ns) {
          ++late;  // a prober would have declared it lost already: counted as lost
          continue;
        }
        ++received;
        if (o.timestamps) {
          rx_at[h.seq] = rx;
        } else {
          rtts.push_back(rx - h.tx_ns);
        }
      }
      if (static_cast<unsigned>(got) < batch) return;
    }
  };

  for (;;) {
    std::int64_t now = monotonic_ns();
    bool blocked = false;
    if (sending_stopped == 0 && now >= send_end) {
      sending_stopped = now;
      drain_deadline = now + static_cast<std::int64_t>(o.timeout_ms) * 1'000'000;
    }
    if (sending_stopped == 0) {
      std::uint64_t due = batch;  // flat out: one batch per loop turn, then receive
      if (rate > 0) {
        const auto target =
            static_cast<std::uint64_t>(static_cast<double>(now - start) * rate / 1e9);
        due = target > sent ? std::min<std::uint64_t>(target - sent, batch) : 0;
      }
      if (due > 0) {
        const std::int64_t tx_ns = realtime_ns();
        for (std::uint64_t i = 0; i < due; ++i) {
          const Header h{kMagic, run_id, sent + i, tx_ns};
          std::memcpy(tx_bufs[i].data(), &h, sizeof h);
        }
        seen.resize(sent + due, 0);
        const int r = sendmmsg(fd, tx_msgs.data(), static_cast<unsigned>(due), 0);
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
            ++backpressure;
            blocked = true;
          } else if (errno != EINTR) {
            ++send_errors;
          }
        } else {
          sent += static_cast<std::uint64_t>(r);
          if (static_cast<std::uint64_t>(r) < due) {
            ++backpressure;
            blocked = true;
          }
        }
        seen.resize(sent);
        if (o.timestamps) {
          tx_at.resize(sent, 0);
          rx_at.resize(sent, 0);
        }
      }
    }
    if (o.timestamps) tx_stamped += drain_tx_timestamps(fd, tx_at);
    receive_all();
    now = monotonic_ns();
    if (sending_stopped != 0 && (received >= sent || now >= drain_deadline)) break;
    if (g_stop != 0) break;

    // Sleep until the next batch is due (or an echo arrives, or the drain ends).
    std::int64_t wake = 0;
    if (sending_stopped != 0) {
      wake = drain_deadline;
    } else if (rate > 0) {
      const auto next_count = static_cast<double>(sent + paced_batch);
      wake = std::min(send_end, start + static_cast<std::int64_t>(next_count * 1e9 / rate));
    } else {
      wake = blocked ? now + 50'000 : now;  // flat out: only wait for buffer space
    }
    if (wake > now) {
      pollfd p{fd, static_cast<short>(POLLIN | (blocked ? POLLOUT : 0)), 0};
      const std::int64_t wait = wake - now;
      const timespec tmo{static_cast<time_t>(wait / 1'000'000'000),
                         static_cast<long>(wait % 1'000'000'000)};
      ppoll(&p, 1, &tmo, nullptr);
    }
  }
  if (o.timestamps) {
    tx_stamped += drain_tx_timestamps(fd, tx_at);
    for (std::size_t i = 0; i < rx_at.size(); ++i) {
      if (rx_at[i] != 0 && tx_at[i] != 0) rtts.push_back(rx_at[i] - tx_at[i]);
    }
  }
  const std::int64_t end = monotonic_ns();
  const double cpu = cpu_seconds() - cpu0;
  close(fd);

  const double send_s =
      static_cast<double>((sending_stopped != 0 ? sending_stopped : end) - start) / 1e9;
  const double wall_s = static_cast<double>(end - start) / 1e9;
  const std::uint64_t lost = sent - received;
  nlohmann::json j;
  j["target_rate"] = rate;
  j["duration_s"] = send_s;
  j["sent"] = sent;
  j["received"] = received;
  j["lost"] = lost;
  j["loss_ratio"] = sent > 0 ? static_cast<double>(lost) / static_cast<double>(sent) : 0.0;
  j["duplicates"] = duplicates;
  j["late"] = late;
  j["foreign"] = foreign;
  j["send_errors"] = send_errors;
  j["backpressure"] = backpressure;
  j["send_rate"] = send_s > 0 ? static_cast<double>(sent) / send_s : 0.0;
  j["echo_rate"] = send_s > 0 ? static_cast<double>(received) / send_s : 0.0;
  j["cpu_s"] = cpu;
  j["cpu_pct"] = wall_s > 0 ? 100.0 * cpu / wall_s : 0.0;
  j["rtt_ns"] = distribution_json(rtts);
  if (o.timestamps) {
    j["tx_stamped"] = tx_stamped;
    j["rtt_method"] = "tx: SO_TIMESTAMPING sw (error queue); rx: SO_TIMESTAMPING sw";
  } else {
    j["rtt_method"] = kernel_rx ? "tx: clock_gettime per sendmmsg batch; rx: SO_TIMESTAMPING sw"
                                : "tx: clock_gettime per batch; rx: clock_gettime after recvmmsg";
  }
  return j;
}

bool clean(const nlohmann::json& r, int timeout_ms) {
  // A run counts only if it lost nothing, actually sent at (almost) the asked rate, and its
  // echoes did not queue up towards the timeout (a longer run would lose them).
  const double target = r["target_rate"].get<double>();
  const auto& p99 = r["rtt_ns"]["p99"];
  const bool backlog =
      p99.is_number() && p99.get<std::int64_t>() >= std::int64_t{timeout_ms} * 1'000'000 / 2;
  return r["lost"].get<std::uint64_t>() == 0 && r["send_errors"].get<std::uint64_t>() == 0 &&
         r["send_rate"].get<double>() >= 0.95 * target && !backlog;
}

int run_client(const Options& o) {
  install_signals();
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  // ppoll wakes on time, not 50 us late
  std::mt19937 rng(std::random_device{}());
  std::uint32_t run_id = rng();
  if (!o.search) {
    auto r = run_client_once(o, o.rate, o.duration_s, run_id);
    r["mode"] = "client";
    r["size"] = o.size;
    r["batch"] = o.batch;
    std::cout << r.dump() << std::endl;
    return 0;
  }
  nlohmann::json out{{"mode", "search"}, {"size", o.size}, {"batch", o.batch}};
  auto flat = run_client_once(o, 0, o.step_s, ++run_id);
  out["flat_out"] = flat;
  // Bisect the paced rate: the first probe is the flat-out echo throughput.
  double lo = 0;
  double hi = std::max(flat["send_rate"].get<double>(), 1000.0);
  double mid = std::clamp(flat["echo_rate"].get<double>(), 1000.0, hi);
  nlohmann::json steps = nlohmann::json::array();
  for (int i = 0; i < o.search_steps && g_stop == 0; ++i) {
    auto r = run_client_once(o, mid, o.step_s, ++run_id);
    const bool ok = clean(r, o.timeout_ms);
    std::cerr << "raw search: rate " << static_cast<long>(mid) << " -> lost "
              << r["lost"].get<std::uint64_t>() << ", sent at "
              << static_cast<long>(r["send_rate"].get<double>()) << "/s" << (ok ? " (clean)" : "")
              << "\n";
    steps.push_back(r);
    (ok ? lo : hi) = mid;
    mid = (lo + hi) / 2;
  }
  out["search_steps"] = steps;
  out["best_clean_rate"] = lo > 0 ? nlohmann::json(lo) : nlohmann::json(nullptr);
  // Confirm the best clean rate over the full duration; step down 10 % on loss.
  nlohmann::json limit = nullptr;
  double rate = lo;
  for (int tries = 0; tries < o.confirm_tries && rate >= 1000 && g_stop == 0; ++tries) {
    auto r = run_client_once(o, rate, o.duration_s, ++run_id);
    std::cerr << "raw confirm: rate " << static_cast<long>(rate) << " for " << o.duration_s
              << " s -> lost " << r["lost"].get<std::uint64_t>() << "\n";
    if (clean(r, o.timeout_ms)) {
      limit = r;
      break;
    }
    out["rejected_confirmations"].push_back(r);
    rate *= 0.9;
  }
  out["limit"] = limit;
  out["limit_pps"] = limit.is_null() ? nlohmann::json(nullptr) : limit["echo_rate"];
  std::cout << out.dump() << std::endl;
  return limit.is_null() && o.confirm_tries > 0 ? 3 : 0;
}

// ---------------------------------------------------------------------------------------------
// Pace: a timer wake-up and a send per datagram, the least a prober paced by the CPU can do.

int run_pace(const Options& o) {
  install_signals();
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  const Address to = make_address(o.target, o.port);
  const int fd = socket(to.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  const int tiny = 1;  // the kernel rounds it up to its minimum: echoes are dropped, not read
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &tiny, sizeof tiny);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&to.ss), to.len) != 0) die("connect");
  std::vector<char> payload(o.size, 0);
  const auto step = static_cast<std::int64_t>(1e9 / o.rate);
  const auto total = static_cast<std::uint64_t>(o.rate * o.duration_s);
  const double cpu0 = cpu_seconds();
  timespec next{};
  clock_gettime(CLOCK_MONOTONIC, &next);
  std::uint64_t sent = 0;
  std::uint64_t errors = 0;
  for (std::uint64_t i = 0; i < total && g_stop == 0; ++i) {
    next.tv_nsec += step;
    while (next.tv_nsec >= 1'000'000'000) {
      next.tv_nsec -= 1'000'000'000;
      ++next.tv_sec;
    }
    if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr) == EINTR) continue;
    std::memcpy(payload.data(), &i, sizeof i);
    if (send(fd, payload.data(), payload.size(), 0) < 0) {
      ++errors;
    } else {
      ++sent;
    }
  }
  const nlohmann::json r{{"mode", "pace"}, {"rate", o.rate},
                         {"sent", sent},   {"send_errors", errors},
                         {"size", o.size}, {"cpu_s", cpu_seconds() - cpu0}};
  std::cout << r.dump() << std::endl;
  close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (o.mode == "pace") return run_pace(o);
  return o.mode == "server" ? run_server(o) : run_client(o);
}
