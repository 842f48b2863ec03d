#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

#include "pathsentry/common/ip.h"
#include "pathsentry/common/record.h"
#include "pathsentry/probe/capture/echo.h"
#include "pathsentry/probe/capture/packet_source.h"

namespace pathsentry::probe {

/// How a tap sees its path's traffic (architecture.md §3 "Sniffing and attribution").
enum class Encap : std::uint8_t {
  Clear,  ///< probes appear as sent: matched exactly by identity and sequence
  Esp,    ///< only ESP between two tunnel endpoints: attributed by time/length correlation
};

/// The ESP transform of a tunnel, which fixes how long a probe becomes once encrypted
/// (RFC 4303 §2: SPI 4 + sequence 4 + IV + payload padded to the block + pad length 1 +
/// next header 1 + ICV). Tunnel mode: the payload is the whole inner IP packet.
struct EspTransform {
  std::uint32_t iv_bytes = 8;     ///< AES-GCM 8, AES-CBC 16
  std::uint32_t block_bytes = 4;  ///< padding alignment: AES-CBC 16, AES-GCM 4 (RFC 4106)
  std::uint32_t icv_bytes = 16;   ///< GCM-16 16, HMAC-SHA1-96 12, HMAC-SHA256-128 16
  std::uint32_t tfc_pad_to = 0;   ///< strongSwan tfc_padding: inner packet padded to this (0: off)

  /// Named transforms: "aes-gcm-8|12|16" (ICV bytes), "aes-cbc-sha1", "aes-cbc-sha256",
  /// "aes-cbc-sha384", "aes-cbc-sha512", "null-sha256" (ESP_NULL with HMAC-SHA256-128).
  /// nullopt for any other name.
  [[nodiscard]] static std::optional<EspTransform> preset(std::string_view name);

  /// ESP length (from the SPI to the end of the ICV, i.e. the outer IP payload minus any UDP
  /// encapsulation header) of an inner IP packet of `inner_ip_bytes` bytes.
  [[nodiscard]] std::uint32_t esp_length(std::uint32_t inner_ip_bytes) const;
};

/// One configured tap: an interface that sees one path's traffic.
struct TapSpec {
  std::string interface {};  ///< capture interface (live) or a label (tests, files)
  std::string path{};        ///< path label reported in records: "express-connect", "ipsec", …
  Encap encap = Encap::Clear;
  /// Esp: the DC-side and the remote tunnel endpoints. Forward = local → remote.
  IpAddress local_endpoint{};
  IpAddress remote_endpoint{};
  /// Esp: the transform, so expected lengths are computed. nullopt = learn them from
  /// observations where a probe is the only candidate (see attributor.h).
  std::optional<EspTransform> transform{};
  /// Esp: forward, an ESP packet may explain a probe when seen in [tx + lo, tx + hi]; reverse,
  /// a reply's ESP is expected in [rx - hi, rx - lo]. lo may be negative (TX timestamps taken
  /// after the frame left). The narrower, the fewer ambiguous probes; the default's 10 ms hold
  /// the stalls of a userspace IPsec (strongSwan kernel-libipsec: 5-9 ms in the lab), and the
  /// default size cycle (2 x rate x window) keeps probes of one size two windows apart.
  std::int64_t window_lo_ns = -200'000;
  std::int64_t window_hi_ns = 10'000'000;
  /// Esp, reverse only: lo/hi of [rx - hi, rx - lo] when the return delay (tap → decryption →
  /// agent) differs from the forward one; nullopt = the forward values. Tune both from
  /// TapAttribution::delay.
  std::optional<std::int64_t> rev_window_lo_ns{};
  std::optional<std::int64_t> rev_window_hi_ns{};
  /// Clear: the cloud's health check of the line is watched (docs/healthcheck.md): ICMP echo
  /// frames to or from this prefix pass the BPF filter and are handed to the sink's on_echo().
  /// nullopt = not watched.
  std::optional<IpPrefix> healthcheck_prefix{};

