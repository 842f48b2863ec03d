#pragma once

#include <toml++/toml.h>

#include <string>
#include <vector>

#include "pathsentry/probe/attribution/detector.h"
#include "pathsentry/probe/capture/tap.h"
#include "pathsentry/probe/ttl/ttl_config.h"

namespace pathsentry::probe {

/// The agent's taps and detector settings ([[tap]] and [detector] in the TOML file, --tap,
/// --confirm-probes, --outage-losses on the command line; docs/probe.md has the reference).
struct TapSettings {
  std::vector<TapSpec> taps;  ///< empty = no attribution (paths stay "")
  /// For each tap, where it came from ("tap[0]" in the file or "--tap"), for startup errors.
  std::vector<std::string> tap_keys;
  DetectorConfig detector;
  /// The mirror-free TTL method ([ttl], --ttl-*; ttl_config.h). Its results go through the
  /// same detector and, with taps, are cross-checked against them.
  TtlSettings ttl;
};

/// Reads the `[[tap]]` array, the `[detector]` table and the `[ttl]` table (read_ttl_table) of a
/// parsed config file into `out` (other keys of `root` are left to the caller). Keys of a tap:
/// interface, path, encap ("clear" | "esp"); for esp: local, remote (tunnel endpoints), udp_port
/// (4500, the only one the decoder knows), transform (an EspTransform preset name; absent =
/// learn lengths), window_lo_us, window_hi_us, rev_window_lo_us, rev_window_hi_us. [detector]:
/// confirm_probes, outage_losses. Throws ConfigError naming file, key and value.
void read_tap_tables(const toml::table& root, const std::string& file, TapSettings& out);

/// Parses one --tap value: `IFACE:PATH:clear` or
/// `IFACE:PATH:esp:LOCAL:REMOTE[:TRANSFORM[:LO_US:HI_US[:REV_LO_US:REV_HI_US]]]` (IPv6
/// endpoints in brackets).
/// Throws ConfigError naming the flag and the value.
[[nodiscard]] TapSpec parse_tap_flag(const std::string& flag, const std::string& text);

/// Checks the taps together (distinct interfaces, a path label per tap, windows ordered).
void check_taps(const std::string& file, const TapSettings& settings);

/// The --help lines for the tap, detector and TTL flags.
[[nodiscard]] std::string tap_usage();

}  // namespace pathsentry::probe
