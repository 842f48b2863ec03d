// libpcap-backed PacketSource: live capture (immediate mode, sized ring, BPF, ns timestamps)
// and offline reading of pcap/pcapng files.

#include <net/if.h>
#include <pcap/pcap.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "pathsentry/probe/capture/packet_source.h"

namespace pathsentry::probe {
namespace {

struct PcapCloser {
  void operator()(pcap_t* p) const {
    if (p != nullptr) pcap_close(p);
  }
};
using PcapPtr = std::unique_ptr<pcap_t, PcapCloser>;

tl::expected<void, std::string> apply_filter(pcap_t* p, const std::string& filter,
                                             const std::string& what) {
  if (filter.empty()) return {};
  bpf_program prog{};
  if (pcap_compile(p, &prog, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    return tl::unexpected(what + ": BPF filter '" + filter +
                          "' does not compile: " + pcap_geterr(p));
  }
  const int rc = pcap_setfilter(p, &prog);
  pcap_freecode(&prog);
  if (rc != 0) {
    return tl::unexpected(what + ": cannot set BPF filter '" + filter + "': " + pcap_geterr(p));
  }
  return {};
}

/// SIOCGIFFLAGS of `interface` through socket `fd`; nullopt when the call fails.
std::optional<short> interface_flags(int fd, const std::string& interface) {
  if (fd < 0 || interface.size() >= IFNAMSIZ) return std::nullopt;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, interface.data(), interface.size());
  if (::ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) return std::nullopt;
  return ifr.ifr_flags;
}

class PcapSource final : public PacketSource {
 public:
  PcapSource(PcapPtr p, bool nano, bool live, std::string interface = {})
      : p_(std::move(p)),
        nano_(nano),
        live_(live),
        link_(pcap_datalink(p_.get())),
        interface_(std::move(interface)) {
    // Interfaces whose flags cannot be read ("any") are not checked.
    check_link_ = live_ && interface_flags(fd(), interface_).has_value();
  }

  std::optional<std::string> link_problem() const override {
    if (!check_link_) return std::nullopt;
    errno = 0;
    const auto flags = interface_flags(fd(), interface_);
    if (!flags) {
      return "interface " + interface_ + ": " +
             (errno == ENODEV ? std::string("gone") : std::string(std::strerror(errno)));
    }
    if ((*flags & IFF_UP) == 0) return "interface " + interface_ + " is down";
    if ((*flags & IFF_RUNNING) == 0) return "interface " + interface_ + " has no carrier";
    return std::nullopt;
  }

  tl::expected<ReadStatus, std::string> next(Frame& out) override {
    pcap_pkthdr* hdr = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(p_.get(), &hdr, &data);
    if (rc == 1) {
      const std::int64_t frac = nano_ ? hdr->ts.tv_usec : std::int64_t{hdr->ts.tv_usec} * 1000;
      out.ts_ns = std::int64_t{hdr->ts.tv_sec} * 1'000'000'000 + frac;
      out.bytes = std::span<const std::uint8_t>(data, hdr->caplen);
      out.wire_len = hdr->len;
      out.linktype = link_;
      return ReadStatus::Frame;
    }
    if (rc == 0) return ReadStatus::Timeout;
    if (rc == PCAP_ERROR_BREAK) return ReadStatus::End;
    return tl::unexpected(std::string("pcap read: ") + pcap_geterr(p_.get()));
  }

  int linktype() const override { return link_; }

  SourceStats stats() const override {
    SourceStats s;
    if (!live_) return s;
    pcap_stat st{};
    if (pcap_stats(p_.get(), &st) == 0) {
      s.received = st.ps_recv;
      s.dropped = st.ps_drop;
      s.if_dropped = st.ps_ifdrop;
    }
    return s;
  }

  int selectable_fd() const override { return live_ ? pcap_get_selectable_fd(p_.get()) : -1; }

 private:
  [[nodiscard]] int fd() const { return live_ ? pcap_fileno(p_.get()) : -1; }

