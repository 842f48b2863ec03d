// libpcap-backed PacketSource: live capture (immediate mode, sized ring, BPF, ns timestamps)
// and offline reading of pcap/pcapng files (plain pcap files' regular records read in place).

#include <fcntl.h>
#include <net/if.h>
#include <pcap/pcap.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
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

/// A classic pcap file (version 2.4, either byte order, µs or ns) mapped into memory: its records
/// read in place, without libpcap's two fread calls per frame (the offline attribution reads
/// millions). Only regular records are read this way; at the first one that is not (cut short,
/// longer than the file's snap length) the reader stops and libpcap takes over from that record,
/// so whatever libpcap does with it (an error, a truncation) is what happens.
class MappedPcap {
 public:
  MappedPcap(const MappedPcap&) = delete;
  MappedPcap& operator=(const MappedPcap&) = delete;
  ~MappedPcap() {
    if (base_ != nullptr) ::munmap(const_cast<std::uint8_t*>(base_), size_);
  }

  /// nullptr when the file is not a plain pcap file this reader takes (libpcap reads it then).
  static std::unique_ptr<MappedPcap> open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nullptr;
    struct stat st {};
    void* m = MAP_FAILED;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        st.st_size >= static_cast<off_t>(kFileHeader)) {
      m = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    }
    ::close(fd);
    if (m == MAP_FAILED) return nullptr;
    std::unique_ptr<MappedPcap> r(
        new MappedPcap(static_cast<const std::uint8_t*>(m), static_cast<std::size_t>(st.st_size)));
    if (!r->header()) return nullptr;
    ::madvise(m, r->size_, MADV_SEQUENTIAL);
    return r;
  }

  /// The next record: Frame or End; nullopt when the record is not a regular one (libpcap's).
  std::optional<ReadStatus> next(Frame& out, int link) {
    if (off_ == size_) return ReadStatus::End;
    if (size_ - off_ < kRecordHeader) return std::nullopt;
    const std::uint8_t* h = base_ + off_;
    const std::uint32_t caplen = field(h + 8);
    if (caplen > snaplen_ || caplen > size_ - off_ - kRecordHeader) return std::nullopt;
    // As libpcap reads them: the seconds and fraction signed 32-bit in a file of this host's
    // byte order, unsigned in a byte-swapped one.
    const std::int64_t sec =
        swapped_ ? std::int64_t{field(h)} : static_cast<std::int32_t>(field(h));
    const std::int64_t frac =
        swapped_ ? std::int64_t{field(h + 4)} : static_cast<std::int32_t>(field(h + 4));
    out.ts_ns = sec * 1'000'000'000 + (nano_ ? frac : frac * 1000);
    out.bytes = std::span<const std::uint8_t>(h + kRecordHeader, caplen);
    out.wire_len = field(h + 12);
    out.linktype = link;
    off_ += kRecordHeader + caplen;
    ++taken_;
    return ReadStatus::Frame;
  }
  /// Records read so far (libpcap skips as many when it takes over).
  [[nodiscard]] std::uint64_t taken() const { return taken_; }

 private:
  static constexpr std::size_t kFileHeader = 24;
  static constexpr std::size_t kRecordHeader = 16;
  static constexpr std::uint32_t kMaxSnaplen = 262144;  // libpcap's largest for most link types

  MappedPcap(const std::uint8_t* base, std::size_t size) : base_(base), size_(size) {}

  [[nodiscard]] std::uint32_t field(const std::uint8_t* p) const {
    std::uint32_t v = 0;
    std::memcpy(&v, p, 4);
    return swapped_ ? __builtin_bswap32(v) : v;
  }
  [[nodiscard]] std::uint16_t field16(const std::uint8_t* p) const {
    std::uint16_t v = 0;
    std::memcpy(&v, p, 2);
    return swapped_ ? __builtin_bswap16(v) : v;
  }
  bool header() {
    std::uint32_t magic = 0;
    std::memcpy(&magic, base_, 4);
    switch (magic) {
      case 0xa1b2c3d4:
        break;
      case 0xa1b23c4d:
        nano_ = true;
        break;
      case 0xd4c3b2a1:
        swapped_ = true;
        break;
      case 0x4d3cb2a1:
        swapped_ = nano_ = true;
        break;
      default:
        return false;  // pcapng, modified pcap formats, junk: libpcap's
    }
    if (field16(base_ + 4) != 2 || field16(base_ + 6) != 4) return false;
    snaplen_ = field(base_ + 16);
    return snaplen_ != 0 && snaplen_ <= kMaxSnaplen;
  }

  const std::uint8_t* base_;
  std::size_t size_;
  std::size_t off_ = kFileHeader;
  std::uint64_t taken_ = 0;
  bool swapped_ = false;
  bool nano_ = false;
  std::uint32_t snaplen_ = 0;
};

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

  /// Reads the file's records in place through `m` while they are regular (files only).
  void map(std::unique_ptr<MappedPcap> m) { mapped_ = std::move(m); }

  tl::expected<ReadStatus, std::string> next(Frame& out) override {
    if (mapped_) {
      if (const auto st = mapped_->next(out, link_)) return *st;
      // libpcap takes over at this record: it has read the file header only so far.
      const std::uint64_t skip = mapped_->taken();
      mapped_.reset();
      pcap_pkthdr* h = nullptr;
      const u_char* d = nullptr;
      for (std::uint64_t i = 0; i < skip; ++i) {
        if (pcap_next_ex(p_.get(), &h, &d) != 1) {
          return tl::unexpected(std::string("pcap read: the file changed while being read"));
        }
      }
    }
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
  std::unique_ptr<MappedPcap> mapped_;
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
  auto src = std::make_unique<PcapSource>(std::move(p), true, false);
  // Without a filter, a plain pcap file's records are read in place (libpcap opened it: the
  // header and link type are its). With a filter every frame goes through libpcap's BPF.
  // Only the link types the decoder takes (libpcap rewrites some others' headers in
  // byte-swapped files: USB, NFLOG).
  const int link = src->linktype();
  const bool plain_link = link == linktype::kNull || link == linktype::kEthernet ||
                          link == linktype::kRaw || link == linktype::kRawBsd ||
                          link == linktype::kLinuxSll || link == linktype::kLinuxSll2;
  if (filter.empty() && plain_link) src->map(MappedPcap::open(path));
  return src;
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
