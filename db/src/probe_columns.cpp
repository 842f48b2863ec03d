#include "probe_columns.h"

#include <charconv>

namespace pathsentry::db::detail {
namespace {

// Differences and sums modulo 2^64: exact for any pair of int64 (no signed overflow).
std::int64_t sub(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b));
}
std::int64_t add(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}

constexpr std::int64_t kTxKernelTs = 1, kClockSynced = 2, kLate = 4, kLossShift = 3;

}  // namespace

std::string encode_taps(const std::vector<std::string>& taps) {
  std::string out;
  for (const auto& t : taps) {
    out += std::to_string(t.size());
    out += ':';
    out += t;
  }
  return out;
}

bool decode_taps(std::string_view blob, std::vector<std::string>& taps) {
  taps.clear();
  while (!blob.empty()) {
    std::size_t n = 0;
    const auto [p, ec] = std::from_chars(blob.data(), blob.data() + blob.size(), n);
    if (ec != std::errc() || p == blob.data() + blob.size() || *p != ':') return false;
    blob.remove_prefix(static_cast<std::size_t>(p - blob.data()) + 1);
    if (n > blob.size()) return false;
    taps.emplace_back(blob.substr(0, n));
    blob.remove_prefix(n);
  }
  return true;
}

ProbeColumns to_columns(const ProbeRecord& r) {
  ProbeColumns c;
  c.seq = static_cast<std::int64_t>(r.seq);
  c.tx_ns = r.tx_ns;
  if (r.rx_ns) c.rx_off = sub(*r.rx_ns, r.tx_ns);
  const std::int64_t expected_rtt = c.rx_off.value_or(0);
  if (r.rtt_ns != expected_rtt) c.rtt_x = r.rtt_ns;
  c.flags = (r.tx_kernel_ts ? kTxKernelTs : 0) | (r.reflector_clock_synced ? kClockSynced : 0) |
            (r.late ? kLate : 0) | (static_cast<std::int64_t>(r.loss) << kLossShift);
  if (r.reflector_seq) c.refl_seq = *r.reflector_seq;
  if (r.reflector_rx_ns) c.refl_rx_off = sub(*r.reflector_rx_ns, r.tx_ns);
  if (r.reflector_tx_ns) {
    c.refl_tx_off = sub(*r.reflector_tx_ns, r.reflector_rx_ns.value_or(r.tx_ns));
  }
  if (!r.taps_down.empty()) c.taps_down = encode_taps(r.taps_down);
  return c;
}

bool from_columns(const ProbeColumns& c, ProbeRecord& r) {
  const std::int64_t loss = c.flags >> kLossShift;
  if (c.flags < 0 || loss > static_cast<std::int64_t>(LossDirection::Undetermined)) return false;
  r.seq = static_cast<std::uint64_t>(c.seq);
  r.tx_ns = c.tx_ns;
  r.rx_ns.reset();
  if (c.rx_off) r.rx_ns = add(c.tx_ns, *c.rx_off);
  r.rtt_ns = c.rtt_x ? *c.rtt_x : c.rx_off.value_or(0);
  r.tx_kernel_ts = (c.flags & kTxKernelTs) != 0;
  r.reflector_clock_synced = (c.flags & kClockSynced) != 0;
  r.late = (c.flags & kLate) != 0;
  r.loss = static_cast<LossDirection>(loss);
  r.reflector_seq.reset();
  if (c.refl_seq) {
    if (*c.refl_seq < 0 || *c.refl_seq > 0xFFFFFFFFLL) return false;
    r.reflector_seq = static_cast<std::uint32_t>(*c.refl_seq);
  }
  r.reflector_rx_ns.reset();
  if (c.refl_rx_off) r.reflector_rx_ns = add(c.tx_ns, *c.refl_rx_off);
  r.reflector_tx_ns.reset();
  if (c.refl_tx_off) r.reflector_tx_ns = add(r.reflector_rx_ns.value_or(c.tx_ns), *c.refl_tx_off);
  r.taps_down.clear();
  if (c.taps_down && !decode_taps(*c.taps_down, r.taps_down)) return false;
  return true;
}

}  // namespace pathsentry::db::detail