  PcapPtr p_;
  bool nano_;
  bool live_;
  int link_;
  std::string interface_;
  bool check_link_ = false;
};

}  // namespace

tl::expected<std::unique_ptr<PacketSource>, std::string> open_live(const LiveOptions& o) {
  char err[PCAP_ERRBUF_SIZE] = {};
  const std::string what = "tap " + o.interface;
  PcapPtr p(pcap_create(o.interface.c_str(), err));
  if (!p) return tl::unexpected(what + ": " + err);
  if (pcap_set_snaplen(p.get(), o.snaplen) != 0 ||
      pcap_set_promisc(p.get(), o.promiscuous ? 1 : 0) != 0 ||
      pcap_set_timeout(p.get(), o.timeout_ms) != 0 ||
      pcap_set_immediate_mode(p.get(), o.immediate ? 1 : 0) != 0 ||
      pcap_set_buffer_size(
          p.get(), static_cast<int>(std::min<std::size_t>(o.buffer_bytes, 1u << 30))) != 0) {
    return tl::unexpected(what + ": cannot set capture options");
  }
  // Nanosecond timestamps when the platform has them; otherwise microseconds, scaled.
  const bool nano = pcap_set_tstamp_precision(p.get(), PCAP_TSTAMP_PRECISION_NANO) == 0;
  const int rc = pcap_activate(p.get());
  if (rc < 0) {
    return tl::unexpected(what + ": " + pcap_statustostr(rc) + ": " + pcap_geterr(p.get()));
  }
  const bool got_nano = nano && pcap_get_tstamp_precision(p.get()) == PCAP_TSTAMP_PRECISION_NANO;
  if (auto f = apply_filter(p.get(), o.filter, what); !f) return tl::unexpected(f.error());
  if (o.nonblocking && pcap_setnonblock(p.get(), 1, err) != 0) {
    return tl::unexpected(what + ": cannot set non-blocking: " + err);
  }
  return std::make_unique<PcapSource>(std::move(p), got_nano, true, o.interface);
}

tl::expected<std::unique_ptr<PacketSource>, std::string> open_file(const std::string& path,
                                                                   const std::string& filter) {
  char err[PCAP_ERRBUF_SIZE] = {};
  PcapPtr p(pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err));
  if (!p) return tl::unexpected("pcap file " + path + ": " + err);
  if (auto f = apply_filter(p.get(), filter, "pcap file " + path); !f) {
    return tl::unexpected(f.error());
  }
  return std::make_unique<PcapSource>(std::move(p), true, false);
}

tl::expected<void, std::string> check_filter(std::string_view filter, int link, int snaplen) {
  PcapPtr p(pcap_open_dead(link, snaplen));
  if (!p) return tl::unexpected(std::string("pcap_open_dead failed"));
  bpf_program prog{};
  const std::string f(filter);
  if (pcap_compile(p.get(), &prog, f.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    return tl::unexpected("BPF filter '" + f + "' does not compile: " + pcap_geterr(p.get()));
  }
  pcap_freecode(&prog);
  return {};
}

std::size_t ring_buffer_bytes(double frames_per_s, int snaplen, double seconds) {
  // TPACKET_V3 packs frames into blocks: each takes its captured bytes (at most the snap length)
  // after a 96-byte header (tpacket3_hdr + sockaddr_ll + the 16-byte MAC reserve, aligned, less
  // the 14-byte Ethernet header), the whole 8-byte aligned; sized for full-snap-length frames.
  const double per_frame = static_cast<double>(std::max(snaplen, 64)) + 96.0;
  const double want = std::max(0.0, frames_per_s) * std::max(0.0, seconds) * per_frame;
  constexpr double kMin = 2.0 * 1024 * 1024;
  constexpr double kMax = 512.0 * 1024 * 1024;
  return static_cast<std::size_t>(std::ceil(std::clamp(want, kMin, kMax)));
}

}  // namespace pathsentry::probe
