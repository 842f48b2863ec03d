#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace pathsentry {

/// Probe protocol of a session.
enum class Proto : std::uint8_t { Icmp, Stamp };

/// Which path carried a probe in one direction. Configured taps name the real paths
/// ("express-connect", "ipsec", …); these are the values that are not a tap's label.
inline constexpr const char* kPathNone = "none";        ///< lost in that direction
inline constexpr const char* kPathUnknown = "unknown";  ///< seen/answered, not attributable
inline constexpr const char* kPathPending = "";         ///< not yet attributed

/// One probe's outcome: the per-probe record of architecture.md §3. Filled by the sender
/// (timing, loss) and completed by the attributor (paths). Times are CLOCK_REALTIME ns.
struct ProbeRecord {
  std::string target;  ///< target address as text
  Proto proto = Proto::Icmp;
  std::uint32_t session_id = 0;  ///< agent-unique session identity (also on the wire)
  std::uint64_t seq = 0;         ///< 64-bit session sequence
  std::int64_t tx_ns = 0;        ///< kernel TX timestamp (software), or the send-time clock read
  std::optional<std::int64_t> rx_ns;  ///< kernel RX timestamp of the reply; nullopt = lost
  std::int64_t rtt_ns = 0;            ///< rx_ns - tx_ns when received, else 0
  bool tx_kernel_ts = false;          ///< tx_ns came from the kernel (errqueue)
  /// STAMP only: reflector's own sequence and timestamps (t2 = its RX, t3 = its TX).
  std::optional<std::uint32_t> reflector_seq;
  std::optional<std::int64_t> reflector_rx_ns;
  std::optional<std::int64_t> reflector_tx_ns;
  bool reflector_clock_synced = false;  ///< reflector's error estimate S bit
  /// Forward (DC→cloud) / reverse (cloud→DC) path; kPathPending until attributed.
  std::string fwd_path = kPathPending;
  std::string rev_path = kPathPending;
  /// Set when a reply arrived after the loss timeout had already declared the probe lost.
  bool late = false;
};

}  // namespace pathsentry
