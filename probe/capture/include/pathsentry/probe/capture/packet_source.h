#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

namespace pathsentry::probe {

/// Link-layer types the frame decoder understands (libpcap DLT_* values as pcap_datalink()
/// reports them; LINKTYPE_RAW in files is reported as DLT_RAW).
namespace linktype {
inline constexpr int kNull = 0;         ///< BSD loopback: 4-byte host-order address family
inline constexpr int kEthernet = 1;     ///< DLT_EN10MB, with up to two 802.1Q/802.1ad tags
inline constexpr int kRaw = 12;         ///< DLT_RAW on Linux: the frame starts with the IP header
inline constexpr int kRawBsd = 14;      ///< DLT_RAW on OpenBSD
inline constexpr int kRawFile = 101;    ///< LINKTYPE_RAW as stored in files
inline constexpr int kLinuxSll = 113;   ///< Linux cooked capture v1 ("any")
inline constexpr int kLinuxSll2 = 276;  ///< Linux cooked capture v2
}  // namespace linktype

/// One captured frame. `bytes` is what was captured (at most the snap length) and stays valid
/// only until the next call on the source that produced it.
struct Frame {
  std::int64_t ts_ns = 0;  ///< capture timestamp, CLOCK_REALTIME ns (kernel)
  std::span<const std::uint8_t> bytes{};
  std::uint32_t wire_len = 0;  ///< length of the frame on the wire (may exceed bytes.size())
  int linktype = linktype::kEthernet;
};

/// Kernel capture counters (pcap_stats). Files have none: all zero.
struct SourceStats {
  std::uint64_t received = 0;    ///< ps_recv: frames the filter passed
  std::uint64_t dropped = 0;     ///< ps_drop: dropped because the ring buffer was full
  std::uint64_t if_dropped = 0;  ///< ps_ifdrop: dropped by the interface/driver
};

/// Outcome of PacketSource::next() when it did not fail.
enum class ReadStatus : std::uint8_t {
  Frame,    ///< `out` holds a frame
  Timeout,  ///< nothing available now (live, non-blocking or the read timeout expired)
  End,      ///< end of the file (offline) or the source was broken out of its loop
};

/// A stream of captured frames: the seam between capture (libpcap live or a pcap file) and
/// decoding. Not thread-safe; one reader at a time.
class PacketSource {
 public:
  virtual ~PacketSource() = default;
  /// Reads the next frame into `out`. Never throws; a capture error (interface gone, corrupt
  /// file) is an error value with libpcap's message.
  [[nodiscard]] virtual tl::expected<ReadStatus, std::string> next(Frame& out) = 0;
  /// The DLT_* link type of every frame of this source.
  [[nodiscard]] virtual int linktype() const = 0;
  /// Kernel counters so far (zeros for files and when unavailable).
  [[nodiscard]] virtual SourceStats stats() const = 0;
  /// A descriptor that polls readable when frames are waiting (live), -1 for files.
  [[nodiscard]] virtual int selectable_fd() const = 0;
  /// Live: why the interface cannot deliver frames although reads do not fail (it is down or
  /// has no carrier: libpcap keeps reading nothing then); nullopt when it can, or for files.
  [[nodiscard]] virtual std::optional<std::string> link_problem() const { return std::nullopt; }
};

/// Options for a live capture.
struct LiveOptions {
  std::string interface {};             ///< e.g. "tap-ec"
  std::string filter{};                 ///< BPF expression (see bpf_filter()); empty = everything
  int snaplen = 256;                    ///< bytes kept per frame: headers + our payloads fit in 256
  std::size_t buffer_bytes = 4u << 20;  ///< kernel ring size (see ring_buffer_bytes())
  /// pcap_set_immediate_mode: deliver each frame at once (TPACKET_V2, a wake-up per frame);
  /// false: TPACKET_V3, frames delivered a block at a time (block full, or `timeout_ms` passed)
  bool immediate = true;
  bool promiscuous = true;  ///< a mirror port carries frames for other MAC addresses
  int timeout_ms = 10;      ///< not immediate: the kernel retires a partly filled block after this
  bool nonblocking = true;  ///< next() returns Timeout instead of blocking
};

/// Opens a live capture with nanosecond timestamps (microsecond ones are scaled when the
/// platform cannot give ns). Errors carry libpcap's message and name the interface; a failing
/// filter names the expression. Needs CAP_NET_RAW.
[[nodiscard]] tl::expected<std::unique_ptr<PacketSource>, std::string> open_live(
    const LiveOptions& options);

/// Opens a pcap (or pcapng) file for offline reading with nanosecond timestamps, optionally
/// applying a BPF filter. Without a filter, a plain pcap file (version 2.4, a link type the
/// decoder takes) is mapped and its records read in place, libpcap taking over at the first
/// irregular record: the same frames, timestamps, end and errors as libpcap's own reading,
/// without its two fread calls per frame.
[[nodiscard]] tl::expected<std::unique_ptr<PacketSource>, std::string> open_file(
    const std::string& path, const std::string& filter = {});

/// Checks that `filter` compiles for `link` (pcap_open_dead + pcap_compile); the error names the
/// expression and libpcap's complaint. No capture needed.
[[nodiscard]] tl::expected<void, std::string> check_filter(std::string_view filter,
                                                           int link = linktype::kEthernet,
                                                           int snaplen = 256);

/// A kernel ring size that holds `seconds` worth of frames at `frames_per_s` with `snaplen`
/// bytes each (plus TPACKET_V3's per-frame header), clamped to [2 MiB, 512 MiB]. The ring is
/// mapped into the process: it counts in its RSS.
[[nodiscard]] std::size_t ring_buffer_bytes(double frames_per_s, int snaplen, double seconds = 0.5);

}  // namespace pathsentry::probe
