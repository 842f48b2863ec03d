#pragma once
// A probe record as the store's compact columns (docs/store.md "Probes") and back, exactly:
// times become offsets from tx_ns (modulo 2^64, so any int64 values round-trip), the booleans
// and the loss direction one flags integer, taps_down one length-prefixed blob.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/common/record.h"

namespace pathsentry::db::detail {

struct ProbeColumns {
  std::int64_t seq = 0;
  std::int64_t tx_ns = 0;
  std::optional<std::int64_t> rx_off;
  std::optional<std::int64_t> rtt_x;
  std::int64_t flags = 0;
  std::optional<std::int64_t> refl_seq;
  std::optional<std::int64_t> refl_rx_off;
  std::optional<std::int64_t> refl_tx_off;
  std::optional<std::string> taps_down;
};

[[nodiscard]] ProbeColumns to_columns(const ProbeRecord& r);

/// Fills everything but target, proto, session_id, fwd_path and rev_path (held elsewhere).
/// False when the columns cannot come from to_columns (a damaged row).
[[nodiscard]] bool from_columns(const ProbeColumns& c, ProbeRecord& r);

[[nodiscard]] std::string encode_taps(const std::vector<std::string>& taps);
[[nodiscard]] bool decode_taps(std::string_view blob, std::vector<std::string>& taps);

}  // namespace pathsentry::db::detail