  /// The window bounds in effect for a direction.
  [[nodiscard]] std::int64_t lo_ns(Direction d) const {
    return d == Direction::Reverse ? rev_window_lo_ns.value_or(window_lo_ns) : window_lo_ns;
  }
  [[nodiscard]] std::int64_t hi_ns(Direction d) const {
    return d == Direction::Reverse ? rev_window_hi_ns.value_or(window_hi_ns) : window_hi_ns;
  }
};

/// What the decoder needs to know besides the tap.
struct DecodeContext {
  std::uint32_t agent_id = 0;  ///< ICMP payloads carrying another agent id are foreign
  std::uint16_t stamp_port = 862;
};

/// Why a frame yielded no observation. Every frame read is either decoded, handed over as a
/// health-check echo (TapStats::echoes), or counted under one of these.
enum class DropReason : std::uint8_t {
  Truncated,        ///< captured bytes end before a header or payload we need
  UnsupportedLink,  ///< link type the decoder does not handle
  NotIp,            ///< not IPv4/IPv6 (ARP, LLDP, …)
  BadIpHeader,      ///< version/header length/total length inconsistent
  Fragment,         ///< an IP fragment (probes and ESP are not fragmented on these paths)
  NotProbe,         ///< IP traffic that is none of: our ICMP echo, STAMP, ESP
  ForeignProbe,     ///< our payload format but another agent's id
  WrongEncap,       ///< probe traffic on an ESP tap, or ESP on a clear tap
  Ike,              ///< UDP 4500 carrying IKE (non-ESP marker) or a NAT keepalive
  WrongEndpoints,   ///< ESP not between the tap's two tunnel endpoints
};
inline constexpr std::size_t kDropReasonCount = 10;
/// Stable snake_case name of a reason (for metrics labels and logs).
[[nodiscard]] const char* to_string(DropReason r);

/// What a decoded frame says.
enum class ObsKind : std::uint8_t { Icmp, Stamp, Esp };

/// One decoded frame. Plain data, no allocation.
struct Observation {
  std::int64_t ts_ns = 0;  ///< capture time
  ObsKind kind = ObsKind::Icmp;
  Direction dir = Direction::Forward;
  /// Icmp/Stamp: the target side's address (destination forward, source reverse).
  IpAddress target{};
  std::uint32_t session_id = 0;     ///< Icmp: from the payload
  std::uint64_t seq = 0;            ///< Icmp: 64-bit; Stamp: 32-bit sender sequence
  std::uint16_t ssid = 0;           ///< Stamp: the SSID (low 16 bits of the session id)
  std::uint32_t reflector_seq = 0;  ///< Stamp reverse: the reflector's own sequence
  std::uint32_t spi = 0;            ///< Esp
  std::uint32_t esp_seq = 0;        ///< Esp
  std::uint32_t esp_len = 0;        ///< Esp: bytes from the SPI to the end (wire length)
  bool udp_encap = false;           ///< Esp: ESP-in-UDP (port 4500)
};

/// Decodes one frame seen on a tap. Pure function: never throws, never reads past `bytes`, never
/// allocates.
[[nodiscard]] tl::expected<Observation, DropReason> decode_frame(
    const TapSpec& tap, const DecodeContext& ctx, std::int64_t ts_ns, int link,
    std::span<const std::uint8_t> bytes);

/// BPF expression passing only what `tap` needs: clear — ICMP/ICMPv6 echo and UDP to or from
/// the STAMP port, to or from one of `agent_addresses` (all when empty), plus ICMP to or from
/// the tap's healthcheck_prefix when set; esp — IP protocol 50 and UDP 4500 between the two
/// endpoints. VLAN-tagged copies pass too.
[[nodiscard]] std::string bpf_filter(const TapSpec& tap, std::span<const IpAddress> agent_addresses,
                                     std::uint16_t stamp_port);

/// Receives what taps decode (implemented by the Attributor).
class ObservationSink {
 public:
  virtual ~ObservationSink() = default;
  /// `tap` is the tap's index in the attributor's configuration.
  virtual void on_observation(std::size_t tap, const Observation& obs) = 0;
  /// An ICMP echo frame of the cloud's health check (a clear tap with healthcheck_prefix: an
  /// echo to or from the prefix that is none of the agent's probes). Default: ignored.
  virtual void on_echo(std::size_t /*tap*/, const EchoFrame& /*echo*/) {}
};

/// Per-tap counters.
struct TapStats {
  std::uint64_t frames = 0;                               ///< frames read from the source
  std::uint64_t decoded = 0;                              ///< frames that became an observation
  std::array<std::uint64_t, kDropReasonCount> dropped{};  ///< by DropReason
  std::uint64_t echoes = 0;  ///< health-check echo frames handed to on_echo()
  SourceStats source;        ///< kernel counters (live), summed over every capture opened
  /// Availability (the pipeline's capture thread keeps these): times the capture failed and the
  /// tap went down, attempts to reopen it, and the time spent down in spans that have ended.
  std::uint64_t down = 0;
  std::uint64_t reopen_attempts = 0;
  std::int64_t down_ns = 0;
};

/// A tap at run time: its source, decoding and counters. Not thread-safe.
class Tap {
 public:
  /// `index` is the tap's position in AttributorConfig::taps.
  Tap(TapSpec spec, DecodeContext ctx, std::unique_ptr<PacketSource> source, std::size_t index);

  /// Reads up to `max_frames` frames (stopping early when the source has none now) and hands
  /// every decoded one to `sink` (and, on a clear tap watching the health check, its echo frames
  /// to `sink.on_echo`). Returns how many frames were read, or the source's error.
  /// `end` is set when a file source is exhausted.
  [[nodiscard]] tl::expected<std::size_t, std::string> pump(ObservationSink& sink,
                                                            std::size_t max_frames,
                                                            bool* end = nullptr);

  /// Counters, with the source's kernel counters refreshed.
  [[nodiscard]] const TapStats& stats();
  [[nodiscard]] const TapSpec& spec() const { return spec_; }
  [[nodiscard]] std::size_t index() const { return index_; }
  /// The current capture (check has_source(): none after close_source()).
  [[nodiscard]] PacketSource& source() { return *source_; }
  [[nodiscard]] bool has_source() const { return source_ != nullptr; }

  /// Closes a failed capture (its kernel counters are kept); pump() fails until a new source.
  void close_source();
  /// Takes a reopened capture of the same interface in place of the current one.
  void replace_source(std::unique_ptr<PacketSource> source);
  /// Availability bookkeeping (see TapStats).
  void count_down() { ++stats_.down; }
  void count_reopen_attempt() { ++stats_.reopen_attempts; }
  void count_up(std::int64_t down_ns) { stats_.down_ns += down_ns; }

 private:
  /// The frame as an echo of the health check this tap watches; nullopt otherwise.
  [[nodiscard]] std::optional<EchoFrame> health_check_echo(const Frame& frame, int link) const;

  TapSpec spec_;
  DecodeContext ctx_;
  std::unique_ptr<PacketSource> source_;
  std::size_t index_;
  TapStats stats_;
  SourceStats closed_source_stats_;
};

}  // namespace pathsentry::probe
